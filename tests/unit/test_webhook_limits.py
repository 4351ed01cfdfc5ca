"""Webhook resource limits over real loopback sockets: the connection cap, the idle / request-head deadline
(slowloris), the body deadline, and the token checked before any body is read."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import SecretStr

from adapters.connection_cap import ConnectionCap
from adapters.webhook import SIGNALS_PATH, WebhookServer
from config.settings import WebhookSettings
from pipeline.core.clock import SimulatedClock
from pipeline.core.models import TradeSignal
from tests.conftest import stopped_after
from tests.conftest import until as _until

pytestmark = pytest.mark.timeout(60)
TOKEN = "limits-token-0123456789abcdef"
BODY = json.dumps({"ticker": "AAPL", "direction": "long", "signal_type": "manual", "timeframe": "5m",
                   "conviction": 70, "entry_price": 190.5, "stop_loss": 188.0}).encode()
WAIT = 10.0  # the most any test waits for the server to act


async def _submit(signal: TradeSignal) -> str:
    return "sig-limits"


Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]
ServerFactory = Callable[..., Awaitable[WebhookServer]]


@pytest.fixture
async def make_server() -> AsyncIterator[ServerFactory]:
    async def make(**overrides: Any) -> WebhookServer:
        settings = WebhookSettings(host="127.0.0.1", port=0, token=SecretStr(TOKEN), **overrides)
        server = WebhookServer(settings, _submit, SimulatedClock(datetime(2026, 3, 2, 15, 0, tzinfo=UTC)))
        await server.start()
        return server

    async for build in stopped_after(make):
        yield build


async def _connect(server: WebhookServer) -> Connection:
    assert server.port is not None
    return await asyncio.open_connection("127.0.0.1", server.port)


def _head(length: int = len(BODY), token: str = TOKEN) -> bytes:
    return (f"POST {SIGNALS_PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n").encode()


async def _read_until_closed(reader: asyncio.StreamReader, seconds: float = WAIT) -> bytes:
    """Everything the server sends until it closes the connection (bounded: fails after `seconds`). A reset is
    a close too: the server closing with bytes of ours still unread in its socket (a slowloris' header lines)
    makes the kernel answer with RST instead of FIN, depending only on when those bytes arrived."""
    data = b""
    async with asyncio.timeout(seconds):
        with contextlib.suppress(ConnectionResetError):
            while chunk := await reader.read(65536):
                data += chunk
    return data


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()


async def test_connections_beyond_the_cap_are_answered_503_and_closed(make_server: ServerFactory) -> None:
    server = await make_server(max_connections=4)
    held = [await _connect(server) for _ in range(4)]
    await _until(lambda: server.open_connections == 4)
    reader, writer = await _connect(server)
    answer = await _read_until_closed(reader)
    assert answer.startswith(b"HTTP/1.1 503 ") and b"Connection: close" in answer
    await _close(writer)
    assert server.open_connections == 4

    # A held slot still serves requests; a freed slot is taken by the next connection.
    reader0, writer0 = held[0]
    writer0.write(_head() + BODY)
    assert (await reader0.readline()).startswith(b"HTTP/1.1 202 ")
    await _close(held[1][1])
    await _until(lambda: server.open_connections == 3)
    reader, writer = await _connect(server)
    writer.write(_head() + BODY)
    assert (await reader.readline()).startswith(b"HTTP/1.1 202 ")
    for _, w in [*held, (reader, writer)]:
        await _close(w)
    await _until(lambda: server.open_connections == 0)


async def test_a_connection_that_sends_nothing_is_closed(make_server: ServerFactory) -> None:
    server = await make_server(idle_timeout_seconds=0.3)
    reader, writer = await _connect(server)
    assert await _read_until_closed(reader) == b""
    await _until(lambda: server.open_connections == 0)
    await _close(writer)


async def test_a_request_head_that_never_ends_is_closed(make_server: ServerFactory) -> None:
    """Slowloris: a header line every 50 ms keeps the connection busy, not alive."""
    server = await make_server(idle_timeout_seconds=0.5)
    reader, writer = await _connect(server)
    writer.write(f"POST {SIGNALS_PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\n".encode())
    closed = asyncio.ensure_future(_read_until_closed(reader))
    sent = 0
    while not closed.done() and sent < WAIT / 0.05:
        with contextlib.suppress(OSError):
            writer.write(f"X-Slow-{sent}: 1\r\n".encode())
        sent += 1
        await asyncio.sleep(0.05)
    assert closed.done(), "the server still holds a connection that never finished its request head"
    assert closed.result() == b""
    await _until(lambda: server.open_connections == 0)
    await _close(writer)


async def test_an_idle_keep_alive_connection_is_closed_after_its_answer(make_server: ServerFactory) -> None:
    server = await make_server(idle_timeout_seconds=0.3)
    reader, writer = await _connect(server)
    writer.write(_head() + BODY)
    answer = await _read_until_closed(reader)
    assert answer.startswith(b"HTTP/1.1 202 ")
    await _close(writer)


async def test_a_body_that_does_not_arrive_is_408(make_server: ServerFactory) -> None:
    server = await make_server(body_timeout_seconds=0.3)
    reader, writer = await _connect(server)
    writer.write(_head() + BODY[:10])
    answer = await _read_until_closed(reader)
    assert answer.startswith(b"HTTP/1.1 408 ") and b"body_timeout" not in answer
    assert b"body not received within 0.3s" in answer
    await _close(writer)


async def test_the_token_is_checked_before_the_body_is_read(make_server: ServerFactory) -> None:
    server = await make_server(body_timeout_seconds=30)
    reader, writer = await _connect(server)
    writer.write(_head(length=60_000, token="wrong-token-wrong-token"))  # and no body at all
    async with asyncio.timeout(WAIT):
        status = await reader.readline()
    assert status.startswith(b"HTTP/1.1 401 ")
    await _close(writer)


def test_a_cap_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        ConnectionCap(lambda: None, 0)


async def test_the_rate_limit_counts_wall_minutes_while_the_market_clock_races(make_server: ServerFactory) -> None:
    """In a replay the market clock runs minutes per real second; the senders are real, so `rate_per_minute`
    is per wall-clock minute (it used to refill on the market clock: a 2/min limit let ~10 a second through)."""
    server = await make_server(rate_per_minute=2)
    statuses = []
    for _ in range(3):
        server.clock.advance(600)  # ten market minutes between requests: five refills on the market clock
        reader, writer = await _connect(server)
        writer.write(_head() + BODY)
        await writer.drain()
        statuses.append(int((await reader.readline()).split()[1]))
        await _close(writer)
    assert statuses == [202, 202, 429]
