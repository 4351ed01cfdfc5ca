"""EMA-cloud strategy: each signal type on a constructed path, warm-up, stops, conviction, determinism."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest

from config.settings import StrategySettings
from pipeline.core.models import Bar, CloudState, Direction, SignalType, TradeSignal, signal_problems
from pipeline.strategy.ema_cloud import EmaCloudStrategy

START = datetime(2026, 1, 6, 14, 30, tzinfo=UTC)  # 09:30 ET
WARMUP = 60  # > trend long span (50)
MIRROR = 200.0


def make_strategy(timeframes: Sequence[str] = ("1m",), min_conviction: int = 0, **kw: object) -> EmaCloudStrategy:
    return EmaCloudStrategy(StrategySettings(timeframes=list(timeframes), min_conviction=min_conviction, **kw))


def bars_from(closes: Sequence[float], symbol: str = "TEST", volumes: Sequence[float] | None = None,
              lows: dict[int, float] | None = None) -> list[Bar]:
    """1m bars whose open is the previous close; `lows` overrides the low of chosen bars."""
    bars = []
    prev = closes[0]
    for i, c in enumerate(closes):
        lo = min(prev, c) - 0.01
        if lows and i in lows:
            lo = lows[i]
        v = volumes[i] if volumes is not None else 1000.0
        bars.append(Bar(symbol, START + timedelta(minutes=i), prev, max(prev, c) + 0.01, lo, c, v))
        prev = c
    return bars


def mirror(bars: list[Bar]) -> list[Bar]:
    """The same path upside down: every bullish set-up becomes its bearish twin."""
    return [Bar(b.symbol, b.timestamp, MIRROR - b.open, MIRROR - b.low, MIRROR - b.high, MIRROR - b.close, b.volume,
                b.timeframe) for b in bars]


def feed(strategy: EmaCloudStrategy, bars: Sequence[Bar]) -> list[tuple[int, TradeSignal]]:
    out = []
    for i, bar in enumerate(bars):
        out.extend((i, s) for s in strategy.on_bar(bar))
    return out


def flat(n: int, price: float = 100.0) -> list[float]:
    return [price] * n


def downtrend_then_jump() -> list[Bar]:
    closes = flat(WARMUP) + [100.0 - 0.2 * k for k in range(1, 41)]  # to 92
    closes += [101.0]  # a jump through the trend cloud
    return bars_from(closes)


def downtrend_then_bounce() -> list[Bar]:
    closes = flat(WARMUP) + [100.0 - 0.2 * k for k in range(1, 41)]  # to 92, trend cloud ~95-97
    closes += [92.4, 92.8, 93.2, 93.6, 94.0]  # a bounce that flips the fast cloud but stays below the trend cloud
    return bars_from(closes)


def uptrend_closes() -> list[float]:
    """Flat, a decline to 94, then a rise to 112: the bullish stack forms part-way up."""
    return flat(WARMUP) + [100.0 - 0.2 * k for k in range(1, 31)] + [94.0 + 0.3 * k for k in range(1, 61)]


def uptrend() -> list[Bar]:
    return bars_from(uptrend_closes())


def uptrend_with_pullback(dip_close: float = 110.9, dip_low: float = 110.0) -> tuple[list[Bar], int]:
    """The rise, one bar that dips into the pullback cloud (~111) and closes in it, and a bar that closes
    back above it. Returns the bars and the index of the bounce bar."""
    closes = uptrend_closes()
    dip = len(closes)
    closes += [dip_close, 112.6]
    return bars_from(closes, lows={dip: dip_low}), dip + 1


def _run(bars: list[Bar], flip: bool, bullish: SignalType, bearish: SignalType,
         ) -> tuple[list[Bar], list[tuple[int, TradeSignal]], SignalType]:
    """The bars (mirrored when `flip`), the strategy's signals on them and the type expected of them."""
    bars = mirror(bars) if flip else bars
    return bars, feed(make_strategy(), bars), bearish if flip else bullish


def types_at(signals: list[tuple[int, TradeSignal]]) -> list[tuple[int, str]]:
    return [(i, str(s.signal_type)) for i, s in signals]


# ---------------------------------------------------------------------------------------------- each type


