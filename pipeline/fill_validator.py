"""OrderValidator: checks every fill and every 'filled' status against the order it claims to belong to.

Flags (each is journaled and alerted by the caller; a real fill is still booked, since the money moved):
ghost fills for orders we never sent, overfills, wrong symbol or side, prices beyond the slippage tolerance of
the decision price, and a 'filled' status with no fill behind it. Accepted market orders that see no fill
within the timeout are handed back for a broker lookup.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from pipeline.models import Fill, OrderIntent, OrderStatus, OrderType, OrderUpdate


@dataclass(slots=True)
class FillIssue:
    """One problem with a fill or an order status."""

    kind: str            # ghost_fill | overfill | wrong_symbol | wrong_side | price_slippage | filled_without_fill
    client_order_id: str
    detail: str


@dataclass(slots=True)
class _OrderTrack:
    intent: OrderIntent
    filled_qty: float = 0.0
    accepted_at: datetime | None = None
    final: bool = False
    status: OrderStatus | None = None
    checked_at: datetime | None = None


@dataclass
class OrderValidator:
    """Tracks sent orders and validates what the brokers report about them."""

    slippage_tolerance: float = 0.02
    fill_timeout_seconds: float = 30.0
    _orders: dict[str, _OrderTrack] = field(default_factory=dict)

    def track(self, intent: OrderIntent, *, filled_qty: float = 0.0, status: OrderStatus | None = None) -> None:
        """Watch an order; a restart passes what the journal already holds of it (its fills, its status)."""
        track = self._orders.setdefault(intent.client_order_id, _OrderTrack(intent))
        track.filled_qty = max(track.filled_qty, filled_qty)
        if status is not None and status != OrderStatus.PENDING:
            track.status = status

    def acknowledged(self, client_order_id: str) -> bool:
        """True once a broker has answered for this order (a status past pending, or a fill), in any run."""
        track = self._orders.get(client_order_id)
        if track is None:
            return False
        return track.accepted_at is not None or track.filled_qty > 0 or \
            (track.status is not None and track.status != OrderStatus.PENDING)

    def filled(self, client_order_id: str) -> float:
        """How much of this order the fills received so far cover."""
        track = self._orders.get(client_order_id)
        return track.filled_qty if track else 0.0

    def finish(self, client_order_id: str) -> None:
        """Stop treating this order as working without a broker status (a parent split into child orders)."""
        track = self._orders.get(client_order_id)
        if track is not None:
            track.final = True

    def intent(self, client_order_id: str) -> OrderIntent | None:
        track = self._orders.get(client_order_id)
        return track.intent if track else None

    def validate(self, order: OrderIntent | None, fill: Fill) -> list[FillIssue]:
        """Problems with this fill (empty when it is clean). Records the fill's quantity against the order."""
        coid = fill.client_order_id
        if order is None:
            return [FillIssue("ghost_fill", coid, f"fill {fill.fill_id} of {fill.quantity} {fill.symbol} "
                                                  f"for an order ordergate never sent")]
        issues: list[FillIssue] = []
        track = self._orders.setdefault(coid, _OrderTrack(order))
        track.filled_qty += fill.quantity
        if track.filled_qty > order.quantity + 1e-9:
            issues.append(FillIssue("overfill", coid, f"filled {track.filled_qty} of an order for {order.quantity}"))
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
        """Track acceptance and finality; flag a final 'filled' status that no fill stands behind."""
        track = self._orders.get(update.client_order_id)
        if track is None:
            return []
        if update.status == OrderStatus.NEW and track.accepted_at is None:
            track.accepted_at = now
        track.status = update.status
        if update.status.is_final:
            track.final = True
        seen = track.filled_qty if fills_seen is None else fills_seen
        if update.status == OrderStatus.FILLED and update.filled_qty > seen + 1e-9:
            return [FillIssue("filled_without_fill", update.client_order_id,
                              f"broker says filled {update.filled_qty}, fills received {seen}")]
        return []

    def working(self) -> list[OrderIntent]:
        """Orders sent and not yet in a final state."""
        return [t.intent for t in self._orders.values() if not t.final]

    def mark_accepted(self, client_order_id: str, now: datetime) -> None:
        """The broker answered the submit with an accepted (or filled) order."""
        track = self._orders.get(client_order_id)
        if track is not None and track.accepted_at is None:
            track.accepted_at = now

    def overdue(self, now: datetime) -> list[OrderIntent]:
        """Accepted market orders with no fill after the timeout (also those said 'filled' with no fill behind
        it): look these up at the broker. Each is returned at most once per timeout period."""
        limit = timedelta(seconds=self.fill_timeout_seconds)
        due = []
        for t in self._orders.values():
            if t.filled_qty or t.accepted_at is None or t.intent.order_type != OrderType.MARKET:
                continue
            if t.final and t.status != OrderStatus.FILLED:
                continue  # canceled, rejected, expired: nothing to find
            if now - t.accepted_at < limit or (t.checked_at is not None and now - t.checked_at < limit):
                continue
            t.checked_at = now
            due.append(t.intent)
        return due

    def forget_final(self) -> None:
        """Drop finished orders (bounded memory)."""
        for coid in [c for c, t in self._orders.items() if t.final]:
            del self._orders[coid]


def _reference_price(order: OrderIntent) -> float:
    if order.order_type == OrderType.LIMIT and order.limit_price:
        return order.limit_price
    if order.order_type == OrderType.STOP:
        return 0.0  # a stop fills at the market once touched: through its price on a gap, by design
    return order.reference_price
