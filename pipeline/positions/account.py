"""The account as the risk gate sees it: the ledger's cash and positions, the external positions (real risk,
never traded), the state file's daily P&L, and the day's starting equity: the broker's at start, renewed on each
new trading day (the daily loss limit is a share of it; taken once, a service up for weeks would judge today's loss
against the equity of the day it started)."""

from __future__ import annotations

from datetime import datetime

import structlog

from pipeline.core.models import AccountSnapshot, AccountState
from pipeline.positions.external import ExternalBook
from pipeline.positions.ledger import Ledger
from pipeline.safety.state_manager import PersistentStateManager

log = structlog.get_logger("ordergate.account")


class AccountBook:
    """One owner of the account view; the orchestrator and the lifecycle read it, the daemon syncs it."""

    def __init__(self, ledger: Ledger, external: ExternalBook, state: PersistentStateManager) -> None:
        self.ledger = ledger
        self.external = external
        self.state = state
        self.starting_equity = 0.0
        self._equity_day: str | None = None  # the trading day starting_equity is that of

    def sync(self, account: AccountSnapshot, fills_through: datetime | None = None) -> None:
        """Cash and starting equity from the broker's account (its cash already reflects every fill, ours and
        anyone's: every one up to `fills_through`, broker time, when known)."""
        self.ledger.cash = account.cash
        self.external.reset_cash(fills_through)
        self.starting_equity = account.equity
        self._equity_day = self.state.today()

    def comparable_cash(self) -> float:
        """The ledger's cash as the broker's should read: with the hand trades' cash the external book carries."""
        return self.ledger.cash + self.external.cash_adjustment

    def take_cash(self, cash: float, fills_through: datetime | None = None) -> None:
        """The broker's cash, read during the run (a drift confirmed by `cash_drift`): the ledger's from now on;
        the starting equity stays the start's."""
        self.ledger.cash = cash
        self.external.reset_cash(fills_through)

    def renew_day(self) -> bool:
        """On a trading day after the one the starting equity is of: it becomes the equity now less today's realised
        P&L (what the account held as the day began). True when renewed; nothing before the first sync."""
        day = self.state.today()
        if self._equity_day is None or day == self._equity_day:
            return False
        before = self.starting_equity
        self.starting_equity = self.account_state().equity - self.state.get_daily_pnl()
        self._equity_day = day
        log.info("starting_equity_renewed", day=day, was=round(before, 2), now=round(self.starting_equity, 2))
        return True

    def get_starting_equity(self) -> float:
        """The day's starting equity (the broker's at start, renewed on each new trading day; 0 until synced)."""
        self.renew_day()
        return self.starting_equity

    def account_state(self) -> AccountState:
        """The book as the risk gate sees it, external positions included (they are real risk)."""
        ledger = self.ledger
        cash = ledger.cash
        if ledger.holdings:
            equity = ledger.equity()
            # a short sale's proceeds are cash but not buying power, and the short itself needs as much again: no
            # broker (paper: cash - shorts; Alpaca: margin) funds more than cash - 2 x shorts
            buying_power = max(0.0, cash - 2.0 * ledger.short_market_value())
            positions = ledger.positions()
        else:  # nothing held: the equity is the cash, no shorts (what the ledger's sums give)
            equity, buying_power, positions = cash, max(0.0, cash - 0.0), []
        return self.external.account_view(AccountState(
            equity, cash, buying_power, positions, self.state.get_daily_pnl(), self.starting_equity or equity))
