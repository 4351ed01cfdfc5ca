"""Each strategy's own risk budget, checked after (inside) the account-wide RiskGate.

| check                   | rejects a strategy's signal when                                                  |
|-------------------------|-----------------------------------------------------------------------------------|
| strategy_daily_loss     | the strategy's closed P&L today <= -daily_loss x the account's starting equity    |
| strategy_max_positions  | a new ticker would exceed the strategy's max_positions                             |
| strategy_equity_share   | the strategy's positions (in-flight ones included) leave less than the smallest   |
|                         | entry under equity_share x equity                                                 |
| strategy_unknown        | the signal names a strategy that is not configured (nor the webhook's default)    |
| strategy_symbol_held    | another strategy holds (or is entering) the ticker: one strategy per symbol        |

The last one keeps one strategy's position per symbol at the broker, so each position keeps its own stops
and exits; an opposite-direction position of another strategy is refused before this by the gate's
conflicting_signal check (the spec's check 4), naming that strategy.

A signal of a strategy without a budget (no [[strategies]] entry: the webhook's default name, say) is held to
the account-wide limits only. `room()` is what the equity share leaves: the sizing is capped to it. Daily P&L
per strategy is fed by the lifecycle's closed trades and rebuilt from the journal's trades at start.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date, datetime
from typing import Any

from config.settings import ExecutorConfig, StrategySpec
from pipeline.core.calendar import trading_day
from pipeline.core.models import AccountState, Position, RiskDecision, TradeSignal

PASS = RiskDecision(True)
NOT_OURS = ("external",)  # positions not opened by ordergate belong to no strategy


class StrategyBudgets:
    """The per-strategy limits of the configured strategies, and each one's closed P&L per day."""

    def __init__(self, specs: Iterable[StrategySpec], executor: ExecutorConfig, *, one_per_symbol: bool = True,
                 also_known: Iterable[str] = ()) -> None:
        """`one_per_symbol=False` (no [[strategies]] section: today's one strategy plus the webhook) leaves a held
        ticker to the gate's duplicate and conflict checks alone, as before strategies were configurable.
        `also_known`: names without a budget that signals may carry (the webhook's default strategy); a signal
        naming any other unconfigured strategy is refused (a typo must not escape every budget)."""
        self.specs: dict[str, StrategySpec] = {spec.name: spec for spec in specs}
        self.one_per_symbol = one_per_symbol
        self.also_known = frozenset(also_known)
        self.executor = executor
        self._pnl: dict[tuple[date, str], float] = {}

    def reconfigure(self, executor: ExecutorConfig) -> None:
        self.executor = executor

    # -- daily P&L ------------------------------------------------------------------------------------------------
    def record(self, strategy: str, pnl: float, day: date) -> None:
        """A closed trade of `strategy` on New York `day`."""
        key = (day, strategy)
        self._pnl[key] = self._pnl.get(key, 0.0) + pnl
        for old in [k for k in self._pnl if k[0] < day]:  # yesterday's figures are not needed any more
            del self._pnl[old]

    def record_trade(self, strategy: str, pnl: float, exit_time: datetime) -> None:
        """A closed trade (the lifecycle's hook): counted on the New York day of its exit."""
        self.record(strategy, pnl, trading_day(exit_time))

    def daily_pnl(self, strategy: str, day: date) -> float:
        return self._pnl.get((day, strategy), 0.0)

    def restore(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Closed P&L per day and strategy from journal rows (`day`, `strategy`, `pnl`), added to what is held."""
        for row in rows:
            if row.get("day") and row.get("strategy"):
                key = (date.fromisoformat(str(row["day"])), str(row["strategy"]))
                self._pnl[key] = self._pnl.get(key, 0.0) + float(row["pnl"] or 0.0)

    async def restore_from(self, journal: Any) -> None:
        """Each strategy's closed P&L per day from the journal's trades, so a restart keeps each one's daily loss.
        Every day, not only the clock's at start: a simulated run resumes later in its data."""
        self.restore(await journal.query("SELECT day, strategy, SUM(pnl) AS pnl FROM trades GROUP BY day, strategy"))

    def status(self, positions: Iterable[Position], day: date) -> dict[str, dict[str, Any]]:
        """Per configured strategy: its open positions and their value, today's closed P&L, and its limits."""
        held: dict[str, list[Position]] = {}
        for p in positions:
            held.setdefault(p.strategy, []).append(p)
        return {name: {"open_positions": len(held.get(name, [])),
                       "market_value": round(sum(p.market_value for p in held.get(name, [])), 2),
                       "unrealized_pnl": round(sum(p.unrealized_pnl for p in held.get(name, [])), 2),
                       "daily_pnl": round(self.daily_pnl(name, day), 2), "kind": spec.kind,
                       "max_positions": spec.max_positions, "equity_share": spec.equity_share,
                       "daily_loss": spec.daily_loss}
                for name, spec in self.specs.items()}

    # -- the checks -----------------------------------------------------------------------------------------------
    @staticmethod
    def positions_of(account: AccountState, strategy: str) -> list[Position]:
        return [p for p in account.open_positions if p.strategy == strategy and p.origin not in NOT_OURS]

    def check(self, signal: TradeSignal, account: AccountState, day: date) -> RiskDecision:
        """Approve, or reject naming the strategy, its limit and the figures (see the module's table)."""
        name = signal.strategy
        if name and name not in self.specs and name not in self.also_known:
            known = ", ".join([*self.specs, *sorted(self.also_known)])
            return RiskDecision(False, f"strategy_unknown: the signal names strategy {name!r}, which is not "
                                       f"configured (known: {known})", check="strategy_unknown")
        ticker = signal.ticker.strip().upper()
        for p in account.open_positions if self.one_per_symbol else ():
            if p.ticker.upper() == ticker and p.origin not in NOT_OURS and p.strategy != name:
                return RiskDecision(False, f"strategy_symbol_held: {ticker} is held {p.direction} by strategy "
                                           f"{p.strategy or '(none)'}; strategy {name or '(none)'} may not trade it "
                                           f"beside it", check="strategy_symbol_held")
        spec = self.specs.get(name)
        if spec is None:
            return PASS
        if spec.daily_loss is not None:
            limit = spec.daily_loss * account.starting_equity
            pnl = self.daily_pnl(name, day)
            if pnl <= -limit:
                return RiskDecision(False, f"strategy_daily_loss: strategy {name} daily P&L {pnl:,.2f} reached its "
                                           f"limit -{limit:,.2f} ({spec.daily_loss:.1%} of starting equity)",
                                    check="strategy_daily_loss")
        mine = self.positions_of(account, name)
        if spec.max_positions is not None:
            tickers = {p.ticker.upper() for p in mine}
            if len(tickers) >= spec.max_positions and ticker not in tickers:
                return RiskDecision(False, f"strategy_max_positions: strategy {name} holds {len(tickers)} tickers "
                                           f"(incl. in-flight) >= its max_positions {spec.max_positions}",
                                    check="strategy_max_positions")
        room = self.room(signal, account)
        if room is not None:
            smallest = max(self.executor.min_position_value, signal.entry_price)
            if room < smallest:
                held = sum(p.market_value for p in mine)
                return RiskDecision(False, f"strategy_equity_share: strategy {name} holds {held:,.2f}; its "
                                           f"equity_share {spec.equity_share:.0%} of equity "
                                           f"{account.equity:,.2f} leaves {max(room, 0.0):,.2f} < smallest entry "
                                           f"{smallest:,.2f}", check="strategy_equity_share")
            return RiskDecision(True, adjustments={"strategy_room": round(room, 2)})
        return PASS

    def room(self, signal: TradeSignal, account: AccountState) -> float | None:
        """Notional the strategy may still put on under its equity share; None when it has no share."""
        spec = self.specs.get(signal.strategy)
        if spec is None or spec.equity_share is None:
            return None
        held = sum(p.market_value for p in self.positions_of(account, signal.strategy))
        return spec.equity_share * account.equity - held
