"""The seven exits of an open position, checked in the spec's priority order (lower number wins).

Each exit is a small method usable on its own; `EXIT_STRATEGIES` (at the end of the module) is the ordered
table `check_all` walks, stopping at the first exit that fires. Every check is pure and cheap: it runs on
each bar of each held position. Thresholds are inclusive: an exit fires *at* its threshold, not one tick
before it.

| priority | exit                | fires when                                                                  |
|----------|---------------------|-----------------------------------------------------------------------------|
| 1        | stop_loss           | long: price <= stop; short: price >= stop                                   |
| 2        | momentum_exhaustion | the last N completed candles all closed beyond the fast cloud, in favour    |
| 3        | cloud_flip          | the latest fast cloud colour is against the position                        |
| 4        | profit_target       | long: price >= target; short: price <= target (target or entry ± R·risk)    |
| 5        | time_stop           | held for time_stop_minutes or longer                                        |
| 6        | eod_close           | intraday timeframe, at/after the session's close minus N minutes            |
| 7        | trailing_stop       | the latest completed candle closed at/through the trailing cloud, against   |

Per strategy: a position gets the exits its strategy declares (`Strategy.exits`, read by the lifecycle) plus
`ALWAYS_EXITS` (stop loss, profit target, time stop, EOD close, trailing stop), in the table's order; the EMA
cloud strategy declares all seven, the daily breakout none of the cloud reads (momentum exhaustion, cloud
flip). A position without a known strategy (adopted, external, an old journal) gets all seven.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any, NamedTuple

from config.settings import ExecutorConfig
from pipeline.core.calendar import MarketCalendar, default_calendar
from pipeline.core.clock import Clock, LiveClock
from pipeline.core.models import CloudState, ExitSignal, ExitType, Position
from pipeline.positions.time_exits import TimeExits

_REL_EPS = 1e-9  # float slack so a price computed as 189.70000000001 still counts as 189.70


def _slack(level: float) -> float:
    return _REL_EPS * abs(level) + _REL_EPS


class ExitMonitor:
    """Checks an open position against the seven exits; `check_all` returns the best-priority one that fires."""

    def __init__(self, config: ExecutorConfig, calendar: MarketCalendar | None = None,
                 clock: Clock | None = None) -> None:
        """`calendar` and `clock` default to what the daemon uses: the NYSE calendar and the live clock."""
        self.calendar = calendar if calendar is not None else default_calendar()
        self.clock = clock if clock is not None else LiveClock()
        self.time = TimeExits(config, self.calendar)  # the time stop and EOD close rule (and its day cache)
        self.reconfigure(config)

    def reconfigure(self, config: ExecutorConfig) -> None:
        """Take new limits (e.g. after a SIGHUP reload); derived values are computed once here."""
        self.config = config
        self._exhaustion_n = config.momentum_exhaustion_candles
        self._trailing_cloud = config.trailing_stop_cloud
        self.time.reconfigure(config)

    # -- all seven ------------------------------------------------------------------------------------
    def check_all(
        self,
        position: Position,
        current_price: float,
        cloud_states: Sequence[CloudState] | None = None,
        bars: Sequence[Any] | None = None,
        now: datetime | None = None,
        exits: frozenset[ExitType] | None = None,
    ) -> ExitSignal | None:
        """The best-priority exit that fires, or None to keep holding.

        `exits`: the ones that apply to this position (its strategy's, `applicable_exits`); None: all seven.
        `cloud_states` are the ticker's recent completed-bar cloud states, oldest first; None (or empty) skips
        the three cloud exits. `bars` is accepted for the spec's signature; the cloud states carry the closes.
        `now` defaults to the injected clock.
        """
        if not 0.0 < current_price < math.inf:
            raise ValueError(f"current_price: must be a finite positive price, got {current_price!r}")
        del bars
        when = now if now is not None else self.clock.now()
        table = _TABLES.get(exits)
        if table is None:
            table = _table(exits)
        for method, inputs in table:
            if inputs == "price":
                signal = method(self, position, current_price)
            elif inputs == "clouds":
                if not cloud_states:
                    continue
                signal = method(self, position, cloud_states)
            else:
                signal = method(self, position, when)
            if signal is not None:
                if inputs != "clouds":
                    signal.price = current_price
                return signal
        return None

    # -- 1 stop loss ----------------------------------------------------------------------------------
    def check_stop_loss(self, position: Position, current_price: float) -> ExitSignal | None:
        """Long: price at or below the stop. Short: price at or above it."""
        stop = position.stop_loss
        if position.is_long:
            hit = current_price <= stop + _slack(stop)
        else:
            hit = current_price >= stop - _slack(stop)
        if not hit:
            return None
        return _exit(position, ExitType.STOP_LOSS, f"price {current_price} hit stop {stop}", current_price)

    # -- 2 momentum exhaustion ------------------------------------------------------------------------
    def check_momentum_exhaustion(self, position: Position, cloud_states: Sequence[CloudState]) -> ExitSignal | None:
        """The last N completed candles all closed beyond the fast cloud in the position's favour (overextended).

        Long: close above the cloud's upper edge; short: close below its lower edge. A close on the edge is
        not outside. N = config.momentum_exhaustion_candles.
        """
        n = self._exhaustion_n
        count = len(cloud_states)
        if count < n:
            return None
        long = position.is_long
        for i in range(count - 1, count - 1 - n, -1):
            state = cloud_states[i]
            low, high = _fast_bounds(state)
            if not (state.close > high if long else state.close < low):
                return None
        last = cloud_states[-1]
        side = "above" if long else "below"
        return _exit(
            position, ExitType.MOMENTUM_EXHAUSTION,
            f"{n} consecutive candles closed {side} the fast cloud (last close {last.close})", last.close,
        )

    # -- 3 cloud flip ---------------------------------------------------------------------------------
    def check_cloud_flip(self, position: Position, cloud_states: Sequence[CloudState]) -> ExitSignal | None:
        """The latest fast cloud's colour is against the position (bearish for a long, bullish for a short)."""
        if not cloud_states:
            return None
        last = cloud_states[-1]
        bullish = last.fast_bullish
        if bullish == position.is_long:
            return None
        colour = "bullish" if bullish else "bearish"
        return _exit(
            position, ExitType.CLOUD_FLIP,
            f"fast cloud turned {colour} ({last.fast_short:.4f} vs {last.fast_long:.4f}) against the "
            f"{position.direction} position", last.close,
        )

    # -- 4 profit target ------------------------------------------------------------------------------
    def target_for(self, position: Position) -> float | None:
        """The position's target, or entry ± reward_to_risk_target × risk; None when there is no risk to scale."""
        if position.target_price is not None:
            return position.target_price
        risk = abs(position.entry_price - position.stop_loss)
        if risk <= 0:
            return None
        reach = self.config.reward_to_risk_target * risk
        return position.entry_price + reach if position.is_long else position.entry_price - reach

    def check_profit_target(self, position: Position, current_price: float) -> ExitSignal | None:
        """Long: price at or above the target. Short: price at or below it."""
        target = self.target_for(position)
        if target is None:
            return None
        if position.is_long:
            hit = current_price >= target - _slack(target)
        else:
            hit = current_price <= target + _slack(target)
        if not hit:
            return None
        reason = f"price {current_price} reached target {target:.4f}"
        return _exit(position, ExitType.PROFIT_TARGET, reason, current_price)

    # -- 5 time stop ----------------------------------------------------------------------------------
    def check_time_stop(self, position: Position, now: datetime | None = None) -> ExitSignal | None:
        """Held for time_stop_minutes or longer: intraday positions only (a daily-bar swing trade is not a scalp);
        positions without an entry time never time out. The rule is `TimeExits` (pipeline.positions.time_exits)."""
        reason = self.time.time_stop_reason(position, now if now is not None else self.clock.now())
        return None if reason is None else _exit(position, ExitType.TIME_STOP, reason, position.current_price)

    # -- 6 end of day ---------------------------------------------------------------------------------
    def check_eod_close(self, position: Position, now: datetime | None = None) -> ExitSignal | None:
        """Intraday positions close at/after that session's close minus N minutes (15:55 ET, 12:55 on early closes).

        A day trade still held from an earlier session is closed as soon as the market is open. Daily and
        longer timeframes are exempt; on a day with no session (weekend, holiday) nothing fires. The rule is
        `TimeExits` (pipeline.positions.time_exits).
        """
        reason = self.time.eod_reason(position, now if now is not None else self.clock.now())
        return None if reason is None else _exit(position, ExitType.EOD_CLOSE, reason, position.current_price)

    # -- 7 trailing stop ------------------------------------------------------------------------------
    def check_trailing_stop(self, position: Position, cloud_states: Sequence[CloudState]) -> ExitSignal | None:
        """The latest completed candle closed at or through the trailing cloud against the position.

        Long: close at/below the cloud's lower edge; short: close at/above its upper edge. The cloud is
        config.trailing_stop_cloud ('pullback' by default).
        """
        if not cloud_states:
            return None
        last = cloud_states[-1]
        low, high = last.cloud_bounds(self._trailing_cloud)
        if position.is_long:
            if last.close > low + _slack(low):
                return None
            where = f"at/below the {self._trailing_cloud} cloud ({low:.4f})"
        else:
            if last.close < high - _slack(high):
                return None
            where = f"at/above the {self._trailing_cloud} cloud ({high:.4f})"
        return _exit(position, ExitType.TRAILING_STOP, f"close {last.close} {where}", last.close)

    def trailing_stop_level(self, position: Position, cloud_states: Sequence[CloudState]) -> float | None:
        """Where the resting broker stop trails to: the trailing cloud's far edge of the latest completed candle
        (long: its lower edge, short: its upper edge); None without cloud states. The caller only ever tightens."""
        if not cloud_states:
            return None
        low, high = cloud_states[-1].cloud_bounds(self._trailing_cloud)
        level = low if position.is_long else high
        return level if 0.0 < level < math.inf else None


def _fast_bounds(state: CloudState) -> tuple[float, float]:
    a, b = state.fast_short, state.fast_long
    return (a, b) if a <= b else (b, a)


def _exit(position: Position, name: ExitType, reason: str, price: float) -> ExitSignal:
    return ExitSignal(ticker=position.ticker, exit_type=name, priority=PRIORITY[name], reason=reason, price=price)


class ExitStrategy(NamedTuple):
    """One row of the exit table: priority (lower wins), name, the ExitMonitor method, what it reads."""

    priority: int
    name: ExitType
    method: Callable[..., ExitSignal | None]
    inputs: str        # 'price' (position, price) | 'clouds' (position, cloud_states) | 'time' (position, now)
    trigger: str


EXIT_STRATEGIES: tuple[ExitStrategy, ...] = (
    ExitStrategy(1, ExitType.STOP_LOSS, ExitMonitor.check_stop_loss, "price", "price hits the stop level"),
    ExitStrategy(2, ExitType.MOMENTUM_EXHAUSTION, ExitMonitor.check_momentum_exhaustion, "clouds",
                 "N+ consecutive candles closing outside the fast cloud"),
    ExitStrategy(3, ExitType.CLOUD_FLIP, ExitMonitor.check_cloud_flip, "clouds",
                 "fast cloud colour against the position"),
    ExitStrategy(4, ExitType.PROFIT_TARGET, ExitMonitor.check_profit_target, "price", "price hits the R:R target"),
    ExitStrategy(5, ExitType.TIME_STOP, ExitMonitor.check_time_stop, "time", "held for time_stop_minutes"),
    ExitStrategy(6, ExitType.EOD_CLOSE, ExitMonitor.check_eod_close, "time",
                 "session close minus N minutes, day trades"),
    ExitStrategy(7, ExitType.TRAILING_STOP, ExitMonitor.check_trailing_stop, "clouds",
                 "close through the trailing (pullback) cloud against the position"),
)
PRIORITY: dict[ExitType, int] = {s.name: s.priority for s in EXIT_STRATEGIES}
# the table's rows that apply, per set of exits (`check_all` runs on every bar of every held position)
_TABLES: dict[frozenset[ExitType] | None, tuple[tuple[Callable[..., ExitSignal | None], str], ...]] = {}


def _table(exits: frozenset[ExitType] | None) -> tuple[tuple[Callable[..., ExitSignal | None], str], ...]:
    """(method, inputs) of the exits of `exits` (None: all seven), in priority order; remembered."""
    table = tuple((s.method, s.inputs) for s in EXIT_STRATEGIES if exits is None or s.name in exits)
    if len(_TABLES) < 64:
        _TABLES[exits] = table
    return table
# the exits every position gets, whatever its strategy declares: its stop, its target, the clock, its trailing stop
ALWAYS_EXITS: frozenset[ExitType] = frozenset({ExitType.STOP_LOSS, ExitType.PROFIT_TARGET, ExitType.TIME_STOP,
                                               ExitType.EOD_CLOSE, ExitType.TRAILING_STOP})


def applicable_exits(declared: Iterable[str] | None) -> frozenset[ExitType] | None:
    """The exits of a strategy's positions: what it declares (`Strategy.exits`, exit names) plus `ALWAYS_EXITS`;
    None (all seven) when it declares nothing. A name that is not one of the seven is refused, naming it."""
    if declared is None:
        return None
    chosen = set(ALWAYS_EXITS)
    for name in ([declared] if isinstance(declared, str) else declared):
        if name not in PRIORITY:
            known = ", ".join(PRIORITY)
            raise ValueError(f"strategy exits: {name!r} is not one of the seven exits ({known})")
        chosen.add(ExitType(name))
    return frozenset(chosen)


assert [s.priority for s in EXIT_STRATEGIES] == sorted(s.priority for s in EXIT_STRATEGIES)
