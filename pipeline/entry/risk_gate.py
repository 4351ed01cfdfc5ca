"""RiskGate: the spec's 8 pre-trade checks, each a small named pure function, run in the table's order.

| # | check               | rejects when                                                                  |
|---|---------------------|-------------------------------------------------------------------------------|
| 1 | daily_loss          | daily P&L <= -daily_loss_limit x starting equity                               |
| 2 | max_positions       | a new ticker would exceed max_concurrent_positions                            |
| 3 | duplicate_ticker    | the strategy already holds the ticker in that direction (unless adding to a winner) |
| 4 | conflicting_signal  | the ticker is held in the opposite direction (by any strategy: the reason names it) |
| 5 | exposure            | the ticker / its sector has no room left for the smallest entry               |
| 6 | market_hours        | the market is closed, or an intraday signal comes at/after that session's    |
|   |                     | end-of-day cutoff (eod_close_time: the day trade would be flattened at once);  |
|   |                     | timeframes in market_hours_bypass_timeframes excepted                          |
| 7 | min_equity          | equity < min_account_equity (PDT)                                             |
| 8 | buying_power        | buying power < max(min_position_value, one share at entry)                    |

The gate is pure: the orchestrator passes an AccountState that already counts in-flight (reserved) orders as
positions and has their notional taken out of buying power. Sizing then caps the size to the room left.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

import msgspec

from config.settings import ExecutorConfig
from pipeline.core.calendar import MarketCalendar, default_calendar
from pipeline.core.clock import Clock, LiveClock
from pipeline.core.models import AccountState, Direction, Position, RiskDecision, TradeSignal
from pipeline.instruments.catalog import load_sectors
from pipeline.positions.time_exits import TimeExits


class RiskContext(msgspec.Struct):
    """Everything a check looks at, with the derived figures the checks share (found once per signal)."""

    signal: TradeSignal
    account: AccountState
    config: ExecutorConfig
    calendar: MarketCalendar
    time: TimeExits  # the one owner of the session's end-of-day cutoff
    sectors: Mapping[str, str]
    now: datetime
    ticker: str = ""                                  # the signal's ticker, stripped and upper-case
    sector: str | None = None                         # its sector (the sector map), None when it has none
    held: list[Position] = msgspec.field(default_factory=list)  # the open positions in the ticker, any direction
    smallest: float = 0.0                             # the smallest entry worth sending (min_entry_value)
    notes: dict[str, Any] = msgspec.field(default_factory=dict)

    @property
    def direction(self) -> Direction | str:
        return self.signal.direction

    def positions_in(self, ticker: str) -> list[Position]:
        if ticker == self.ticker:
            return self.held
        return [p for p in self.account.open_positions if p.ticker.upper() == ticker]

    def min_entry_value(self) -> float:
        """The smallest entry worth sending: min_position_value, and at least one share."""
        return self.smallest or max(self.config.min_position_value, self.signal.entry_price)


def risk_context(signal: TradeSignal, account: AccountState, config: ExecutorConfig, calendar: MarketCalendar,
                 time: TimeExits, sectors: Mapping[str, str], now: datetime) -> RiskContext:
    """The context of one signal's checks: its ticker, sector and the positions held in it looked up once."""
    ticker = signal.ticker.strip().upper()
    held = [p for p in account.open_positions if p.ticker.upper() == ticker] if account.open_positions else []
    try:
        smallest = max(config.min_position_value, signal.entry_price)
    except TypeError:  # no usable entry price: the checks that need it fail (closed) when they ask for it
        smallest = 0.0
    return RiskContext(signal, account, config, calendar, time, sectors, now, ticker, sectors.get(ticker), held,
                       smallest)


CheckFn = Callable[[RiskContext], RiskDecision]
PASS = RiskDecision(True)  # shared: a check that passes without figures (never mutated)
NO_SECTOR = RiskDecision(True, adjustments={"sector": None})


def _reject(reason: str) -> RiskDecision:
    return RiskDecision(False, reason)


def position_sector(position: Position, sectors: Mapping[str, str]) -> str | None:
    """The sector a position counts against: its own field, else the sector map."""
    return position.sector or sectors.get(position.ticker.upper())


def ticker_exposure(account: AccountState, ticker: str) -> float:
    """Market value held in `ticker` (any direction, any instrument on it)."""
    return sum(p.market_value for p in account.open_positions if p.ticker.upper() == ticker)


def _value(positions: list[Position]) -> float:
    """Their market value (summed in order, as `ticker_exposure`)."""
    total = 0
    for p in positions:
        total += p.market_value
    return total


def sector_exposure(account: AccountState, sector: str, sectors: Mapping[str, str]) -> float:
    """Market value held in `sector`."""
    return sum(p.market_value for p in account.open_positions if position_sector(p, sectors) == sector)


