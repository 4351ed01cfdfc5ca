"""In-flight entry orders: the exposure, position slots and buying power they hold until they settle.

Risk decisions are made one at a time; an approved intent reserves its notional (at the market price it was
decided on, plus the slippage its fill is expected to pay) and its ticker's slot at once, so a burst of
signals can never approve more than the limits allow while orders are still travelling.
Each fill moves its part from the reservation to the ledger (the reservation keeps only the unfilled rest, so
nothing is counted twice between a fill and its order's final status); what is left is released when the
order reaches a final state (filled, rejected, canceled, expired), except for the part that filled and whose
fill events have not arrived yet (a status can overtake them).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from pipeline.models import AccountState, Direction, OrderIntent, Position


@dataclass(slots=True)
class Reservation:
    """What one in-flight entry holds: its quantity not yet filled, at the intent's reference price."""

    client_order_id: str
    ticker: str
    symbol: str
    direction: Direction | str
    intent: OrderIntent
    remaining: float
    finished_at: datetime | None = None  # final status seen, fills still awaited

    @property
    def notional(self) -> float:
        quantity = abs(self.intent.quantity)
        return self.intent.notional * self.remaining / quantity if quantity else 0.0


class ReservationBook:
    """The in-flight entries, folded into the account view the risk gate sees."""

    def __init__(self, slippage: float = 0.0) -> None:
        self._by_id: dict[str, Reservation] = {}
        self.slippage = slippage  # the fill is expected this far (fraction) from the reference price

    def reserve(self, intent: OrderIntent) -> Reservation:
        reservation = Reservation(
            intent.client_order_id, intent.ticker or intent.symbol, intent.symbol, intent.direction, intent,
            abs(intent.quantity),
        )
        self._by_id[intent.client_order_id] = reservation
        return reservation

    def filled(self, client_order_id: str, quantity: float) -> None:
        """`quantity` of this entry filled and is in the ledger now: the reservation keeps only the rest."""
        reservation = self._by_id.get(client_order_id)
        if reservation is None:
            return
        reservation.remaining -= abs(quantity)
        if reservation.remaining <= 1e-9:
            del self._by_id[client_order_id]

    def release(
        self, client_order_id: str, filled_qty: float | None = None, fully_filled: bool = False,
        now: datetime | None = None,
    ) -> Reservation | None:
        """The order reached a final state. What it filled (`filled_qty`, cumulative; all of it when
        `fully_filled` and no quantity is given) but the ledger has not seen yet stays reserved until those
        fills arrive (a status can overtake its fill events) or `expire` gives up on them; the rest is released."""
        reservation = self._by_id.get(client_order_id)
        if reservation is None:
            return None
        quantity = abs(reservation.intent.quantity)
        applied = quantity - reservation.remaining
        if filled_qty is not None:
            filled = min(quantity, abs(filled_qty))
        else:
            filled = quantity if fully_filled else applied
        if filled - applied > 1e-9:
            reservation.remaining = filled - applied
            reservation.finished_at = reservation.finished_at or now
            return None
        return self._by_id.pop(client_order_id)

    def expire(self, now: datetime, grace: timedelta) -> list[Reservation]:
        """Release what finished orders still hold for fills that did not arrive within `grace` (a lost fill is
        for reconciliation to find; a reservation must not block the ticker for ever). Returns them."""
        stale = [r for r in self._by_id.values() if r.finished_at is not None and now - r.finished_at >= grace]
        for reservation in stale:
            del self._by_id[reservation.client_order_id]
        return stale

    def __contains__(self, client_order_id: str) -> bool:
        return client_order_id in self._by_id

    def __len__(self) -> int:
        return len(self._by_id)

    def reserved_notional(self) -> float:
        return sum(r.notional for r in self._by_id.values())

    def reserved_buying_power(self) -> float:
        """What the in-flight entries will cost when they fill: their notional plus the expected slippage."""
        return self.reserved_notional() * (1.0 + self.slippage)

    def items(self) -> list[Reservation]:
        return list(self._by_id.values())

    def account_view(self, account: AccountState) -> AccountState:
        """The account as if every in-flight entry had filled at its reference price.

        Reserved entries appear as positions (slots, duplicate/conflict checks, exposure) and their notional plus
        the expected slippage is taken out of cash and buying power. A ticker both held and reserved counts once
        per order: conservative.
        """
        if not self._by_id:
            return account
        extra = [
            Position(
                ticker=r.ticker, direction=r.direction, entry_price=r.intent.reference_price,
                current_price=r.intent.reference_price, shares=r.remaining,
                stop_loss=r.intent.stop_loss or r.intent.reference_price, symbol=r.symbol,
                signal_type=r.intent.signal_type, timeframe=r.intent.timeframe,
                instrument_type=r.intent.instrument_type, signal_id=r.intent.signal_id,
                multiplier=100.0 if r.intent.asset_class == "option" else 1.0,
            )
            for r in self._by_id.values()
        ]
        reserved = self.reserved_buying_power()
        return AccountState(
            equity=account.equity,
            cash=account.cash - reserved,
            buying_power=account.buying_power - reserved,
            open_positions=[*account.open_positions, *extra],
            daily_pnl=account.daily_pnl,
            starting_equity=account.starting_equity,
        )
