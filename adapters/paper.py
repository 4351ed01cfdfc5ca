"""PaperBroker: a simulated broker that satisfies `pipeline.core.ports.Broker`.

- Prices come from `on_bars()` (the last close of each symbol). Market orders fill at once at the last price
  plus or minus `slippage_bps` (a buy pays up, a sell receives less) with `commission_per_share`; resting
  limit and stop orders trigger on a later bar that crosses them (a gap fills at the bar's open). An order
  that opens a position must be funded at the price it fills at (slippage included; a stop at its stop plus
  slippage), else it is rejected for buying power.
- Options (OCC symbols) are priced with Black-Scholes from the underlying's last price; `chain()` serves the
  synthetic option chain of `pipeline.instruments.options`.
- Order updates and fills reach the handler of `set_event_handler` in order, through one queue pumped by a
  task that `connect()` starts and `close()` stops. For a filled order the events are: `OrderUpdate(new)`,
  `Fill`, `OrderUpdate(filled)` (the fill always precedes the status that claims it).
- With `state_path` the book (cash, positions, orders with their fills, last prices, sequences) is written
  atomically after every change and before the change's events are delivered, and is reloaded on
  construction, so it outlives a crash of the daemon as a real broker would. A corrupt book raises
  `PaperBookCorrupt`; it is never silently reset. Price marks alone are saved with the next change.
- `faults` (a `PaperFaults`) scripts broker failures for tests and the chaos suite; `request_log` records
  the latest REQUEST_LOG_SIZE calls.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections import defaultdict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple

import structlog

from config.files import UnreadableFile, json_depth, read_regular_file
from config.settings import OptionsSettings, PaperSettings
from pipeline.core.batch import BarBatch
from pipeline.core.clock import Clock
from pipeline.core.enum_values import is_value_of
from pipeline.core.models import (
    OPTION_MULTIPLIER,
    AccountSnapshot,
    AssetClass,
    Bar,
    BrokerEvent,
    BrokerPosition,
    Fill,
    OrderIntent,
    OrderResult,
    OrderStatus,
    OrderType,
    OrderUpdate,
    Side,
    contract_multiplier,
)
from pipeline.core.ports import (
    BrokerError,
    BrokerEventHandler,
    BrokerUnavailable,
    DuplicateClientOrderId,
    OrderRejected,
    RetryableBrokerError,
    SendGuard,
    send_anything,
)
from pipeline.instruments.occ import OccContract, OccError, parse_occ, try_parse_occ
from pipeline.instruments.pricing import bs_price, years_to_expiry
from pipeline.safety.atomic_file import atomic_write_bytes, cleanup_temp_files

log = structlog.get_logger("ordergate.paper")

REQUEST_LOG_SIZE = 10_000  # bounded: a long replay makes a call per order and event

BOOK_VERSION = 1
MAX_BOOK_BYTES = 512 * 1024 * 1024  # it grows with every order (~1 KB each); far beyond any real book
MAX_BOOK_DEPTH = 64  # the book nests 4 levels
DEFAULT_OPTION_IV = 0.30
_EPS = 1e-9
_OPEN_STATUSES = frozenset({OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED})


class PaperBookCorrupt(BrokerError):
    """The persisted paper book cannot be read; the message names the file and why."""


@dataclass
class PaperFaults:
    """A script of broker failures. Counters decrease as they fire; flags hold until cleared.

    - `timeout_after_accept`: accept and book the next N orders, then raise RetryableBrokerError(ambiguous=True)
      as if the reply were lost.
    - `transient_failures`: the next N submissions raise RetryableBrokerError before anything is accepted.
    - `reject_next`: the next submission is rejected with this reason (then cleared).
    - `unavailable`: every call raises BrokerUnavailable while set.
    - `duplicate_fill_delivery`: the next N fills are delivered twice (same fill_id).
    - `drop_updates`: events are held back while set; `PaperBroker.redeliver()` releases them.
    - `reorder_updates`: the next N pairs of events are delivered second-first.
    - `latency_s`: every call waits this long (real time) first.
    """

    timeout_after_accept: int = 0
    transient_failures: int = 0
    reject_next: str | None = None
    unavailable: bool = False
    duplicate_fill_delivery: int = 0
    drop_updates: bool = False
    reorder_updates: int = 0
    latency_s: float = 0.0


class PaperRequest(NamedTuple):
    """One call made to the paper broker."""

    method: str
    client_order_id: str | None




@dataclass(slots=True)
class _Order:
    """One order in the book."""

    client_order_id: str
    broker_order_id: str
    symbol: str
    side: Side
    quantity: float
    order_type: OrderType
    asset_class: AssetClass
    status: OrderStatus
    limit_price: float | None = None
    stop_price: float | None = None
    reduce_only: bool = False
    time_in_force: str = "day"
    filled_qty: float = 0.0
    filled_avg_price: float | None = None
    reason: str | None = None
    submitted_at: datetime | None = None
    fills: list[dict[str, Any]] = field(default_factory=list)

    @property
    def multiplier(self) -> float:
        return contract_multiplier(self.asset_class)

    def to_dict(self) -> dict[str, Any]:
        return {
            "client_order_id": self.client_order_id, "broker_order_id": self.broker_order_id,
            "symbol": self.symbol, "side": str(self.side), "quantity": self.quantity,
            "order_type": str(self.order_type), "asset_class": str(self.asset_class), "status": str(self.status),
            "limit_price": self.limit_price, "stop_price": self.stop_price, "reduce_only": self.reduce_only,
            "time_in_force": self.time_in_force, "filled_qty": self.filled_qty,
            "filled_avg_price": self.filled_avg_price, "reason": self.reason,
            "submitted_at": self.submitted_at.isoformat() if self.submitted_at else None, "fills": self.fills,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> _Order:
        submitted = data.get("submitted_at")
        return cls(
            client_order_id=str(data["client_order_id"]), broker_order_id=str(data["broker_order_id"]),
            symbol=str(data["symbol"]), side=Side(data["side"]), quantity=_finite(data["quantity"], "quantity"),
            order_type=OrderType(data["order_type"]), asset_class=AssetClass(data["asset_class"]),
            status=OrderStatus(data["status"]), limit_price=_optional_float(data.get("limit_price")),
            stop_price=_optional_float(data.get("stop_price")), reduce_only=bool(data.get("reduce_only", False)),
            time_in_force=str(data.get("time_in_force", "day")), filled_qty=_finite(data["filled_qty"], "filled_qty"),
            filled_avg_price=_optional_float(data.get("filled_avg_price")), reason=data.get("reason"),
            submitted_at=datetime.fromisoformat(submitted) if submitted else None,
            fills=[_check_fill_dict(f) for f in data.get("fills", [])],
        )


def _finite(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name}: expected a finite number, got {value!r}")
    return float(value)


def _optional_float(value: Any) -> float | None:
    return None if value is None else _finite(value, "price")


def _check_fill_dict(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ValueError(f"fill: expected an object, got {data!r}")
    for key in ("fill_id", "seq", "quantity", "price", "commission", "timestamp"):
        if key not in data:
            raise ValueError(f"fill: missing {key!r}")
    if not isinstance(data["fill_id"], str) or not isinstance(data["seq"], int) or isinstance(data["seq"], bool):
        raise ValueError(f"fill: bad fill_id or seq in {data!r}")
    for key in ("quantity", "price", "commission"):
        _finite(data[key], f"fill.{key}")
    datetime.fromisoformat(data["timestamp"])
    return data


def apply_fill_to_position(qty: float, avg: float, signed_qty: float, price: float) -> tuple[float, float, float]:
    """New (quantity, average price, realized P&L per unit multiplier) after a signed fill.

    Adding averages the price; reducing keeps it and realizes P&L; a flip opens the remainder at `price`.
    """
    new_qty = qty + signed_qty
    if abs(qty) < _EPS or (qty > 0) == (signed_qty > 0):
        new_avg = (abs(qty) * avg + abs(signed_qty) * price) / abs(new_qty) if abs(new_qty) > _EPS else 0.0
        return new_qty, new_avg, 0.0
    closing = min(abs(signed_qty), abs(qty))
    realized = closing * (price - avg) * (1.0 if qty > 0 else -1.0)
    if abs(new_qty) < _EPS:
        return 0.0, 0.0, realized
    if (new_qty > 0) == (qty > 0):
        return new_qty, avg, realized
    return new_qty, price, realized


class PaperBroker:
    """A simulated broker with a persistent book, ordered event delivery and scriptable faults."""

    def __init__(
        self,
        settings: PaperSettings,
        clock: Clock,
        state_path: Path | None = None,
        name: str = "paper",
        options: OptionsSettings | None = None,
        redeliver_unacked_on_connect: bool = True,
    ) -> None:
        self.name = name
        self.settings = settings
        self.clock = clock
        self.state_path = Path(state_path) if state_path is not None else None
        self.options_settings = options or OptionsSettings()
        self.faults = PaperFaults()
        self.request_log: deque[PaperRequest] = deque(maxlen=REQUEST_LOG_SIZE)  # the latest calls
        self.redeliver_unacked_on_connect = redeliver_unacked_on_connect
        self._slip = settings.slippage_bps / 10_000.0
        self._handler: BrokerEventHandler | None = None
        self._send_guard: SendGuard = send_anything
        self._queue: asyncio.Queue[tuple[BrokerEvent, ...]] = asyncio.Queue()  # the events of one call per item
        self._pump_task: asyncio.Task[None] | None = None
        self._delivering = False  # the pump holds the events of a call taken from the queue, not all handled yet
        self._persist_lock = asyncio.Lock()
        self._connected = False
        self._dirty = False
        self._held: list[BrokerEvent] = []
        self._reorder_held: BrokerEvent | None = None
        self._option_iv: dict[str, float] = {}
        self._final_json: dict[str, str] = {}
        self._resolved: dict[str, tuple[str, float]] = {}  # client order id -> status last delivered by a lookup
        self._warned_no_handler = False
        self._resting: dict[str, list[_Order]] = defaultdict(list)
        self.cash = settings.initial_cash
        self.realized_pnl = 0.0
        self._positions: dict[str, list[float]] = {}
        self._orders: dict[str, _Order] = {}
        self._last: dict[str, float] = {}
        self._order_seq = 0
        self._fill_seq = 0
        self._acked_fill_seq = 0
        self._acked_above: set[int] = set()
        if self.state_path is not None:
            cleanup_temp_files(self.state_path.parent, self.state_path.name)
            self._load()
        self._redeliver_through = self._fill_seq  # fills booked before this process: maybe never delivered

    # ----------------------------------------------------------------- lifecycle and events

    async def connect(self) -> None:
        """Start delivering events; after a restart, re-send fills the handler may not have seen."""
        self._log_request("connect", None)
        self._connected = True
        if self._pump_task is None or self._pump_task.done():
            self._pump_task = asyncio.create_task(self._pump(), name=f"{self.name}-events")
        if self.redeliver_unacked_on_connect:
            self._redeliver_unacked_fills()

    async def close(self, drain_timeout: float = 2.0) -> None:
        """Deliver what is queued (bounded wait), stop the pump and save the book."""
        self._log_request("close", None)
        if self._pump_task is not None and not self._pump_task.done():
            try:
                await asyncio.wait_for(self._queue.join(), drain_timeout)
            except TimeoutError:
                log.warning("paper_close_undelivered", broker=self.name, queued_calls=self._queue.qsize())
            self._pump_task.cancel()
            try:
                await self._pump_task
            except asyncio.CancelledError:
                pass
        self._pump_task = None
        self._connected = False
        self._dirty = True
        await self._persist()

    def set_event_handler(self, handler: BrokerEventHandler) -> None:
        self._handler = handler

    def set_send_guard(self, guard: SendGuard) -> None:
        self._send_guard = guard

    @property
    def acknowledges_fills(self) -> bool:
        """AcknowledgesFills: with a book file, a fill is sent again after a restart until the handler has returned
        for it (so the handler returns only once it is applied). An in-memory book dies with the process and
        redelivers nothing: its handler need not wait for each fill (no handshake per fill)."""
        return self.state_path is not None

    @property
    def answers_in_process(self) -> bool:
        """AnswersInProcess: no scripted latency and no book file to write, so no call waits on anything."""
        return self.state_path is None and self.faults.latency_s <= 0

    def is_connected(self) -> bool:
        return self._connected and not self.faults.unavailable

    async def flush_events(self, timeout: float = 5.0) -> None:
        """Wait until every queued event has been handled (FlushesEvents; the pump must be running)."""
        if self._handled():  # no wait_for task to learn that
            return
        await asyncio.sleep(0)  # the pump drains its queue within a turn of the loop when its handler does not wait
        if self._handled():
            return
        await asyncio.wait_for(self._queue.join(), timeout)

    def _handled(self) -> bool:
        """Every queued event has been handled (what the queue's join waits for)."""
        return self._queue.empty() and not self._delivering

    def redeliver(self) -> int:
        """Release the events held back by `faults.drop_updates` (in order) and stop holding; returns how many."""
        self.faults.drop_updates = False
        held, self._held = self._held, []
        if self._reorder_held is not None:
            held.append(self._reorder_held)
            self._reorder_held = None
        if held:
            self._queue.put_nowait(tuple(held))
        return len(held)

    async def _pump(self) -> None:
        while True:
            events = await self._queue.get()  # the events of one call (a submit's update, fill and update), in order
            self._delivering = True
            try:
                for event in events:
                    await self._deliver(event)
            finally:
                self._delivering = False
                self._queue.task_done()

    async def _deliver(self, event: BrokerEvent) -> None:
        """Hand one event to the handler (after the book that produced it is on disk); a handler's error is logged,
        and the next event goes on."""
        try:
            if self._dirty:
                await self._persist_before_delivery()
            if self._handler is None:
                if not self._warned_no_handler:
                    self._warned_no_handler = True
                    log.warning("paper_events_without_handler", broker=self.name)
                return  # not acknowledged: a fill is sent again after a restart
            await self._handler(event)
            if isinstance(event, Fill):
                self._ack_fill(_fill_seq_of(event.fill_id))
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("paper_event_handler_failed", broker=self.name, event_type=type(event).__name__)

    async def _persist_before_delivery(self) -> None:
        """No event leaves before the book that produced it is on disk: retry a failing write, never skip it."""
        delay = 0.05
        while self._dirty:
            try:
                await self._persist()
            except OSError:
                log.exception("paper_book_write_failed", broker=self.name, path=str(self.state_path))
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    def _ack_fill(self, seq: int) -> None:
        """Advance the contiguous watermark of fills the handler has taken (redelivered after a restart)."""
        self._acked_above.add(seq)
        while self._acked_fill_seq + 1 in self._acked_above:
            self._acked_fill_seq += 1
            self._acked_above.discard(self._acked_fill_seq)

    def _emit(self, event: BrokerEvent) -> None:
        """Queue one event, applying the scripted delivery faults."""
        self._emit_all((event,))

    def _emit_all(self, events: Sequence[BrokerEvent]) -> None:
        """Queue the events of one call, in order, applying the scripted delivery faults to each: one queue item
        for them all (the pump delivers them one after the other, as it would separate items)."""
        if not self._delivery_faults():  # nothing scripted: every event goes as it is, in order
            if events:
                self._queue.put_nowait(tuple(events))
            return
        out: list[BrokerEvent] = []
        for event in events:
            self._route(event, out)
        if out:
            self._queue.put_nowait(tuple(out))

    def _delivery_faults(self) -> bool:
        """Whether a delivery fault is scripted or under way (`_route` would do more than pass an event on)."""
        faults = self.faults
        return faults.drop_updates or faults.duplicate_fill_delivery > 0 or faults.reorder_updates > 0 \
            or self._reorder_held is not None

    def _route(self, event: BrokerEvent, out: list[BrokerEvent]) -> None:
        """Where the delivery faults put one event: held (dropped updates), twice (a duplicate fill), one later
        (a reordered update), or simply next in `out`."""
        faults = self.faults
        if faults.drop_updates:
            self._held.append(event)
            return
        copies = 1
        if isinstance(event, Fill) and faults.duplicate_fill_delivery > 0:
            faults.duplicate_fill_delivery -= 1
            copies = 2
        for _ in range(copies):
            if self._reorder_held is not None:
                out.append(event)
                out.append(self._reorder_held)
                self._reorder_held = None
            elif faults.reorder_updates > 0:
                faults.reorder_updates -= 1
                self._reorder_held = event
            else:
                out.append(event)

    def _redeliver_unacked_fills(self) -> None:
        """Once per process: re-send the loaded book's fills past the acknowledged watermark (at least once).

        Each fill is followed by its order's status once the order's last re-sent fill has gone.
        """
        through, self._redeliver_through = self._redeliver_through, 0
        pending = sorted(
            (fill["seq"], order, fill) for order in self._orders.values() for fill in order.fills
            if self._acked_fill_seq < fill["seq"] <= through
        )
        last_seq = {order.client_order_id: seq for seq, order, _ in pending}
        for seq, order, fill in pending:
            self._emit(self._fill_event(order, fill))
            if last_seq[order.client_order_id] == seq:
                self._emit(self._update_event(order))

    # ----------------------------------------------------------------- prices

    def on_bars(self, batch: Sequence[Bar]) -> int:
        """Mark last prices and trigger resting orders that this batch's bars cross (cheap; every time step).
        Returns how many resting orders filled (their events are queued)."""
        last = self._last
        resting = self._resting
        if isinstance(batch, BarBatch):  # a replay's columns: bars are built only when a resting order waits
            if not any(resting.values()) or not any(resting.get(s) for s in batch.symbols):
                last.update(zip(batch.symbols, batch.closes(), strict=True))
                return 0
            batch = list(batch)
        triggered = 0
        for bar in batch:
            last[bar.symbol] = bar.close
            waiting = resting.get(bar.symbol)
            if waiting:
                triggered += self._trigger_resting(bar, waiting)
        return triggered

    def set_price(self, symbol: str, price: float) -> None:
        """Test helper: a one-price bar for `symbol` at the clock's time (triggers resting orders too)."""
        self.on_bars([Bar(symbol, self.clock.now(), price, price, price, price, 0.0)])

    def last_price(self, symbol: str) -> float | None:
        """The last price of a symbol (options: the Black-Scholes value from the underlying), or None."""
        occ = try_parse_occ(symbol) if len(symbol) > 6 else None
        if occ is not None:
            return self._option_value(symbol, occ)
        return self._last.get(symbol)  # an equity (or a long symbol that is not OCC)

    chain_label = "synthetic chain (paper broker)"

    def chain(self, underlying: str, spot: float, as_of: datetime) -> list:
        """The synthetic option chain of an underlying (OptionChainProvider)."""
        from pipeline.instruments.options import synthetic_chain

        return synthetic_chain(underlying, spot, as_of, self.options_settings)

    def _trigger_resting(self, bar: Bar, waiting: list[_Order]) -> int:
        triggered = 0
        for order in list(waiting):
            if order.asset_class == AssetClass.OPTION:
                value = self._option_value(order.symbol, try_parse_occ(order.symbol))
                if value is None:
                    continue
                price = _trigger_price(order, value, value, value, self._slip)
            else:
                price = _trigger_price(order, bar.open, bar.high, bar.low, self._slip)
            if price is None:
                continue
            waiting.remove(order)
            events = self._execute(order, price)
            self._dirty = True
            triggered += 1
            self._emit_all(events)
        return triggered

    def _option_value(self, symbol: str, occ: OccContract | None, exact_quote: bool = False) -> float | None:
        if occ is None:
            return None
        spot = self._last.get(occ.underlying)
        if spot is None:
            return None
        now = self.clock.now()
        iv = self._option_iv.get(symbol)
        if iv is None or exact_quote:
            quote_mid, iv = self._quote_from_chain(symbol, occ, spot, now)
            self._option_iv[symbol] = iv
            if exact_quote and quote_mid is not None:
                return quote_mid
        years = years_to_expiry(occ.expiry, now)
        return max(0.01, bs_price(spot, occ.strike, years, self.options_settings.risk_free_rate, iv, occ.right))

    def _quote_from_chain(
        self, symbol: str, occ: OccContract, spot: float, now: datetime
    ) -> tuple[float | None, float]:
        """(mid of the exact contract or None, implied vol to price it with) from the options chain if present."""
        if type(self).chain is PaperBroker.chain:  # the synthetic chain: its one contract, not the whole chain
            from pipeline.instruments.options import synthetic_quote

            exact = synthetic_quote(occ, spot, now, self.options_settings)
            if exact is not None and exact.occ_symbol == symbol:
                return float(exact.mid), float(exact.iv)
        try:
            quotes = self.chain(occ.underlying, spot, now)
        except ImportError:
            return None, DEFAULT_OPTION_IV
        except Exception:
            log.exception("paper_option_chain_failed", broker=self.name, underlying=occ.underlying)
            return None, DEFAULT_OPTION_IV
        best: tuple[float, float] | None = None
        for quote in quotes:
            if quote.occ_symbol == symbol:
                return float(quote.mid), float(quote.iv)
            other = try_parse_occ(quote.occ_symbol)
            if other is None or other.right != occ.right:
                continue
            distance = abs(other.strike - occ.strike) / occ.strike + abs((other.expiry - occ.expiry).days) / 30.0
            if best is None or distance < best[0]:
                best = (distance, float(quote.iv))
        return None, best[1] if best else DEFAULT_OPTION_IV

    # ----------------------------------------------------------------- orders

    async def submit_order(self, intent: OrderIntent) -> OrderResult:
        """Book and (when marketable) fill an order. Events follow through the handler.

        Raises DuplicateClientOrderId for a client order id already held, OrderRejected for a bad or
        unfundable order, and the scripted RetryableBrokerError / BrokerUnavailable faults.
        """
        coid = intent.client_order_id
        self._log_request("submit_order", coid)
        faults = self.faults
        if faults.latency_s > 0 or faults.unavailable:  # what _before_call does, awaited only when it has to
            await self._before_call()
        if faults.transient_failures > 0:
            faults.transient_failures -= 1
            raise RetryableBrokerError(f"{self.name}: simulated transient failure (503), order not accepted")
        if coid in self._orders:
            raise DuplicateClientOrderId(f"client_order_id {coid!r} already exists at {self.name}", code=422)
        if faults.reject_next is not None:
            reason, faults.reject_next = faults.reject_next, None
            raise OrderRejected(reason, code="scripted")
        self._send_guard(intent)  # nothing is awaited between this and booking the order
        order, price = self._accept(intent)
        events: list[BrokerEvent] = [self._update_event(order)]
        if price is not None:
            events.extend(self._execute(order, price))
        else:
            self._resting[self._trigger_symbol(order)].append(order)
        self._dirty = True
        try:
            if self.state_path is None:  # an in-memory book: nothing to write (what _persist does, not awaited)
                self._dirty = False
            else:
                await self._persist()
        except OSError as exc:
            self._emit_all(events)  # the pump writes the book before it delivers them
            raise RetryableBrokerError(f"{self.name}: book write failed: {exc}", ambiguous=True) from exc
        self._emit_all(events)
        if faults.timeout_after_accept > 0:
            faults.timeout_after_accept -= 1
            raise RetryableBrokerError(f"{self.name}: reply lost after the order was accepted", ambiguous=True)
        return self._result(order)

    async def get_order_by_client_id(self, client_order_id: str) -> OrderResult | None:
        self._log_request("get_order_by_client_id", client_order_id)
        await self._before_call()
        order = self._orders.get(client_order_id)
        return None if order is None else self._result(order)

    async def resolve_order(self, client_order_id: str) -> OrderResult | None:
        """Look the order up and deliver its current status (after any fill re-sent at connect) when it changed
        since the last lookup: the journal of a daemon that crashed may still call it pending."""
        result = await self.get_order_by_client_id(client_order_id)
        order = self._orders.get(client_order_id)
        if order is not None:
            key = (str(order.status), order.filled_qty)
            if self._resolved.get(client_order_id) != key:
                self._resolved[client_order_id] = key
                self._emit(self._update_event(order))
        return result

    async def clock_offset(self) -> float:
        """The simulated broker runs on our own clock."""
        return 0.0

    async def cancel_order(self, client_order_id: str) -> None:
        """Cancel a resting order; canceling a canceled order is a no-op, a filled one is rejected."""
        self._log_request("cancel_order", client_order_id)
        await self._before_call()
        order = self._orders.get(client_order_id)
        if order is None:
            raise OrderRejected(f"client_order_id {client_order_id!r} is unknown at {self.name}", code=404)
        if order.status == OrderStatus.CANCELED:
            return
        if order.status not in _OPEN_STATUSES:
            raise OrderRejected(f"order {client_order_id!r} is {order.status} and cannot be canceled", code=422)
        order.status = OrderStatus.CANCELED
        order.reason = "canceled on request"
        waiting = self._resting.get(self._trigger_symbol(order))
        if waiting and order in waiting:
            waiting.remove(order)
        self._dirty = True
        await self._persist()
        self._emit(self._update_event(order))

    def stop_refusal(self, intent: OrderIntent) -> str | None:
        """The paper book holds stop orders on stocks, ETFs and options alike (StopVenue)."""
        return None

    async def replace_stop(
        self, client_order_id: str, *, quantity: float, stop_price: float, new_client_order_id: str
    ) -> OrderResult:
        """Replace a resting stop by a new one under `new_client_order_id` (Alpaca's semantics): the old order
        ends `replaced`, the new one rests (or fills at once when the market is already through its price)."""
        self._log_request("replace_stop", client_order_id)
        await self._before_call()
        old = self._orders.get(client_order_id)
        if old is None:
            raise OrderRejected(f"client_order_id {client_order_id!r} is unknown at {self.name}", code=404)
        if old.status not in _OPEN_STATUSES or old.order_type != OrderType.STOP:
            raise OrderRejected(f"order {client_order_id!r} is {old.status} {old.order_type}: not a resting stop",
                                code=422)
        if new_client_order_id in self._orders:
            raise DuplicateClientOrderId(f"client_order_id {new_client_order_id!r} already exists at {self.name}",
                                         code=422)
        if not quantity > 0 or not stop_price > 0:
            raise OrderRejected(f"quantity and stop_price must be positive, got {quantity!r}, {stop_price!r}",
                                code=422)
        old.status, old.reason = OrderStatus.REPLACED, f"replaced by {new_client_order_id}"
        waiting = self._resting.get(self._trigger_symbol(old))
        if waiting and old in waiting:
            waiting.remove(old)
        self._order_seq += 1
        new = _Order(
            client_order_id=new_client_order_id, broker_order_id=f"{self.name}-{self._order_seq}", symbol=old.symbol,
            side=old.side, quantity=float(quantity), order_type=OrderType.STOP, asset_class=old.asset_class,
            status=OrderStatus.NEW, stop_price=float(stop_price), reduce_only=old.reduce_only,
            time_in_force=old.time_in_force, submitted_at=self.clock.now(),
        )
        self._orders[new.client_order_id] = new
        events: list[BrokerEvent] = [self._update_event(old), self._update_event(new)]
        last = self.last_price(new.symbol) if new.asset_class == AssetClass.OPTION else self._last.get(new.symbol)
        price = _immediate_price(new, last, self._slip) if last is not None else None
        if price is not None:
            events.extend(self._execute(new, price))
        else:
            self._resting[self._trigger_symbol(new)].append(new)
        self._dirty = True
        await self._persist()
        self._emit_all(events)
        return self._result(new)

    async def get_open_orders(self) -> list[OrderResult]:
        self._log_request("get_open_orders", None)
        await self._before_call()
        return [self._result(o) for o in self._orders.values() if o.status in _OPEN_STATUSES]

    async def get_positions(self) -> list[BrokerPosition]:
        self._log_request("get_positions", None)
        await self._before_call()
        return self.positions()

    async def get_account(self) -> AccountSnapshot:
        self._log_request("get_account", None)
        await self._before_call()
        return self.account()

    # ----------------------------------------------------------------- synchronous views (tests, chaos checks)

    def positions(self) -> list[BrokerPosition]:
        """Open positions with signed quantities, marked to the last prices."""
        return [
            BrokerPosition(symbol, qty, avg, self.last_price(symbol), self.name)
            for symbol, (qty, avg) in sorted(self._positions.items())
        ]

    def position(self, symbol: str) -> tuple[float, float]:
        """(signed quantity, average price) of one symbol; (0, 0) when flat."""
        qty, avg = self._positions.get(symbol, (0.0, 0.0))
        return qty, avg

    def account(self) -> AccountSnapshot:
        """Equity marked to last prices; buying power is cash less the value owed on short positions."""
        long_value, short_value = self._market_values()
        equity = self.cash + long_value - short_value
        return AccountSnapshot(equity, self.cash, self._buying_power(short_value), self.name, account_id="paper",
                               paper=True)

    def prune(self, keep: int = 2_000) -> int:
        """An in-memory book (no state_path: replays, benchmarks) forgets its oldest final orders beyond `keep`.

        A persistent book keeps everything: it is the broker's record the chaos suite audits.
        """
        if self.state_path is not None or len(self._orders) <= keep:
            return 0
        final = [coid for coid, o in self._orders.items() if o.status.is_final]
        drop = final[: len(self._orders) - keep]
        for coid in drop:
            del self._orders[coid]
            self._final_json.pop(coid, None)
            self._resolved.pop(coid, None)
        return len(drop)

    def all_orders(self) -> list[OrderResult]:
        """Every order the book holds, in submission order."""
        return [self._result(o) for o in self._orders.values()]

    def all_fills(self) -> list[Fill]:
        """Every fill the book holds, in execution order."""
        fills = [(f["seq"], self._fill_event(o, f)) for o in self._orders.values() for f in o.fills]
        return [fill for _, fill in sorted(fills, key=lambda item: item[0])]

    def submissions(self) -> int:
        """How many times submit_order was called (among the latest REQUEST_LOG_SIZE calls)."""
        return sum(1 for r in self.request_log if r.method == "submit_order")

    # ----------------------------------------------------------------- internals: accepting and executing

    async def _before_call(self) -> None:
        if self.faults.latency_s > 0:
            await asyncio.sleep(self.faults.latency_s)
        if self.faults.unavailable:
            raise BrokerUnavailable(f"{self.name}: broker unavailable (simulated connection refused)")

    def _log_request(self, method: str, client_order_id: str | None) -> None:
        self.request_log.append(PaperRequest(method, client_order_id))

    def _accept(self, intent: OrderIntent) -> tuple[_Order, float | None]:
        """Validate and book an order; the price to fill it at now, or None when it rests."""
        problem = _intent_problem(intent)
        if problem:
            raise OrderRejected(problem, code=422)
        option = intent.asset_class == AssetClass.OPTION
        try:
            occ = parse_occ(intent.symbol) if option else None
        except OccError as exc:
            raise OrderRejected(f"symbol: {exc}", code=422) from None
        last = self._option_value(intent.symbol, occ, exact_quote=True) if option else self._last.get(intent.symbol)
        if last is None:
            subject = occ.underlying if occ else intent.symbol
            raise OrderRejected(
                f"symbol: no price yet for {subject!r} at {self.name} (it fills at the last bar's price)"
            )
        order_type = intent.order_type
        if order_type == OrderType.BRACKET:
            order_type = OrderType.LIMIT if intent.limit_price else OrderType.MARKET
        order = _Order(
            client_order_id=intent.client_order_id, broker_order_id=f"{self.name}-{self._order_seq + 1}",
            symbol=intent.symbol, side=Side(intent.side), quantity=float(intent.quantity), order_type=order_type,
            asset_class=AssetClass(intent.asset_class), status=OrderStatus.NEW, limit_price=intent.limit_price,
            stop_price=intent.stop_price, reduce_only=intent.reduce_only, time_in_force=intent.time_in_force,
            submitted_at=self.clock.now(),
        )
        price = _immediate_price(order, last, self._slip)
        self._check_funding(order, price if price is not None else _resting_price(order, last, self._slip))
        self._order_seq += 1
        self._orders[order.client_order_id] = order
        return order, price

    def _check_funding(self, order: _Order, price: float) -> None:
        qty, _ = self.position(order.symbol)
        signed = order.quantity if order.side == Side.BUY else -order.quantity
        if order.reduce_only and (abs(qty) < _EPS or (qty > 0) == (signed > 0) or abs(signed) > abs(qty) + _EPS):
            raise OrderRejected(
                f"reduce_only: {order.side} {order.quantity} {order.symbol} would not reduce the position {qty}",
                code=422,
            )
        if abs(qty) < _EPS or (qty > 0) == (signed > 0):
            opening = abs(signed)
        else:
            opening = max(0.0, abs(signed) - abs(qty))  # the part that flips the position
        if opening < _EPS:
            return
        cost = opening * price * order.multiplier + opening * self.settings.commission_per_share
        power = self._buying_power(self._short_value())
        if cost > power + 1e-6:
            raise OrderRejected(
                f"buying_power: insufficient buying power for {order.side} {order.quantity} {order.symbol}: "
                f"needs {cost:.2f}, has {power:.2f}",
                code=403,
            )

    def _execute(self, order: _Order, price: float) -> list[BrokerEvent]:
        """Fill the whole order at `price`: cash, position, order and fill record; returns the events."""
        qty = order.quantity - order.filled_qty
        commission = qty * self.settings.commission_per_share
        mult = order.multiplier
        signed = qty if order.side == Side.BUY else -qty
        self.cash += -signed * price * mult - commission
        old_qty, old_avg = self.position(order.symbol)
        new_qty, new_avg, realized = apply_fill_to_position(old_qty, old_avg, signed, price)
        self.realized_pnl += realized * mult
        if abs(new_qty) < _EPS:
            self._positions.pop(order.symbol, None)
        else:
            self._positions[order.symbol] = [new_qty, new_avg]
        previous_value = order.filled_qty * (order.filled_avg_price or 0.0)
        order.filled_qty += qty
        order.filled_avg_price = (previous_value + qty * price) / order.filled_qty
        order.status = OrderStatus.FILLED
        self._fill_seq += 1
        now = self.clock.now()
        record = {
            "fill_id": f"{self.name}-fill-{self._fill_seq}", "seq": self._fill_seq, "quantity": qty,
            "price": price, "commission": commission, "timestamp": now.isoformat(),
        }
        order.fills.append(record)
        return [self._fill_event(order, record, now), self._update_event(order)]

    def _market_values(self) -> tuple[float, float]:
        long_value = short_value = 0.0
        for symbol, (qty, avg) in self._positions.items():
            value = self._market_value(symbol, qty, avg)
            if qty > 0:
                long_value += value
            else:
                short_value += value
        return long_value, short_value

    def _short_value(self) -> float:
        """The short side of `_market_values` alone (every order's funding check): the longs are not valued."""
        short_value = 0.0
        for symbol, (qty, avg) in self._positions.items():
            if not qty > 0:
                short_value += self._market_value(symbol, qty, avg)
        return short_value

    def _market_value(self, symbol: str, qty: float, avg: float) -> float:
        """One position at its last price (its average without one)."""
        mark = self.last_price(symbol)
        multiplier = OPTION_MULTIPLIER if len(symbol) > 6 and try_parse_occ(symbol) is not None else 1.0
        return abs(qty) * (avg if mark is None else mark) * multiplier

    def _buying_power(self, short_value: float) -> float:
        return max(0.0, self.cash - short_value)

    def _trigger_symbol(self, order: _Order) -> str:
        if order.asset_class == AssetClass.OPTION:
            occ = try_parse_occ(order.symbol)
            return occ.underlying if occ else order.symbol
        return order.symbol

    def _result(self, order: _Order) -> OrderResult:
        return OrderResult(
            client_order_id=order.client_order_id, status=order.status, broker=self.name,
            broker_order_id=order.broker_order_id, symbol=order.symbol, side=order.side, quantity=order.quantity,
            filled_qty=order.filled_qty, filled_avg_price=order.filled_avg_price, reason=order.reason,
            submitted_at=order.submitted_at,
        )

    def _update_event(self, order: _Order) -> OrderUpdate:
        return OrderUpdate(
            client_order_id=order.client_order_id, status=order.status, broker=self.name,
            broker_order_id=order.broker_order_id, symbol=order.symbol, side=order.side,
            filled_qty=order.filled_qty, filled_avg_price=order.filled_avg_price, reason=order.reason,
            timestamp=self.clock.now(),
        )

    def _fill_event(self, order: _Order, record: dict[str, Any], at: datetime | None = None) -> Fill:
        """The fill event of one of the order's fill records; `at`: its time as a datetime when at hand (the
        record holds it as text)."""
        when = at if at is not None else datetime.fromisoformat(record["timestamp"])
        return Fill(
            fill_id=record["fill_id"], client_order_id=order.client_order_id, symbol=order.symbol, side=order.side,
            quantity=record["quantity"], price=record["price"], timestamp=when,
            broker=self.name, broker_order_id=order.broker_order_id, commission=record["commission"],
        )

    # ----------------------------------------------------------------- persistence

    async def _persist(self) -> None:
        """Write the book atomically if it changed (serialised: a later write always holds a later book)."""
        if self.state_path is None:
            self._dirty = False
            return
        async with self._persist_lock:
            if not self._dirty:
                return
            self._dirty = False
            data = self._serialize()
            try:
                await asyncio.to_thread(atomic_write_bytes, self.state_path, data)
            except BaseException:
                self._dirty = True
                raise

    def _serialize(self) -> bytes:
        """The book as compact JSON; final orders never change, so their JSON is cached."""
        book = {
            "version": BOOK_VERSION, "broker": self.name, "cash": self.cash, "realized_pnl": self.realized_pnl,
            "positions": self._positions, "last_prices": self._last, "order_seq": self._order_seq,
            "fill_seq": self._fill_seq, "acked_fill_seq": self._acked_fill_seq, "orders": [],
        }
        head = json.dumps(book, separators=(",", ":"))
        assert head.endswith('"orders":[]}')
        orders = ",".join(self._order_json(o) for o in self._orders.values())
        return f"{head[:-2]}{orders}]}}\n".encode()

    def _order_json(self, order: _Order) -> str:
        cached = self._final_json.get(order.client_order_id)
        if cached is not None:
            return cached
        text = json.dumps(order.to_dict(), separators=(",", ":"))
        if order.status.is_final:
            self._final_json[order.client_order_id] = text
        return text

    def _load(self) -> None:
        assert self.state_path is not None
        path = self.state_path
        try:
            raw = read_regular_file(path, MAX_BOOK_BYTES)  # a FIFO or a device is refused, not read
        except FileNotFoundError:
            return
        except UnreadableFile as exc:
            raise PaperBookCorrupt(f"paper broker book {path} {exc}; refusing to start without it") from exc
        except OSError as exc:
            raise PaperBookCorrupt(f"paper broker book {path} cannot be read: {exc}") from exc
        try:
            if json_depth(raw) > MAX_BOOK_DEPTH:
                raise ValueError(f"nested more than {MAX_BOOK_DEPTH} levels deep")
            self._restore(json.loads(raw))
        except (ValueError, KeyError, TypeError, AttributeError, OverflowError, RecursionError) as exc:
            raise PaperBookCorrupt(
                f"paper broker book {path} is corrupt ({type(exc).__name__}: {exc}); refusing to start with an "
                "empty book that may hide positions: fix the file or move it aside to start fresh"
            ) from exc
        for order in self._orders.values():
            if order.status in _OPEN_STATUSES:
                self._resting[self._trigger_symbol(order)].append(order)
        log.info("paper_book_loaded", broker=self.name, path=str(path), orders=len(self._orders),
                 positions=len(self._positions), cash=round(self.cash, 2))

    def _restore(self, book: Any) -> None:
        if not isinstance(book, dict):
            raise ValueError(f"expected a JSON object, got {type(book).__name__}")
        if book.get("version") != BOOK_VERSION:
            raise ValueError(f"version: expected {BOOK_VERSION}, got {book.get('version')!r}")
        self.cash = _finite(book["cash"], "cash")
        self.realized_pnl = _finite(book.get("realized_pnl", 0.0), "realized_pnl")
        positions = book["positions"]
        if not isinstance(positions, dict):
            raise ValueError("positions: expected an object")
        self._positions = {
            str(s): [_finite(v[0], f"positions.{s}"), _finite(v[1], f"positions.{s}")] for s, v in positions.items()
        }
        self._last = {str(s): _finite(p, f"last_prices.{s}") for s, p in book["last_prices"].items()}
        self._order_seq = int(book["order_seq"])
        self._fill_seq = int(book["fill_seq"])
        self._acked_fill_seq = int(book.get("acked_fill_seq", 0))
        orders = book["orders"]
        if not isinstance(orders, list):
            raise ValueError("orders: expected a list")
        self._orders = {}
        for entry in orders:
            order = _Order.from_dict(entry)
            self._orders[order.client_order_id] = order


def _fill_seq_of(fill_id: str) -> int:
    try:
        return int(fill_id.rsplit("-", 1)[1])
    except (IndexError, ValueError):
        return 0


def _intent_problem(intent: OrderIntent) -> str | None:
    """Why an order intent cannot be booked (naming the field), or None."""
    if not isinstance(intent.symbol, str) or not intent.symbol.strip():
        return "symbol: must be a non-empty symbol"
    if str(intent.side) not in ("buy", "sell"):
        return f"side: must be 'buy' or 'sell', got {intent.side!r}"
    qty = intent.quantity
    if isinstance(qty, bool) or not isinstance(qty, (int, float)) or not math.isfinite(qty) or qty <= 0:
        return f"quantity: must be a finite positive number, got {qty!r}"
    if not is_value_of(OrderType, str(intent.order_type)):
        return f"order_type: unknown {intent.order_type!r}"
    for name, needed in (("limit_price", OrderType.LIMIT), ("stop_price", OrderType.STOP)):
        value = getattr(intent, name)
        if intent.order_type == needed and value is None:
            return f"{name}: required for a {needed} order"
        if value is not None and (not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0):
            return f"{name}: must be a finite positive price, got {value!r}"
    return None


def _limit_fill(buy: bool, limit: float, low: float, high: float, price: float) -> float | None:
    """A limit order's fill when the prices [low, high] reach its limit: at `price` or better, else None."""
    if buy and low <= limit:
        return min(limit, price)
    if not buy and high >= limit:
        return max(limit, price)
    return None


def _immediate_price(order: _Order, last: float, slip: float) -> float | None:
    """The fill price if the order executes on submission, else None (it rests)."""
    buy = order.side == Side.BUY
    with_slippage = last * (1.0 + slip) if buy else last * (1.0 - slip)
    if order.order_type == OrderType.MARKET:
        return with_slippage
    if order.order_type == OrderType.LIMIT:
        return _limit_fill(buy, order.limit_price or 0.0, last, last, with_slippage)
    stop = order.stop_price or 0.0
    if (buy and last >= stop) or (not buy and last <= stop):
        return with_slippage
    return None


def _resting_price(order: _Order, last: float, slip: float) -> float:
    """The price a resting order is funded at: its limit, or its stop moved by the slippage it fills with."""
    if order.order_type == OrderType.LIMIT and order.limit_price:
        return order.limit_price
    if order.order_type == OrderType.STOP and order.stop_price:
        return order.stop_price * (1.0 + slip) if order.side == Side.BUY else order.stop_price * (1.0 - slip)
    return last


def _trigger_price(order: _Order, open_: float, high: float, low: float, slip: float) -> float | None:
    """The fill price of a resting order on a bar that crosses it (a gap fills at the open), else None."""
    buy = order.side == Side.BUY
    if order.order_type == OrderType.LIMIT:
        return _limit_fill(buy, order.limit_price or 0.0, low, high, open_)
    if order.order_type == OrderType.STOP:
        stop = order.stop_price or 0.0
        if buy and high >= stop:
            return max(stop, open_) * (1.0 + slip)
        if not buy and low <= stop:
            return min(stop, open_) * (1.0 - slip)
    return None


__all__ = [
    "BOOK_VERSION",
    "PaperBookCorrupt",
    "PaperBroker",
    "PaperFaults",
    "PaperRequest",
    "apply_fill_to_position",
]
