"""The ledger's cash kept to the broker's through a long run (pipeline.positions.cash_drift decides when).

At a reconciliation check that is quiet — one broker (its cash is the ledger's), every position agreeing, none
pending, no order activity on any symbol within `[reconcile] grace_seconds` nor within QUIET_SECONDS (IB's
account figures are refreshed every three minutes: a cash read sooner after a fill may not hold it yet, and two
such reads would take that stale figure) — the broker's cash is read and
compared with the ledger's (plus the hand trades' cash the external book carries). The same difference seen on
two checks in a row, the ledger unchanged between them, is taken: the ledger's cash becomes the broker's
(dividends, fees, interest, a deposit or a withdrawal), logged as `cash_resynced`; above 1 % of the equity it is
also alerted. With a fallback broker the ledger's cash spans both accounts and is left as it is.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import structlog

from pipeline.positions.cash_drift import CashDrift
from pipeline.positions.reconciler import MismatchConfirmer

if TYPE_CHECKING:
    from daemon.core import Core

log = structlog.get_logger("ordergate.daemon")
QUIET_SECONDS = 300.0  # no order activity this recent (nor within the grace period) before the cash is read


class CashSync:
    """Takes the broker's cash into the ledger once a drift is confirmed (see the module docstring)."""

    def __init__(self, core: Core, confirmer: MismatchConfirmer) -> None:
        self.core = core
        self.confirmer = confirmer  # reconciliation's: its grace and the order activity its checks saw
        self.drift = CashDrift()

    def _quiet(self, now: datetime, in_agreement: bool, unread: set[str]) -> str | None:
        """The broker whose cash can be taken at this check, or None."""
        core = self.core
        if len(core.brokers) != 1 or not in_agreement:
            return None
        (name, broker), = core.brokers.items()
        if name in unread or not broker.is_connected():
            return None
        grace = max(self.confirmer.grace, timedelta(seconds=QUIET_SECONDS))
        activity = (*core.book.activity.values(), *self.confirmer.order_activity.values())
        if any(now - t < grace for t in activity):
            return None
        return name

    async def check(self, now: datetime, in_agreement: bool, unread: set[str],
                    through: dict[str, datetime | None]) -> float:
        """One check's part: the drift taken now (0.0 when none). `in_agreement`: the positions agreed and nothing
        was pending; `unread`: brokers whose figures could not be read; `through`: per broker, the broker time up
        to which this check's figures hold every fill (`daemon.broker_time.fills_through`)."""
        name = self._quiet(now, in_agreement, unread)
        if name is None:
            self.drift.forget()
            return 0.0
        core = self.core
        try:
            account = await asyncio.wait_for(core.brokers[name].get_account(),
                                             core.settings.broker.request_timeout_seconds)
        except Exception as exc:  # unread now: compared at the next quiet check
            log.warning("cash_unread", broker=name, error=str(exc))
            self.drift.forget()
            return 0.0
        drift = self.drift.observe(float(account.cash), core.account.comparable_cash())
        if drift is None:
            return 0.0
        core.account.take_cash(drift.broker_cash, through.get(name))
        equity = core.account.account_state().equity
        log.info("cash_resynced", broker=name, ledger_cash=round(drift.ledger_cash, 2),
                 broker_cash=round(drift.broker_cash, 2), drift=round(drift.amount, 2))
        if drift.large(equity):
            await core.alert("cash_drift", f"{name}'s cash moved {drift.amount:+,.2f} without a fill of ours "
                             f"(a deposit, withdrawal, dividend or fee?): the ledger now holds "
                             f"{drift.broker_cash:,.2f}", "warning")
        return drift.amount
