"""SyntheticFeed: deterministic, on NYSE sessions (holidays, early closes), sane OHLC, trends both ways."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from adapters.synthetic import SyntheticFeed, generate_bars, write_csv
from pipeline.core.calendar import MarketCalendar, default_calendar
from pipeline.core.clock import SimulatedClock
from pipeline.core.models import Bar
from pipeline.core.ports import MarketDataFeed

NY = ZoneInfo("America/New_York")
TICKERS = ["AAPL", "MSFT", "NVDA"]


@pytest.fixture(scope="module")
def calendar() -> MarketCalendar:
    return default_calendar()


def all_bars(feed: SyntheticFeed) -> list[Bar]:
    return [bar for batch in feed.bar_batches() for bar in batch]


def test_same_seed_same_bars_other_seed_differs(calendar: MarketCalendar) -> None:
    a = all_bars(SyntheticFeed(TICKERS, None, calendar, seed=11, days=2))
    b = all_bars(SyntheticFeed(TICKERS, None, calendar, seed=11, days=2))
    c = all_bars(SyntheticFeed(TICKERS, None, calendar, seed=12, days=2))
    assert a == b
    assert [x.close for x in a] != [x.close for x in c]


def test_a_ticker_does_not_change_the_others(calendar: MarketCalendar) -> None:
    alone = [b for b in all_bars(SyntheticFeed(["MSFT"], None, calendar, days=1))]
    mixed = [b for b in all_bars(SyntheticFeed(["AAPL", "MSFT"], None, calendar, days=1)) if b.symbol == "MSFT"]
    assert alone == mixed


def test_sessions_holiday_and_early_close(calendar: MarketCalendar) -> None:
    feed = SyntheticFeed(["AAPL"], None, calendar, days=5, start=date(2026, 11, 23))
    bars = all_bars(feed)
    by_day: dict[date, list[Bar]] = {}
    for bar in bars:
        by_day.setdefault(bar.timestamp.astimezone(NY).date(), []).append(bar)
    assert sorted(by_day) == [date(2026, 11, 23), date(2026, 11, 24), date(2026, 11, 25), date(2026, 11, 27),
                              date(2026, 11, 30)]
    assert date(2026, 11, 26) not in by_day  # Thanksgiving
    normal = by_day[date(2026, 11, 24)]
    assert len(normal) == 390
    assert normal[0].timestamp.astimezone(NY).time() == time(9, 30)
    assert normal[-1].timestamp.astimezone(NY).time() == time(15, 59)
    early = by_day[date(2026, 11, 27)]
    assert len(early) == 210
    assert (early[-1].timestamp + timedelta(minutes=1)).astimezone(NY).time() == time(13, 0)
    assert all(calendar.is_open(b.timestamp) for b in bars)


def test_ohlc_and_volume_are_sane(calendar: MarketCalendar) -> None:
    bars = all_bars(SyntheticFeed(TICKERS, None, calendar, days=5))
    for bar in bars:
        assert bar.low > 0 and bar.volume > 0
        assert bar.low <= min(bar.open, bar.close) <= max(bar.open, bar.close) <= bar.high
        assert bar.timeframe == "1m"
        assert all(math.isfinite(x) for x in (bar.open, bar.high, bar.low, bar.close))
    # intraday U shape: the first and last half hours trade more than midday
    edge, mid = [], []
    for bar in bars:
        minute = bar.timestamp.astimezone(NY)
        offset = (minute.hour * 60 + minute.minute) - (9 * 60 + 30)
        (edge if offset < 30 or offset >= 360 else mid if 150 <= offset < 240 else []).append(bar.volume)
    assert sum(edge) / len(edge) > 1.5 * sum(mid) / len(mid)


def test_trends_both_ways_and_chop(calendar: MarketCalendar) -> None:
    bars = all_bars(SyntheticFeed(["AAPL", "MSFT", "NVDA", "AMD", "JPM", "XOM", "GOOGL", "TSLA"], None, calendar))
    ups = downs = flats = 0
    series: dict[str, list[float]] = {}
    for bar in bars:
        series.setdefault(bar.symbol, []).append(bar.close)
    for closes in series.values():
        for i in range(0, len(closes) - 60, 60):
            move = closes[i + 60] / closes[i] - 1
            ups += move > 0.008
            downs += move < -0.008
            flats += abs(move) < 0.002
    assert ups >= 5 and downs >= 5 and flats >= 5


async def test_batches_advance_the_clock_to_the_bar_close(calendar: MarketCalendar) -> None:
    clock = SimulatedClock(datetime(2026, 1, 1, tzinfo=UTC))
    feed = SyntheticFeed(["AAPL", "MSFT"], clock, calendar, days=1, pace_bars_per_s=0)
    assert isinstance(feed, MarketDataFeed)
    count = 0
    async for batch in feed.batches():
        assert [b.symbol for b in batch] == ["AAPL", "MSFT"]
        assert clock.now() == batch[0].timestamp + timedelta(minutes=1)
        count += 1
    assert count == 390
    assert feed.sessions[0][0] == datetime(2026, 11, 16, 14, 30, tzinfo=UTC)


def test_generate_bars_and_write_csv_counts(tmp_path: Path, calendar: MarketCalendar) -> None:
    batches = list(generate_bars(["A", "B"], 1000, seed=5, calendar=calendar))
    assert len(batches) == 1000 and all(len(b) == 2 for b in batches)
    stamps = [b[0].timestamp for b in batches]
    assert stamps == sorted(stamps) and len(set(stamps)) == 1000
    rows = write_csv(tmp_path / "x.csv", ["A", "B"], seed=5, n_bars=1000, calendar=calendar)
    assert rows == 2000
    assert sum(1 for _ in (tmp_path / "x.csv").open()) == 2001


def test_bad_arguments_are_named(calendar: MarketCalendar) -> None:
    with pytest.raises(ValueError, match="tickers"):
        SyntheticFeed([], None, calendar)
    with pytest.raises(ValueError, match="days"):
        SyntheticFeed(["A"], None, calendar, days=0)
    with pytest.raises(ValueError, match="pace"):
        SyntheticFeed(["A"], None, calendar, pace_bars_per_s=-1)