@pytest.mark.parametrize("flip", [False, True])
def test_cloud_cross(flip: bool) -> None:
    bars, signals, expected = _run(downtrend_then_jump(), flip, SignalType.CLOUD_CROSS_BULLISH,
                                   SignalType.CLOUD_CROSS_BEARISH)
    last = len(bars) - 1
    hits = [s for i, s in signals if i == last]
    assert [s.signal_type for s in hits] == [expected]
    assert "cloud_flip" in " ".join(hits[0].metadata["setups"])  # the flip fired too; the cross won the tie
    assert hits[0].direction == (Direction.SHORT if flip else Direction.LONG)


@pytest.mark.parametrize("flip", [False, True])
def test_cloud_flip(flip: bool) -> None:
    bars, signals, expected = _run(downtrend_then_bounce(), flip, SignalType.CLOUD_FLIP_BULLISH,
                                   SignalType.CLOUD_FLIP_BEARISH)
    flips = [(i, s) for i, s in signals if s.signal_type == expected]
    assert len(flips) == 1
    i, signal = flips[0]
    assert i > WARMUP + 40 and signal.metadata["setups"] == [str(expected)]
    # the bounce stays on the far side of the trend cloud: a flip, not a cross
    state = state_after(bars[: i + 1])
    if flip:
        assert state.close > max(state.trend_short, state.trend_long)
    else:
        assert state.close < min(state.trend_short, state.trend_long)


def state_after(bars: list[Bar]) -> CloudState:
    strategy = make_strategy()
    feed(strategy, bars)
    state = strategy.cloud_state("TEST", "1m")
    assert state is not None
    return state


@pytest.mark.parametrize("flip", [False, True])
def test_trend_aligned_fires_once_when_alignment_begins(flip: bool) -> None:
    bars, signals, expected = _run(uptrend(), flip, SignalType.TREND_ALIGNED_LONG, SignalType.TREND_ALIGNED_SHORT)
    aligned = [i for i, s in signals if s.signal_type == expected]
    assert len(aligned) == 1
    # it fires in the second leg, once, although the clouds stay stacked for the rest of the path
    assert WARMUP + 30 < aligned[0] < len(bars) - 10
    final = state_after(bars)
    stacked = [final.fast_short, final.pullback_short, final.pullback_long, final.trend_short, final.trend_long]
    assert stacked == sorted(stacked, reverse=not flip)


@pytest.mark.parametrize("flip", [False, True])
def test_pullback_entry(flip: bool) -> None:
    bars, bounce = uptrend_with_pullback()
    bars, signals, expected = _run(bars, flip, SignalType.PULLBACK_ENTRY_LONG, SignalType.PULLBACK_ENTRY_SHORT)
    assert (bounce, str(expected)) in types_at(signals)
    (signal,) = [s for i, s in signals if i == bounce]
    # the stop sits beyond the pullback bar's extreme (110 / 90 mirrored)
    if flip:
        assert signal.stop_loss > MIRROR - 110.0
    else:
        assert signal.stop_loss < 110.0
    # when the previous bar stays above the pullback cloud there is no pullback entry on that bar
    plain_bars, _ = uptrend_with_pullback(dip_close=111.8, dip_low=111.6)
    plain = feed(make_strategy(), mirror(plain_bars) if flip else plain_bars)
    assert not [i for i, s in plain if i == bounce]


@pytest.mark.parametrize("price", [100.0, 7.5])
def test_flat_path_gives_no_signal(price: float) -> None:
    strategy = make_strategy(timeframes=("1m", "5m"))
    assert feed(strategy, bars_from(flat(500, price))) == []
    assert strategy.cloud_state("TEST", "5m") is not None


def test_no_signal_before_warm_up() -> None:
    strategy = make_strategy()
    # a jump through the clouds at bar 30 would be a cross after warm-up
    closes = [100.0 - 0.2 * k for k in range(30)] + [110.0] * 5
    assert feed(strategy, bars_from(closes)) == []
    assert not strategy.is_warm("TEST", "1m")
    # the same shape after warm-up does fire
    late = flat(WARMUP) + [100.0 - 0.2 * k for k in range(30)] + [110.0]
    assert feed(make_strategy(), bars_from(late)) != []


