"""External positions: what a broker holds that ordergate did not open (a hand trade, another program).

They are real risk, so the risk gate sees them (`ExternalBook.account_view` folds them into the AccountState,
as `ReservationBook.account_view` does for in-flight entries), and `status`/`positions` show them; they are not
in the ledger, so the exits and `flatten` never trade them (`[reconcile] external = "adopt"` moves them into the
ledger instead).

Quantities are the broker's: set by a confirmed reconciliation, and moved at once by a fill whose client order id
ordergate never made (deduplicated by fill id), so the gate sees a hand trade before the next check. A fill that
arrives after the broker's figures already held it (a stream lagging behind REST, a fill redelivered after a
restart) is counted once: each confirmed quantity, and the cash taken from the account, says up to which broker
time it holds every fill (`fills_through`), and a fill stamped at or before that moves nothing it covers. Broker-only
quantities that reconciliation has not judged yet are held as *pending* and counted by the gate too (a lagging
view must not open a second position beside a real one). The broker's cash moved with a hand trade and the
ledger's did not: `cash_adjustment` carries the difference until the next account sync.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from fractions import Fraction
from typing import Any

from pipeline.core.models import OPTION_MULTIPLIER, AccountState, Direction, Fill, Position, Side
from pipeline.instruments.occ import is_occ
from pipeline.positions.splits import rescaled_quantity

_SEEN_FILLS = 10_000
JOURNAL_KEY = "external"  # the journal's kv key of the confirmed external positions (`ExternalBook.to_json`)


@dataclass(slots=True)
class ExternalPosition:
    """One symbol's external quantity (signed: negative = short) at one broker."""

    symbol: str
    quantity: float
    avg_price: float
    broker: str = ""
    since: datetime | None = None

    def as_position(self, price: float | None, origin: str = "external") -> Position:
        mark = price if price else self.avg_price
        return Position(
            ticker=self.symbol, direction=Direction.LONG if self.quantity > 0 else Direction.SHORT,
            entry_price=self.avg_price, current_price=mark, shares=abs(self.quantity), stop_loss=self.avg_price,
            entry_time=self.since, symbol=self.symbol, broker=self.broker, origin=origin,
            multiplier=OPTION_MULTIPLIER if is_occ(self.symbol) else 1.0,
        )


