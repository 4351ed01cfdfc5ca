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

from pipeline.core.models import AccountState, Direction, OrderIntent, Position, contract_multiplier
from pipeline.execution.order_record import OrderBook, OrderRecord


@dataclass(slots=True, frozen=True)
class Reservation:
    """What one in-flight entry holds: its quantity not yet filled, at the intent's reference price (a view of
    its order record)."""

    record: OrderRecord
    held: float | None = None  # the quantity it held when it was released (expire)

    @property
    def client_order_id(self) -> str:
        return self.record.client_order_id

    @property
    def intent(self) -> OrderIntent:
        return self.record.intent

    @property
    def ticker(self) -> str:
        return self.intent.ticker or self.intent.symbol

    @property
    def symbol(self) -> str:
        return self.intent.symbol

    @property
    def direction(self) -> Direction | str:
        return self.intent.direction

    @property
    def remaining(self) -> float:
        if self.held is not None:
            return self.held
        return self.record.reserved or 0.0

    @property
    def finished_at(self) -> datetime | None:
        return self.record.reserved_until_fills

    @property
    def notional(self) -> float:
        quantity = abs(self.intent.quantity)
        return self.intent.notional * self.remaining / quantity if quantity else 0.0


class ReservationBook:
    """The in-flight entries, folded into the account view the risk gate sees (a view over the order book)."""

    def __init__(self, slippage: float = 0.0, book: OrderBook | None = None) -> None:
        self.book = book if book is not None else OrderBook()
        self.slippage = slippage  # the fill is expected this far (fraction) from the reference price

    def reserve(self, intent: OrderIntent) -> Reservation:
        return Reservation(self.book.reserve(intent))

    def filled(self, client_order_id: str, quantity: float) -> None:
        """`quantity` of this entry filled and is in the ledger now: the reservation keeps only the rest."""
        self.book.entry_filled(client_order_id, quantity)

    def release(
        self, client_order_id: str, filled_qty: float | None = None, fully_filled: bool = False,
        now: datetime | None = None,
    ) -> Reservation | None:
        """The order reached a final state. What it filled (`filled_qty`, cumulative; all of it when
        `fully_filled` and no quantity is given) but the ledger has not seen yet stays reserved until those
        fills arrive (a status can overtake its fill events) or `expire` gives up on them; the rest is released."""
        record = self.book.get(client_order_id)
        held = record.reserved if record is not None else None
        if self.book.release(client_order_id, filled_qty, fully_filled, now) is None:
            return None
        return Reservation(record, held)  # type: ignore[arg-type]

    def expire(self, now: datetime, grace: timedelta) -> list[Reservation]:
        """Release what finished orders still hold for fills that did not arrive within `grace` (a lost fill is
        for reconciliation to find; a reservation must not block the ticker for ever). Returns them."""
        return [Reservation(record, held) for record, held in self.book.expire(now, grace)]

    def __contains__(self, client_order_id: str) -> bool:
        return self.book.is_reserved(client_order_id)

    def __len__(self) -> int:
        return len(self.book.reserved())

    def reserved_notional(self) -> float:
        return sum(r.reserved_notional for r in self.book.reserved())

    def reserved_buying_power(self) -> float:
        """What the in-flight entries will cost when they fill: their notional plus the expected slippage."""
        return self.reserved_notional() * (1.0 + self.slippage)

    def items(self) -> list[Reservation]:
        return [Reservation(r) for r in self.book.reserved()]

    def account_view(self, account: AccountState) -> AccountState:
        """The account as if every in-flight entry had filled at its reference price.

        Reserved entries appear as positions (slots, duplicate/conflict checks, exposure) and their notional plus
        the expected slippage is taken out of cash and buying power. A ticker both held and reserved counts once
        per order: conservative.
        """
        records = self.book.reserved()
        if not records:
            return account
        extra = []
        for r in records:
            intent = r.intent
            extra.append(Position(
                ticker=intent.ticker or intent.symbol, direction=intent.direction, entry_price=intent.reference_price,
                current_price=intent.reference_price, shares=r.reserved or 0.0,
                stop_loss=intent.stop_loss or intent.reference_price, symbol=intent.symbol,
                signal_type=intent.signal_type, timeframe=intent.timeframe,
                instrument_type=intent.instrument_type, signal_id=intent.signal_id,
                multiplier=contract_multiplier(intent.asset_class), strategy=intent.strategy,
            ))
        reserved = self.reserved_buying_power()
        return AccountState(
            equity=account.equity,
            cash=account.cash - reserved,
            buying_power=account.buying_power - reserved,
            open_positions=[*account.open_positions, *extra],
            daily_pnl=account.daily_pnl,
            starting_equity=account.starting_equity,
        )
