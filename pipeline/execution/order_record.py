"""The order record: one object per client order id, and the book that holds them (DESIGN invariant 11).

Everything the daemon knows about one order lives on its `OrderRecord`: the intent, its state machine
(`created -> intent_journaled -> sent -> accepted -> partially_filled -> filled | cancelled | rejected |
expired | replaced | never_reached`), its fills (deduplicated by fill id), its reservation (the unfilled rest
of an entry), its venue, its acceptance time and its last broker contact. The `OrderBook` is the single store;
the fill validator, the reservation book, the lifecycle's intents and pending exits and the router's venue
map are views over it. Transitions only move forward: a late 'new' after 'filled' is ignored, and a move from
one final state to another is logged as illegal and ignored. The journal persists the transitions (its status
strings are `OrderStatus` values, see `OrderState.status`); a restart rebuilds the book from it (`restore`).
(Anchors: hummingbot's `InFlightOrder`, nautilus's `Order` + `Cache`.)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, MutableMapping
from datetime import datetime, timedelta
from enum import StrEnum

import msgspec
import structlog

from pipeline.core.models import Fill, OrderIntent, OrderStatus, OrderType

log = structlog.get_logger("ordergate.orders")


class OrderState(StrEnum):
    """Where one order is in its life."""

    CREATED = "created"                    # decided, its intent not journaled yet
    INTENT_JOURNALED = "intent_journaled"  # journaled, not (known to be) sent
    SENT = "sent"                          # handed to a broker, no answer yet
    ACCEPTED = "accepted"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCELLED = "cancelled"
    REJECTED = "rejected"
    EXPIRED = "expired"
    REPLACED = "replaced"                  # replaced by other orders (a split parent, a broker replace)
    NEVER_REACHED = "never_reached"

    @property
    def is_final(self) -> bool:
        return _RANK[self] >= _FINAL_RANK

    @property
    def status(self) -> OrderStatus:
        """The journal's status string for this state."""
        return _TO_STATUS[self]

    @classmethod
    def of(cls, status: OrderStatus) -> OrderState:
        """The state an order status reported by a broker (or read from the journal) puts an order in."""
        return _FROM_STATUS[status]


_RANK = {
    OrderState.CREATED: 0, OrderState.INTENT_JOURNALED: 1, OrderState.SENT: 2, OrderState.ACCEPTED: 3,
    OrderState.PARTIALLY_FILLED: 4, OrderState.FILLED: 5, OrderState.CANCELLED: 5, OrderState.REJECTED: 5,
    OrderState.EXPIRED: 5, OrderState.REPLACED: 5, OrderState.NEVER_REACHED: 5,
}
_FINAL_RANK = 5
_TO_STATUS = {
    OrderState.CREATED: OrderStatus.PENDING, OrderState.INTENT_JOURNALED: OrderStatus.PENDING,
    OrderState.SENT: OrderStatus.PENDING, OrderState.ACCEPTED: OrderStatus.NEW,
    OrderState.PARTIALLY_FILLED: OrderStatus.PARTIALLY_FILLED, OrderState.FILLED: OrderStatus.FILLED,
    OrderState.CANCELLED: OrderStatus.CANCELED, OrderState.REJECTED: OrderStatus.REJECTED,
    OrderState.EXPIRED: OrderStatus.EXPIRED, OrderState.REPLACED: OrderStatus.REPLACED,
    OrderState.NEVER_REACHED: OrderStatus.NEVER_REACHED,
}
_FROM_STATUS = {
    OrderStatus.PENDING: OrderState.INTENT_JOURNALED, OrderStatus.NEW: OrderState.ACCEPTED,
    OrderStatus.PARTIALLY_FILLED: OrderState.PARTIALLY_FILLED, OrderStatus.FILLED: OrderState.FILLED,
    OrderStatus.CANCELED: OrderState.CANCELLED, OrderStatus.REJECTED: OrderState.REJECTED,
    OrderStatus.EXPIRED: OrderState.EXPIRED, OrderStatus.REPLACED: OrderState.REPLACED,
    OrderStatus.NEVER_REACHED: OrderState.NEVER_REACHED,
}


