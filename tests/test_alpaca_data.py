"""AlpacaBarFeed through the real alpaca-py StockDataStream over loopback against FakeAlpaca (msgpack)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from adapters.alpaca_data import AlpacaBarFeed
from pipeline.clock import LiveClock
from pipeline.models import Bar
from pipeline.ports import MarketDataFeed
from tests.fakes.alpaca_server import FakeAlpaca

T0 = datetime(2026, 3, 2, 14, 31, tzinfo=UTC)


@pytest.fixture
async def fake() -> AsyncIterator[FakeAlpaca]:
    async with FakeAlpaca() as server:
        yield server


class Collector:
    """Runs `feed.batches()` in a task and keeps what it yields."""

    def __init__(self, feed: AlpacaBarFeed) -> None:
        self.feed = feed
        self.batches: list[list[Bar]] = []
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        async for batch in self.feed.batches():
            self.batches.append(batch)

    async def stop(self) -> None:
        await self.feed.close()
        await asyncio.wait_for(self.task, 5)


async def _feed(fake: FakeAlpaca, tickers: list[str], window: float = 0.3) -> Collector:
    feed = AlpacaBarFeed(fake.alpaca_settings(), tickers, LiveClock(), batch_window_seconds=window,
                         stream_backoff=(0.05, 0.3))
    collector = Collector(feed)
    await fake.wait_for(lambda: set(tickers) <= fake.data_subscriptions and len(fake.data_sockets) == 1)
    return collector


async def test_bars_become_batches_per_timestamp(fake: FakeAlpaca) -> None:
    c = await _feed(fake, ["AAPL", "MSFT"])
    try:
        assert isinstance(c.feed, MarketDataFeed)
        await fake.push_bar("AAPL", T0, 100.0, 101.0, 99.5, 100.5, 1200)
        await fake.push_bar("MSFT", T0, 400.0, 402.0, 399.0, 401.0, 800)
        await fake.wait_for(lambda: len(c.batches) == 1)
        (batch,) = c.batches
        assert [b.symbol for b in batch] == ["AAPL", "MSFT"]
        aapl = batch[0]
        assert (aapl.open, aapl.high, aapl.low, aapl.close, aapl.volume) == (100.0, 101.0, 99.5, 100.5, 1200.0)
        assert aapl.timestamp == T0 and aapl.timestamp.tzinfo is not None and aapl.timeframe == "1m"
        # an incomplete minute is released by the next minute (time order kept), a lone one by the window
        t1, t2 = T0 + timedelta(minutes=1), T0 + timedelta(minutes=2)
        await fake.push_bar("AAPL", t1, 100.5, 100.7, 100.1, 100.2, 500)
        await fake.push_bars([{"S": "AAPL", "t": t2, "o": 1, "h": 1, "l": 1, "c": 1, "v": 1}])
        await fake.wait_for(lambda: len(c.batches) == 3)
        assert [[b.timestamp for b in batch] for batch in c.batches[1:]] == [[t1], [t2]]
        assert c.feed.is_connected()
    finally:
        await c.stop()
    assert c.task.done()


async def test_reconnect_after_drop_and_stale_bars_dropped(fake: FakeAlpaca) -> None:
    c = await _feed(fake, ["AAPL"])
    try:
        await fake.push_bar("AAPL", T0, 1, 2, 0.5, 1.5, 10)
        await fake.wait_for(lambda: len(c.batches) == 1)
        fake.drop_data_stream()
        await fake.wait_for(lambda: fake.data_stream_connects == 2 and len(fake.data_sockets) == 1)
        await fake.push_bar("AAPL", T0, 1, 2, 0.5, 1.5, 10)  # replayed after the reconnect: dropped
        await fake.push_bar("AAPL", T0 + timedelta(minutes=1), 2, 3, 1.5, 2.5, 20)
        await fake.wait_for(lambda: len(c.batches) == 2)
        assert [b[0].close for b in c.batches] == [1.5, 2.5]
        assert c.feed.connects == 2
    finally:
        await c.stop()


async def test_empty_tickers_rejected(fake: FakeAlpaca) -> None:
    with pytest.raises(ValueError, match="tickers"):
        AlpacaBarFeed(fake.alpaca_settings(), [" "], LiveClock())
