"""Options that expired in the book: booked out at 0 once their broker no longer holds them.

The daemon closes an option at the cutoff of its last session (the EOD rule). One still in the ledger after that
session's close (the daemon was down then, or the exit was refused) is taken out of the account by the broker
overnight: expired worthless, or exercised into shares of the underlying (those show as a position ordergate did
not open: external, counted as risk). Reconciliation then sees a position ordergate holds and the broker lacks;
when the symbol is an option past its last close (pipeline.positions.expiry) and no order of ours on it is
unfinished, that is an expiry, not a lost position: each strategy's position in it is closed by an exit of its
own (`option_expired`, journaled before it is applied, like any order) filled at 0, so its premium is the
trade's loss, a restart rebuilds the same book from the journal, and an `option_expired` alert says so.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import date, datetime
from typing import TYPE_CHECKING

import structlog

from pipeline.core.models import (
    AssetClass,
    ExitType,
    Fill,
    InstrumentType,
    OrderIntent,
    OrderKind,
    OrderStatus,
    OrderUpdate,
    Position,
    client_order_id_for,
)
from pipeline.positions.expiry import expired_by
from pipeline.positions.reconciler import Mismatch

if TYPE_CHECKING:
    from daemon.core import Core

log = structlog.get_logger("ordergate.daemon")


class Expiries:
    """Takes the expired options out of a reconciliation check's differences and books them (module docstring)."""

    def __init__(self, core: Core) -> None:
        self.core = core

    async def take(self, mismatches: list[Mismatch], now: datetime,
                   unfinished: Callable[[str], Awaitable[bool]]) -> list[Mismatch]:
        """Book the expired options among `mismatches`; returns the other differences. `unfinished(symbol)`: an
        order of ours on it has not settled (then the difference may be that order's, and it is judged as any)."""
        rest = []
        for m in mismatches:
            expiry = expired_by(m.symbol, now, self.core.calendar.session) \
                if m.broker_qty == 0 and m.internal_qty != 0 else None
            held = self.core.ledger.positions_in(m.symbol) if expiry is not None else []
            # a booking cut short (down between its journaled exit and its fill) is finished, not judged again
            begun = any(r.intent.symbol == m.symbol and r.intent.exit_type is ExitType.OPTION_EXPIRED
                        for r in self.core.book.working())
            if expiry is None or not held or (not begun and await unfinished(m.symbol)):
                rest.append(m)
                continue
            try:
                for position in held:
                    await self._book(position, expiry, now)
            except Exception as exc:  # a journal that cannot write now (a full disk): booked at a later check
                log.error("option_expiry_not_booked", symbol=m.symbol, error=str(exc))
                rest.append(m)
        return rest

    async def _book(self, position: Position, expiry: date, now: datetime) -> None:
        core = self.core
        qty = abs(position.shares)
        broker = position.broker or core.settings.broker.primary
        side = position.closing_side
        intent = OrderIntent(
            client_order_id=client_order_id_for(position.signal_id or position.symbol, f"expiry{expiry:%Y%m%d}"),
            signal_id=position.signal_id or "", symbol=position.symbol, side=side, quantity=qty,
            asset_class=AssetClass.OPTION, kind=OrderKind.EXIT, ticker=position.ticker,
            direction=position.direction, instrument_type=InstrumentType.OPTIONS, reference_price=0.0,
            signal_type=position.signal_type, timeframe=position.timeframe, broker=broker, created_at=now,
            exit_type=ExitType.OPTION_EXPIRED, strategy=position.strategy,
        )
        cid = intent.client_order_id
        if cid not in core.book:  # journaled first: an exit the journal lacks is never one the book holds
            if core.journal is not None:
                await core.journal.record_order_intent(intent, broker, now)
            core.lifecycle.register_intent(intent)
        fill = Fill(fill_id=f"expiry:{position.symbol}:{expiry.isoformat()}:{position.strategy}", client_order_id=cid,
                    symbol=position.symbol, side=side, quantity=qty, price=0.0, timestamp=now, broker=broker)
        await core.lifecycle.on_broker_event(fill)
        await core.lifecycle.on_broker_event(OrderUpdate(cid, OrderStatus.FILLED, broker, None, position.symbol, side,
                                                         filled_qty=qty, filled_avg_price=0.0, timestamp=now))
        premium = qty * position.entry_price * position.multiplier
        log.warning("option_expired", symbol=position.symbol, strategy=position.strategy, quantity=qty,
                    expiry=expiry.isoformat(), client_order_id=cid, premium=round(premium, 2))
        await core.alert("option_expired", f"{position.symbol}: {qty:g} contract(s) expired {expiry:%Y-%m-%d} and are "
                         f"gone from {broker}: booked out at 0 (premium {premium:,.2f}); shares from an exercise "
                         "show as an external position", "warning", symbol=position.symbol)
