"""Broker positions vs the daemon's own book: ghosts, orphans and quantity mismatches.

Pure comparison; the daemon's reconciler loop applies the policy (alert only, or adopt the broker's truth)
and trips the kill switch when `ReconciliationReport.severe()` says the mismatches are too large *in total*
(four gaps of $4.9k each are $19.6k unexplained, whatever each one is alone).

`MismatchConfirmer` keeps the reconciler from false alarms: a difference counts only when the same difference
is seen on two consecutive checks and its symbol has had no order activity within the grace period (a broker's
positions view can lag its fills by seconds); until then it is *pending*, reported as such, never "OK".

Quantities are compared signed (short = negative), per symbol (several internal positions in one symbol are
summed). Symbols are compared upper-case without spaces, so an IB-padded OCC symbol matches Alpaca's.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from pipeline.core.models import OPTION_MULTIPLIER, BrokerPosition, Position
from pipeline.core.numbers import positive_number
from pipeline.instruments.occ import is_occ

MismatchType = Literal["ghost", "orphan", "quantity_mismatch"]
DEFAULT_NOTIONAL_THRESHOLD = 10_000.0
_QTY_TOLERANCE = 1e-6


@dataclass(slots=True)
class Mismatch:
    """One symbol where the broker and the daemon disagree; `notional` is the size of the gap in dollars."""

    symbol: str
    mismatch_type: MismatchType
    internal_qty: float
    broker_qty: float
    description: str
    notional: float = 0.0       # |broker - internal| × price × multiplier; 0.0 when no price is known
    price: float | None = None

    @property
    def difference(self) -> float:
        """Broker minus internal: what the book must change by to adopt the broker's truth."""
        return self.broker_qty - self.internal_qty


@dataclass(slots=True)
class ReconciliationReport:
    """How many symbols agree, and every disagreement."""

    matches: int
    mismatches: list[Mismatch] = field(default_factory=list)
    notional_threshold: float = DEFAULT_NOTIONAL_THRESHOLD

    @property
    def ok(self) -> bool:
        return not self.mismatches

    def of_type(self, mismatch_type: MismatchType) -> list[Mismatch]:
        return [m for m in self.mismatches if m.mismatch_type == mismatch_type]

    @property
    def unexplained_notional(self) -> float:
        """The dollars of every mismatch together."""
        return sum(m.notional for m in self.mismatches)

    def severe(self, threshold: float | None = None) -> bool:
        """True when the mismatches' total notional exceeds `threshold` (default: the reconciler's threshold)."""
        limit = self.notional_threshold if threshold is None else threshold
        return self.unexplained_notional > limit

    def severe_mismatches(self, threshold: float | None = None) -> list[Mismatch]:
        """The mismatches that make up a severe total (all of them), largest first; [] when not severe."""
        if not self.severe(threshold):
            return []
        return sorted(self.mismatches, key=lambda m: -m.notional)


@dataclass(slots=True)
class _Holding:
    symbol: str
    quantity: float = 0.0
    price: float | None = None
    multiplier: float | None = None


class PositionReconciler:
    """Compares internal positions with broker positions (dicts as in the spec, or Position/BrokerPosition)."""

    def __init__(self, notional_threshold: float = DEFAULT_NOTIONAL_THRESHOLD) -> None:
        if not notional_threshold >= 0:
            raise ValueError(f"notional_threshold: must be >= 0, got {notional_threshold!r}")
        self.notional_threshold = notional_threshold

    def reconfigure(self, notional_threshold: float) -> None:
        """Judge unexplained mismatches against a new kill threshold from the next reconciliation on."""
        self.notional_threshold = notional_threshold

    def reconcile(self, internal_positions: Iterable[Any], broker_positions: Iterable[Any]) -> ReconciliationReport:
        """Match by symbol: equal signed quantity = match; broker only = ghost; internal only = orphan."""
        internal = _aggregate(internal_positions, "internal_positions")
        broker = _aggregate(broker_positions, "broker_positions")
        report = ReconciliationReport(matches=0, notional_threshold=self.notional_threshold)
        for key in sorted(set(internal) | set(broker)):
            mine = internal.get(key)
            theirs = broker.get(key)
            mine_qty = mine.quantity if mine else 0.0
            their_qty = theirs.quantity if theirs else 0.0
            if abs(mine_qty - their_qty) <= _QTY_TOLERANCE:
                if abs(mine_qty) > _QTY_TOLERANCE:
                    report.matches += 1
                continue
            report.mismatches.append(_mismatch(mine, theirs, mine_qty, their_qty))
        return report