class OrderRecord(msgspec.Struct, eq=False):
    """Everything known about one order (one client order id). Move it only through its `OrderBook`. (A Struct:
    one is made per order, in the decision.)"""

    intent: OrderIntent
    state: OrderState = OrderState.CREATED
    venue: str | None = None                 # the broker it was sent to (cancels and lookups go there)
    fill_ids: set[str] = msgspec.field(default_factory=set)
    filled_qty: float = 0.0                  # what the fills received cover
    accepted_at: datetime | None = None
    last_contact: datetime | None = None     # the last time a broker said anything about it
    checked_at: datetime | None = None       # the last overdue lookup
    reserved: float | None = None            # an entry's quantity still reserved (None: nothing reserved)
    reserved_until_fills: datetime | None = None  # final status seen, fills still awaited since then
    lookup_misses: int = 0                   # resolver lookups in a row that did not find it
    first_miss_at: float | None = None       # monotonic time of the first of those
    found_at: float | None = None            # monotonic time its broker last reported holding it
    recovered: bool = False                  # rebuilt from the journal at start: an earlier process made it

    @property
    def client_order_id(self) -> str:
        return self.intent.client_order_id

    @property
    def status(self) -> OrderStatus:
        """The journal's status string."""
        return self.state.status

    @property
    def final(self) -> bool:
        return self.state.is_final

    @property
    def acknowledged(self) -> bool:
        """A broker has answered for it (accepted, filled, or any status past pending), in any run."""
        return self.accepted_at is not None or self.filled_qty > 0 or _RANK[self.state] > _RANK[OrderState.SENT]

    @property
    def reserved_notional(self) -> float:
        quantity = abs(self.intent.quantity)
        return self.intent.notional * (self.reserved or 0.0) / quantity if quantity else 0.0


