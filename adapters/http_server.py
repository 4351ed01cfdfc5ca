"""The one way ordergate serves HTTP: an aiohttp app on host:port behind a connection cap.

Used by the webhook intake (adapters.webhook) and the dashboard (daemon.dashboard): bind (0 = an ephemeral
port), report the bound port and the connections held open, and stop. Binding failures leave nothing open.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from adapters.connection_cap import CappedTCPSite


class CappedHttpServer:
    """One aiohttp application listening through a `CappedTCPSite`."""

    def __init__(self, logger: Any) -> None:
        self.log = logger
        self.port: int | None = None
        self._runner: web.AppRunner | None = None
        self._site: CappedTCPSite | None = None

    @property
    def running(self) -> bool:
        return self._runner is not None

    @property
    def open_connections(self) -> int:
        cap = self._site.cap if self._site is not None else None
        return cap.open_connections if cap is not None else 0

    async def start(self, app: web.Application, host: str, port: int, max_connections: int,
                    **runner_options: Any) -> int:
        """Bind and serve `app`; the bound port. `runner_options` go to aiohttp's AppRunner (timeouts)."""
        runner = web.AppRunner(app, access_log=None, handle_signals=False, **runner_options)
        await runner.setup()
        site = CappedTCPSite(runner, host, port, max_connections=max_connections, logger=self.log)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner, self._site = runner, site
        self.port = int(runner.addresses[0][1])
        return self.port

    async def stop(self) -> bool:
        """Close the server; False when it was not running."""
        if self._runner is None:
            return False
        runner, self._runner, self._site = self._runner, None, None
        await runner.cleanup()
        return True
