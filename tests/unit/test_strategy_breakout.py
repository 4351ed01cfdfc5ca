"""The daily breakout strategy: channel, ATR, one signal per breakout, warm-up, bad bars."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

import pytest

from pipeline.core.calendar import NEW_YORK
from pipeline.core.models import Bar, SignalType, signal_problems
from pipeline.strategy.breakout import BreakoutParams, DailyBreakoutStrategy

START = date(2026, 3, 2)  # a Monday


def _days(n: int) -> list[date]:
    days, d = [], START
    while len(days) < n:
        if d.weekday() < 5:
            days.append(d)
        d += timedelta(days=1)
    return days


def _bar(day: date, close: float, high: float | None = None, low: float | None = None,
         symbol: str = "AAPL") -> Bar:
    ts = datetime.combine(day, time(0), NEW_YORK)
    return Bar(symbol, ts, close, high if high is not None else close + 1.0, low if low is not None else close - 1.0,
               close, 1e6, "1d")


def _strategy(**params: float) -> DailyBreakoutStrategy:
    return DailyBreakoutStrategy(BreakoutParams(**{"channel": 5, "atr_period": 3, "atr_stop": 2.0, **params}),
                                 name="bo")


def _feed(strategy: DailyBreakoutStrategy, closes: list[float], **kw: float) -> list[list]:
    return [strategy.on_bar(_bar(d, c, **kw)) for d, c in zip(_days(len(closes)), closes, strict=True)]


def test_a_close_above_the_channel_high_is_a_long_with_an_atr_stop() -> None:
    s = _strategy()
    out = _feed(s, [100.0] * 8 + [103.0])
    assert all(not o for o in out[:-1])
    (signal,) = out[-1]
    assert signal.signal_type == SignalType.BREAKOUT_LONG and str(signal.direction) == "long"
    assert signal.strategy == "bo" and signal.timeframe == "1d" and signal.entry_price == 103.0
    # the breakout bar's true range is max(104 - 102, |104 - 100|, |102 - 100|) = 4; ATR was 2: Wilder (2*2 + 4) / 3
    atr = (2.0 * 2 + 4.0) / 3
    assert signal.stop_loss == pytest.approx(103.0 - 2.0 * atr)
    assert signal.metadata["channel_edge"] == 101.0  # the previous 5 highs
    assert signal.conviction == pytest.approx(60 + 40 * min(1.0, (103.0 - 101.0) / atr))
    assert signal_problems(signal) == []
    assert signal.timestamp == datetime.combine(_days(9)[-1], time(16, 0), NEW_YORK)  # the session's close


def test_a_close_below_the_channel_low_is_a_short_with_its_stop_above() -> None:
    s = _strategy(target_r=2.0)
    (signal,) = _feed(s, [100.0] * 8 + [97.0])[-1]
    assert signal.signal_type == SignalType.BREAKOUT_SHORT and str(signal.direction) == "short"
    risk = signal.stop_loss - 97.0
    assert risk > 0 and signal.target_price == pytest.approx(97.0 - 2.0 * risk)
    assert signal_problems(signal) == []


def test_one_signal_per_breakout_until_the_close_is_back_inside() -> None:
    s = _strategy()
    out = _feed(s, [100.0] * 8 + [103.0, 106.0, 109.0, 104.0, 104.5, 112.0])
    fired = [i for i, o in enumerate(out) if o]
    # 103 breaks out; 106 and 109 are the same breakout; 104 is back inside the channel (high 110); 112 breaks again
    assert fired == [8, 13]


def test_nothing_before_the_warm_up_even_on_a_breakout() -> None:
    s = _strategy(channel=5, atr_period=3)
    assert s.warmup_bars == 6
    out = _feed(s, [100.0] * 5 + [110.0, 100.0, 100.0, 120.0])
    assert [i for i, o in enumerate(out) if o] == [8]
    assert s.is_warm("AAPL", "1d") and not s.is_warm("MSFT", "1d")


def test_minute_bars_are_aggregated_into_the_session_bar() -> None:
    s = _strategy(channel=2, atr_period=1)
    for day, close in zip(_days(4), [100.0, 100.0, 100.0, 100.0], strict=True):
        s.on_bar(_bar(day, close))
    day = _days(5)[-1]
    open_ = datetime.combine(day, time(9, 30), NEW_YORK)
    signals = []
    for minute, price in enumerate([100.0] * 389 + [104.0]):
        ts = open_ + timedelta(minutes=minute)
        signals += s.on_bar(Bar("AAPL", ts, price, price, price, price, 100.0, "1m"))
    (signal,) = signals  # on the session's last minute: the daily bar is complete
    assert signal.entry_price == 104.0 and s.bars_seen("AAPL", "1d") == 5


def test_tickers_are_separate() -> None:
    s = _strategy()
    for d in _days(8):
        s.on_bar(_bar(d, 100.0, symbol="AAPL"))
        s.on_bar(_bar(d, 50.0, symbol="MSFT"))
    assert s.channel("MSFT") == (49.0, 51.0) and s.channel("AAPL") == (99.0, 101.0)
    day = _days(9)[-1]
    assert s.on_bar(_bar(day, 50.5, symbol="MSFT")) == []  # inside MSFT's own channel, far below AAPL's
    assert [x.ticker for x in s.on_bar(_bar(day, 101.5, symbol="AAPL"))] == ["AAPL"]


@pytest.mark.parametrize("bad", [
    {"close": float("nan")}, {"high": -1.0}, {"low": 0.0}, {"timestamp": datetime(2026, 3, 2)},
])
def test_a_bad_bar_is_refused_and_counted(bad: dict) -> None:
    s = _strategy()
    bar = _bar(START, 100.0)
    for key, value in bad.items():
        setattr(bar, key, value)
    assert s.on_bar(bar) == [] and s.rejected_bars == 1 and s.bars_seen("AAPL", "1d") == 0


def test_params_are_checked() -> None:
    with pytest.raises(ValueError, match="channel"):
        BreakoutParams(channel=1)
    with pytest.raises(ValueError, match="atr_stop"):
        BreakoutParams(atr_stop=0)
