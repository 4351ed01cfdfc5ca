"""ExitMonitor: each of the 7 exits at its threshold (not one tick before), priorities, the NYSE calendar."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from config.settings import ExecutorConfig
from pipeline.core.calendar import NEW_YORK, MarketCalendar, default_calendar
from pipeline.core.clock import SimulatedClock
from pipeline.core.models import CloudState, InstrumentType, Position
from pipeline.positions.exit_monitor import EXIT_STRATEGIES, PRIORITY, ExitMonitor

TICK = 0.01


@pytest.fixture(scope="module")
def calendar() -> MarketCalendar:
    return default_calendar()


def et(year: int, month: int, day: int, hour: int, minute: int, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=NEW_YORK).astimezone(UTC)


def make_monitor(calendar: MarketCalendar, now: datetime | None = None, **config: object) -> ExitMonitor:
    clock = SimulatedClock(now or et(2026, 11, 24, 11, 0))
    return ExitMonitor(ExecutorConfig(**config), calendar, clock)


def make_position(direction: str = "long", *, entry: float = 100.0, stop: float | None = None,
                  target: float | None = None, entry_time: datetime | None = None, timeframe: str = "5m") -> Position:
    if stop is None:
        stop = entry - 2.0 if direction == "long" else entry + 2.0
    return Position(
        ticker="AAPL", direction=direction, entry_price=entry, current_price=entry, shares=100, stop_loss=stop,
        target_price=target, entry_time=entry_time, timeframe=timeframe, signal_type="cloud_cross_bullish",
    )


def cloud(close: float, *, fast: tuple[float, float] = (99.0, 98.0), pullback: tuple[float, float] = (97.0, 96.0),
          trend: tuple[float, float] = (90.0, 89.0)) -> CloudState:
    return CloudState(
        symbol="AAPL", timeframe="5m", timestamp=et(2026, 11, 24, 11, 0), close=close,
        fast_short=fast[0], fast_long=fast[1], pullback_short=pullback[0], pullback_long=pullback[1],
        trend_short=trend[0], trend_long=trend[1],
    )


# -- 1 stop loss ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("direction", "stop", "at", "before"), [
    ("long", 98.0, 98.0, 98.0 + TICK),
    ("short", 102.0, 102.0, 102.0 - TICK),
    ("long", 175.3, 175.3, 175.31),
])
def test_stop_loss_fires_at_stop_not_a_tick_before(calendar, direction, stop, at, before):
    monitor = make_monitor(calendar)
    entry = 180.1 if stop == 175.3 else 100.0
    position = make_position(direction, entry=entry, stop=stop)
    assert monitor.check_stop_loss(position, before) is None
    signal = monitor.check_stop_loss(position, at)
    assert signal is not None and signal.exit_type == "stop_loss" and signal.priority == 1
    assert monitor.check_stop_loss(position, at - TICK if direction == "long" else at + TICK) is not None


# -- 4 profit target --------------------------------------------------------------------------------------
@pytest.mark.parametrize(("direction", "entry", "stop", "target", "at", "before"), [
    ("long", 100.0, 98.0, None, 104.0, 104.0 - TICK),          # 2R from a 2.00 risk
    ("short", 100.0, 102.0, None, 96.0, 96.0 + TICK),
    ("long", 180.1, 175.3, None, 189.7, 189.69),              # 180.1 + 2 × 4.8 is not exact in binary
    ("short", 50.3, 50.9, None, 49.1, 49.11),               # 49.099999999999994
    ("long", 1.1, 1.0, None, 1.3, 1.29),                      # 1.3000000000000003
    ("long", 100.0, 98.0, 103.0, 103.0, 102.99),              # explicit target wins over R:R
    ("short", 100.0, 102.0, 97.5, 97.5, 97.51),
])
def test_profit_target_fires_at_target_not_a_tick_before(calendar, direction, entry, stop, target, at, before):
    monitor = make_monitor(calendar)
    position = make_position(direction, entry=entry, stop=stop, target=target)
    assert monitor.check_profit_target(position, before) is None
    signal = monitor.check_profit_target(position, at)
    assert signal is not None and signal.exit_type == "profit_target" and signal.priority == 4


def test_profit_target_uses_configured_reward_to_risk(calendar):
    monitor = make_monitor(calendar, reward_to_risk_target=3.0)
    position = make_position("long", entry=100.0, stop=98.0)
    assert monitor.target_for(position) == pytest.approx(106.0)
    assert monitor.check_profit_target(position, 105.99) is None
    assert monitor.check_profit_target(position, 106.0) is not None


# -- 5 time stop ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("direction", ["long", "short"])
def test_time_stop_fires_at_time_stop_minutes_not_a_second_before(calendar, direction):
    entered = et(2026, 11, 24, 10, 0)
    monitor = make_monitor(calendar, time_stop_minutes=120)
    position = make_position(direction, entry_time=entered)
    assert monitor.check_time_stop(position, entered + timedelta(minutes=120) - timedelta(seconds=1)) is None
    signal = monitor.check_time_stop(position, entered + timedelta(minutes=120))
    assert signal is not None and signal.exit_type == "time_stop" and signal.priority == 5


def test_time_stop_reads_the_injected_clock(calendar):
    entered = et(2026, 11, 24, 10, 0)
    clock = SimulatedClock(entered)
    monitor = ExitMonitor(ExecutorConfig(time_stop_minutes=30), calendar, clock)
    position = make_position(entry_time=entered)
    clock.advance(29 * 60 + 59)
    assert monitor.check_time_stop(position) is None
    clock.advance(1)
    assert monitor.check_time_stop(position) is not None
    assert monitor.check_time_stop(make_position(entry_time=None)) is None


# -- 6 end of day -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(("day", "cutoff"), [
    ((2026, 11, 24), (15, 55)),        # a normal session: 16:00 close
    ((2026, 11, 27), (12, 55)),        # the day after Thanksgiving: 13:00 early close
])
@pytest.mark.parametrize("direction", ["long", "short"])
def test_eod_close_five_minutes_before_that_sessions_close(calendar, day, cutoff, direction):
    clock = SimulatedClock(et(*day, 9, 30))
    monitor = ExitMonitor(ExecutorConfig(), calendar, clock)
    position = make_position(direction, entry_time=et(*day, 9, 35))
    cut = et(*day, *cutoff)
    clock.advance_to(cut - timedelta(seconds=1))
    assert monitor.check_eod_close(position) is None
    clock.advance_to(cut)
    signal = monitor.check_eod_close(position)
    assert signal is not None and signal.exit_type == "eod_close" and signal.priority == 6
    assert f"{cutoff[0]}:{cutoff[1]:02d} ET" in signal.reason
    clock.advance_to(cut + timedelta(minutes=3))
    assert monitor.check_eod_close(position) is not None


def test_no_session_and_no_eod_on_thanksgiving(calendar):
    thanksgiving = (2026, 11, 26)
    assert calendar.session(datetime(*thanksgiving).date()) is None
    monitor = make_monitor(calendar)
    position = make_position(entry_time=et(*thanksgiving, 10, 0))
    for hour, minute in [(9, 30), (12, 55), (15, 55), (15, 59), (16, 30)]:
        when = et(*thanksgiving, hour, minute)
        assert not calendar.is_open(when)
        assert monitor.check_eod_close(position, when) is None


def test_daily_timeframe_is_exempt_from_eod(calendar):
    monitor = make_monitor(calendar)
    swing = make_position(entry_time=et(2026, 11, 20, 10, 0), timeframe="1d")
    assert monitor.check_eod_close(swing, et(2026, 11, 24, 15, 59)) is None
    assert monitor.check_eod_close(swing, et(2026, 11, 27, 12, 59)) is None
    day_trade = make_position(entry_time=et(2026, 11, 24, 10, 0), timeframe="4h")
    assert monitor.check_eod_close(day_trade, et(2026, 11, 24, 15, 59)) is not None


def _option(symbol: str, timeframe: str = "1d") -> Position:
    return Position(ticker="AAPL", direction="long", entry_price=3.0, current_price=3.0, shares=2, stop_loss=1.5,
                    entry_time=et(2026, 11, 2, 10, 0), timeframe=timeframe, symbol=symbol,
                    instrument_type=InstrumentType.OPTIONS, multiplier=100.0)


@pytest.mark.parametrize(("symbol", "last_session", "cutoff"), [
    ("AAPL  261120C00100000", (2026, 11, 20), (15, 55)),  # a Friday expiry
    ("AAPL  261127P00100000", (2026, 11, 27), (12, 55)),  # the day after Thanksgiving: the early close's cutoff
    ("AAPL  270326C00100000", (2027, 3, 25), (15, 55)),   # Good Friday 2027: the options trade last on Thursday
])
def test_an_option_held_as_a_swing_trade_closes_on_its_last_session(calendar, symbol, last_session, cutoff):
    """Held through expiry, a long call in the money becomes 100 shares a contract and a long put a short sale
    of them: the EOD close takes the option out at the cutoff of its last session, whatever its timeframe."""
    monitor = make_monitor(calendar)
    option = _option(symbol)
    day_before = datetime(*last_session).date() - timedelta(days=1)
    while not calendar.is_session(day_before):
        day_before -= timedelta(days=1)
    assert monitor.check_eod_close(option, et(day_before.year, day_before.month, day_before.day, 15, 59)) is None
    cut = et(*last_session, *cutoff)
    assert monitor.check_eod_close(option, cut - timedelta(seconds=1)) is None
    signal = monitor.check_eod_close(option, cut)
    assert signal is not None and signal.exit_type == "eod_close" and "option expires" in signal.reason
    stock = make_position(entry_time=et(2026, 11, 2, 10, 0), timeframe="1d")
    assert monitor.check_eod_close(stock, cut) is None  # a swing trade in the stock itself stays


def test_an_adopted_option_is_known_by_its_symbol(calendar):
    monitor = make_monitor(calendar)
    adopted = Position(ticker="AAPL  261120C00100000", direction="long", entry_price=3.0, current_price=3.0,
                       shares=2, stop_loss=2.85, timeframe="1d", symbol="AAPL  261120C00100000", origin="adopted")
    assert monitor.check_eod_close(adopted, et(2026, 11, 20, 15, 55)) is not None


def test_day_trade_held_over_a_holiday_closes_at_the_next_open(calendar):
    monitor = make_monitor(calendar)
    position = make_position(entry_time=et(2026, 11, 25, 10, 0))
    assert monitor.check_eod_close(position, et(2026, 11, 26, 11, 0)) is None      # holiday: no session
    assert monitor.check_eod_close(position, et(2026, 11, 27, 9, 0)) is None       # before the open
    signal = monitor.check_eod_close(position, et(2026, 11, 27, 9, 30))
    assert signal is not None and "held over" in signal.reason


def test_eod_minutes_follow_eod_close_time(calendar):
    monitor = make_monitor(calendar, eod_close_time="15:45")
    position = make_position(entry_time=et(2026, 11, 27, 9, 35))
    assert monitor.check_eod_close(position, et(2026, 11, 27, 12, 44, 59)) is None
    assert monitor.check_eod_close(position, et(2026, 11, 27, 12, 45)) is not None


# -- 2 momentum exhaustion --------------------------------------------------------------------------------
@pytest.mark.parametrize("direction", ["long", "short"])
def test_momentum_exhaustion_needs_n_consecutive_closes_outside_the_fast_cloud(calendar, direction):
    monitor = make_monitor(calendar, momentum_exhaustion_candles=3)
    position = make_position(direction)
    fast = (99.0, 101.0)
    outside = 101.0 + TICK if direction == "long" else 99.0 - TICK
    edge = 101.0 if direction == "long" else 99.0
    inside = 100.0
    out = [cloud(outside, fast=fast) for _ in range(3)]
    assert monitor.check_momentum_exhaustion(position, out[:2]) is None                       # N - 1 candles
    assert monitor.check_momentum_exhaustion(position, [cloud(inside, fast=fast), *out[:2]]) is None
    assert monitor.check_momentum_exhaustion(position, [*out[:2], cloud(edge, fast=fast)]) is None  # on the edge
    signal = monitor.check_momentum_exhaustion(position, [cloud(inside, fast=fast), *out])
    assert signal is not None and signal.exit_type == "momentum_exhaustion" and signal.priority == 2
    against = 101.0 + 5 if direction == "short" else 99.0 - 5   # far outside, but against the position
    assert monitor.check_momentum_exhaustion(position, [cloud(against, fast=fast)] * 3) is None


# -- 3 cloud flip -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(("direction", "fast", "fires"), [
    ("long", (99.0, 99.0 + TICK), True),     # fast EMA just under slow: bearish
    ("long", (99.0, 99.0), False),           # equal counts as bullish
    ("short", (99.0 + TICK, 99.0), True),
    ("short", (99.0, 99.0 + TICK), False),
])
def test_cloud_flip_against_the_position(calendar, direction, fast, fires):
    monitor = make_monitor(calendar)
    states = [cloud(100.0, fast=(101.0, 100.0) if direction == "long" else (100.0, 101.0)), cloud(100.0, fast=fast)]
    signal = monitor.check_cloud_flip(make_position(direction), states)
    assert (signal is not None) is fires
    if fires:
        assert signal.exit_type == "cloud_flip" and signal.priority == 3


# -- 7 trailing stop --------------------------------------------------------------------------------------
@pytest.mark.parametrize(("direction", "at", "before"), [
    ("long", 97.0, 97.0 + TICK),      # pullback cloud 97..98: a long trails its lower edge
    ("short", 98.0, 98.0 - TICK),     # a short trails its upper edge
])
def test_trailing_stop_fires_when_close_reaches_the_pullback_cloud(calendar, direction, at, before):
    monitor = make_monitor(calendar)
    position = make_position(direction)
    pullback = (98.0, 97.0)
    assert monitor.check_trailing_stop(position, [cloud(before, pullback=pullback)]) is None
    signal = monitor.check_trailing_stop(position, [cloud(before, pullback=pullback), cloud(at, pullback=pullback)])
    assert signal is not None and signal.exit_type == "trailing_stop" and signal.priority == 7


def test_trailing_stop_cloud_is_configurable(calendar):
    monitor = make_monitor(calendar, trailing_stop_cloud="trend")
    position = make_position("long")
    state = cloud(95.0, pullback=(98.0, 97.0), trend=(90.0, 89.0))     # through pullback, above trend
    assert monitor.check_trailing_stop(position, [state]) is None
    assert monitor.check_trailing_stop(position, [cloud(89.0, trend=(90.0, 89.0))]) is not None


# -- priorities -------------------------------------------------------------------------------------------
def test_table_reads_like_the_spec():
    assert [(s.priority, s.name) for s in EXIT_STRATEGIES] == [
        (1, "stop_loss"), (2, "momentum_exhaustion"), (3, "cloud_flip"), (4, "profit_target"),
        (5, "time_stop"), (6, "eod_close"), (7, "trailing_stop"),
    ]
    assert PRIORITY["stop_loss"] < PRIORITY["profit_target"]


def scenario(calendar: MarketCalendar, enabled: set[str]):
    """A long position where exactly the `enabled` exits fire."""
    now = et(2026, 11, 24, 15, 56) if "eod_close" in enabled else et(2026, 11, 24, 13, 0)
    entry_time = now - (timedelta(hours=3) if "time_stop" in enabled else timedelta(minutes=10))
    price = 104.5
    position = make_position(
        "long", entry=100.0, stop=105.0 if "stop_loss" in enabled else 50.0,
        target=104.0 if "profit_target" in enabled else 200.0, entry_time=entry_time,
    )
    fast_low, fast_high = (90.0, 95.0) if "momentum_exhaustion" in enabled else (100.0, 110.0)
    fast = (fast_low, fast_high) if "cloud_flip" in enabled else (fast_high, fast_low)
    pullback = (106.0, 105.0) if "trailing_stop" in enabled else (101.0, 100.0)
    states = [cloud(price, fast=fast, pullback=pullback) for _ in range(3)]
    return make_monitor(calendar, now), position, price, states, now


@pytest.mark.parametrize("first", range(7))
def test_best_priority_wins_when_several_fire(calendar, first):
    names = [s.name for s in EXIT_STRATEGIES]
    monitor, position, price, states, now = scenario(calendar, set(names[first:]))
    for name in names:       # the scenario is what it says: each enabled check fires alone, the others do not
        strategy = next(s for s in EXIT_STRATEGIES if s.name == name)
        arg = {"price": price, "clouds": states, "time": now}[strategy.inputs]
        assert (strategy.method(monitor, position, arg) is not None) is (name in names[first:]), name
    signal = monitor.check_all(position, price, states, now=now)
    assert signal is not None and signal.exit_type == names[first] and signal.priority == first + 1
    assert signal.price == price


def test_stop_loss_beats_profit_target(calendar):
    monitor, position, price, states, now = scenario(calendar, {"stop_loss", "profit_target"})
    assert monitor.check_all(position, price, states, now=now).exit_type == "stop_loss"
    monitor, position, price, states, now = scenario(calendar, {"profit_target"})
    assert monitor.check_all(position, price, states, now=now).exit_type == "profit_target"


def test_nothing_fires_holds_the_position(calendar):
    monitor, position, price, states, now = scenario(calendar, set())
    assert monitor.check_all(position, price, states, now=now) is None
    assert monitor.check_all(position, price, None, now=now) is None


def test_cloud_states_none_skips_cloud_exits(calendar):
    monitor, position, price, states, now = scenario(calendar, {"momentum_exhaustion", "trailing_stop"})
    assert monitor.check_all(position, price, states, now=now).exit_type == "momentum_exhaustion"
    assert monitor.check_all(position, price, None, now=now) is None
    assert monitor.check_all(position, price, [], now=now) is None


def test_check_all_uses_the_clock_without_now(calendar):
    clock = SimulatedClock(et(2026, 11, 27, 12, 54))
    monitor = ExitMonitor(ExecutorConfig(), calendar, clock)
    position = make_position(entry_time=et(2026, 11, 27, 12, 0))
    assert monitor.check_all(position, 100.0) is None
    clock.advance(60)
    assert monitor.check_all(position, 100.0).exit_type == "eod_close"


@pytest.mark.parametrize("price", [float("nan"), 0.0, -1.0, float("inf")])
def test_bad_price_is_a_clear_error(calendar, price):
    with pytest.raises(ValueError, match="current_price"):
        make_monitor(calendar).check_all(make_position(), price)


# -- per strategy ---------------------------------------------------------------------------------------------
def test_a_strategy_s_positions_get_only_its_declared_exits_and_the_ones_always_applying(calendar):
    from pipeline.positions.exit_monitor import ALWAYS_EXITS, applicable_exits
    from pipeline.strategy.breakout import DailyBreakoutStrategy
    from pipeline.strategy.ema_cloud import EmaCloudStrategy

    monitor = make_monitor(calendar)
    long = make_position("long")
    flipped = [cloud(100.0, fast=(101.0, 100.0)), cloud(100.0, fast=(99.0, 100.0))]  # the fast cloud turned bearish
    assert monitor.check_all(long, 100.0, flipped).exit_type == "cloud_flip"  # all seven: the clouds' flip
    breakout = applicable_exits(DailyBreakoutStrategy.exits)
    assert breakout == ALWAYS_EXITS and "cloud_flip" not in breakout and "momentum_exhaustion" not in breakout
    assert monitor.check_all(long, 100.0, flipped, exits=breakout) is None  # not the breakout's exit
    assert monitor.check_all(long, 98.0, flipped, exits=breakout).exit_type == "stop_loss"  # its stop still is
    assert applicable_exits(EmaCloudStrategy.exits) == frozenset(PRIORITY) and applicable_exits(None) is None
    with pytest.raises(ValueError, match="'flatten' is not one of the seven exits"):
        applicable_exits(("flatten",))
