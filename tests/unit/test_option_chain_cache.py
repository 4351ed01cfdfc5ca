"""PrefetchedChains: fresh chains answered from memory, stale or missing ones refused with the reason, bounded."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime

import pytest

from config.settings import OptionsSettings, load_settings
from pipeline.core.clock import SimulatedClock
from pipeline.instruments.chains import PrefetchedChains, chain_tickers
from pipeline.instruments.options import OptionChainUnavailable, OptionQuote
from tests.conftest import until

NOW = datetime(2026, 11, 24, 16, 0, tzinfo=UTC)


def _quote(underlying: str, strike: float = 100.0) -> OptionQuote:
    symbol = f"{underlying:<6}261218C{round(strike * 1000):08d}"
    return OptionQuote(symbol, underlying, date(2026, 12, 18), strike, "C", 3.2, 3.4, 3.3, 0.45, 900, 0.3)


class Venue:
    """A chain source that answers from a dict, or fails while `failing` is set."""

    def __init__(self) -> None:
        self.chains: dict[str, list[OptionQuote]] = {}
        self.failing: str | None = None
        self.calls: list[str] = []

    async def fetch(self, underlying: str, as_of: datetime) -> list[OptionQuote]:
        self.calls.append(underlying)
        if self.failing:
            raise ConnectionError(self.failing)
        return self.chains.get(underlying, [])


def _cache(venue: Venue, clock: SimulatedClock, tickers: list[str], **settings: float) -> PrefetchedChains:
    return PrefetchedChains(venue.fetch, clock, tickers, OptionsSettings(**settings), source="alpaca")


async def test_fresh_then_stale_with_the_last_error() -> None:
    venue, clock = Venue(), SimulatedClock(NOW)
    venue.chains["SPY"] = [_quote("SPY")]
    cache = _cache(venue, clock, ["SPY"], chain_max_age_seconds=90, chain_refresh_seconds=60)
    with pytest.raises(OptionChainUnavailable, match="no alpaca option chain for SPY: not fetched yet"):
        cache.chain("SPY", 100.0, NOW)
    assert await cache.refresh() == {"SPY": None}
    assert [q.strike for q in cache.chain("spy", 100.0, NOW)] == [100.0]
    venue.failing = "connection reset by peer"
    clock.advance(60)
    assert "connection reset" in (await cache.refresh())["SPY"]
    assert cache.chain("SPY", 100.0, clock.now())  # 60 s old, still inside 90 s: the held chain answers
    clock.advance(31)
    with pytest.raises(OptionChainUnavailable) as caught:
        cache.chain("SPY", 100.0, clock.now())
    message = str(caught.value)
    assert "stale: fetched 91s ago > options.chain_max_age_seconds 90" in message
    assert "the last refresh failed: ConnectionError: connection reset by peer" in message
    venue.failing = None
    await cache.refresh()
    assert cache.chain("SPY", 100.0, clock.now())  # a good refresh makes it fresh again


async def test_a_first_fetch_that_fails_says_why() -> None:
    venue, clock = Venue(), SimulatedClock(NOW)
    venue.failing = "503 service unavailable"
    cache = _cache(venue, clock, ["QQQ"])
    await cache.refresh()
    with pytest.raises(OptionChainUnavailable, match="fetching it failed: ConnectionError: 503"):
        cache.chain("QQQ", 400.0, NOW)
    assert cache.failures == 1


async def test_the_background_refresh_runs_on_the_injected_clock() -> None:
    venue, clock = Venue(), SimulatedClock(NOW)
    cache = _cache(venue, clock, ["SPY", "QQQ"], chain_refresh_seconds=60)
    cache.start()
    try:
        await until(lambda: venue.calls == ["SPY", "QQQ"], what="the first pass")
        await asyncio.sleep(0.05)
        assert venue.calls == ["SPY", "QQQ"]  # no second pass until the clock moves
        clock.advance(60)
        await until(lambda: len(venue.calls) == 4, what="the second pass")
    finally:
        await cache.stop()


async def test_an_unlisted_ticker_is_fetched_on_demand_and_the_cache_is_bounded() -> None:
    venue, clock = Venue(), SimulatedClock(NOW)
    for name in ("A", "B", "C", "D"):
        venue.chains[name] = [_quote(name)]
    cache = _cache(venue, clock, ["A", "B"], chain_max_underlyings=3)
    cache.start()
    try:
        await until(lambda: cache.snapshot("B") is not None, what="the first pass")
        with pytest.raises(OptionChainUnavailable, match="not among the prefetched tickers"):
            cache.chain("C", 50.0, NOW)
        await until(lambda: cache.snapshot("C") is not None, what="C fetched on demand")
        assert cache.chain("C", 50.0, NOW)
        with pytest.raises(OptionChainUnavailable):
            cache.chain("D", 50.0, NOW)
        await until(lambda: cache.snapshot("D") is not None, what="D fetched on demand")
        held = [name for name in "ABCD" if cache.snapshot(name) is not None]
        assert len(held) == 3 and "D" in held  # at most chain_max_underlyings chains; the oldest went
    finally:
        await cache.stop()


async def test_contracts_per_underlying_are_bounded() -> None:
    venue, clock = Venue(), SimulatedClock(NOW)
    venue.chains["SPY"] = [_quote("SPY", 400.0 + k) for k in range(30)]
    cache = _cache(venue, clock, ["SPY"], chain_max_contracts=10)
    await cache.refresh()
    assert len(cache.chain("SPY", 410.0, NOW)) == 10


def test_which_tickers_are_prefetched() -> None:
    both = load_settings(executor={"instrument_mode": "both"}, routing={"options_liquid_tickers": ["SPY", "QQQ"]})
    assert chain_tickers(both) == ["SPY", "QQQ"]
    options = load_settings(executor={"instrument_mode": "options"}, routing={"options_liquid_tickers": ["SPY"]},
                            data={"tickers": ["AAPL", "SPY"]})
    assert chain_tickers(options) == ["SPY", "AAPL"]
    chosen = load_settings(executor={"instrument_mode": "options"}, options={"chain_tickers": ["tsla"]})
    assert chain_tickers(chosen) == ["TSLA"]
    assert chain_tickers(load_settings(executor={"instrument_mode": "stock"})) == []
