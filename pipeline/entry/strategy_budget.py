"""Each strategy's own risk budget, checked after (inside) the account-wide RiskGate.

| check                   | rejects a strategy's signal when                                                  |
|-------------------------|-----------------------------------------------------------------------------------|
| strategy_daily_loss     | the strategy's closed P&L today <= -daily_loss x the account's starting equity    |
| strategy_max_positions  | a new ticker would exceed the strategy's max_positions                             |
| strategy_equity_share   | the strategy's positions (in-flight ones included) leave less than the smallest   |
|                         | entry under equity_share x equity                                                 |
| strategy_unknown        | the signal names a strategy that is not configured (nor the webhook's default)    |

Two strategies may hold one symbol in the same direction: the ledger keeps a position per (strategy, symbol),
each with its own stops and exits, and the broker holds their net. An opposite-direction position of another
strategy is refused before this by the gate's conflicting_signal check (the spec's check 4), naming that
strategy.

A signal of a strategy without a budget (no [[strategies]] entry: the webhook's default name, say) is held to
the account-wide limits only. `room()` is what the equity share leaves: the sizing is capped to it. Daily P&L
per strategy comes from a `DailyPnL` (pipeline.record.strategy_pnl: fed by closed trades, rebuilt at start).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import date
from typing import Any, Protocol

from config.settings import ExecutorConfig, StrategySpec
from pipeline.core.models import AccountState, Position, RiskDecision, TradeSignal

PASS = RiskDecision(True)


class DailyPnL(Protocol):
    """Each strategy's closed P&L on a day (pipeline.record.strategy_pnl.StrategyPnL)."""

    def daily_pnl(self, strategy: str, day: date) -> float: ...
NOT_OURS = ("external",)  # positions not opened by ordergate belong to no strategy


class StrategyBudgets:
    """The per-strategy limits of the configured strategies, and each one's closed P&L per day."""

    def __init__(self, specs: Iterable[StrategySpec], executor: ExecutorConfig, pnl: DailyPnL, *,
                 also_known: Iterable[str] = ()) -> None:
        """`also_known`: names without a budget that signals may carry (the webhook's default strategy); a signal
        naming any other unconfigured strategy is refused (a typo must not escape every budget)."""
        self.specs: dict[str, StrategySpec] = {spec.name: spec for spec in specs}
        self.also_known = frozenset(also_known)
        self.executor = executor
        self.pnl = pnl

    def reconfigure(self, executor: ExecutorConfig) -> None:
        self.executor = executor

    def status(self, positions: Iterable[Position], day: date) -> dict[str, dict[str, Any]]:
        """Per configured strategy: its open positions and their value, today's closed P&L, and its limits."""
        held: dict[str, list[Position]] = {}
        for p in positions:
            held.setdefault(p.strategy, []).append(p)
        return {name: {"open_positions": len(held.get(name, [])),
                       "market_value": round(sum(p.market_value for p in held.get(name, [])), 2),
                       "unrealized_pnl": round(sum(p.unrealized_pnl for p in held.get(name, [])), 2),
                       "daily_pnl": round(self.pnl.daily_pnl(name, day), 2), "kind": spec.kind,
                       "max_positions": spec.max_positions, "equity_share": spec.equity_share,
                       "daily_loss": spec.daily_loss}
                for name, spec in self.specs.items()}

    # -- the checks -----------------------------------------------------------------------------------------------
    @staticmethod
    def positions_of(account: AccountState, strategy: str) -> list[Position]:
        return [p for p in account.open_positions if p.strategy == strategy and p.origin not in NOT_OURS]

    def check(self, signal: TradeSignal, account: AccountState, day: date) -> RiskDecision:
        """Approve, or reject naming the strategy, its limit and the figures (see the module's table)."""
        return self.judge(signal, account, lambda: day)[0]

    def judge(self, signal: TradeSignal, account: AccountState,
              day: Callable[[], date]) -> tuple[RiskDecision, float | None]:
        """`check` (the day asked only when a daily loss limit needs it) and the strategy's `room`."""
        name = signal.strategy
        spec = self.specs.get(name)
        if spec is None:
            if name and name not in self.also_known:
                known = ", ".join([*self.specs, *sorted(self.also_known)])
                return RiskDecision(False, f"strategy_unknown: the signal names strategy {name!r}, which is not "
                                           f"configured (known: {known})", check="strategy_unknown"), None
            return PASS, None
        ticker = signal.ticker.strip().upper()
        if spec.daily_loss is not None:
            limit = spec.daily_loss * account.starting_equity
            pnl = self.pnl.daily_pnl(name, day())
            if pnl <= -limit:
                return RiskDecision(False, f"strategy_daily_loss: strategy {name} daily P&L {pnl:,.2f} reached its "
                                           f"limit -{limit:,.2f} ({spec.daily_loss:.1%} of starting equity)",
                                    check="strategy_daily_loss"), None
        mine = self.positions_of(account, name)
        if spec.max_positions is not None:
            tickers = {p.ticker.upper() for p in mine}
            if len(tickers) >= spec.max_positions and ticker not in tickers:
                return RiskDecision(False, f"strategy_max_positions: strategy {name} holds {len(tickers)} tickers "
                                           f"(incl. in-flight) >= its max_positions {spec.max_positions}",
                                    check="strategy_max_positions"), None
        if spec.equity_share is None:
            return PASS, None
        held = sum(p.market_value for p in mine)
        room = spec.equity_share * account.equity - held
        smallest = max(self.executor.min_position_value, signal.entry_price)
        if room < smallest:
            return RiskDecision(False, f"strategy_equity_share: strategy {name} holds {held:,.2f}; its "
                                       f"equity_share {spec.equity_share:.0%} of equity "
                                       f"{account.equity:,.2f} leaves {max(room, 0.0):,.2f} < smallest entry "
                                       f"{smallest:,.2f}", check="strategy_equity_share"), None
        return RiskDecision(True, adjustments={"strategy_room": round(room, 2)}), room

    def room(self, signal: TradeSignal, account: AccountState) -> float | None:
        """Notional the strategy may still put on under its equity share; None when it has no share."""
        spec = self.specs.get(signal.strategy)
        if spec is None or spec.equity_share is None:
            return None
        held = sum(p.market_value for p in self.positions_of(account, signal.strategy))
        return spec.equity_share * account.equity - held