@dataclass(slots=True)
class Judgement:
    """What one check's mismatches amount to: confirmed (they count), pending (not judged yet, and why)."""

    confirmed: list[Mismatch] = field(default_factory=list)
    newly_confirmed: list[Mismatch] = field(default_factory=list)  # confirmed at this check for the first time
    pending: list[tuple[Mismatch, str]] = field(default_factory=list)


class MismatchConfirmer:
    """Two consecutive sightings of the same difference, outside the grace period of the symbol's last order
    activity, before a difference counts."""

    def __init__(self, grace_seconds: float) -> None:
        self.grace = timedelta(seconds=grace_seconds)
        self._seen: dict[str, tuple[tuple[float, float], int]] = {}  # symbol -> (quantities, checks in a row)
        self._orders: dict[tuple[str, str], tuple[str, float]] = {}  # (broker, id) -> (symbol, filled qty)
        self.order_activity: dict[str, datetime] = {}

    def reconfigure(self, grace_seconds: float) -> None:
        """A new grace period from the next check on (a SIGHUP reload); sightings so far are kept."""
        self.grace = timedelta(seconds=grace_seconds)

    def observe_orders(self, broker: str, orders: Iterable[Any], now: datetime) -> None:
        """The broker's open orders (read before its positions): an order that appeared, filled some more or
        went away since the last check is order activity on its symbol now."""
        current = {(broker, o.client_order_id): (o.symbol, float(o.filled_qty or 0.0)) for o in orders}
        previous = {k: v for k, v in self._orders.items() if k[0] == broker}
        for key, (symbol, filled) in current.items():
            if previous.get(key) != (symbol, filled):
                self.order_activity[symbol] = now
        for key, (symbol, _filled) in previous.items():
            if key not in current:
                self.order_activity[symbol] = now
                del self._orders[key]
        self._orders.update(current)

    def last_activity(self, symbol: str, now: datetime, activity: Mapping[str, datetime]) -> datetime | None:
        """The symbol's last order activity when it is within the grace period (its figures may lag), else None."""
        last = max((t for t in (activity.get(symbol), self.order_activity.get(symbol)) if t is not None),
                   default=None)
        return last if last is not None and now - last < self.grace else None

    def judge(self, mismatches: Iterable[Mismatch], now: datetime,
              activity: Mapping[str, datetime]) -> Judgement:
        """Sort this check's mismatches into confirmed and pending; remembers them for the next check."""
        out = Judgement()
        seen: dict[str, tuple[tuple[float, float], int]] = {}
        for m in mismatches:
            last = self.last_activity(m.symbol, now, activity)
            if last is not None:
                out.pending.append((m, f"order activity {max(0.0, (now - last).total_seconds()):.0f}s ago, "
                                       f"within the {self.grace.total_seconds():g}s grace period"))
                continue  # the streak starts again once the symbol is quiet
            quantities = (round(m.internal_qty, 6), round(m.broker_qty, 6))
            before = self._seen.get(m.symbol)
            count = before[1] + 1 if before is not None and before[0] == quantities else 1
            seen[m.symbol] = (quantities, count)
            if count >= 2:
                out.confirmed.append(m)
                if count == 2:
                    out.newly_confirmed.append(m)
            else:
                out.pending.append((m, "first sighting: counts if the next check sees it too"))
        self._seen = seen
        return out


