"""Interactive Brokers through ib_async 2.1: the Broker port over a TWS / IB Gateway socket.

- Only ib_async's non-blocking calls are used (`connectAsync`, `qualifyContractsAsync`, `reqPositionsAsync`,
  `reqAllOpenOrdersAsync`, `reqCompletedOrdersAsync`, `reqExecutionsAsync`, `accountSummaryAsync`, and the
  fire-and-forget `placeOrder` / `cancelOrder`), each bounded by `request_timeout_seconds`.
- `order.orderRef` carries the client order id: it is the idempotency key, echoed on open orders, completed
  orders and executions.
- orderStatus / openOrder / execDetails / commissionReport become `OrderUpdate` and `Fill` events, delivered in
  order by one dispatcher task. A fill waits (briefly) for its commission report; `fill_id` is the execId and a
  fill is emitted once per broker instance even when IB repeats it.
- IB error codes: 201 -> rejected, 103 -> DuplicateClientOrderId, 100 -> RetryableBrokerError (pacing),
  200 -> unknown contract (rejected), 1100 -> degraded, 1101 / 1102 -> restored (resync).
- ib_async throttles its own requests to 45 per second; the broker enforces that it stays on.
- On a dropped socket: reconnect with exponential backoff, rebuild from open trades, completed orders and
  executions matching by orderRef, emit fills missed while down, and only then become ready again
  (`wait_ready()`); `submit_order` meanwhile raises `BrokerUnavailable`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, TypeVar

from ib_async import IB, Contract, LimitOrder, MarketOrder, Option, Order, Stock, StopOrder, Trade
from ib_async import Fill as IBFill
from ib_async.util import UNSET_DOUBLE

from adapters.chain_venue import ChainVenueMixin
from adapters.ibkr_options import IBOptionChains
from config.settings import IBKRSettings, OptionsSettings
from pipeline.core.clock import Clock
from pipeline.core.models import (
    OPTION_MULTIPLIER,
    AccountSnapshot,
    AssetClass,
    BrokerEvent,
    BrokerPosition,
    Fill,
    OrderIntent,
    OrderKind,
    OrderResult,
    OrderStatus,
    OrderType,
    OrderUpdate,
    Side,
    client_order_id_for,
)
from pipeline.core.ports import (
    BrokerEventHandler,
    BrokerUnavailable,
    DuplicateClientOrderId,
    OrderRejected,
    RetryableBrokerError,
    SendGuard,
    send_anything,
)
from pipeline.instruments.chains import PrefetchedChains
from pipeline.instruments.occ import OccContract, OccError, is_occ, occ_symbol, parse_occ, try_parse_occ

log = logging.getLogger("ordergate.adapters.ibkr")

IB_MAX_REQUESTS_PER_SECOND = 45
ERR_PACING = 100
ERR_DUPLICATE_ORDER_ID = 103
ERR_UNKNOWN_CONTRACT = 200
ERR_REJECTED = 201
ERR_CANCELLED = 202
ERR_CONNECTIVITY_LOST = 1100
ERR_RESTORED_DATA_LOST = 1101
ERR_RESTORED_DATA_KEPT = 1102
_NOT_PLACED = frozenset({ERR_PACING, ERR_DUPLICATE_ORDER_ID})
_WARNINGS = frozenset({105, 110, 165, 321, 329, 399, 404, 434, 492, 10167})
_ACKED = frozenset({"PreSubmitted", "Submitted", "Filled", "PendingCancel", "Cancelled", "ApiCancelled", "Inactive"})
_TIF = {"day": "DAY", "gtc": "GTC", "ioc": "IOC", "fok": "FOK", "opg": "OPG"}

HEALTH_CONNECTED = "connected"
HEALTH_DEGRADED = "degraded"
HEALTH_DOWN = "down"

T = TypeVar("T")


# ---------------------------------------------------------------------------------------------- contracts


def option_contract(occ: OccContract, exchange: str = "SMART") -> Option:
    """The IB option contract of an OCC contract: OPT, symbol, lastTradeDateOrContractMonth, strike, right,
    multiplier, exchange, USD; its localSymbol is our (padded) OCC symbol."""
    return Option(occ.root, occ.ib_expiry, occ.strike, occ.right, exchange, str(int(OPTION_MULTIPLIER)), "USD",
                  localSymbol=occ.symbol)


def contract_for(symbol: str, asset_class: AssetClass = AssetClass.EQUITY) -> Contract:
    """The unqualified IB contract of a symbol: a SMART/USD Stock, or an Option from an OCC symbol."""
    text = symbol.strip().upper()
    occ = try_parse_occ(text) if is_occ(text) else None
    if occ is None:
        if asset_class == AssetClass.OPTION:
            try:
                parse_occ(text)
            except OccError as exc:
                raise OrderRejected(f"symbol: {exc}", code="contract") from None
        if not text or len(text) > 12 or not all(c.isalnum() or c in ".-/ " for c in text):
            raise OrderRejected(f"symbol: {symbol!r} is not a valid stock symbol", code="contract")
        return Stock(text.replace("/", " ").replace(".", " "), "SMART", "USD")  # IB spells BRK.B "BRK B"
    return option_contract(occ)


def symbol_of(contract: Contract) -> str:
    """Our symbol for an IB contract: the ticker for stocks, the 21-character OCC symbol for options."""
    if contract.secType == "OPT":
        expiry = contract.lastTradeDateOrContractMonth or ""
        try:
            return occ_symbol(contract.symbol, date(int(expiry[:4]), int(expiry[4:6]), int(expiry[6:8])),
                              contract.right, contract.strike)
        except (ValueError, OccError):
            return (contract.localSymbol or contract.symbol).upper()
    return contract.symbol.replace(" ", ".")


def _multiplier(contract: Contract) -> float:
    try:
        return float(contract.multiplier or 1) or 1.0
    except ValueError:
        return 1.0


# ---------------------------------------------------------------------------------------------- tracking


@dataclass
class _Tracked:
    """What the broker knows about one client order id."""

    client_order_id: str
    symbol: str = ""
    side: Side | None = None
    quantity: float = 0.0
    order_id: int = 0
    perm_id: int = 0
    status: OrderStatus = OrderStatus.PENDING
    filled: float = 0.0
    avg_price: float | None = None
    reason: str | None = None
    acked: bool = False
    emitted: tuple[OrderStatus, float, float | None] | None = None
    held: bool = False               # IB has held it for a locate (logged once)
    stop_price: float | None = None  # a STP order's trigger (auxPrice) as IB last gave it: an edit in TWS moves it

    @property
    def broker_order_id(self) -> str | None:
        if self.perm_id:
            return str(self.perm_id)
        return str(self.order_id) if self.order_id else None


@dataclass
class _Entry:
    event: BrokerEvent
    ready: bool
    deadline: float
    exec_id: str = ""


@dataclass
class _Ack:
    """How a placed order was first answered: acknowledged (a trade status) or an error."""

    trade: Trade | None = None
    code: int = 0
    message: str = ""


@dataclass
class _Outbox:
    """Events in arrival order; a fill holds the line until its commission report arrives (or a grace period)."""

    wait_seconds: float
    items: deque[_Entry] = field(default_factory=deque)
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    def put(self, event: BrokerEvent, *, ready: bool = True, exec_id: str = "") -> None:
        deadline = asyncio.get_running_loop().time() + self.wait_seconds
        self.items.append(_Entry(event, ready, deadline, exec_id))
        self.wake.set()

    def complete(self, exec_id: str, commission: float) -> None:
        for entry in self.items:
            if entry.exec_id == exec_id and isinstance(entry.event, Fill):
                entry.event.commission = commission
                entry.ready = True
                self.wake.set()
                return

    def release_all(self) -> None:
        for entry in self.items:
            entry.ready = True
        self.wake.set()

    def pop_ready(self) -> BrokerEvent | None:
        if self.items and (self.items[0].ready or asyncio.get_running_loop().time() >= self.items[0].deadline):
            return self.items.popleft().event
        return None

    def next_deadline(self) -> float | None:
        return self.items[0].deadline if self.items else None


# ---------------------------------------------------------------------------------------------- the broker


class IBKRBroker(ChainVenueMixin):
    """The Broker port for Interactive Brokers (TWS / IB Gateway) through ib_async."""

    def __init__(
        self,
        settings: IBKRSettings,
        clock: Clock,
        name: str = "ibkr",
        *,
        reconnect_initial_delay: float = 0.5,
        reconnect_max_delay: float = 30.0,
        commission_wait_seconds: float = 1.0,
        ib: IB | None = None,
        options: OptionsSettings | None = None,
        chain_tickers: list[str] | None = None,
    ) -> None:
        self.name = name
        self.settings = settings
        self.clock = clock
        self.ib = ib or IB()
        self.reconnect_initial_delay = reconnect_initial_delay
        self.reconnect_max_delay = reconnect_max_delay
        self._timeout = settings.request_timeout_seconds
        self._handler: BrokerEventHandler | None = None
        self._send_guard: SendGuard = send_anything
        self._health_listener: Callable[[str, str], None] | None = None
        self._health = HEALTH_DOWN
        self._ready = asyncio.Event()
        self._closing = False
        self._connecting = False
        self._syncing = False
        self._reconnect_task: asyncio.Task[None] | None = None
        self._resync_task: asyncio.Task[None] | None = None
        self._dispatcher: asyncio.Task[None] | None = None
        self._outbox = _Outbox(commission_wait_seconds)
        self._orders: dict[str, _Tracked] = {}
        self._by_order_id: dict[int, str] = {}
        self._seen_execs: set[str] = set()
        self._acks: dict[int, asyncio.Future[_Ack]] = {}
        self._contracts: dict[str, Contract] = {}
        self._contract_errors: dict[int, str] = {}
        self._status_changed = asyncio.Event()
        self.reconnects = 0
        # [exits] broker_stop: an entry with a stop goes out as a parent with its protective STP attached as a child
        # (client order id client_order_id_for(signal id, "stop0")), the parent untransmitted until the child is
        # placed, so the pair goes live together; the daemon adopts the child as the position's resting stop
        self.attach_stops = False
        # the option chain port: reqSecDefOptParams, contract details and market data, fetched in the background
        self.option_fetcher = IBOptionChains(self.ib, self._call, self._require_ready, options or OptionsSettings(),
                                             quote_wait=min(3.0, self._timeout))
        self.option_chains = PrefetchedChains(self.option_fetcher.fetch, clock, chain_tickers or [],
                                              options or OptionsSettings(), source=name)
        self._enforce_throttle()
        self._hook_events()

    # ------------------------------------------------------------------ setup

    def _enforce_throttle(self) -> None:
        client = self.ib.client
        if not client.MaxRequests or client.MaxRequests > IB_MAX_REQUESTS_PER_SECOND:
            client.MaxRequests = IB_MAX_REQUESTS_PER_SECOND
        client.RequestsInterval = max(float(client.RequestsInterval), 1.0)

    @property
    def throttle(self) -> tuple[int, float]:
        """(max requests, per seconds) of ib_async's own request throttle."""
        return self.ib.client.MaxRequests, self.ib.client.RequestsInterval

    def _hook_events(self) -> None:
        self.ib.orderStatusEvent += self._on_status
        self.ib.openOrderEvent += self._on_status
        self.ib.execDetailsEvent += self._on_exec
        self.ib.commissionReportEvent += self._on_commission
        self.ib.errorEvent += self._on_error
        self.ib.disconnectedEvent += self._on_disconnected

    def set_event_handler(self, handler: BrokerEventHandler) -> None:
        self._handler = handler

    def set_send_guard(self, guard: SendGuard) -> None:
        self._send_guard = guard

    def set_health_listener(self, listener: Callable[[str, str], None]) -> None:
        """Called with (broker name, health) whenever the health changes."""
        self._health_listener = listener

    @property
    def health(self) -> str:
        """connected | degraded (TWS lost IB, or resyncing) | down (no socket)."""
        return self._health

    def _set_health(self, health: str) -> None:
        if health != self._health:
            log.info("ibkr_health", extra={"broker": self.name, "health": health, "was": self._health})
            self._health = health
            if self._health_listener is not None:
                self._health_listener(self.name, health)

    def is_connected(self) -> bool:
        return self.ib.isConnected() and self._ready.is_set()

    async def wait_ready(self, timeout: float | None = None) -> bool:
        """Wait until connected and rebuilt (after a reconnect); False on timeout."""
        try:
            await asyncio.wait_for(self._ready.wait(), timeout)
        except TimeoutError:
            return False
        return True

    # ------------------------------------------------------------------ connect / reconnect / close

    async def connect(self) -> None:
        """Connect and rebuild. Raises BrokerUnavailable when TWS cannot be reached (a retry loop keeps trying)."""
        self._closing = False
        self._start_dispatcher()
        if self._ready.is_set():
            return
        if self._reconnect_task is not None and not self._reconnect_task.done():
            if await self.wait_ready(self._timeout):
                return
            raise BrokerUnavailable(f"{self.name}: still reconnecting to {self._address()}")
        try:
            await self._connect_once()
        except Exception as exc:
            self._schedule_reconnect()
            raise BrokerUnavailable(f"{self.name}: cannot connect to {self._address()}: {exc!r}") from exc

    def _address(self) -> str:
        return f"{self.settings.host}:{self.settings.port} (client id {self.settings.client_id})"

    async def _connect_once(self) -> None:
        self._connecting = True
        self._syncing = True
        try:
            await self.ib.connectAsync(
                self.settings.host, self.settings.port, clientId=self.settings.client_id, timeout=self._timeout,
                account=self.settings.account, raiseSyncErrors=True,
            )
            self._rebuild()
        finally:
            self._syncing = False
            self._connecting = False
        self._set_health(HEALTH_CONNECTED)
        self._ready.set()
        self.option_chains.start()  # idempotent: the refresh loop outlives reconnects

    def _schedule_reconnect(self) -> None:
        if self._closing or (self._reconnect_task is not None and not self._reconnect_task.done()):
            return
        self._reconnect_task = asyncio.get_running_loop().create_task(self._reconnect_loop())

    async def _reconnect_loop(self) -> None:
        delay = self.reconnect_initial_delay
        while not self._closing:
            await asyncio.sleep(delay)
            if self._closing:
                return
            try:
                await self._connect_once()
            except Exception as exc:  # any failure means: try again later
                log.warning("ibkr_reconnect_failed", extra={"broker": self.name, "error": repr(exc), "delay": delay})
                delay = min(delay * 2, self.reconnect_max_delay)
                continue
            self.reconnects += 1
            log.info("ibkr_reconnected", extra={"broker": self.name, "reconnects": self.reconnects})
            return

    def _on_disconnected(self) -> None:
        self._ready.clear()
        self._set_health(HEALTH_DOWN)
        self._fail_acks("connection to TWS lost")
        if not self._closing and not self._connecting:
            self._schedule_reconnect()

    async def close(self) -> None:
        """Disconnect, deliver pending events, stop background tasks."""
        self._closing = True
        self._ready.clear()
        await self.option_chains.stop()
        for task in (self._reconnect_task, self._resync_task):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        self.ib.disconnect()
        self._set_health(HEALTH_DOWN)
        self._outbox.release_all()
        await self.flush_events(timeout=self._timeout)
        if self._dispatcher is not None:
            self._dispatcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._dispatcher
            self._dispatcher = None

    # ------------------------------------------------------------------ rebuild

    def _rebuild(self, completed: list[Trade] | None = None) -> None:
        """Match IB's open trades, completed orders and executions to client order ids; emit what was missed.

        Runs right after connectAsync synchronised (no await inside, so no live event slips in between).
        Fills first (in execution time order), then status updates; unacknowledged orders IB never saw are
        forgotten so they can be sent again.
        """
        found: set[str] = set()
        for trade in [*self.ib.trades(), *(completed or [])]:
            cid = trade.order.orderRef
            if cid:
                found.add(cid)
                self._adopt_trade(cid, trade)
        fills = sorted(self.ib.fills(), key=lambda f: f.execution.time)
        for ib_fill in fills:
            cid = ib_fill.execution.orderRef
            if not cid:
                continue
            found.add(cid)
            tracked = self._orders.setdefault(cid, _Tracked(cid, symbol=symbol_of(ib_fill.contract)))
            tracked.perm_id = tracked.perm_id or ib_fill.execution.permId
            if ib_fill.execution.execId not in self._seen_execs:
                self._seen_execs.add(ib_fill.execution.execId)
                self._outbox.put(self._make_fill(ib_fill, tracked))
        self._apply_fill_totals(fills)
        for cid in sorted(found):
            self._emit_update(self._orders[cid])
        for cid, tracked in list(self._orders.items()):
            if cid not in found and not tracked.acked and tracked.status == OrderStatus.PENDING:
                log.info("ibkr_forget_unsent_order", extra={"broker": self.name, "client_order_id": cid})
                self._forget(cid)

    def _adopt_trade(self, cid: str, trade: Trade) -> None:
        tracked = self._orders.setdefault(cid, _Tracked(cid))
        tracked.symbol = tracked.symbol or symbol_of(trade.contract)
        tracked.side = tracked.side or (Side.BUY if trade.order.action == "BUY" else Side.SELL)
        tracked.quantity = float(trade.order.totalQuantity) or tracked.quantity
        if trade.order.orderId:
            tracked.order_id = trade.order.orderId
            self._by_order_id[trade.order.orderId] = cid
        tracked.perm_id = trade.order.permId or trade.orderStatus.permId or tracked.perm_id
        tracked.acked = True
        tracked.stop_price = _trigger_of(trade) or tracked.stop_price
        status, reason = self._map_status(trade, tracked)
        if status is not None and not (tracked.status.is_final and not status.is_final):
            if status != tracked.status:
                tracked.reason = reason or tracked.reason
            tracked.status = status
        filled = _filled_of(trade)
        tracked.filled = max(tracked.filled, filled)
        if trade.orderStatus.avgFillPrice:
            tracked.avg_price = trade.orderStatus.avgFillPrice

    def _apply_fill_totals(self, fills: list[IBFill]) -> None:
        totals: dict[str, tuple[float, float]] = {}
        for ib_fill in fills:
            qty, notional = totals.get(ib_fill.execution.orderRef, (0.0, 0.0))
            totals[ib_fill.execution.orderRef] = (qty + ib_fill.execution.shares,
                                                  notional + ib_fill.execution.shares * ib_fill.execution.price)
        for cid, (qty, notional) in totals.items():
            tracked = self._orders.get(cid)
            if tracked is None or qty <= 0:
                continue
            tracked.filled = max(tracked.filled, qty)
            tracked.avg_price = notional / qty
            if tracked.status in (OrderStatus.PENDING, OrderStatus.NEW):
                done = tracked.quantity and tracked.filled >= tracked.quantity
                tracked.status = OrderStatus.FILLED if done else OrderStatus.PARTIALLY_FILLED

    def _forget(self, cid: str) -> None:
        tracked = self._orders.pop(cid, None)
        if tracked is not None and tracked.order_id:
            self._by_order_id.pop(tracked.order_id, None)

    # ------------------------------------------------------------------ ib_async events

    def _cid_of(self, trade: Trade) -> str:
        return trade.order.orderRef or self._by_order_id.get(trade.order.orderId, "")

    def _on_status(self, trade: Trade) -> None:
        self._status_changed.set()
        cid = self._cid_of(trade)
        status = trade.orderStatus.status
        code, message = _latest_error(trade)
        if code and status in ("Cancelled", "ApiCancelled"):
            self._resolve_ack(trade.order.orderId, _Ack(code=code, message=message))
        elif status in _ACKED:
            self._resolve_ack(trade.order.orderId, _Ack(trade=trade))
        if not cid or self._syncing:
            return
        tracked = self._orders.get(cid)
        if tracked is None:
            return  # an order this broker did not place (another client / TWS)
        if code in _NOT_PLACED:
            if trade.order.orderId not in self._acks:
                self._drop_unplaced(tracked)  # a late answer after submit_order gave up: free the id for a resend
            return  # never placed: submit_order raises, nothing to report
        if status in _ACKED:
            tracked.acked = True
        tracked.perm_id = trade.orderStatus.permId or trade.order.permId or tracked.perm_id
        new_status, reason = self._map_status(trade, tracked)
        if new_status is None:
            return
        if status == "Inactive" and _held_for_locate(trade) and not tracked.held:
            tracked.held = True
            log.warning("ibkr_order_held_for_locate", extra={
                "broker": self.name, "client_order_id": cid, "symbol": tracked.symbol,
                "detail": "IB holds this short sale while it locates shares to borrow: it stays working and can "
                          "fill at any time until it is cancelled"})
        tracked.status, tracked.reason = new_status, reason or tracked.reason
        tracked.stop_price = _trigger_of(trade) or tracked.stop_price
        tracked.filled = max(tracked.filled, trade.orderStatus.filled)
        if trade.orderStatus.avgFillPrice:
            tracked.avg_price = trade.orderStatus.avgFillPrice
        self._emit_update(tracked)

    def _map_status(self, trade: Trade, tracked: _Tracked) -> tuple[OrderStatus | None, str | None]:
        """IB's order status (plus the error that ended it, if any) in our vocabulary; None = nothing to say."""
        ib_status = trade.orderStatus.status
        filled = _filled_of(trade)
        code, message = _latest_error(trade)
        if ib_status == "Filled":
            return OrderStatus.FILLED, None
        if ib_status in ("Cancelled", "ApiCancelled"):
            if code == ERR_REJECTED or (code and code != ERR_CANCELLED and not tracked.acked):
                return OrderStatus.REJECTED, message or f"rejected by IB ({code})"
            return OrderStatus.CANCELED, message if code and code != ERR_CANCELLED else None
        if ib_status == "Inactive":
            if _held_for_locate(trade):  # a short sale IB holds while it looks for shares to borrow: still live
                return (OrderStatus.PARTIALLY_FILLED if filled > 0 else OrderStatus.NEW), None
            return OrderStatus.REJECTED, message or "order inactive at IB"
        if ib_status in ("PreSubmitted", "Submitted", "PendingCancel"):
            return (OrderStatus.PARTIALLY_FILLED if filled > 0 else OrderStatus.NEW), None
        return None, None

    def _emit_update(self, tracked: _Tracked) -> None:
        if tracked.status == OrderStatus.PENDING:
            return
        key = (tracked.status, tracked.filled, tracked.stop_price)  # a new trigger alone (an edit in TWS) is news
        if key == tracked.emitted:
            return
        tracked.emitted = key
        self._outbox.put(OrderUpdate(
            client_order_id=tracked.client_order_id, status=tracked.status, broker=self.name,
            broker_order_id=tracked.broker_order_id, symbol=tracked.symbol, side=tracked.side,
            filled_qty=tracked.filled, filled_avg_price=tracked.avg_price, reason=tracked.reason,
            timestamp=self.clock.now(), stop_price=tracked.stop_price,
        ))

    def _on_exec(self, trade: Trade, ib_fill: IBFill) -> None:
        if self._syncing:
            return  # the rebuild emits it
        exec_id = ib_fill.execution.execId
        if exec_id in self._seen_execs:
            return
        cid = ib_fill.execution.orderRef or self._cid_of(trade)
        if not cid:
            return
        self._seen_execs.add(exec_id)
        tracked = self._orders.setdefault(cid, _Tracked(cid, symbol=symbol_of(ib_fill.contract)))
        has_commission = bool(ib_fill.commissionReport.execId)
        self._outbox.put(self._make_fill(ib_fill, tracked), ready=has_commission, exec_id=exec_id)

    def _on_commission(self, _trade: Trade, ib_fill: IBFill, report: Any) -> None:
        self._outbox.complete(ib_fill.execution.execId, float(report.commission or 0.0))

    def _make_fill(self, ib_fill: IBFill, tracked: _Tracked) -> Fill:
        ex = ib_fill.execution
        when = ex.time if ex.time.tzinfo is not None and ex.time.year > 1970 else self.clock.now()
        return Fill(
            fill_id=ex.execId, client_order_id=tracked.client_order_id,
            symbol=tracked.symbol or symbol_of(ib_fill.contract), side=Side.BUY if ex.side == "BOT" else Side.SELL,
            quantity=float(ex.shares), price=float(ex.price), timestamp=when.astimezone(UTC), broker=self.name,
            broker_order_id=str(ex.permId) if ex.permId else str(ex.orderId),
            commission=float(ib_fill.commissionReport.commission or 0.0),
        )

    def _on_error(self, req_id: int, code: int, message: str, contract: Contract | None) -> None:
        if contract is not None:
            self._contract_errors[id(contract)] = f"IB error {code}: {message}"
        if code == ERR_CONNECTIVITY_LOST:
            self._ready.clear()
            self._set_health(HEALTH_DEGRADED)
            return
        if code in (ERR_RESTORED_DATA_LOST, ERR_RESTORED_DATA_KEPT):
            self._schedule_resync()
            return
        if req_id in self._acks and code not in _WARNINGS and not 2100 <= code < 2200:
            self._resolve_ack(req_id, _Ack(code=code, message=message))

    def _schedule_resync(self) -> None:
        if self._closing or (self._resync_task is not None and not self._resync_task.done()):
            return
        self._resync_task = asyncio.get_running_loop().create_task(self._resync())

    async def _resync(self) -> None:
        """After IB connectivity came back (1101/1102) on a live socket: re-request orders and executions."""
        self._ready.clear()
        self._set_health(HEALTH_DEGRADED)
        self._syncing = True
        try:
            await self._call(lambda: self.ib.reqOpenOrdersAsync(), "open orders")
            completed = await self._call(lambda: self.ib.reqCompletedOrdersAsync(False), "completed orders")
            await self._call(lambda: self.ib.reqExecutionsAsync(), "executions")  # lands in ib.fills()
            self._rebuild(completed)
        except Exception as exc:  # stays degraded until the next one
            log.warning("ibkr_resync_failed", extra={"broker": self.name, "error": repr(exc)})
            return
        finally:
            self._syncing = False
        if self.ib.isConnected():
            self._set_health(HEALTH_CONNECTED)
            self._ready.set()

    # ------------------------------------------------------------------ event dispatch

    def _start_dispatcher(self) -> None:
        if self._dispatcher is None or self._dispatcher.done():
            self._dispatcher = asyncio.get_running_loop().create_task(self._dispatch_loop())

    async def _dispatch_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            event = self._outbox.pop_ready()
            while event is not None:
                await self._deliver(event)
                event = self._outbox.pop_ready()
            self._outbox.wake.clear()
            deadline = self._outbox.next_deadline()
            timeout = None if deadline is None else max(deadline - loop.time(), 0.0) + 0.001
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._outbox.wake.wait(), timeout)

    async def _deliver(self, event: BrokerEvent) -> None:
        if self._handler is None:
            log.warning("ibkr_event_without_handler", extra={"broker": self.name, "event": repr(event)})
            return
        try:
            await self._handler(event)
        except Exception:  # a failing handler must not stop the stream
            log.exception("ibkr_event_handler_failed", extra={"broker": self.name})

    async def flush_events(self, timeout: float = 5.0) -> None:
        """Wait until every queued update and fill has been handed to the handler."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self._outbox.items and loop.time() < deadline:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0)

    # ------------------------------------------------------------------ requests

    async def _call(self, start: Callable[[], Awaitable[T]], what: str) -> T:
        """Start an ib_async request and bound it; ConnectionError -> BrokerUnavailable, timeout -> Retryable."""
        try:
            return await asyncio.wait_for(start(), self._timeout)
        except TimeoutError:
            raise RetryableBrokerError(f"{self.name}: {what} timed out after {self._timeout}s") from None
        except ConnectionError as exc:
            raise BrokerUnavailable(f"{self.name}: {what}: not connected ({exc})") from None

    def _require_ready(self) -> None:
        if not self.ib.isConnected():
            raise BrokerUnavailable(f"{self.name}: not connected to {self._address()}")
        if not self._ready.is_set():
            raise BrokerUnavailable(f"{self.name}: reconnecting / resynchronising ({self._health}); nothing sent")

    async def _qualify(self, intent: OrderIntent) -> Contract:
        key = intent.symbol.strip().upper()
        cached = self._contracts.get(key)
        if cached is not None:
            return cached
        contract = contract_for(intent.symbol, intent.asset_class)
        self._contract_errors.pop(id(contract), None)
        result = await self._call(lambda: self.ib.qualifyContractsAsync(contract), f"qualify {key}")
        qualified = result[0] if result else None
        if not isinstance(qualified, Contract) or not qualified.conId:
            why = self._contract_errors.pop(id(contract), None) or "unknown or ambiguous contract"
            raise OrderRejected(f"{self.name}: cannot qualify contract for {intent.symbol!r} "
                                f"({contract.secType} {contract.symbol}): {why}", code=ERR_UNKNOWN_CONTRACT)
        self._contracts[key] = qualified
        return qualified

    def _build_order(self, intent: OrderIntent) -> Order:
        action = "BUY" if intent.side == Side.BUY else "SELL"
        qty = float(intent.quantity)
        if not math.isfinite(qty) or qty <= 0:
            raise OrderRejected(f"quantity: must be a positive number, got {intent.quantity!r}", code="validation")
        if intent.asset_class == AssetClass.OPTION and qty != int(qty):
            raise OrderRejected(f"quantity: option orders need whole contracts, got {qty}", code="validation")
        tif = _TIF.get(str(intent.time_in_force).lower())
        if tif is None:
            raise OrderRejected(f"time_in_force: unsupported {intent.time_in_force!r}; allowed: {', '.join(_TIF)}",
                                code="validation")
        order = self._order_of_type(intent, action, qty)
        order.tif = tif
        order.orderRef = intent.client_order_id
        order.transmit = True
        if self.settings.account:
            order.account = self.settings.account
        return order

    @staticmethod
    def _order_of_type(intent: OrderIntent, action: str, qty: float) -> Order:
        kind = OrderType(intent.order_type)
        if kind == OrderType.MARKET:
            return MarketOrder(action, qty)
        if kind == OrderType.LIMIT:
            if not _positive(intent.limit_price):
                raise OrderRejected(f"limit_price: a limit order needs a positive price, got {intent.limit_price!r}",
                                    code="validation")
            return LimitOrder(action, qty, float(intent.limit_price))  # type: ignore[arg-type]
        if kind == OrderType.STOP:
            if not _positive(intent.stop_price):
                raise OrderRejected(f"stop_price: a stop order needs a positive price, got {intent.stop_price!r}",
                                    code="validation")
            return StopOrder(action, qty, float(intent.stop_price))  # type: ignore[arg-type]
        raise OrderRejected(f"order_type: {kind.value} orders are not supported by the IBKR adapter "
                            "(send the entry; exits are managed by the daemon)", code="validation")

    # ------------------------------------------------------------------ Broker port

    async def submit_order(self, intent: OrderIntent) -> OrderResult:
        """Qualify, place with orderRef = client order id, and wait for IB's acknowledgement or error."""
        self._require_ready()
        cid = intent.client_order_id
        if not cid or len(cid) > 128:
            raise OrderRejected(f"client_order_id: must be 1..128 characters, got {cid!r}", code="validation")
        tracked = self._orders.get(cid)
        if tracked is not None and (tracked.acked or tracked.status != OrderStatus.PENDING):
            raise DuplicateClientOrderId(f"{self.name}: client order id {cid} is already at IB "
                                         f"({tracked.status.value})", code=ERR_DUPLICATE_ORDER_ID)
        order = self._build_order(intent)
        contract = await self._qualify(intent)
        self._require_ready()
        self._send_guard(intent)  # after the contract lookup; nothing is awaited before placeOrder
        if tracked is not None and tracked.order_id and self._reusable(tracked.order_id):
            order.orderId = tracked.order_id  # resend of an unacknowledged order: same IB id, so never two orders
        tracked = tracked or _Tracked(cid)
        tracked.symbol, tracked.side, tracked.quantity = intent.symbol, intent.side, float(intent.quantity)
        self._orders[cid] = tracked
        child = self._attached_stop(intent, order)
        try:
            trade = self.ib.placeOrder(contract, order)
            if child is not None:
                self._place_child(contract, trade.order.orderId, child, intent)  # transmits the pair
        except ConnectionError as exc:
            self._forget(cid)
            raise BrokerUnavailable(f"{self.name}: not connected ({exc}); nothing sent") from None
        tracked.order_id = trade.order.orderId
        self._by_order_id[tracked.order_id] = cid
        ack = await self._await_ack(tracked, trade)
        return self._result_of_ack(intent, tracked, ack)

    def _attached_stop(self, intent: OrderIntent, parent: Order) -> Order | None:
        """The protective STP child of an entry (None when not attaching, or the entry has no stop); the parent is
        then held untransmitted until the child is placed."""
        if not self.attach_stops or intent.kind is not OrderKind.ENTRY or not _positive(intent.stop_loss) \
                or OrderType(intent.order_type) not in (OrderType.MARKET, OrderType.LIMIT) \
                or self.stop_refusal(intent) is not None:
            return None
        stop_price = round(float(intent.stop_loss), 2) if intent.stop_loss >= 1 else round(intent.stop_loss, 4)
        child = StopOrder("SELL" if intent.side == Side.BUY else "BUY", parent.totalQuantity, stop_price)
        child.orderRef = client_order_id_for(intent.signal_id, "stop0")
        child.tif = "GTC"
        child.transmit = True
        if self.settings.account:
            child.account = self.settings.account
        parent.transmit = False
        return child

    def _place_child(self, contract: Contract, parent_id: int, child: Order, intent: OrderIntent) -> None:
        child.parentId = parent_id
        cid = child.orderRef
        tracked = self._orders.setdefault(cid, _Tracked(cid))
        tracked.symbol, tracked.quantity = intent.symbol, float(child.totalQuantity)
        tracked.side = Side.SELL if intent.side == Side.BUY else Side.BUY
        if tracked.order_id and self._reusable(tracked.order_id):
            child.orderId = tracked.order_id  # a resend of the pair: the same child, never a second one
        trade = self.ib.placeOrder(contract, child)
        tracked.order_id = trade.order.orderId
        self._by_order_id[tracked.order_id] = cid

    def stop_refusal(self, intent: OrderIntent) -> str | None:
        """IB holds STP orders on stocks, ETFs and options (StopVenue)."""
        return None

    async def replace_stop(
        self, client_order_id: str, *, quantity: float, stop_price: float, new_client_order_id: str
    ) -> OrderResult:
        """Modify the resting stop in place: the same order placed again under its IB order id, with the new
        quantity, stop price and orderRef `new_client_order_id` (the old client order id ends `replaced`)."""
        self._require_ready()
        trade = self._find_trade(client_order_id)
        old = self._orders.get(client_order_id)
        if trade is None or _is_done(trade) or trade.order.orderType != "STP":
            raise OrderRejected(f"{self.name}: {client_order_id} is not a resting stop", code="not_found")
        if new_client_order_id in self._orders:
            raise DuplicateClientOrderId(f"{self.name}: client order id {new_client_order_id} is already at IB",
                                         code=ERR_DUPLICATE_ORDER_ID)
        order = trade.order
        order.totalQuantity, order.auxPrice = float(quantity), float(stop_price)
        order.orderRef, order.transmit = new_client_order_id, True
        tracked = _Tracked(new_client_order_id, symbol=old.symbol if old else symbol_of(trade.contract),
                           side=Side.BUY if order.action == "BUY" else Side.SELL, quantity=float(quantity),
                           order_id=order.orderId, perm_id=order.permId or (old.perm_id if old else 0),
                           status=OrderStatus.NEW, acked=True, stop_price=float(stop_price))
        self._orders[new_client_order_id] = tracked
        self._by_order_id[order.orderId] = new_client_order_id
        try:
            self.ib.placeOrder(trade.contract, order)
        except ConnectionError as exc:
            raise RetryableBrokerError(f"{self.name}: not connected ({exc})", ambiguous=True) from None
        if old is not None:
            old.status, old.reason = OrderStatus.REPLACED, f"replaced by {new_client_order_id}"
            self._emit_update(old)
        return self._result(tracked, submitted_at=self.clock.now())

    async def _await_ack(self, tracked: _Tracked, trade: Trade) -> _Ack:
        if trade.orderStatus.status in _ACKED and trade.orderStatus.status != "PendingCancel":
            return _Ack(trade=trade)
        future: asyncio.Future[_Ack] = asyncio.get_running_loop().create_future()
        self._acks[tracked.order_id] = future
        try:
            return await asyncio.wait_for(future, self._timeout)
        except TimeoutError:
            raise RetryableBrokerError(f"{self.name}: no acknowledgement for {tracked.client_order_id} within "
                                       f"{self._timeout}s", ambiguous=True) from None
        finally:
            self._acks.pop(tracked.order_id, None)

    def _resolve_ack(self, order_id: int, ack: _Ack) -> None:
        future = self._acks.get(order_id)
        if future is not None and not future.done():
            future.set_result(ack)

    def _fail_acks(self, reason: str) -> None:
        for future in self._acks.values():
            if not future.done():
                future.set_exception(RetryableBrokerError(f"{self.name}: {reason} while placing", ambiguous=True))

    def _result_of_ack(self, intent: OrderIntent, tracked: _Tracked, ack: _Ack) -> OrderResult:
        cid = tracked.client_order_id
        if ack.code == ERR_PACING:
            self._drop_unplaced(tracked)
            raise RetryableBrokerError(f"{self.name}: IB pacing violation (100): {ack.message}", retry_after=1.0)
        if ack.code == ERR_DUPLICATE_ORDER_ID:
            self._drop_unplaced(tracked)
            self.ib.client.updateReqId(tracked.order_id + 1)
            raise DuplicateClientOrderId(f"{self.name}: IB order id {tracked.order_id} for {cid} is a duplicate "
                                         f"(103): {ack.message}", code=ERR_DUPLICATE_ORDER_ID)
        if ack.code:
            tracked.status, tracked.reason = OrderStatus.REJECTED, f"IB error {ack.code}: {ack.message}"
            self._emit_update(tracked)
            raise OrderRejected(f"{self.name}: {cid} rejected: {tracked.reason}", code=ack.code)
        tracked.acked = True
        trade = ack.trade
        assert trade is not None
        status, reason = self._map_status(trade, tracked)
        if status is not None:
            tracked.status, tracked.reason = status, reason or tracked.reason
        tracked.perm_id = trade.orderStatus.permId or trade.order.permId or tracked.perm_id
        return self._result(tracked, submitted_at=self.clock.now())

    def _reusable(self, order_id: int) -> bool:
        """An unacknowledged order's IB id can be sent again unless ib_async already closed that trade."""
        trade = self.ib.wrapper.trades.get(self.ib.wrapper.orderKey(self.ib.wrapper.clientId, order_id, 0))
        return trade is None or not _is_done(trade)

    def _drop_unplaced(self, tracked: _Tracked) -> None:
        self._forget(tracked.client_order_id)
        key = self.ib.wrapper.orderKey(self.ib.wrapper.clientId, tracked.order_id, 0)
        self.ib.wrapper.trades.pop(key, None)

    def _result(self, tracked: _Tracked, submitted_at: datetime | None = None) -> OrderResult:
        return OrderResult(
            client_order_id=tracked.client_order_id, status=tracked.status, broker=self.name,
            broker_order_id=tracked.broker_order_id, symbol=tracked.symbol, side=tracked.side,
            quantity=tracked.quantity, filled_qty=tracked.filled, filled_avg_price=tracked.avg_price,
            reason=tracked.reason, submitted_at=submitted_at,
        )

    async def get_order_by_client_id(self, client_order_id: str) -> OrderResult | None:
        """Search open trades, then completed orders, then executions, by orderRef."""
        if not self.ib.isConnected():
            raise BrokerUnavailable(f"{self.name}: not connected to {self._address()}")
        tracked = self._orders.get(client_order_id)
        trade = self._find_trade(client_order_id)
        if trade is not None and (trade.isActive() or trade.isDone()):
            return self._result_of_trade(client_order_id, trade, tracked)
        completed = await self._call(lambda: self.ib.reqCompletedOrdersAsync(False), "completed orders")
        trade = next((t for t in completed if t.order.orderRef == client_order_id), None)
        if trade is not None:
            return self._result_of_trade(client_order_id, trade, tracked)
        executions = await self._call(lambda: self.ib.reqExecutionsAsync(), "executions")
        mine = [f for f in executions if f.execution.orderRef == client_order_id]
        if mine:
            return self._result_of_fills(client_order_id, mine, tracked)
        if tracked is not None and tracked.status == OrderStatus.REJECTED:
            return self._result(tracked)
        return None

    async def resolve_order(self, client_order_id: str) -> OrderResult | None:
        """Look the order up by orderRef (open trades, completed orders, executions) and emit the executions and
        the status the event stream has not delivered for it. None when IB has never heard of it."""
        result = await self.get_order_by_client_id(client_order_id)
        if result is None:
            return None
        tracked = self._orders.setdefault(client_order_id, _Tracked(client_order_id, symbol=result.symbol,
                                                                      side=result.side, quantity=result.quantity))
        tracked.acked = True
        for ib_fill in sorted((f for f in self.ib.fills() if f.execution.orderRef == client_order_id),
                              key=lambda f: f.execution.time):
            if ib_fill.execution.execId not in self._seen_execs:
                self._seen_execs.add(ib_fill.execution.execId)
                self._outbox.put(self._make_fill(ib_fill, tracked))
        if result.status != OrderStatus.PENDING and not (tracked.status.is_final and not result.status.is_final):
            tracked.status, tracked.reason = result.status, result.reason or tracked.reason
            tracked.filled = max(tracked.filled, result.filled_qty)
            tracked.avg_price = result.filled_avg_price or tracked.avg_price
            self._emit_update(tracked)
        return result

    async def clock_offset(self) -> float:
        """Seconds TWS's clock is ahead of ours (reqCurrentTime, whole seconds, against the request's midpoint)."""
        self._require_connected()
        before = self.clock.now()
        server = await self._call(lambda: self.ib.reqCurrentTimeAsync(), "current time")
        after = self.clock.now()
        return (server - (before + (after - before) / 2)).total_seconds()

    def _find_trade(self, client_order_id: str) -> Trade | None:
        matches = [t for t in self.ib.trades() if t.order.orderRef == client_order_id]
        active = [t for t in matches if not _is_done(t)]
        return (active or matches or [None])[-1]

    def _result_of_trade(self, cid: str, trade: Trade, tracked: _Tracked | None) -> OrderResult:
        probe = tracked or _Tracked(cid, acked=True)
        status, reason = self._map_status(trade, probe)
        if tracked is not None and tracked.status == OrderStatus.REJECTED:
            status, reason = OrderStatus.REJECTED, tracked.reason
        fills = [f for f in self.ib.fills() if f.execution.orderRef == cid]
        filled = max(_filled_of(trade), sum(f.execution.shares for f in fills))
        avg = trade.orderStatus.avgFillPrice or _avg_price(fills)
        return OrderResult(
            client_order_id=cid, status=status or OrderStatus.PENDING, broker=self.name,
            broker_order_id=str(trade.order.permId or trade.orderStatus.permId or trade.order.orderId or "") or None,
            symbol=tracked.symbol if tracked and tracked.symbol else symbol_of(trade.contract),
            side=Side.BUY if trade.order.action == "BUY" else Side.SELL, quantity=float(trade.order.totalQuantity),
            filled_qty=filled, filled_avg_price=avg, reason=reason, stop_price=_trigger_of(trade),
        )

    def _result_of_fills(self, cid: str, fills: list[IBFill], tracked: _Tracked | None) -> OrderResult:
        filled = sum(f.execution.shares for f in fills)
        quantity = tracked.quantity if tracked and tracked.quantity else filled
        status = OrderStatus.PARTIALLY_FILLED if filled < quantity else OrderStatus.FILLED
        first = fills[0]
        return OrderResult(
            client_order_id=cid, status=status, broker=self.name, broker_order_id=str(first.execution.permId),
            symbol=tracked.symbol if tracked and tracked.symbol else symbol_of(first.contract),
            side=Side.BUY if first.execution.side == "BOT" else Side.SELL, quantity=quantity, filled_qty=filled,
            filled_avg_price=_avg_price(fills),
        )

    async def cancel_order(self, client_order_id: str) -> None:
        """Cancel the open order with this client order id; a no-op when it is already final."""
        self._require_ready()
        trade = self._find_trade(client_order_id)
        if trade is None or _is_done(trade):
            if trade is not None or client_order_id in self._orders:
                return
            raise OrderRejected(f"{self.name}: no open order with client order id {client_order_id}",
                                code="not_found")
        try:
            self.ib.cancelOrder(trade.order)
        except ConnectionError as exc:
            raise BrokerUnavailable(f"{self.name}: not connected ({exc})") from None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout
        while not _is_done(trade) and loop.time() < deadline:
            self._status_changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._status_changed.wait(), max(deadline - loop.time(), 0.0))

    async def get_open_orders(self) -> list[OrderResult]:
        self._require_connected()
        trades = await self._call(lambda: self.ib.reqAllOpenOrdersAsync(), "open orders")
        results: list[OrderResult] = []
        for trade in trades:
            if _is_done(trade):
                continue
            cid = trade.order.orderRef or f"ib-perm-{trade.order.permId}"
            results.append(self._result_of_trade(cid, trade, self._orders.get(cid)))
        return results

    async def get_positions(self) -> list[BrokerPosition]:
        self._require_connected()
        positions = await self._call(lambda: self.ib.reqPositionsAsync(), "positions")
        account = self.settings.account
        return [
            BrokerPosition(
                symbol=symbol_of(p.contract), quantity=float(p.position),
                avg_price=float(p.avgCost) / _multiplier(p.contract), broker=self.name,
            )
            for p in positions
            if p.position and (not account or p.account == account)
        ]

    async def get_account(self) -> AccountSnapshot:
        self._require_connected()
        values = await self._call(lambda: self.ib.accountSummaryAsync(self.settings.account), "account summary")
        by_tag: dict[str, float] = {}
        for value in values:
            if value.currency in ("USD", "BASE", "") and value.tag not in by_tag:
                with contextlib.suppress(ValueError):
                    by_tag[value.tag] = float(value.value)
        missing = [t for t in ("NetLiquidation", "TotalCashValue") if t not in by_tag]
        if missing:
            raise RetryableBrokerError(f"{self.name}: account summary lacks {', '.join(missing)}")
        account = self.settings.account or next((v.account for v in values if v.account), "")
        return AccountSnapshot(
            equity=by_tag["NetLiquidation"], cash=by_tag["TotalCashValue"],
            buying_power=by_tag.get("BuyingPower", by_tag["TotalCashValue"]), broker=self.name,
            # IB's paper accounts are the D ones (DU..., DF... for advisors); live accounts start with U, F, I
            account_id=account, paper=account.startswith("D") if account else None,
        )

    def _require_connected(self) -> None:
        if not self.ib.isConnected():
            raise BrokerUnavailable(f"{self.name}: not connected to {self._address()}")


