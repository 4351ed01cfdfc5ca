"""Incremental EMAs against pandas, EMA clouds, and the session-aligned bar aggregator."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, time, timedelta

import numpy as np
import pandas as pd
import pytest

from pipeline.core.calendar import NEW_YORK
from pipeline.core.models import Bar
from pipeline.strategy.ema_cloud import BarAggregator
from pipeline.strategy.indicators import EMA, CloudEmas, EmaCloud

# ---------------------------------------------------------------------------------------------- EMA


@pytest.mark.parametrize("span", [5, 12, 8, 9, 34, 50])
def test_ema_matches_pandas_ewm(span: int) -> None:
    rng = np.random.default_rng(20260105 + span)
    series = 100.0 + np.cumsum(rng.normal(0.0, 1.0, 2000))
    expected = pd.Series(series).ewm(span=span, adjust=False).mean().to_numpy()
    ema = EMA(span)
    got = np.array([ema.update(float(x)) for x in series])
    assert np.max(np.abs(got - expected)) < 1e-9
    assert ema.value == got[-1]
    assert ema.count == 2000


def test_ema_first_value_seeds_and_ready_after_span() -> None:
    ema = EMA(3)
    assert ema.update(10.0) == 10.0
    assert not ema.ready
    assert ema.update(20.0) == pytest.approx(15.0)  # alpha = 0.5
    assert ema.update(20.0) == pytest.approx(17.5)
    assert ema.ready
    ema.reset()
    assert ema.count == 0
    assert ema.update(4.0) == 4.0


@pytest.mark.parametrize("span", [0, -3, 2.5, True, "5"])
def test_ema_rejects_bad_span(span: object) -> None:
    with pytest.raises(ValueError, match="span"):
        EMA(span)  # type: ignore[arg-type]


def test_ema_cloud_colour_and_edges() -> None:
    cloud = EmaCloud(2, 5)
    for x in (10.0, 11.0, 12.0, 13.0):
        cloud.update(x)
    assert cloud.bullish
    assert cloud.upper == cloud.short.value > cloud.lower == cloud.long.value
    for _ in range(10):
        cloud.update(5.0)
    assert not cloud.bullish
    assert cloud.upper == cloud.long.value > cloud.lower == cloud.short.value


def test_ema_cloud_rejects_inverted_spans() -> None:
    with pytest.raises(ValueError, match="short_span"):
        EmaCloud(12, 5)


def test_ema_cloud_uses_slots() -> None:
    with pytest.raises(AttributeError):
        EMA(5).extra = 1  # type: ignore[attr-defined]
    with pytest.raises(AttributeError):
        EmaCloud(5, 12).extra = 1  # type: ignore[attr-defined]


# ---------------------------------------------------------------------------------------------- aggregator


def ny(day: date, hh: int, mm: int) -> datetime:
    return datetime.combine(day, time(hh, mm), NEW_YORK).astimezone(UTC)


def session_bars(symbol: str, day: date, seed: int, start: tuple[int, int] = (9, 30),
                 end: tuple[int, int] = (16, 0)) -> list[Bar]:
    """Random 1m bars from `start` to `end` ET on `day`."""
    rng = random.Random(seed)
    t, stop = ny(day, *start), ny(day, *end)
    price = 100.0
    bars = []
    while t < stop:
        o = price
        price = max(1.0, price + rng.gauss(0, 0.3))
        hi, lo = max(o, price) + rng.random() * 0.2, min(o, price) - rng.random() * 0.2
        bars.append(Bar(symbol, t, o, hi, lo, price, float(rng.randint(100, 5000))))
        t += timedelta(minutes=1)
    return bars


def reference(bars: list[Bar], rule: str, origin: datetime) -> pd.DataFrame:
    frame = pd.DataFrame(
        {"open": [b.open for b in bars], "high": [b.high for b in bars], "low": [b.low for b in bars],
         "close": [b.close for b in bars], "volume": [b.volume for b in bars]},
        index=pd.DatetimeIndex([b.timestamp for b in bars]),
    )
    out = frame.resample(rule, origin=pd.Timestamp(origin), label="left", closed="left").agg(
        {"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum"}
    )
    return out.dropna()


def run(agg: BarAggregator, bars: list[Bar]) -> list[Bar]:
    out: list[Bar] = []
    for bar in bars:
        out.extend(agg.update(bar))
    return out


@pytest.mark.parametrize(("timeframe", "rule"), [("5m", "5min"), ("15m", "15min"), ("30m", "30min"), ("1h", "60min")])
@pytest.mark.parametrize("day", [date(2026, 1, 6), date(2026, 7, 7)])  # EST and EDT
def test_aggregator_ohlcv_matches_resample(timeframe: str, rule: str, day: date) -> None:
    bars = session_bars("AAPL", day, seed=7)
    got = run(BarAggregator(timeframe), bars)
    ref = reference(bars, rule, ny(day, 9, 30))
    assert len(got) == len(ref)
    for bar, (stamp, row) in zip(got, ref.iterrows(), strict=True):
        assert bar.timestamp == stamp.to_pydatetime()
        assert bar.timeframe == timeframe and bar.symbol == "AAPL"
        assert (bar.open, bar.high, bar.low, bar.close) == (row.open, row.high, row.low, row.close)
        assert bar.volume == pytest.approx(row.volume)
    assert got[0].timestamp == ny(day, 9, 30)


def test_aggregator_emits_on_last_minute_of_bucket() -> None:
    day = date(2026, 1, 6)
    bars = session_bars("MSFT", day, seed=1)
    agg = BarAggregator("5m")
    for bar in bars[:4]:
        assert agg.update(bar) == ()
    (done,) = agg.update(bars[4])  # the 09:34 bar ends at 09:35
    assert done.timestamp == ny(day, 9, 30)
    assert done.open == bars[0].open and done.close == bars[4].close
    assert done.volume == sum(b.volume for b in bars[:5])
    assert agg.bar_close_time(done) == ny(day, 9, 35)


def test_aggregator_last_hour_bucket_is_cut_at_the_close() -> None:
    day = date(2026, 1, 6)
    bars = session_bars("MSFT", day, seed=2)
    agg = BarAggregator("1h")
    out = run(agg, bars)
    assert [b.timestamp for b in out][-2:] == [ny(day, 14, 30), ny(day, 15, 30)]
    last = out[-1]
    assert last.volume == sum(b.volume for b in bars[-30:])
    assert agg.bar_close_time(last) == ny(day, 16, 0)
    assert agg.update(bars[-1]) == ()  # a repeated last bar does not rebuild the bucket


def test_aggregator_gap_emits_partial_bucket_when_a_later_bar_arrives() -> None:
    day = date(2026, 1, 6)
    bars = session_bars("X", day, seed=3)
    agg = BarAggregator("5m")
    assert agg.update(bars[0]) == () and agg.update(bars[1]) == ()
    (partial,) = agg.update(bars[7])  # 09:37
    assert partial.timestamp == ny(day, 9, 30)
    assert partial.volume == bars[0].volume + bars[1].volume
    assert partial.high == max(bars[0].high, bars[1].high)
    # a gap straight to the last minute of a bucket emits the pending bucket and the new one together
    out = agg.update(bars[14])  # 09:44 ends the 09:40 bucket; 09:35 bucket (09:37 only) is pending
    assert [b.timestamp for b in out] == [ny(day, 9, 35), ny(day, 9, 40)]


def test_aggregator_drops_repeated_and_late_bars() -> None:
    day = date(2026, 1, 6)
    bars = session_bars("X", day, seed=4)
    agg = BarAggregator("5m")
    agg.update(bars[0])
    agg.update(bars[1])
    assert agg.update(bars[1]) == ()
    assert agg.update(bars[0]) == ()
    agg.update(bars[2])
    agg.update(bars[3])
    (done,) = agg.update(bars[4])
    assert done.volume == sum(b.volume for b in bars[:5])
    assert agg.update(bars[3]) == ()  # late bar of a bucket already emitted


def test_aggregator_symbols_are_independent() -> None:
    day = date(2026, 1, 6)
    a, b = session_bars("A", day, seed=5), session_bars("B", day, seed=6)
    agg = BarAggregator("15m")
    merged = [x for pair in zip(a, b, strict=True) for x in pair]
    out = run(agg, merged)
    assert [x.symbol for x in out[:2]] == ["A", "B"]
    ref_a = reference(a, "15min", ny(day, 9, 30))
    got_a = [x for x in out if x.symbol == "A"]
    assert [x.close for x in got_a] == list(ref_a.close)


def test_aggregator_passes_same_timeframe_through_and_ignores_larger() -> None:
    agg = BarAggregator("5m")
    five = Bar("X", ny(date(2026, 1, 6), 9, 30), 1, 2, 0.5, 1.5, 100, "5m")
    assert agg.update(five) == (five,)
    daily = Bar("X", ny(date(2026, 1, 6), 0, 0), 1, 2, 0.5, 1.5, 100, "1d")
    assert agg.update(daily) == ()


def test_aggregator_rejects_unknown_bar_timeframe() -> None:
    with pytest.raises(ValueError, match="timeframe"):
        BarAggregator("7m")
    agg = BarAggregator("5m")
    with pytest.raises(ValueError, match="timeframe"):
        agg.update(Bar("X", ny(date(2026, 1, 6), 9, 30), 1, 1, 1, 1, 1, "7m"))


def test_daily_aggregation_per_new_york_date() -> None:
    d1, d2 = date(2026, 3, 6), date(2026, 3, 9)  # Friday EST, Monday EDT (DST began on the 8th)
    bars1 = session_bars("SPY", d1, seed=8, start=(8, 0), end=(17, 0))  # with pre- and post-market
    bars2 = session_bars("SPY", d2, seed=9)
    agg = BarAggregator("1d")
    out = []
    emitted_at = []
    for bar in bars1 + bars2:
        for done in agg.update(bar):
            out.append(done)
            emitted_at.append(bar.timestamp)
    assert len(out) == 2
    rth1 = [b for b in bars1 if ny(d1, 9, 30) <= b.timestamp < ny(d1, 16, 0)]
    first = out[0]
    assert first.timeframe == "1d"
    assert first.timestamp == datetime.combine(d1, time(0), NEW_YORK).astimezone(UTC)
    assert (first.open, first.close) == (rth1[0].open, rth1[-1].close)
    assert first.high == max(b.high for b in rth1) and first.low == min(b.low for b in rth1)
    assert first.volume == pytest.approx(sum(b.volume for b in rth1))
    assert emitted_at == [ny(d1, 15, 59), ny(d2, 15, 59)]  # promptly, on the last minute of the session
    assert out[1].timestamp == datetime.combine(d2, time(0), NEW_YORK).astimezone(UTC)
    assert agg.bar_close_time(first) == ny(d1, 16, 0)
    assert agg.bar_close_time(out[1]) == ny(d2, 16, 0)


class EarlyCloseCalendar:
    """Duck-typed MarketCalendar: every day closes at 13:00 ET."""

    def session(self, day: date) -> tuple[datetime, datetime] | None:
        return ny(day, 9, 30), ny(day, 13, 0)


def test_calendar_early_close_cuts_buckets_and_daily_bar() -> None:
    day = date(2026, 11, 27)
    bars = session_bars("QQQ", day, seed=10, end=(13, 0))
    hourly = run(BarAggregator("1h", calendar=EarlyCloseCalendar()), bars)  # type: ignore[arg-type]
    assert hourly[-1].timestamp == ny(day, 12, 30)
    assert hourly[-1].volume == sum(b.volume for b in bars[-30:])
    daily_agg = BarAggregator("1d", calendar=EarlyCloseCalendar())  # type: ignore[arg-type]
    daily = run(daily_agg, bars)
    assert len(daily) == 1 and daily[0].close == bars[-1].close
    assert daily_agg.bar_close_time(daily[0]) == ny(day, 13, 0)


def test_flush_emits_unfinished_bucket() -> None:
    day = date(2026, 1, 6)
    bars = session_bars("X", day, seed=11)
    agg = BarAggregator("15m")
    run(agg, bars[:20])
    rest = agg.flush("X")
    assert rest is not None and rest.timestamp == ny(day, 9, 45)
    assert rest.volume == sum(b.volume for b in bars[15:20])
    assert agg.flush("X") is None
    assert agg.flush("NOPE") is None


def test_cloud_emas_match_six_emas_bit_for_bit() -> None:
    """Issue 17: the strategy's six EMAs held as one object give exactly `EMA.update`'s floats, bar after bar."""
    spans = (5, 12, 8, 9, 34, 50)
    together, apart = CloudEmas(spans), [EMA(s) for s in spans]
    rng = random.Random(17)
    price = 100.0
    for _ in range(2_000):
        price *= 1.0 + rng.gauss(0.0, 0.01)
        together.update(price)
        expected = [e.update(price) for e in apart]
        assert [together.fs, together.fl, together.ps, together.pl, together.ts, together.tl] == expected
    assert together.count == 2_000


def test_cloud_emas_refuse_bad_spans() -> None:
    with pytest.raises(ValueError, match="six EMA spans"):
        CloudEmas((5, 12, 8, 9, 34))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="span must be an integer >= 1"):
        CloudEmas((5, 12, 8, 0, 34, 50))