def _mismatch(mine: _Holding | None, theirs: _Holding | None, mine_qty: float, their_qty: float) -> Mismatch:
    symbol = (theirs or mine).symbol  # type: ignore[union-attr]
    price = _first_price(theirs, mine)
    multiplier = _multiplier(mine, theirs)
    gap = abs(their_qty - mine_qty)
    notional = gap * price * multiplier if price is not None else 0.0
    priced = f"${notional:,.2f}" if price is not None else "unknown price"
    if abs(mine_qty) <= _QTY_TOLERANCE:
        kind: MismatchType = "ghost"
        text = f"broker holds {_fmt(their_qty)} {symbol} that the daemon does not know ({priced})"
    elif abs(their_qty) <= _QTY_TOLERANCE:
        kind = "orphan"
        text = f"daemon holds {_fmt(mine_qty)} {symbol} that the broker does not report ({priced})"
    else:
        kind = "quantity_mismatch"
        flipped = " (opposite sides)" if (mine_qty > 0) != (their_qty > 0) else ""
        text = f"{symbol}: daemon {_fmt(mine_qty)} vs broker {_fmt(their_qty)}{flipped}, gap {_fmt(gap)} ({priced})"
    return Mismatch(symbol, kind, mine_qty, their_qty, text, notional, price)


def _fmt(qty: float) -> str:
    return f"{qty:+g}"


def _first_price(*holdings: _Holding | None) -> float | None:
    for holding in holdings:
        if holding is not None and holding.price is not None:
            return holding.price
    return None


def _multiplier(*holdings: _Holding | None) -> float:
    for holding in holdings:
        if holding is not None and holding.multiplier is not None:
            return holding.multiplier
    symbol = next(h.symbol for h in holdings if h is not None)
    return OPTION_MULTIPLIER if is_occ(symbol) else 1.0


def _key(symbol: str) -> str:
    return symbol.replace(" ", "").upper()


def _aggregate(positions: Iterable[Any], name: str) -> dict[str, _Holding]:
    if positions is None:
        raise ValueError(f"{name}: expected a list of positions, got None")
    book: dict[str, _Holding] = {}
    for index, item in enumerate(positions):
        symbol, qty, price, multiplier = _read(item, f"{name}[{index}]")
        key = _key(symbol)
        holding = book.get(key)
        if holding is None:
            holding = book[key] = _Holding(symbol=symbol)
        holding.quantity += qty
        if holding.price is None and price is not None:
            holding.price = price
        if holding.multiplier is None and multiplier is not None:
            holding.multiplier = multiplier
    return book


def _read(item: Any, where: str) -> tuple[str, float, float | None, float | None]:
    """(symbol, signed quantity, price, multiplier) of one position in any accepted shape."""
    if isinstance(item, Position):
        qty = _signed(item.shares, item.direction, where)
        return item.symbol or item.ticker, qty, positive_number(item.current_price or item.entry_price), item.multiplier
    if isinstance(item, BrokerPosition):
        price = item.market_price if item.market_price else item.avg_price
        return item.symbol, _number(item.quantity, f"{where}.quantity"), positive_number(price), None
    if isinstance(item, Mapping):
        return _read_mapping(item, where)
    raise ValueError(f"{where}: expected a dict, Position or BrokerPosition, got {type(item).__name__}")


def _read_mapping(item: Mapping[str, Any], where: str) -> tuple[str, float, float | None, float | None]:
    symbol = item.get("symbol") or item.get("ticker")
    if not isinstance(symbol, str) or not symbol.strip():
        raise ValueError(f"{where}.symbol: must be a non-empty string, got {symbol!r}")
    qty_key = next((k for k in ("shares", "quantity", "qty") if k in item), None)
    if qty_key is None:
        raise ValueError(f"{where}.shares: missing (also accepted: quantity, qty)")
    raw = _number(item[qty_key], f"{where}.{qty_key}")
    direction = item.get("direction")
    qty = raw if direction is None else _signed(raw, str(direction), where)
    price = None
    for key in ("market_price", "current_price", "price", "avg_price", "entry_price"):
        if item.get(key):
            price = positive_number(item[key])
            break
    multiplier = item.get("multiplier")
    return symbol.strip(), qty, price, float(multiplier) if multiplier else None


def _signed(shares: Any, direction: str, where: str) -> float:
    value = abs(_number(shares, f"{where}.shares"))
    if direction == "long":
        return value
    if direction == "short":
        return -value
    raise ValueError(f"{where}.direction: must be 'long' or 'short', got {direction!r}")


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool):
        raise ValueError(f"{where}: must be a number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise ValueError(f"{where}: must be finite, got {value!r}")
    return number