def check_daily_loss(ctx: RiskContext) -> RiskDecision:
    """1. Daily P&L must stay above -daily_loss_limit x starting equity."""
    limit = ctx.config.daily_loss_limit * ctx.account.starting_equity
    pnl = ctx.account.daily_pnl
    if pnl <= -limit:
        return _reject(
            f"daily_loss: daily P&L {pnl:,.2f} reached the limit -{limit:,.2f} "
            f"({ctx.config.daily_loss_limit:.1%} of starting equity {ctx.account.starting_equity:,.2f})"
        )
    return PASS


def check_max_positions(ctx: RiskContext) -> RiskDecision:
    """2. A new ticker needs a free slot under max_concurrent_positions (adding to a held ticker does not).
    External positions (not opened by ordergate) take no slot; the other checks count them."""
    limit = ctx.config.max_concurrent_positions
    positions = ctx.account.open_positions
    if len(positions) < limit:  # fewer positions than slots: room, whatever their origin
        return PASS
    count = sum(1 for p in positions if p.origin not in ("external", "pending"))
    if count >= limit and not ctx.held:
        return _reject(f"max_positions: {count} open positions (incl. in-flight) >= max_concurrent_positions {limit}")
    return PASS


def check_duplicate_ticker(ctx: RiskContext) -> RiskDecision:
    """3. No second position in the same ticker and direction, unless adding to a winner (when allowed). Per
    strategy: another strategy's position beside it is its own (the ledger books by strategy and symbol), but
    a position not opened by ordergate (external, pending) counts for every strategy."""
    if not ctx.held:
        return PASS
    same = [p for p in ctx.held if p.direction == ctx.direction
            and (p.strategy == ctx.signal.strategy or p.origin in ("external", "pending"))]
    if not same:
        return PASS
    pnl = sum(p.unrealized_pnl for p in same)
    if ctx.config.allow_add_to_winner and all(p.unrealized_pnl > 0 for p in same):
        return RiskDecision(True, adjustments={"adding_to_winner": True, "existing_unrealized_pnl": round(pnl, 2)})
    why = "allow_add_to_winner is off" if not ctx.config.allow_add_to_winner else f"unrealized P&L {pnl:,.2f} <= 0"
    by = f" by strategy {same[0].strategy}" if same[0].strategy and same[0].strategy != ctx.signal.strategy else ""
    return _reject(f"duplicate_ticker: {ctx.ticker} already held {ctx.direction}{by} ({why})")


def check_conflicting_signal(ctx: RiskContext) -> RiskDecision:
    """4. No long and short in the same ticker."""
    if not ctx.held:
        return PASS
    opposite = [p for p in ctx.held if p.direction != ctx.direction]
    if opposite:
        # with several strategies on one account: a long in one and a short in another is refused, named
        mine = f" of strategy {ctx.signal.strategy}" if ctx.signal.strategy else ""
        theirs = f" by strategy {opposite[0].strategy}" if opposite[0].strategy else ""
        return _reject(
            f"conflicting_signal: {ctx.direction} signal{mine} but {ctx.ticker} is held {opposite[0].direction}{theirs}"
        )
    return PASS


def check_exposure(ctx: RiskContext) -> RiskDecision:
    """5. The ticker and its sector must have room for at least the smallest entry."""
    equity = ctx.account.equity
    smallest = ctx.min_entry_value()
    stock_limit = ctx.config.max_single_stock_exposure * equity
    held = _value(ctx.held)
    if held + smallest > stock_limit:
        return _reject(
            f"exposure: {ctx.ticker} exposure {held:,.2f} + smallest entry {smallest:,.2f} > "
            f"max_single_stock_exposure {ctx.config.max_single_stock_exposure:.0%} of equity ({stock_limit:,.2f})"
        )
    sector = ctx.sector
    if sector is None:
        return NO_SECTOR
    sector_limit = ctx.config.max_sector_exposure * equity
    in_sector = sector_exposure(ctx.account, sector, ctx.sectors) if ctx.account.open_positions else 0
    if in_sector + smallest > sector_limit:
        return _reject(
            f"exposure: sector {sector} exposure {in_sector:,.2f} + smallest entry {smallest:,.2f} > "
            f"max_sector_exposure {ctx.config.max_sector_exposure:.0%} of equity ({sector_limit:,.2f})"
        )
    return RiskDecision(True, adjustments={"sector": sector})


def check_market_hours(ctx: RiskContext) -> RiskDecision:
    """6. Regular NYSE hours only, except for the bypass timeframes (daily); an intraday (day-trade) entry also
    not at or after that session's end-of-day cutoff, where the exit monitor would flatten it on the next bar."""
    if ctx.signal.timeframe in ctx.config.market_hours_bypass_timeframes:
        return PASS
    now = ctx.now
    day = ctx.time.day_of(now)  # the calendar's session of now's New York day (cached per day), in UTC
    if day.open is None or day.close is None or not day.open <= now < day.close:
        return _reject(
            f"market_hours: market closed at {now.isoformat()} "
            f"(timeframe {ctx.signal.timeframe} not in {ctx.config.market_hours_bypass_timeframes})"
        )
    cutoff = day.cutoff
    if cutoff is not None and now >= cutoff:
        return _reject(
            f"market_hours: {now.isoformat()} is at or after this session's end-of-day cutoff "
            f"{cutoff.isoformat()} (eod_close_time {ctx.config.eod_close_time}): a {ctx.signal.timeframe} day trade "
            "would be closed at once"
        )
    return PASS


