"""Rescaling a symbol's strategy state after a stock split (`rescale(symbol, ratio)`).

The property: strategy A is fed raw bars until the split, rescaled, then fed the post-split bars; strategy B is
fed the same history already split-adjusted (prices / ratio, volumes * ratio), then the same post-split bars.
From the split on, both must give the same signals and the same cloud states, bars and channels (to 1e-9
relative: division by 1.5 or 0.1 rounds differently from an adjusted history; the figures a signal rounds for
display, its conviction and metadata, to one step of their rounding). With ratio 2.0 (a power of two: dividing
by it is exact) they must be equal bit for bit. C, fed as A without the rescale, must not match (the check can
fail).
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from config.settings import StrategySettings
from pipeline.core.batch import BarBatch
from pipeline.core.models import Bar, TradeSignal
from pipeline.strategy.breakout import BreakoutParams, DailyBreakoutStrategy
from pipeline.strategy.ema_cloud import EmaCloudStrategy
from pipeline.strategy.port import RescalesPrices, Strategy
from pipeline.strategy.strategy_set import StrategySet
from tests.unit.test_strategy_signals import mirror, uptrend_with_pullback

START = datetime(2026, 1, 6, 14, 30, tzinfo=UTC)  # 09:30 ET, a Tuesday
SESSION_MINUTES = 390
SPLIT_AT = 183          # 36 five-minute buckets and 3 minutes of the next: a partial bucket is open at the split
SYMBOL = "RW"
RATIOS = [2.0, 1.5, 0.1]
HISTORY = 400           # every completed bar stays readable, so the whole history is compared
Step = list[Bar]        # the bars of one timestamp
Feed = Callable[[Any, Step], list[TradeSignal]]
Snap = Callable[[Any, int], Any]  # (strategy, how many recent bars/states) -> what is compared
LATEST = 2              # recent bars/states compared after each post-split step (all of them at the split and end)


# ------------------------------------------------------------------------------------------------ bars
def walk(seed: int, n: int, symbol: str = SYMBOL, timeframe: str = "1m", step: timedelta = timedelta(minutes=1),
         start: datetime = START) -> list[Bar]:
    """A random walk of bars (open = previous close, a wick each side, random volume)."""
    rng = random.Random(seed)
    price = rng.uniform(20.0, 200.0)
    bars = []
    for i in range(n):
        close = price * math.exp(rng.gauss(0.0, 0.004))
        high = max(price, close) * (1.0 + rng.uniform(0.0, 0.002))
        low = min(price, close) * (1.0 - rng.uniform(0.0, 0.002))
        bars.append(Bar(symbol, start + i * step, price, high, low, close, float(rng.randint(0, 5000)), timeframe))
        price = close
    return bars


def split_adjusted(bar: Bar, ratio: float) -> Bar:
    """`bar` in post-split terms: prices divided by `ratio`, volume multiplied by it."""
    return Bar(bar.symbol, bar.timestamp, bar.open / ratio, bar.high / ratio, bar.low / ratio, bar.close / ratio,
               bar.volume * ratio, bar.timeframe)


def adjust(step: Step, ratio: float, symbol: str = SYMBOL) -> Step:
    return [split_adjusted(b, ratio) if b.symbol == symbol else b for b in step]


def minute_steps(symbols: Sequence[str], seed: int = 7) -> list[Step]:
    """One session of 1m bars of `symbols`, as time steps."""
    walks = [walk(seed + i, SESSION_MINUTES, symbol) for i, symbol in enumerate(symbols)]
    return [list(step) for step in zip(*walks, strict=True)]


# ------------------------------------------------------------------------------------------------ feeding
def bar_by_bar(strategy: Any, step: Step) -> list[TradeSignal]:
    return [s for bar in step for s in strategy.on_bar(bar)]


def as_batch(strategy: Any, step: Step) -> list[TradeSignal]:
    return [s for _, s in strategy.on_batch(BarBatch.from_bars(step))]


def cloud_snapshot(symbols: Sequence[str], timeframes: Sequence[str]) -> Snap:
    """What the exits read of an EMA-cloud source (a strategy or a StrategySet), per symbol and timeframe."""
    def snap(source: Any, n: int = HISTORY) -> list:
        return [(source.cloud_state(s, tf), source.recent_states(s, tf, n), source.recent_bars(s, tf, n))
                for s in symbols for tf in timeframes]
    return snap


def breakout_snapshot(timeframes: Sequence[str]) -> Snap:
    def snap(strategy: DailyBreakoutStrategy, n: int = HISTORY) -> list:
        return [(strategy.channel(SYMBOL, tf), strategy.bars_seen(SYMBOL, tf), strategy.state()["tracks"])
                for tf in timeframes]
    return snap


@dataclasses.dataclass(frozen=True)
class Rounded:
    """A figure the strategy rounds to `step`: an input 1e-15 away can move it by one step (1.99875 -> 1.9988 or
    1.9987; integer volumes make such ties common)."""

    value: float
    step: float


ROUNDING = {"relative_volume": 1e-4, "channel_edge": 1e-6, "atr": 1e-6}  # the metadata the strategies round


def signal_view(signal: TradeSignal) -> tuple:
    metadata = {k: Rounded(v, ROUNDING[k]) if k in ROUNDING else v for k, v in signal.metadata.items()}
    return (str(signal.signal_type), str(signal.direction), signal.ticker, signal.timeframe, signal.timestamp,
            Rounded(signal.conviction, 0.01), signal.entry_price, signal.stop_loss, signal.target_price, metadata)


def split_traces(make: Callable[[], Any], steps: list[Step], feed: Feed, snap: Snap, ratio: float,
                 split_at: int = SPLIT_AT) -> tuple[list, list, list]:
    """(A, B, C) from the split on: each a list of the whole snapshot right after the split, then (signals, latest
    snapshot) per post-split step, then the whole snapshot at the end. A: raw history, rescaled at the split; B:
    the history split-adjusted; C: raw, no rescale. The bars from the split on are post-split ones for all three."""
    a, b, c = make(), make(), make()
    for step in steps[:split_at]:
        feed(a, step)
        feed(c, step)
        feed(b, adjust(step, ratio))
    assert a.rescale(SYMBOL, ratio) is True
    traces: tuple[list, list, list] = ([snap(a)], [snap(b)], [snap(c)])
    for step in steps[split_at:]:
        post = adjust(step, ratio)
        for strategy, trace in zip((a, b, c), traces, strict=True):
            trace.append(([signal_view(s) for s in feed(strategy, post)], snap(strategy, LATEST)))
    for strategy, trace in zip((a, b, c), traces, strict=True):
        trace.append(snap(strategy))
    return traces


# ------------------------------------------------------------------------------------------------ comparing
def close(x: Any, y: Any, rel: float = 1e-9) -> bool:
    """Equal, floats to `rel` relative (a `Rounded` to one step), through dataclasses, sequences and dicts; `rel`
    0: equal."""
    if isinstance(x, Rounded) and isinstance(y, Rounded) and rel > 0:
        return abs(x.value - y.value) <= x.step * (1.0 + 1e-6)
    if isinstance(x, float) and isinstance(y, float):
        return math.isclose(x, y, rel_tol=rel, abs_tol=0.0)
    if dataclasses.is_dataclass(x) and type(x) is type(y):
        return all(close(getattr(x, f.name), getattr(y, f.name), rel) for f in dataclasses.fields(x))
    if isinstance(x, list | tuple) and isinstance(y, list | tuple):
        return len(x) == len(y) and all(close(i, j, rel) for i, j in zip(x, y, strict=True))
    if isinstance(x, dict) and isinstance(y, dict):
        return x.keys() == y.keys() and all(close(x[k], y[k], rel) for k in x)
    return x == y


def first_difference(a: list, b: list, rel: float = 1e-9) -> int | None:
    return next((i for i, (x, y) in enumerate(zip(a, b, strict=True)) if not close(x, y, rel)), None)


def assert_split_equivalent(traces: tuple[list, list, list], ratio: float) -> None:
    """A matches B (bit for bit for a power-of-two ratio), C does not, and B has post-split signals to compare."""
    a, b, c = traces
    rel = 0.0 if math.frexp(ratio)[0] == 0.5 else 1e-9
    assert first_difference(a, b, rel) is None, f"A and B part at post-split step {first_difference(a, b, rel)}"
    assert first_difference(c, b) is not None, "without rescale the post-split states should differ"
    assert any(signals for signals, _ in b[1:-1]), "no post-split signal: the signal comparison would prove nothing"


# ------------------------------------------------------------------------------------------------ EMA clouds
def ema_cloud(timeframes: Sequence[str] = ("1m", "5m")) -> EmaCloudStrategy:
    return EmaCloudStrategy(StrategySettings(timeframes=list(timeframes), min_conviction=0), history=HISTORY)


@pytest.mark.parametrize("ratio", RATIOS)
def test_ema_cloud_bar_by_bar_after_a_rescale_is_the_split_adjusted_history(ratio: float) -> None:
    traces = split_traces(ema_cloud, minute_steps([SYMBOL]), bar_by_bar, cloud_snapshot([SYMBOL], ("1m", "5m")),
                          ratio)
    assert_split_equivalent(traces, ratio)


@pytest.mark.parametrize("ratio", RATIOS)
def test_ema_cloud_column_path_after_a_rescale_is_the_split_adjusted_history(ratio: float) -> None:
    symbols = [SYMBOL, *(f"S{i}" for i in range(7))]  # 8 symbols a step: the column path
    steps = minute_steps(symbols)
    traces = split_traces(ema_cloud, steps, as_batch, cloud_snapshot([SYMBOL, "S0"], ("1m", "5m")), ratio)
    assert_split_equivalent(traces, ratio)
    probe = ema_cloud()
    as_batch(probe, steps[0])
    assert probe._mode == "columns"  # the batches took the numpy path (not the bar-by-bar fallback)


@pytest.mark.parametrize(("flip", "ratio"), [(False, 2.0), (True, 0.1)])
def test_column_path_a_pullback_entry_on_the_first_post_split_bar(flip: bool, ratio: float) -> None:
    """The column path's set-up pre-filter reads the last bar's high, low and close from its own columns: unless
    they are rescaled too, a pullback entry on the first bar after the split is filtered out (the stale low of a
    2:1 split sits above the cloud; the stale high of a 1:10 one below it)."""
    path, bounce = uptrend_with_pullback()
    path = [dataclasses.replace(b, symbol=SYMBOL) for b in (mirror(path) if flip else path)]
    fillers = [walk(i, len(path), f"S{i}") for i in range(7)]  # 8 symbols a step: the column path
    steps = [list(step) for step in zip(path, *fillers, strict=True)]
    traces = split_traces(lambda: ema_cloud(("1m",)), steps, as_batch, cloud_snapshot([SYMBOL], ("1m",)), ratio,
                          split_at=bounce)
    assert_split_equivalent(traces, ratio)
    signals, _ = traces[0][1]
    expected = "pullback_entry_short" if flip else "pullback_entry_long"
    assert [view[0] for view in signals if view[2] == SYMBOL] == [expected]


@settings(max_examples=15, deadline=None)
@given(ratio=st.floats(0.02, 50.0), split_at=st.integers(60, 330), seed=st.integers(0, 10_000))
def test_any_ratio_at_any_minute(ratio: float, split_at: int, seed: int) -> None:
    a, b, _ = split_traces(ema_cloud, minute_steps([SYMBOL], seed), bar_by_bar,
                           cloud_snapshot([SYMBOL], ("1m", "5m")), ratio, split_at)
    assert first_difference(a, b) is None


def test_only_the_split_symbol_moves_and_an_unknown_symbol_is_a_no_op() -> None:
    s = ema_cloud()
    for step in minute_steps([SYMBOL, "OTHER"])[:SPLIT_AT]:
        bar_by_bar(s, step)
    snap = cloud_snapshot(["OTHER"], ("1m", "5m"))
    before = snap(s)
    assert s.rescale("NOPE", 2.0) is False
    assert s.rescale(SYMBOL, 2.0) is True
    assert snap(s) == before
    (bar,) = s.recent_bars(SYMBOL, "1m", 1)
    assert s.cloud_state(SYMBOL, "1m").close == bar.close  # the rows and the states are one record


@pytest.mark.parametrize("ratio", [0.0, -2.0, math.nan, math.inf, True])
def test_a_bad_ratio_is_refused_naming_the_field(ratio: float) -> None:
    s = ema_cloud()
    bar_by_bar(s, minute_steps([SYMBOL])[0])
    with pytest.raises(ValueError, match="ratio"):
        s.rescale(SYMBOL, ratio)
    with pytest.raises(ValueError, match="ratio"):
        DailyBreakoutStrategy(BreakoutParams()).rescale(SYMBOL, ratio)


# ------------------------------------------------------------------------------------------------ breakout
def breakout(timeframes: Sequence[str]) -> DailyBreakoutStrategy:
    return DailyBreakoutStrategy(BreakoutParams(channel=5, atr_period=3, target_r=2.0), timeframes=timeframes)


@pytest.mark.parametrize("ratio", RATIOS)
def test_breakout_on_minute_buckets_after_a_rescale_is_the_split_adjusted_history(ratio: float) -> None:
    timeframes = ("5m", "15m")
    traces = split_traces(lambda: breakout(timeframes), minute_steps([SYMBOL]), bar_by_bar,
                          breakout_snapshot(timeframes), ratio)
    assert_split_equivalent(traces, ratio)


@pytest.mark.parametrize("ratio", RATIOS)
@pytest.mark.parametrize("split_at", [2, 50])  # 2: in the ATR's warm-up (its true-range sum), 50: warm
def test_daily_breakout_after_a_rescale_is_the_split_adjusted_history(ratio: float, split_at: int) -> None:
    days = walk(3, 120, timeframe="1d", step=timedelta(days=1), start=datetime(2026, 1, 6, 5, tzinfo=UTC))
    traces = split_traces(lambda: breakout(("1d",)), [[d] for d in days], bar_by_bar, breakout_snapshot(("1d",)),
                          ratio, split_at=split_at)
    assert_split_equivalent(traces, ratio)


def test_breakout_without_state_for_the_symbol_says_so() -> None:
    s = breakout(("1d",))
    assert s.rescale(SYMBOL, 2.0) is False


# ------------------------------------------------------------------------------------------------ StrategySet
class Plugin:
    """A user strategy without `rescale`: it only counts bars."""

    warmup_bars = 0
    timeframes = ("1m",)

    def __init__(self, name: str, tickers: tuple[str, ...] | None = None) -> None:
        self.name = name
        self.tickers = tickers
        self.bars = 0

    def on_bar(self, bar: Bar) -> list[TradeSignal]:
        self.bars += 1
        return []

    def is_warm(self, symbol: str, timeframe: str) -> bool:
        return True

    def warm_up_minutes(self) -> int:
        return 0

    def state(self) -> dict[str, Any]:
        return {"bars": self.bars}


def test_the_port_sees_who_can_rescale() -> None:
    assert isinstance(ema_cloud(), RescalesPrices) and isinstance(breakout(("1d",)), RescalesPrices)
    assert isinstance(Plugin("p"), Strategy) and not isinstance(Plugin("p"), RescalesPrices)


@pytest.mark.parametrize("ratio", RATIOS)
def test_strategy_set_rescales_its_members_and_the_exit_clouds(ratio: float) -> None:
    timeframes = ("5m", "15m")

    def make() -> StrategySet:
        clouds = EmaCloudStrategy(StrategySettings(timeframes=["1m", "5m"], enabled=False), name="exit_clouds",
                                  history=HISTORY)
        return StrategySet([breakout(timeframes), Plugin("plug"), Plugin("other", tickers=("MSFT",))], clouds)

    def snap(ss: StrategySet, n: int = HISTORY) -> list:
        return [cloud_snapshot([SYMBOL], ("1m", "5m"))(ss, n),
                breakout_snapshot(timeframes)(ss.by_name("daily_breakout"), n)]

    steps = minute_steps([SYMBOL])
    a, b, c = make(), make(), make()
    for step in steps[:SPLIT_AT]:
        for ss, bars in ((a, step), (b, adjust(step, ratio)), (c, step)):
            bar_by_bar(ss, bars)
    # the plug-in trades every ticker and cannot rescale; "other" never sees RW; breakout and the clouds rescale
    assert a.rescale(SYMBOL, ratio) == ("plug",)
    assert close(snap(a), snap(b)) and not close(snap(c), snap(b))
    for step in steps[SPLIT_AT:]:
        post = adjust(step, ratio)
        got, want = bar_by_bar(a, post), bar_by_bar(b, post)
        assert close([signal_view(s) for s in got], [signal_view(s) for s in want])
        assert close(snap(a, LATEST), snap(b, LATEST))
    assert close(snap(a), snap(b))


def test_strategy_set_with_the_clouds_as_a_member_rescales_them_once() -> None:
    ema, plug = ema_cloud(("1m",)), Plugin("plug")
    ss = StrategySet([ema, plug], clouds=ema)
    twin = ema_cloud(("1m",))
    for step in minute_steps([SYMBOL])[:SPLIT_AT]:
        bar_by_bar(ss, step)
        bar_by_bar(twin, adjust(step, 2.0))
    assert ss.rescale(SYMBOL, 2.0) == ("plug",)
    snap = cloud_snapshot([SYMBOL], ("1m",))
    assert close(snap(ss), snap(twin))  # halved once, not twice
    assert StrategySet([ema]).rescale("NOPE", 2.0) == ()


def test_strategy_set_refuses_a_bad_ratio_before_touching_a_member() -> None:
    ema = ema_cloud(("1m",))
    ss = StrategySet([ema, Plugin("plug")])
    for step in minute_steps([SYMBOL])[:SPLIT_AT]:
        bar_by_bar(ss, step)
    before = ema.recent_states(SYMBOL, "1m", HISTORY)
    with pytest.raises(ValueError, match="ratio"):
        ss.rescale(SYMBOL, -1.0)
    assert ema.recent_states(SYMBOL, "1m", HISTORY) == before