class OrderBook:
    """The single store of order records, keyed by client order id (insertion order: oldest first)."""

    def __init__(self) -> None:
        self._records: dict[str, OrderRecord] = {}
        self._reserved: dict[str, OrderRecord] = {}   # index: entries holding a reservation
        self.exits: dict[tuple[str, str], str] = {}   # (strategy, symbol) -> client order id of its working exit
        self.activity: dict[str, datetime] = {}       # symbol -> last order activity, ours or anyone's

    # -- records ------------------------------------------------------------------------------------------
    def touch(self, symbol: str, now: datetime) -> None:
        """Order activity on `symbol` now (an order sent, an update or fill seen): reconciliation waits its grace."""
        self.activity[symbol] = now

    def add(self, intent: OrderIntent) -> OrderRecord:
        """The record of this intent, created (state `created`) when it is new."""
        record = self._records.get(intent.client_order_id)
        if record is None:
            record = self._records[intent.client_order_id] = OrderRecord(intent)
        return record

    def get(self, client_order_id: str) -> OrderRecord | None:
        return self._records.get(client_order_id)

    def __contains__(self, client_order_id: object) -> bool:
        return client_order_id in self._records

    def __len__(self) -> int:
        return len(self._records)

    def __iter__(self) -> Iterator[OrderRecord]:
        return iter(list(self._records.values()))

    def working(self) -> list[OrderRecord]:
        """Records not in a final state, oldest first."""
        return [r for r in self._records.values() if not r.state.is_final]

    def forget(self, client_order_id: str) -> None:
        record = self._records.pop(client_order_id, None)
        self._reserved.pop(client_order_id, None)
        if record is not None and self.exits.get(record.intent.key) == client_order_id:
            del self.exits[record.intent.key]

    def prune(self, keep: int) -> int:
        """Forget the oldest finished records beyond `keep` (bounded memory); never a working order, one still
        holding a reservation or a symbol's pending exit. Returns how many were forgotten."""
        excess = len(self._records) - keep
        if excess <= 0:
            return 0
        pending = set(self.exits.values())
        drop = [c for c, r in self._records.items()
                if r.state.is_final and c not in self._reserved and c not in pending][:excess]
        for coid in drop:
            del self._records[coid]
        return len(drop)

    # -- state machine --------------------------------------------------------------------------------
    def transition(self, client_order_id: str, state: OrderState, now: datetime | None = None) -> bool:
        """Move the order forward to `state`; True when it moved. Backward moves (a late 'new' after 'filled')
        are ignored; a move from one final state to another is logged as illegal and ignored."""
        record = self._records.get(client_order_id)
        if record is None:
            return False
        current = record.state
        if _RANK[state] <= _RANK[current]:
            if current.is_final and state.is_final and state != current:
                log.warning("order_transition_illegal", client_order_id=client_order_id, state=str(current),
                            to=str(state))
            return False
        record.state = state
        if state == OrderState.ACCEPTED and record.accepted_at is None and now is not None:
            record.accepted_at = now
        return True

    def apply_status(self, client_order_id: str, status: OrderStatus, now: datetime | None = None) -> bool:
        """A status a broker reported (or the router decided): the transition it means. True when it moved."""
        record = self._records.get(client_order_id)
        if record is None:
            return False
        if now is not None and status != OrderStatus.PENDING:
            record.last_contact = now
        if status == OrderStatus.NEW and record.accepted_at is None:
            record.accepted_at = now
        return self.transition(client_order_id, OrderState.of(status), now)

    def accepted(self, client_order_id: str, now: datetime) -> None:
        """The broker answered the submit with an accepted (or filled) order."""
        record = self._records.get(client_order_id)
        if record is not None:
            record.last_contact = now
            if record.accepted_at is None:
                record.accepted_at = now
            self.transition(client_order_id, OrderState.ACCEPTED, now)

    def overdue(self, now: datetime, timeout: timedelta, market_only: bool = True,
                fillable_from: Callable[[datetime], datetime] | None = None) -> list[OrderRecord]:
        """Accepted orders with no fill after `timeout` (also those said 'filled' with no fill behind it), each
        returned at most once per timeout period: to be looked up at the broker. `fillable_from(accepted_at)`:
        when an order accepted then could first fill (the next open for one accepted while the market is closed:
        the timeout counts from there); default its acceptance."""
        due = []
        for r in self._records.values():
            if r.filled_qty or r.accepted_at is None or (market_only and r.intent.order_type != OrderType.MARKET):
                continue
            if r.state.is_final and r.state != OrderState.FILLED:
                continue  # canceled, rejected, expired: nothing to find
            start = r.accepted_at if fillable_from is None else fillable_from(r.accepted_at)
            if now - start < timeout or (r.checked_at is not None and now - r.checked_at < timeout):
                continue
            r.checked_at = now
            due.append(r)
        return due

    def set_venue(self, intent: OrderIntent, broker: str) -> OrderRecord:
        record = self.add(intent)
        record.venue = broker
        return record

    def venue(self, client_order_id: str) -> str | None:
        record = self._records.get(client_order_id)
        return record.venue if record else None

    # -- fills ------------------------------------------------------------------------------------------
    def has_fill(self, fill: Fill) -> bool:
        """True when this fill (by fill id) is already on its order's record."""
        record = self._records.get(fill.client_order_id)
        return bool(fill.fill_id) and record is not None and fill.fill_id in record.fill_ids

    def add_fill(self, record: OrderRecord, fill: Fill, now: datetime | None = None) -> bool:
        """Count this fill on the record; False (nothing counted) when its fill id was seen before."""
        if fill.fill_id:
            if fill.fill_id in record.fill_ids:
                return False
            record.fill_ids.add(fill.fill_id)
        record.filled_qty += fill.quantity
        if now is not None:
            record.last_contact = now
        return True

    # -- reservations (entries in flight) -------------------------------------------------------------
    def reserve(self, intent: OrderIntent, filled: float = 0.0) -> OrderRecord:
        """The entry holds its whole quantity (less what already `filled` into the ledger) until it settles."""
        record = self.add(intent)
        record.reserved = abs(intent.quantity)
        record.reserved_until_fills = None
        self._reserved[intent.client_order_id] = record
        if filled:
            self.entry_filled(intent.client_order_id, filled)
        return record

    def entry_filled(self, client_order_id: str, quantity: float) -> None:
        """`quantity` of this entry filled and is in the ledger now: its reservation keeps only the rest."""
        record = self._reserved.get(client_order_id)
        if record is None or record.reserved is None:
            return
        record.reserved -= abs(quantity)
        if record.reserved <= 1e-9:
            self._unreserve(record)

    def release(self, client_order_id: str, filled_qty: float | None = None, fully_filled: bool = False,
                now: datetime | None = None) -> OrderRecord | None:
        """The entry reached a final state. What it filled (`filled_qty`, cumulative; all of it when
        `fully_filled` and no quantity is given) but the ledger has not seen yet stays reserved until those
        fills arrive or `expire` gives up on them; the rest is released. Returns the record when released."""
        record = self._reserved.get(client_order_id)
        if record is None or record.reserved is None:
            return None
        quantity = abs(record.intent.quantity)
        applied = quantity - record.reserved
        if filled_qty is not None:
            filled = min(quantity, abs(filled_qty))
        else:
            filled = quantity if fully_filled else applied
        if filled - applied > 1e-9:
            record.reserved = filled - applied
            record.reserved_until_fills = record.reserved_until_fills or now
            return None
        self._unreserve(record)
        return record

    def expire(self, now: datetime, grace: timedelta) -> list[tuple[OrderRecord, float]]:
        """Release what finished entries still hold for fills that did not arrive within `grace`; returns each
        record with the quantity it had still reserved."""
        stale = [r for r in self._reserved.values()
                 if r.reserved_until_fills is not None and now - r.reserved_until_fills >= grace]
        out = []
        for record in stale:
            out.append((record, record.reserved or 0.0))
            self._unreserve(record)
        return out

    def reserved(self) -> list[OrderRecord]:
        """The entries holding a reservation, oldest first."""
        return list(self._reserved.values())

    def is_reserved(self, client_order_id: str) -> bool:
        return client_order_id in self._reserved

    def _unreserve(self, record: OrderRecord) -> None:
        record.reserved = None
        record.reserved_until_fills = None
        self._reserved.pop(record.client_order_id, None)

    # -- restart ----------------------------------------------------------------------------------------
    def restore(self, intent: OrderIntent, status: OrderStatus | None, venue: str | None = None) -> OrderRecord:
        """A record as the journal holds it (a restart): its state from the journaled status."""
        record = self.add(intent)
        record.recovered = True
        if venue:
            record.venue = venue
        if status is not None:
            self.transition(intent.client_order_id, OrderState.of(status))
        elif record.state == OrderState.CREATED:
            record.state = OrderState.INTENT_JOURNALED
        return record

    def snapshot(self) -> list[dict[str, object]]:
        """The working records, comparable across a restart (what the journal can rebuild)."""
        return [{"client_order_id": r.client_order_id, "kind": r.intent.kind, "symbol": r.intent.symbol,
                 "status": str(r.status), "venue": r.venue, "filled_qty": r.filled_qty,
                 "fills": sorted(r.fill_ids), "reserved": r.reserved,
                 "pending_exit": self.exits.get(r.intent.key) == r.client_order_id}
                for r in self.working()]


