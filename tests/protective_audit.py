"""Audit checks of issue 13 over a paper broker's book, for the protective-stop tests and the chaos suite.

- `protection_gaps`: every open position is covered exactly once by its live protective stops (`og-stop` orders
  of the opposite side: one per strategy holding the symbol, together for the broker's whole quantity), and no
  stop rests without a position behind it.
- `oversold`: no reduce-only fill (an exit, a protective stop) took a position past zero (a stop firing after the
  daemon's own exit sold would leave the long short).
"""

from __future__ import annotations

from adapters.paper import PaperBroker
from pipeline.core.models import OrderStatus, OrderType
from pipeline.execution.protective_stops import STOP_PREFIX

_EPS = 1e-9
_LIVE = (OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED)


def protection_gaps(book: PaperBroker) -> list[str]:
    """What is wrong with the book's protective stops (empty when every position is covered once, exactly)."""
    problems = []
    stops: dict[str, list[tuple[str, float]]] = {}
    for order in book._orders.values():
        if order.order_type == OrderType.STOP and order.status in _LIVE \
                and order.client_order_id.startswith(STOP_PREFIX):
            signed = -(order.quantity - order.filled_qty) if str(order.side) == "sell" else \
                order.quantity - order.filled_qty
            stops.setdefault(order.symbol, []).append((order.client_order_id, signed))
    held = {p.symbol: p.quantity for p in book.positions() if abs(p.quantity) > _EPS}
    for symbol, qty in sorted(held.items()):
        resting = stops.get(symbol, [])
        covered = -sum(signed for _, signed in resting)
        if not resting:
            problems.append(f"{symbol}: position {qty:g} has 0 resting stops")
        elif abs(covered - qty) > _EPS:
            names = ", ".join(coid for coid, _ in resting)
            problems.append(f"{symbol}: position {qty:g}, stops {names} cover {covered:g}")
    for symbol, resting in sorted(stops.items()):
        if symbol not in held:
            problems.append(f"{symbol}: stop {resting[0][0]} rests without a position")
    return problems


def oversold(book: PaperBroker) -> list[str]:
    """Reduce-only fills (exits, protective stops) that took a position past zero: a position sold twice."""
    reduce_only = {o.client_order_id for o in book._orders.values() if o.reduce_only}
    running: dict[str, float] = {}
    problems = []
    for fill in book.all_fills():
        before = running.get(fill.symbol, 0.0)
        after = before + (fill.quantity if str(fill.side) == "buy" else -fill.quantity)
        running[fill.symbol] = after
        past_zero = abs(after) > _EPS and (abs(before) < _EPS or (before > 0) != (after > 0))
        if fill.client_order_id in reduce_only and past_zero:
            problems.append(f"{fill.symbol}: {before:g} -> {after:g} by {fill.client_order_id}")
    return problems
