"""Entries working at a broker that must not fill any more are cancelled there.

A market entry fills within moments of its acceptance; one still working with nothing filled — or only part — is
being held: a short sale IB holds while it locates shares, an order queued behind a trading halt or a broker's own
hold. Two kinds are cancelled at their broker (once each; what filled of one stays, managed as any position):

- one working longer than `[pipeline] max_signal_age_seconds` (120 s) since it could first fill (its acceptance,
  or the next open for one accepted while the market is closed: a daily strategy's entry at the close waits at its
  broker for the open): its signal would be refused as stale by now, and filled later it would trade a market
  that signal never saw (`stale_entry_cancelled`);
- any, while the kill switch is active: no entry leaves the process after a trip, and none already out should
  open a position after it either (`entry_cancelled_by_kill_switch`).

Each is logged and alerted. Exits and protective stops are never cancelled here. The daemon's order checks run
this every 5 s (`Core.check_overdue`).
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import TYPE_CHECKING

import structlog

from pipeline.core.models import OrderKind, OrderType

if TYPE_CHECKING:
    from daemon.core import Core

log = structlog.get_logger("ordergate.daemon")


class WorkingEntries:
    """Cancels the Core's working entries that must not fill any more (see the module docstring)."""

    def __init__(self, core: Core) -> None:
        self.core = core
        self._asked: set[str] = set()  # entries whose cancel was sent (each is asked once)

    async def cancel(self) -> list[str]:
        """One pass: the client order ids whose cancel was sent now."""
        core = self.core
        now = core.clock.now()
        age = timedelta(seconds=core.config.max_signal_age_seconds)
        halted = core.kill_switch.is_active()
        working = core.book.working()
        self._asked &= {r.client_order_id for r in working}
        cancelled = []
        for record in working:
            intent, cid = record.intent, record.client_order_id
            if intent.kind is not OrderKind.ENTRY or intent.order_type is not OrderType.MARKET \
                    or record.accepted_at is None or cid in self._asked:
                continue
            waited = (now - core.calendar.tradable_from(record.accepted_at)).total_seconds()
            if not halted and waited < age.total_seconds():
                continue
            self._asked.add(cid)
            broker = record.venue or intent.broker
            try:
                await asyncio.wait_for(core.router.cancel(cid, broker), core.settings.broker.request_timeout_seconds)
            except Exception as exc:  # filled meanwhile, or the broker is away: the next pass asks again
                self._asked.discard(cid)
                log.warning("working_entry_cancel_failed", client_order_id=cid, error=str(exc))
                continue
            cancelled.append(cid)
            kind = "entry_cancelled_by_kill_switch" if halted else "stale_entry_cancelled"
            why = "the kill switch is active" if halted else "its signal is older than max_signal_age_seconds"
            log.warning(kind, signal_id=intent.signal_id, client_order_id=cid, symbol=intent.symbol, broker=broker,
                        working_seconds=round(waited, 1), filled_qty=record.filled_qty, quantity=intent.quantity)
            await core.alert(kind, f"entry {cid} ({intent.symbol}) still working after {waited:.0f} s with "
                             f"{record.filled_qty:g} of {intent.quantity:g} filled: cancelled ({why})", "warning",
                             client_order_id=cid)
        return cancelled
