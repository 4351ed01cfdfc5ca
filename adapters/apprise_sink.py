"""Alerts to anywhere apprise reaches (Telegram, email, Pushover, ntfy, Matrix, Slack, ... by URL).

`[alerts] apprise_urls = ["tgram://<bot token>/<chat id>", "ntfys://ntfy.sh/<topic>", ...]` — each URL is a
secret (they carry tokens and passwords): `config show` masks them, they are scrubbed from free text like the
other secrets, and this sink logs only each service's name, never a URL. apprise is synchronous (requests),
so a delivery runs in a thread with a timeout and never blocks the loop; apprise is imported only when a URL
is configured. A delivery that reaches none of the services raises `AlertDeliveryError` (the dispatcher logs
it and goes on).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from adapters.alerts import AlertDeliveryError, format_text
from pipeline.core.models import Alert

DEFAULT_TIMEOUT_SECONDS = 15.0
_NOTIFY_TYPE = {"info": "info", "warning": "warning", "critical": "failure"}


class AppriseSink:
    """One apprise object over every configured URL; `send` notifies them all."""

    name = "apprise"

    def __init__(self, urls: Sequence[str], timeout: float = DEFAULT_TIMEOUT_SECONDS) -> None:
        import apprise

        logging.getLogger("apprise").setLevel(logging.CRITICAL)  # its messages may quote a URL: never logged
        self._apprise: Any = apprise.Apprise()
        self.services: list[str] = []
        for index, url in enumerate(urls):
            if not self._apprise.add(url):
                raise ValueError(f"alerts.apprise_urls[{index}]: not a URL apprise understands (scheme "
                                 f"{url.split('://', 1)[0][:20]!r})")
            self.services.append(self._apprise[len(self._apprise) - 1].service_name)
        self.timeout = timeout

    async def send(self, alert: Alert) -> None:
        title = f"ordergate {alert.severity}: {alert.kind}"
        body = format_text(alert)
        kind = _NOTIFY_TYPE.get(alert.severity, "info")
        try:
            ok = await asyncio.wait_for(asyncio.to_thread(self._apprise.notify, body=body, title=title,
                                                          notify_type=kind), self.timeout)
        except TimeoutError:
            services = ", ".join(self.services)
            raise AlertDeliveryError(f"apprise ({services}): no answer within {self.timeout:g}s") from None
        if not ok:
            raise AlertDeliveryError(f"apprise ({', '.join(self.services)}): delivery failed")

    async def close(self) -> None:
        return None
