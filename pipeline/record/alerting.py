"""The pipeline's one way to raise an alert: to the sink attached (the daemon's alert dispatcher, an adapter;
a test's recorder), else to the log. Synchronous code (a kill switch trip in a signal handler) sends its alert
in a task of its own."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

log = structlog.get_logger("ordergate.alerts")
AlertSinkFn = Callable[..., Awaitable[Any]]  # (kind, message, severity, **fields)


class AlertRelay:
    """Holds where alerts go; the lifecycle, the protective stops and the kill switch alert through it."""

    def __init__(self) -> None:
        self.sink: AlertSinkFn | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def attach(self, sink: AlertSinkFn | None) -> None:
        """Send alerts to `sink` from now on (None: only log them)."""
        self.sink = sink

    async def alert(self, kind: str, message: str, severity: str = "warning", **fields: Any) -> None:
        """Raise one alert."""
        if self.sink is not None:
            await self.sink(kind, message, severity, **fields)
        else:
            log.warning("alert", kind=kind, message=message, severity=severity, **fields)

    def alert_soon(self, kind: str, message: str, severity: str = "warning") -> None:
        """Fire-and-forget alert from synchronous code; only logged when no event loop runs."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            log.warning("alert", kind=kind, message=message, severity=severity)
            return
        task = loop.create_task(self.alert(kind, message, severity))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