class IntentsView(Mapping[str, OrderIntent]):
    """client order id -> intent, over the book (the lifecycle's `intents`)."""

    def __init__(self, book: OrderBook) -> None:
        self._book = book

    def __getitem__(self, client_order_id: str) -> OrderIntent:
        record = self._book.get(client_order_id)
        if record is None:
            raise KeyError(client_order_id)
        return record.intent

    def __iter__(self) -> Iterator[str]:
        return (r.client_order_id for r in self._book)

    def __len__(self) -> int:
        return len(self._book)

    def __contains__(self, client_order_id: object) -> bool:
        return client_order_id in self._book

    def __setitem__(self, client_order_id: str, intent: OrderIntent) -> None:
        self._book.add(intent)


class VenuesView(MutableMapping[str, str]):
    """client order id -> the broker it was sent to, over the book (the router's `venues`)."""

    def __init__(self, book: OrderBook) -> None:
        self._book = book

    def __getitem__(self, client_order_id: str) -> str:
        venue = self._book.venue(client_order_id)
        if venue is None:
            raise KeyError(client_order_id)
        return venue

    def __setitem__(self, client_order_id: str, broker: str) -> None:
        record = self._book.get(client_order_id)
        if record is None:
            raise KeyError(f"no order record for {client_order_id}")
        record.venue = broker

    def __delitem__(self, client_order_id: str) -> None:
        record = self._book.get(client_order_id)
        if record is None or record.venue is None:
            raise KeyError(client_order_id)
        record.venue = None

    def __iter__(self) -> Iterator[str]:
        return (r.client_order_id for r in self._book if r.venue is not None)

    def __len__(self) -> int:
        return sum(1 for r in self._book if r.venue is not None)
