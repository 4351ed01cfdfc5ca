"""The account as the risk gate sees it: the ledger's cash and positions, the external positions (real risk,
never traded), the state file's daily P&L, and the starting equity the broker reported at start."""

from __future__ import annotations

from datetime import datetime

from pipeline.core.models import AccountSnapshot, AccountState
from pipeline.positions.external import ExternalBook
from pipeline.positions.ledger import Ledger
from pipeline.safety.state_manager import PersistentStateManager


class AccountBook:
    """One owner of the account view; the orchestrator and the lifecycle read it, the daemon syncs it."""

    def __init__(self, ledger: Ledger, external: ExternalBook, state: PersistentStateManager) -> None:
        self.ledger = ledger
        self.external = external
        self.state = state
        self.starting_equity = 0.0

    def sync(self, account: AccountSnapshot, fills_through: datetime | None = None) -> None:
        """Cash and starting equity from the broker's account (its cash already reflects every fill, ours and
        anyone's: every one up to `fills_through`, broker time, when known)."""
        self.ledger.cash = account.cash
        self.external.reset_cash(fills_through)
        self.starting_equity = account.equity

    def comparable_cash(self) -> float:
        """The ledger's cash as the broker's should read: with the hand trades' cash the external book carries."""
        return self.ledger.cash + self.external.cash_adjustment

    def take_cash(self, cash: float, fills_through: datetime | None = None) -> None:
        """The broker's cash, read during the run (a drift confirmed by `cash_drift`): the ledger's from now on;
        the starting equity stays the start's."""
        self.ledger.cash = cash
        self.external.reset_cash(fills_through)

    def get_starting_equity(self) -> float:
        """The equity the broker reported at start (0 until synced)."""
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
