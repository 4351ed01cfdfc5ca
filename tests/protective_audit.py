"""Audit checks of issue 13 over a paper broker's book, for the protective-stop tests and the chaos suite.

- `protection_gaps`: every open position rests exactly one live protective stop (an `og-stop` order of the
  opposite side for the position's whole quantity), and no stop rests without a position behind it.
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
        if len(resting) != 1:
            problems.append(f"{symbol}: position {qty:g} has {len(resting)} resting stops")
        elif abs(resting[0][1] + qty) > _EPS:
            problems.append(f"{symbol}: position {qty:g}, stop {resting[0][0]} covers {-resting[0][1]:g}")
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
