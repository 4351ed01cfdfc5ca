"""OrderValidator: checks every fill and every 'filled' status against the order it claims to belong to.

Flags (each is journaled and alerted by the caller; a real fill is still booked, since the money moved):
ghost fills for orders we never sent, overfills, wrong symbol or side, prices beyond the slippage tolerance of
the decision price, and a 'filled' status with no fill behind it. Accepted market orders that see no fill
within the timeout are handed back for a broker lookup.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from pipeline.core.models import Fill, OrderIntent, OrderStatus, OrderType, OrderUpdate
from pipeline.execution.order_record import OrderBook, OrderState


@dataclass(slots=True)
class FillIssue:
    """One problem with a fill or an order status."""

    kind: str            # ghost_fill | overfill | wrong_symbol | wrong_side | price_slippage | filled_without_fill
    client_order_id: str
    detail: str


@dataclass
class OrderValidator:
    """Validates what the brokers report about the orders we sent; a view over the order book (the records
    hold each order's fills, acceptance and state)."""

    slippage_tolerance: float = 0.02
    fill_timeout_seconds: float = 30.0
    book: OrderBook = field(default_factory=OrderBook)

    def track(self, intent: OrderIntent, *, filled_qty: float = 0.0, status: OrderStatus | None = None) -> None:
        """Watch an order; a restart passes what the journal already holds of it (its fills, its status)."""
        record = self.book.add(intent)
        record.filled_qty = max(record.filled_qty, filled_qty)
        if status is not None and status != OrderStatus.PENDING:
            self.book.apply_status(intent.client_order_id, status)

    def acknowledged(self, client_order_id: str) -> bool:
        """True once a broker has answered for this order (a status past pending, or a fill), in any run."""
        record = self.book.get(client_order_id)
        return record is not None and record.acknowledged

    def filled(self, client_order_id: str) -> float:
        """How much of this order the fills received so far cover."""
        record = self.book.get(client_order_id)
        return record.filled_qty if record else 0.0

    def finish(self, client_order_id: str, state: OrderState = OrderState.REPLACED) -> None:
        """Stop treating this order as working without a broker status (a parent split into child orders)."""
        self.book.transition(client_order_id, state)

    def intent(self, client_order_id: str) -> OrderIntent | None:
        record = self.book.get(client_order_id)
        return record.intent if record else None

    def validate(self, order: OrderIntent | None, fill: Fill) -> list[FillIssue]:
        """Problems with this fill (empty when it is clean). Records the fill on the order's record (once per
        fill id)."""
        coid = fill.client_order_id
        if order is None:
            return [FillIssue("ghost_fill", coid, f"fill {fill.fill_id} of {fill.quantity} {fill.symbol} "
                                                  f"for an order ordergate never sent")]
        issues: list[FillIssue] = []
        record = self.book.add(order)
        self.book.add_fill(record, fill)
        if record.filled_qty > order.quantity + 1e-9:
            issues.append(FillIssue("overfill", coid, f"filled {record.filled_qty} of an order for {order.quantity}"))
        if fill.symbol != order.symbol:
            issues.append(FillIssue("wrong_symbol", coid, f"fill for {fill.symbol}, order was for {order.symbol}"))
        if str(fill.side) != str(order.side):
            issues.append(FillIssue("wrong_side", coid, f"fill side {fill.side}, order side {order.side}"))
        ref = _reference_price(order)
        if ref > 0 and self.slippage_tolerance > 0:
            adverse = (fill.price - ref) / ref if str(order.side) == "buy" else (ref - fill.price) / ref
            if adverse > self.slippage_tolerance:
                issues.append(FillIssue(
                    "price_slippage", coid,
                    f"fill price {fill.price} is {adverse:.2%} worse than {ref} "
                    f"(tolerance {self.slippage_tolerance:.2%})",
                ))
        return issues

    def on_update(self, update: OrderUpdate, now: datetime, fills_seen: float | None = None) -> list[FillIssue]:
        """Move the order's record forward; flag a final 'filled' status that no fill stands behind."""
        record = self.book.get(update.client_order_id)
        if record is None:
            return []
        self.book.apply_status(update.client_order_id, update.status, now)
        seen = record.filled_qty if fills_seen is None else fills_seen
        if update.status == OrderStatus.FILLED and update.filled_qty > seen + 1e-9:
            return [FillIssue("filled_without_fill", update.client_order_id,
                              f"broker says filled {update.filled_qty}, fills received {seen}")]
        return []

    def working(self) -> list[OrderIntent]:
        """Orders sent and not yet in a final state."""
        return [r.intent for r in self.book.working()]

    def mark_accepted(self, client_order_id: str, now: datetime) -> None:
        """The broker answered the submit with an accepted (or filled) order."""
        self.book.accepted(client_order_id, now)

    def overdue(self, now: datetime) -> list[OrderIntent]:
        """Accepted market orders with no fill after the timeout (also those said 'filled' with no fill behind
        it): look these up at the broker. Each is returned at most once per timeout period."""
        return [r.intent for r in self.book.overdue(now, timedelta(seconds=self.fill_timeout_seconds))]


def _reference_price(order: OrderIntent) -> float:
    if order.order_type == OrderType.LIMIT and order.limit_price:
        return order.limit_price
    if order.order_type == OrderType.STOP:
        return 0.0  # a stop fills at the market once touched: through its price on a gap, by design
    return order.reference_price
