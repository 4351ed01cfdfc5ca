"""Entries that stay working too long are cancelled: filled late, they would trade a market the signal never saw.

A market entry fills within moments of its acceptance; one still working with nothing filled — or only part —
after `[pipeline] max_signal_age_seconds` (120 s) is being held: a short sale IB holds while it locates shares, an
order queued behind a trading halt or a broker's own hold. Its signal would be refused as stale by now, so the
order is cancelled at its broker (once; what filled of it stays, and is managed as any position), logged
`stale_entry_cancelled` and alerted. Exits and protective stops are never cancelled here.
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


class StaleEntries:
    """Cancels the Core's working entries older than a signal may be (see the module docstring)."""

    def __init__(self, core: Core) -> None:
        self.core = core
        self._asked: set[str] = set()  # entries whose cancel was sent (each is asked once)

    async def cancel(self) -> list[str]:
        """One pass: the client order ids whose cancel was sent now."""
        core = self.core
        now = core.clock.now()
        age = timedelta(seconds=core.config.max_signal_age_seconds)
        working = core.book.working()
        self._asked &= {r.client_order_id for r in working}
        cancelled = []
        for record in working:
            intent, cid = record.intent, record.client_order_id
            if intent.kind is not OrderKind.ENTRY or intent.order_type is not OrderType.MARKET \
                    or record.accepted_at is None or now - record.accepted_at < age or cid in self._asked:
                continue
            self._asked.add(cid)
            broker = record.venue or intent.broker
            try:
                await asyncio.wait_for(core.router.cancel(cid, broker), core.settings.broker.request_timeout_seconds)
            except Exception as exc:  # filled meanwhile, or the broker is away: the next pass asks again
                self._asked.discard(cid)
                log.warning("stale_entry_cancel_failed", client_order_id=cid, error=str(exc))
                continue
            cancelled.append(cid)
            waited = (now - record.accepted_at).total_seconds()
            log.warning("stale_entry_cancelled", signal_id=intent.signal_id, client_order_id=cid,
                        symbol=intent.symbol, broker=broker, working_seconds=round(waited, 1),
                        filled_qty=record.filled_qty, quantity=intent.quantity)
            await core.alert("stale_entry_cancelled", f"entry {cid} ({intent.symbol}) still working after "
                             f"{waited:.0f} s with {record.filled_qty:g} of {intent.quantity:g} filled: cancelled "
                             f"(its signal is older than max_signal_age_seconds)", "warning", client_order_id=cid)
        return cancelled