def test_warm_up_counts_completed_timeframe_bars() -> None:
    strategy = make_strategy(timeframes=("5m",))
    rng = random.Random(3)
    closes = [100.0 + 3 * math.sin(i / 40.0) + rng.gauss(0, 0.2) for i in range(5 * 50)]
    signals = feed(strategy, bars_from(closes))
    assert signals == []  # 50 five-minute bars: still warming up
    assert strategy.bars_seen("TEST", "5m") == 50


# ---------------------------------------------------------------------------------------------- properties


def random_walk(seed: int, n: int = 3000, symbol: str = "RW") -> list[Bar]:
    rng = random.Random(seed)
    price, closes, volumes = 50.0, [], []
    for _ in range(n):
        price *= math.exp(rng.gauss(0.0, 0.004))
        closes.append(price)
        volumes.append(float(rng.randint(0, 5000)))
    return bars_from(closes, symbol=symbol, volumes=volumes)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_walk_signals_are_well_formed(seed: int) -> None:
    strategy = make_strategy(timeframes=("1m", "5m"))
    bars = random_walk(seed)
    signals = feed(strategy, bars)
    assert len(signals) > 10
    per_bar: dict[tuple[int, str], int] = {}
    for i, s in signals:
        assert signal_problems(s) == [], s
        assert 0.0 <= s.conviction <= 100.0
        if s.direction == Direction.LONG:
            assert s.stop_loss < s.entry_price
        else:
            assert s.stop_loss > s.entry_price
        assert s.target_price is None and s.source == "strategy"
        assert s.timestamp is not None and s.timestamp <= bars[i].timestamp + timedelta(minutes=1)
        per_bar[(i, s.timeframe)] = per_bar.get((i, s.timeframe), 0) + 1
    assert max(per_bar.values()) == 1
    assert {s.timeframe for _, s in signals} == {"1m", "5m"}


def test_signal_timestamp_is_the_completed_bar_close() -> None:
    strategy = make_strategy(timeframes=("5m",))
    bars = random_walk(4, n=2000)
    for i, s in feed(strategy, bars):
        assert s.timestamp == bars[i].timestamp + timedelta(minutes=1)  # the 1m bar that closed the 5m bar
        assert (s.timestamp - START).total_seconds() % 300 == 0


def test_min_conviction_drops_weak_signals() -> None:
    bars = random_walk(5)
    everything = feed(make_strategy(), bars)
    strong = feed(make_strategy(min_conviction=70), bars)
    assert 0 < len(strong) < len(everything)
    assert all(s.conviction >= 70 for _, s in strong)


def test_volume_raises_conviction() -> None:
    bars = downtrend_then_jump()
    base = feed(make_strategy(), bars)[-1][1]
    loud = list(bars)
    last = loud[-1]
    loud[-1] = Bar(last.symbol, last.timestamp, last.open, last.high, last.low, last.close, 3000.0)
    boosted = feed(make_strategy(), loud)[-1][1]
    quiet = list(bars)
    quiet[-1] = Bar(last.symbol, last.timestamp, last.open, last.high, last.low, last.close, 100.0)
    muted = feed(make_strategy(), quiet)[-1][1]
    assert muted.conviction < base.conviction < boosted.conviction
    assert boosted.metadata["relative_volume"] == pytest.approx(3.0)


def test_deterministic() -> None:
    bars = random_walk(6) + [Bar("B", b.timestamp, b.open, b.high, b.low, b.close, b.volume) for b in random_walk(7)]
    bars.sort(key=lambda b: (b.timestamp, b.symbol))
    first = feed(make_strategy(timeframes=("1m", "5m", "15m")), bars)
    second = feed(make_strategy(timeframes=("1m", "5m", "15m")), bars)
    assert first == second and first


def test_disabled_strategy_keeps_clouds_but_emits_nothing() -> None:
    strategy = make_strategy(enabled=False)
    assert feed(strategy, random_walk(8, n=1000)) == []
    assert strategy.cloud_state("RW", "1m") is not None


# ---------------------------------------------------------------------------------------------- accessors and input