class ExternalBook:
    """Positions in the account that are not ordergate's: counted as risk, shown, never traded."""

    def __init__(self, price_lookup: Callable[[str], float | None] | None = None) -> None:
        self._held: dict[str, ExternalPosition] = {}
        self._pending: dict[str, ExternalPosition] = {}
        self._fills: OrderedDict[tuple[str, str], None] = OrderedDict()
        # symbol -> the broker time up to which its last confirmed quantity holds every fill (see the module)
        self._through: OrderedDict[str, datetime] = OrderedDict()
        self._cash_through: datetime | None = None  # the same for the cash the ledger took from the broker
        self._price = price_lookup or (lambda _symbol: None)
        self.cash_adjustment = 0.0

    # -- changes --------------------------------------------------------------------------------------
    def apply_fill(self, fill: Fill) -> bool:
        """A fill of an order someone else placed; False when this fill was already applied. What the broker's
        figures already held (the fill stamped at or before their `fills_through`) it leaves as it is."""
        key = (fill.broker, fill.fill_id)
        if key in self._fills:
            return False
        self._fills[key] = None
        if len(self._fills) > _SEEN_FILLS:
            self._fills.popitem(last=False)
        signed = fill.quantity if fill.side == Side.BUY else -fill.quantity
        if not held_by(fill.timestamp, self._cash_through):
            self.cash_adjustment -= signed * fill.price
        if held_by(fill.timestamp, self._through.get(fill.symbol)):
            return True  # the symbol's confirmed quantity holds it already
        held = self._held.get(fill.symbol)
        old = held.quantity if held else 0.0
        new = old + signed
        if abs(new) < 1e-9:
            self._held.pop(fill.symbol, None)
        elif held is None or (old > 0) != (new > 0):
            self._held[fill.symbol] = ExternalPosition(fill.symbol, new, fill.price, fill.broker, fill.timestamp)
        else:
            if abs(new) > abs(old):
                held.avg_price = (held.avg_price * abs(old) + fill.price * abs(signed)) / abs(new)
            held.quantity = new
        self._pending.pop(fill.symbol, None)
        return True

    def set(self, symbol: str, quantity: float, avg_price: float, broker: str, now: datetime,
            fills_through: datetime | None = None) -> None:
        """The broker's truth for this symbol's external part (0 removes it); `fills_through`: the broker time
        up to which that truth holds every fill (None: not known, a fill arriving later is counted on top)."""
        self._note_through(symbol, fills_through)
        self._pending.pop(symbol, None)
        if abs(quantity) < 1e-9:
            self._held.pop(symbol, None)
            return
        held = self._held.get(symbol)
        if held is not None and (held.quantity > 0) == (quantity > 0):
            held.quantity = quantity
            held.avg_price = avg_price or held.avg_price
            return
        self._held[symbol] = ExternalPosition(symbol, quantity, avg_price, broker, now)

    def remove(self, symbol: str, fills_through: datetime | None = None) -> ExternalPosition | None:
        """Forget the symbol's external part (adopted into the ledger, which holds every fill up to
        `fills_through` now)."""
        self._note_through(symbol, fills_through)
        self._pending.pop(symbol, None)
        return self._held.pop(symbol, None)

    def rescale(self, symbol: str, ratio: Fraction, whole: bool) -> None:
        """A split by `ratio` (pipeline.positions.splits): the symbol's external part, confirmed or pending, holds
        `ratio` times the shares at its average price over `ratio`."""
        for book in (self._held, self._pending):
            held = book.get(symbol)
            if held is None:
                continue
            held.quantity = rescaled_quantity(held.quantity, ratio, whole)
            held.avg_price /= float(ratio)
            if abs(held.quantity) < 1e-9:
                del book[symbol]

    # -- the journal's copy (kv `external`): a restart starts from the last confirmed figures ------------------
    def to_json(self) -> list[dict[str, Any]]:
        """The confirmed external positions with the broker time their figures hold every fill up to."""
        return [{"symbol": p.symbol, "quantity": p.quantity, "avg_price": p.avg_price, "broker": p.broker,
                 "since": _iso(p.since), "through": _iso(self._through.get(p.symbol))}
                for p in self._held.values()]

    def restore(self, items: Iterable[Any]) -> list[str]:
        """Take back what `to_json` wrote (the book empty, at start); returns a one-line problem for each item
        that could not be read (it is left out: the start-up reconciliation finds that symbol again)."""
        problems = []
        for item in items:
            try:
                position, through = _external_from_json(item)
            except (ValueError, TypeError, KeyError) as exc:
                problems.append(f"external position {str(item)[:120]}: {exc}")
                continue
            self._held[position.symbol] = position
            self._note_through(position.symbol, through)
        return problems

    def _note_through(self, symbol: str, fills_through: datetime | None) -> None:
        self._through.pop(symbol, None)
        if fills_through is not None:
            self._through[symbol] = fills_through
            if len(self._through) > _SEEN_FILLS:
                self._through.popitem(last=False)

    def set_pending(self, items: Iterable[ExternalPosition]) -> None:
        """Broker-only quantities not judged yet (replaces the previous set)."""
        self._pending = {p.symbol: p for p in items if p.symbol not in self._held and abs(p.quantity) > 1e-9}

    def reset_cash(self, fills_through: datetime | None = None) -> None:
        """The ledger's cash was just taken from the broker: it already reflects every hand trade (every fill up
        to `fills_through`, broker time, when known)."""
        self.cash_adjustment = 0.0
        self._cash_through = fills_through

    # -- views ----------------------------------------------------------------------------------------
    def quantity(self, symbol: str) -> float:
        held = self._held.get(symbol)
        return held.quantity if held else 0.0

    def exit_cap(self, symbol: str, ours: float) -> float:
        """The most an exit of ordergate's `ours` (signed) in `symbol` may trade: all of it, unless an external
        trade on the other side (someone sold ordergate's shares by hand) left the account holding less."""
        external = self.quantity(symbol)
        if not external or (external > 0) == (ours > 0):
            return abs(ours)
        net = ours + external
        return abs(net) if abs(net) > 1e-9 and (net > 0) == (ours > 0) else 0.0

    def __contains__(self, symbol: str) -> bool:
        return symbol in self._held

    def held(self) -> list[ExternalPosition]:
        return list(self._held.values())

    def positions(self) -> list[Position]:
        """The external positions, marked at the last known price."""
        return [p.as_position(self._price(p.symbol)) for p in self._held.values()]

    def pending(self) -> list[Position]:
        return [p.as_position(self._price(p.symbol), origin="pending") for p in self._pending.values()]

    def market_value(self) -> float:
        """Signed marked value of the external positions (shorts count negative)."""
        return sum((1 if p.is_long else -1) * p.market_value for p in self.positions())

    def account_view(self, account: AccountState) -> AccountState:
        """The account with the external positions in it: as positions (duplicate, conflict, exposure checks),
        in equity and cash (the broker's cash moved with a hand trade). Pending ones count as positions only."""
        if not self._held and not self._pending and not self.cash_adjustment:  # none: the account as it is
            return account
        extra = [*self.positions(), *self.pending()]
        if not extra and not self.cash_adjustment:
            return account
        return AccountState(
            equity=account.equity + self.market_value() + self.cash_adjustment,
            cash=account.cash + self.cash_adjustment,
            buying_power=max(0.0, account.buying_power + self.cash_adjustment),
            open_positions=[*account.open_positions, *extra],
            daily_pnl=account.daily_pnl,
            starting_equity=account.starting_equity,
        )


def held_by(stamp: datetime | None, through: datetime | None) -> bool:
    """Whether figures that hold every fill up to `through` hold a fill stamped `stamp` (never when either is
    unknown, or they cannot be compared: then the fill is counted)."""
    if stamp is None or through is None or (stamp.tzinfo is None) != (through.tzinfo is None):
        return False
    return stamp <= through


def _iso(when: datetime | None) -> str | None:
    return when.isoformat() if when is not None else None


def _when(text: Any, field: str) -> datetime | None:
    if text is None:
        return None
    when = datetime.fromisoformat(str(text))
    if when.tzinfo is None:
        raise ValueError(f"{field} {text!r} has no time zone")
    return when


def _external_from_json(item: Any) -> tuple[ExternalPosition, datetime | None]:
    """One `ExternalBook.to_json` item back; ValueError / TypeError / KeyError naming what is wrong."""
    symbol = item["symbol"]
    if not isinstance(symbol, str) or not symbol:
        raise ValueError(f"bad symbol {symbol!r}")
    quantity, avg = float(item["quantity"]), float(item["avg_price"])
    if not math.isfinite(quantity) or abs(quantity) < 1e-9:
        raise ValueError(f"bad quantity {item['quantity']!r}")
    if not math.isfinite(avg) or avg < 0:
        raise ValueError(f"bad avg_price {item['avg_price']!r}")
    position = ExternalPosition(symbol, quantity, avg, str(item.get("broker") or ""), _when(item.get("since"), "since"))
    return position, _when(item.get("through"), "through")
