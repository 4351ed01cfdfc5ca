"""AlpacaBarFeed through the real alpaca-py StockDataStream over loopback against FakeAlpaca (msgpack)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from adapters.alpaca_data import AlpacaBarFeed
from pipeline.core.clock import LiveClock, SimulatedClock
from pipeline.core.models import Bar
from pipeline.core.ports import MarketDataFeed
from tests.fakes.alpaca_server import FakeAlpaca

T0 = datetime(2026, 3, 2, 14, 31, tzinfo=UTC)


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


# -- history: warm-up at start, backfill after a dropped data socket ---------------------------------------------
def _history(fake: FakeAlpaca, symbols: list[str], minutes: range) -> None:
    for m in minutes:
        for k, symbol in enumerate(symbols):
            price = 100.0 + k * 10 + m * 0.1
            fake.add_history(symbol, T0 + timedelta(minutes=m), price, price + 0.5, price - 0.5, price + 0.2, 100 + m)


async def test_warm_up_returns_history_in_time_order_across_pages(fake: FakeAlpaca) -> None:
    _history(fake, ["AAPL", "MSFT"], range(0, 7))
    fake.add_history("AAPL", T0 + timedelta(minutes=30), 1, 1, 1, 1, 1)  # the minute now under way: not closed
    fake.history_page_size = 3  # 13 bars in the window: five pages, each by symbol then time
    fake.history_fail = 1  # and a 500 first: retried
    clock = SimulatedClock(T0 + timedelta(minutes=30))
    feed = AlpacaBarFeed(fake.alpaca_settings(), ["AAPL", "MSFT"], clock, batch_window_seconds=0.3,
                         stream_backoff=(0.05, 0.3))
    try:
        batches = await feed.warm_up(T0 + timedelta(minutes=1))
        assert [[b.symbol for b in batch] for batch in batches] == [["AAPL", "MSFT"]] * 6
        assert [batch[0].timestamp for batch in batches] == [T0 + timedelta(minutes=m) for m in range(1, 7)]
        first = batches[0][0]
        assert (first.open, first.close, first.volume, first.timeframe) == (100.1, 100.3, 101.0, "1m")
        requests = fake.history_requests()
        assert len(requests) == 6  # the failed one, then five pages
        assert requests[-1].query["symbols"] == "AAPL,MSFT" and requests[-1].query["timeframe"] == "1Min"
        assert requests[-1].query["feed"] == "iex"
    finally:
        await feed.close()


async def test_warm_up_that_cannot_reach_the_data_api_returns_nothing(fake: FakeAlpaca) -> None:
    _history(fake, ["AAPL"], range(0, 3))
    fake.history_fail = 10
    feed = AlpacaBarFeed(fake.alpaca_settings(), ["AAPL"], SimulatedClock(T0 + timedelta(minutes=5)),
                         stream_backoff=(0.01, 0.05))
    try:
        assert await feed.warm_up(T0) == []
        assert len(fake.history_requests()) == 3  # every attempt made
    finally:
        await feed.close()


async def test_minutes_missed_while_the_data_socket_was_down_are_backfilled_in_order(fake: FakeAlpaca) -> None:
    clock = SimulatedClock(T0 + timedelta(minutes=10))
    feed = AlpacaBarFeed(fake.alpaca_settings(), ["AAPL"], clock, batch_window_seconds=0.3,
                         stream_backoff=(0.05, 0.3))
    c = Collector(feed)
    try:
        await fake.wait_for(lambda: "AAPL" in fake.data_subscriptions and len(fake.data_sockets) == 1)
        assert fake.history_requests() == []  # nothing released yet: no gap to fill
        await fake.push_bar("AAPL", T0, 1, 2, 0.5, 1.5, 10)
        await fake.wait_for(lambda: len(c.batches) == 1)
        _history(fake, ["AAPL"], range(0, 3))  # T0 (already released), then the two minutes missed
        fake.history_fail = 1
        fake.history_delay = 0.3  # the live bar below arrives while the backfill is still running
        fake.drop_data_stream()
        await fake.wait_for(lambda: fake.data_stream_connects == 2 and len(fake.data_sockets) == 1)
        await fake.wait_for(lambda: "AAPL" in fake.data_subscriptions)
        await fake.push_bar("AAPL", T0 + timedelta(minutes=3), 3, 4, 2.5, 3.5, 30)
        await fake.wait_for(lambda: len(c.batches) == 4)
        assert [b[0].timestamp for b in c.batches] == [T0 + timedelta(minutes=m) for m in range(4)]
        assert [b[0].close for b in c.batches] == [1.5, 100.3, 100.4, 3.5]
        assert feed.bars_backfilled == 2
        (request, *_) = fake.history_requests()
        assert datetime.fromisoformat(request.query["start"].replace("Z", "+00:00")) == T0 + timedelta(minutes=1)
    finally:
        await c.stop()


async def test_warm_up_history_is_split_adjusted(fake: FakeAlpaca) -> None:
    """A 2-for-1 split after the warm-up's first minutes: the history comes in today's shares (the live bars'),
    not as a halving the indicators would read as a crash."""
    _history(fake, ["AAPL"], range(0, 6))
    fake.prices["AAPL"] = 100.0
    fake.split("AAPL", 2.0, at=T0 + timedelta(minutes=3))
    feed = AlpacaBarFeed(fake.alpaca_settings(), ["AAPL"], SimulatedClock(T0 + timedelta(minutes=30)),
                         stream_backoff=(0.05, 0.3))
    try:
        batches = await feed.warm_up(T0)
        raw = {m: 100.0 + 0.1 * m for m in range(0, 6)}  # what _history wrote as each minute's open
        opens = [(batch[0].timestamp, batch[0].open) for batch in batches]
        assert opens == [(T0 + timedelta(minutes=m), pytest.approx(raw[m] / (2.0 if m < 3 else 1.0)))
                         for m in range(0, 6)]
        assert fake.history_requests()[-1].query["adjustment"] == "split"
    finally:
        await feed.close()