def test_accessors_for_the_exit_monitor() -> None:
    strategy = make_strategy(timeframes=("5m", "15m"))
    bars = random_walk(9, n=60)
    completed = []
    for bar in bars:
        strategy.on_bar(bar)
        completed.append(strategy.completed_on_last_bar("RW"))
    assert completed[3] == [] and completed[4] == ["5m"] and completed[14] == ["5m", "15m"]
    assert completed[59] == ["5m", "15m"]
    states = strategy.recent_states("RW", "5m", 3)
    assert [s.timestamp for s in states] == [START + timedelta(minutes=m) for m in (45, 50, 55)]
    latest = strategy.cloud_state("RW", "5m")
    # the states are built when asked for (issue 17): equal values, not the same object
    assert latest == states[-1] and latest.close == bars[-1].close
    assert [s.timestamp for s in strategy.recent_states("RW", "5m", 100)][-12:] == [
        START + timedelta(minutes=m) for m in range(0, 60, 5)]
    assert [s.close for s in strategy.recent_states("RW", "5m", 12)] == [b.close for b in strategy.recent_bars(
        "RW", "5m", 12)]
    five = strategy.recent_bars("RW", "5m", 100)
    assert len(five) == 12 and five[-1].volume == sum(b.volume for b in bars[55:60])
    assert strategy.recent_bars("RW", "5m", 0) == []
    assert strategy.close_time(five[-1]) == START + timedelta(minutes=60)
    assert strategy.close_time(Bar("RW", START + timedelta(minutes=360), 1, 1, 1, 1, 1, "1h")) == START + timedelta(
        minutes=390)  # the 15:30 ET hourly bar closes with the session at 16:00
    assert strategy.cloud_state("RW", "1h") is None and strategy.cloud_state("NOPE", "5m") is None
    assert strategy.recent_states("NOPE", "5m", 3) == [] and strategy.completed_on_last_bar("NOPE") == []


def test_cloud_state_values_are_the_emas_of_completed_closes() -> None:
    import pandas as pd

    strategy = make_strategy(timeframes=("5m",))
    bars = random_walk(10, n=600)
    feed(strategy, bars)
    closes = pd.Series([b.close for b in strategy.recent_bars("RW", "5m", 200)])
    assert len(closes) == 64  # history kept
    full = pd.Series([b.close for b in bars]).groupby(lambda i: i // 5).last()
    state = strategy.cloud_state("RW", "5m")
    assert state is not None
    assert state.trend_long == pytest.approx(full.ewm(span=50, adjust=False).mean().iloc[-1], abs=1e-9)
    assert state.fast_short == pytest.approx(full.ewm(span=5, adjust=False).mean().iloc[-1], abs=1e-9)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"close": float("nan")}, "close"),
        ({"low": -1.0}, "low"),
        ({"high": float("inf")}, "high"),
        ({"volume": -5.0}, "volume"),
        ({"timeframe": "7m"}, "timeframe"),
        ({"timestamp": datetime(2026, 1, 6, 14, 30)}, "timestamp"),
        ({"close": "abc"}, "bar"),
        ({"symbol": ""}, "symbol"),
    ],
)
def test_bad_bars_are_dropped_without_crashing(change: dict, field: str, caplog: pytest.LogCaptureFixture) -> None:
    strategy = make_strategy()
    bars = random_walk(11, n=200)
    good = bars[100]
    values = {"symbol": good.symbol, "timestamp": good.timestamp, "open": good.open, "high": good.high,
              "low": good.low, "close": good.close, "volume": good.volume, "timeframe": "1m"}
    values.update(change)
    bad = Bar(**values)
    feed(strategy, bars[:100])
    assert strategy.on_bar(bad) == []
    assert strategy.rejected_bars == 1
    if field != "symbol":
        assert strategy.completed_on_last_bar("RW") == []
    feed(strategy, bars[100:])
    assert strategy.bars_seen("RW", "1m") == 200
    from pipeline.strategy.ema_cloud import bar_problem

    problem = bar_problem(bad)
    assert problem is not None and field in problem


def test_bad_settings_name_the_field() -> None:
    with pytest.raises(ValueError, match="trend_cloud"):
        make_strategy(trend_cloud=(50, 34))
