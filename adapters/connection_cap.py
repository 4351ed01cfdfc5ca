"""A cap on the TCP connections an aiohttp server holds open, so a flood cannot take every file descriptor.

`ConnectionCap` wraps the server's protocol factory: while fewer than `limit` connections are open each new
one gets the real aiohttp handler (counted until its connection is lost); beyond that a connection is
answered `503 Service Unavailable` with `Connection: close` and closed at once, so it costs a descriptor for
one loop iteration only. `CappedTCPSite` is an aiohttp site that listens through such a cap.

Idle and slow connections are closed by the handler's own timers (the webhook sets aiohttp's
`keepalive_timeout`, which also bounds the time to send a request head after connecting).
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from typing import Any

from aiohttp import web

REFUSAL = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 21\r\n"
           b"Retry-After: 5\r\nConnection: close\r\n\r\ntoo many connections\n")
REFUSAL_LOG_INTERVAL_SECONDS = 10.0

ProtocolFactory = Callable[[], asyncio.BaseProtocol]


class _Counted(asyncio.Protocol):
    """Forwards every transport callback to the real protocol and frees its slot when the connection ends."""

    def __init__(self, inner: asyncio.Protocol, cap: ConnectionCap) -> None:
        self._inner = inner
        self._cap = cap

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cap.release(self)
        self._inner.connection_lost(exc)


class _Refused(asyncio.Protocol):
    """A connection over the cap: a 503 and close (the bytes fit the socket buffer; nothing is read)."""

    def __init__(self, cap: ConnectionCap) -> None:
        self._cap = cap

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.WriteTransport)
        transport.write(REFUSAL)
        transport.close()
        self._cap.refused()


class ConnectionCap:
    """A protocol factory that hands out at most `limit` real protocols at a time; see the module doc."""

    def __init__(self, factory: Callable[[], Any], limit: int, logger: Any = None) -> None:
        if limit < 1:
            raise ValueError(f"connection limit must be at least 1, got {limit}")
        self.factory = factory
        self.limit = limit
        self.log = logger
        self.refused_total = 0
        # Counted until connection_lost; a protocol whose connection never started is dropped by the GC.
        self._open: weakref.WeakSet[_Counted] = weakref.WeakSet()
        self._refused_since_log = 0
        self._last_log = float("-inf")

    @property
    def open_connections(self) -> int:
        return len(self._open)

    def __call__(self) -> asyncio.BaseProtocol:
        if len(self._open) >= self.limit:
            return _Refused(self)
        counted = _Counted(self.factory(), self)
        self._open.add(counted)
        return counted

    def release(self, protocol: _Counted) -> None:
        """A counted connection ended: its slot is free."""
        self._open.discard(protocol)

    def refused(self) -> None:
        """A connection over the cap was answered 503 (counted; logged at most every few seconds)."""
        self.refused_total += 1
        self._refused_since_log += 1
        now = asyncio.get_running_loop().time()
        if self.log is not None and now - self._last_log >= REFUSAL_LOG_INTERVAL_SECONDS:
            self.log.warning("connections_refused", refused=self._refused_since_log, limit=self.limit,
                             open=len(self._open), refused_total=self.refused_total)
            self._refused_since_log = 0
            self._last_log = now


class CappedTCPSite(web.BaseSite):
    """An aiohttp TCP site whose connections go through a `ConnectionCap` of `max_connections`."""

    __slots__ = ("_host", "_logger", "_max_connections", "_port", "cap")

    def __init__(self, runner: web.BaseRunner, host: str, port: int, *, max_connections: int,
                 backlog: int = 128, logger: Any = None) -> None:
        super().__init__(runner, backlog=backlog)
        self._host = host
        self._port = port
        self._max_connections = max_connections
        self._logger = logger
        self.cap: ConnectionCap | None = None

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None
        self.cap = ConnectionCap(server, self._max_connections, self._logger)
        self._server = await asyncio.get_running_loop().create_server(
            self.cap, self._host, self._port, backlog=self._backlog)