def check_min_equity(ctx: RiskContext) -> RiskDecision:
    """7. Equity at least min_account_equity (PDT)."""
    if ctx.account.equity < ctx.config.min_account_equity:
        return _reject(
            f"min_equity: equity {ctx.account.equity:,.2f} < min_account_equity {ctx.config.min_account_equity:,.2f}"
        )
    return PASS


def check_buying_power(ctx: RiskContext) -> RiskDecision:
    """8. Buying power for the smallest entry: max(min_position_value, one share at entry)."""
    needed = ctx.min_entry_value()
    if ctx.account.buying_power < needed:
        return _reject(
            f"buying_power: {ctx.account.buying_power:,.2f} (after in-flight orders) < needed {needed:,.2f} "
            f"(min_position_value {ctx.config.min_position_value:,.2f} / one share at {ctx.signal.entry_price:,.2f})"
        )
    return PASS


RISK_CHECKS: list[tuple[str, CheckFn]] = [
    ("daily_loss", check_daily_loss),
    ("max_positions", check_max_positions),
    ("duplicate_ticker", check_duplicate_ticker),
    ("conflicting_signal", check_conflicting_signal),
    ("exposure", check_exposure),
    ("market_hours", check_market_hours),
    ("min_equity", check_min_equity),
    ("buying_power", check_buying_power),
]


class RiskGate:
    """Runs RISK_CHECKS in order; the first failure rejects, naming its check (the spec's RiskGate)."""

    def __init__(
        self,
        config: ExecutorConfig,
        calendar: MarketCalendar | None = None,
        sectors: Mapping[str, str] | None = None,
        clock: Clock | None = None,
    ) -> None:
        """`calendar`, `sectors` and `clock` default to what the daemon uses: NYSE, the shipped sectors, live."""
        self.config = config
        self.calendar = calendar if calendar is not None else default_calendar()
        self.sectors = sectors if sectors is not None else load_sectors()
        self.clock = clock if clock is not None else LiveClock()
        self.time = TimeExits(config, self.calendar)

    def reconfigure(self, config: ExecutorConfig) -> None:
        """Check against new limits from now on (a SIGHUP reload)."""
        self.config = config
        self.time.reconfigure(config)

    def validate(self, signal: TradeSignal, account: AccountState, now: datetime | None = None) -> RiskDecision:
        """Approve, or reject with `check` set to the first failing check's name (`now` defaults to the clock)."""
        if now is None:
            now = self.clock.now()
        try:
            ctx = risk_context(signal, account, self.config, self.calendar, self.time, self.sectors, now)
        except Exception as exc:  # an unreadable signal or account: closed, at the first check
            name = RISK_CHECKS[0][0]
            reason = f"{name}: check failed ({type(exc).__name__}: {exc})"
            return RiskDecision(False, reason, {}, name, checks_until(0, reason))
        adjustments: dict[str, Any] = {}
        for name, check in RISK_CHECKS:  # in the table's order
            try:
                decision = check(ctx)
            except Exception as exc:  # a check must fail closed, never crash the pipeline
                decision = RiskDecision(False, f"{name}: check failed ({type(exc).__name__}: {exc})")
            if not decision.approved:
                return RiskDecision(False, decision.reason, adjustments, check=name,
                                    checks=checks_until(_index_of(name), decision.reason))
            if decision.adjustments:
                adjustments.update(decision.adjustments)
        return RiskDecision(True, ALL_PASSED_REASON, adjustments, "", ALL_PASSED)


ALL_PASSED_REASON = f"all {len(RISK_CHECKS)} risk checks passed"
ALL_PASSED: tuple[tuple[str, str, str], ...] = tuple((name, "approved", "") for name, _ in RISK_CHECKS)


def _index_of(name: str) -> int:
    """Where check `name` stands in RISK_CHECKS (asked only when it rejected)."""
    return next(index for index, (check, _) in enumerate(RISK_CHECKS) if check == name)


def checks_until(index: int, reason: str) -> tuple[tuple[str, str, str], ...]:
    """Each check's outcome when check `index` rejected for `reason`: the ones before it approved, the ones
    after it not run."""
    name = RISK_CHECKS[index][0]
    return (*ALL_PASSED[:index], (name, "rejected", reason),
            *((later, "not_run", f"after {name} rejected") for later, _ in RISK_CHECKS[index + 1:]))