# ---------------------------------------------------------------------------------------------- helpers


def _positive(value: float | None) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def _filled_of(trade: Trade) -> float:
    filled = float(trade.orderStatus.filled or 0.0)
    completed = trade.order.filledQuantity
    if isinstance(completed, (int, float)) and completed != UNSET_DOUBLE and math.isfinite(completed):
        filled = max(filled, float(completed))
    return filled


def _avg_price(fills: list[IBFill]) -> float | None:
    qty = sum(f.execution.shares for f in fills)
    if qty <= 0:
        return None
    return sum(f.execution.shares * f.execution.price for f in fills) / qty


def _trigger_of(trade: Trade) -> float | None:
    """A STP order's trigger price (its auxPrice: what an edit in TWS changes), None for other orders or unset."""
    if trade.order.orderType != "STP":
        return None
    aux = trade.order.auxPrice
    return float(aux) if isinstance(aux, (int, float)) and aux != UNSET_DOUBLE and 0 < aux < math.inf else None


def _held_for_locate(trade: Trade) -> bool:
    """IB holds this order while it locates shares to borrow for a short sale (whyHeld "locate"): it reports the
    order `Inactive`, yet the order is live: IB keeps looking and fills it once it finds them (ib_async counts
    `Inactive` as done; nautilus_trader#3723 and ib_insync#363 saw the same)."""
    return "locate" in (trade.orderStatus.whyHeld or "").lower()


def _is_done(trade: Trade) -> bool:
    """ib_async's `isDone`, less an order held for a locate (live, though `Inactive`)."""
    return trade.isDone() and not (trade.orderStatus.status == "Inactive" and _held_for_locate(trade))


def _latest_error(trade: Trade) -> tuple[int, str]:
    """(code, IB's text) of the error that produced the trade's latest log entry; (0, '') when none did."""
    if not trade.log or not trade.log[-1].errorCode:
        return 0, ""
    entry = trade.log[-1]
    # ib_async logs "Error 201, reqId 7: <IB text>[, contract: ...]"
    text = entry.message.split(": ", 1)[-1].split(", contract: ", 1)[0]
    return entry.errorCode, text
