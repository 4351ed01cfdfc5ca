"""A fake TWS / IB Gateway: an asyncio TCP server on 127.0.0.1 that speaks the TWS socket protocol.

It implements the subset of the protocol ib_async 2.1 uses for trading (server versions 176-178): the
"API\\0" + version-range handshake, 4-byte big-endian length-prefixed NUL-separated messages, startApi ->
nextValidId + managedAccounts, positions, open / completed orders, executions with commission reports,
contract details, account updates and account summary, current time, placeOrder and cancelOrder; market data
and option chains (reqMktData, reqSecDefOptParams) in tws_market.py.

Scripting: queue what happens to the next orders with `script(...)` (fill, partial, reject, rest, duplicate,
pacing, drop), fill resting orders later with `fill()`, drop every connection with `drop_connections()`,
refuse new connections with `stop_listening()` / `resume_listening()` (or accept-and-close them with
`refuse_connections = True`), model a trade placed by hand in TWS (empty orderRef) with
`place_manual_order()`, list options with quotes with `add_option(..., quote=OptionQuoteScript(...))`.
Everything received is recorded in `received`.
Message encodings follow ib_async/decoder.py field by field; they are tested through ib_async itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import struct
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from pipeline.instruments.occ import occ_symbol
from tests.fakes.tws_market import FakeMarketData, OptionQuoteScript

MIN_SERVER_VERSION = 176
MAX_SERVER_VERSION = 178

# incoming message ids (client -> server)
IN_REQ_MKT_DATA = 1
IN_CANCEL_MKT_DATA = 2
IN_REQ_SEC_DEF_OPT_PARAMS = 78
IN_PLACE_ORDER = 3
IN_CANCEL_ORDER = 4
IN_REQ_OPEN_ORDERS = 5
IN_REQ_ACCOUNT_UPDATES = 6
IN_REQ_EXECUTIONS = 7
IN_REQ_IDS = 8
IN_REQ_CONTRACT_DETAILS = 9
IN_REQ_AUTO_OPEN_ORDERS = 15
IN_REQ_ALL_OPEN_ORDERS = 16
IN_REQ_CURRENT_TIME = 49
IN_REQ_MARKET_DATA_TYPE = 59
IN_REQ_POSITIONS = 61
IN_REQ_ACCOUNT_SUMMARY = 62
IN_START_API = 71
IN_REQ_ACCOUNT_UPDATES_MULTI = 76
IN_REQ_COMPLETED_ORDERS = 99

# outgoing message ids (server -> client)
OUT_ORDER_STATUS = 3
OUT_ERROR = 4
OUT_OPEN_ORDER = 5
OUT_ACCOUNT_VALUE = 6
OUT_NEXT_VALID_ID = 9
OUT_CONTRACT_DETAILS = 10
OUT_EXEC_DETAILS = 11
OUT_MANAGED_ACCOUNTS = 15
OUT_CURRENT_TIME = 49
OUT_CONTRACT_DETAILS_END = 52
OUT_OPEN_ORDER_END = 53
OUT_ACCOUNT_DOWNLOAD_END = 54
OUT_EXEC_DETAILS_END = 55
OUT_COMMISSION_REPORT = 59
OUT_POSITION = 61
OUT_POSITION_END = 62
OUT_ACCOUNT_SUMMARY = 63
OUT_ACCOUNT_SUMMARY_END = 64
OUT_ACCOUNT_UPDATE_MULTI = 73
OUT_ACCOUNT_UPDATE_MULTI_END = 74
OUT_COMPLETED_ORDER = 101
OUT_COMPLETED_ORDERS_END = 102

ERR_UNKNOWN_CONTRACT = 200
ERR_REJECTED = 201
ERR_CANCELLED = 202
ERR_DUPLICATE_ORDER_ID = 103
ERR_PACING = 100
ERR_NOT_CANCELLABLE = 161
WARN_LOCATING = 404
LOCATING = ("Shares for this order are not immediately available for short sale. The order will be held while we "
            "attempt to locate the shares.")

NO_SECURITY = "No security definition has been found for the request"
ACTIONS = ("fill", "partial", "reject", "rest", "duplicate", "pacing", "drop", "silent", "locate")


@dataclass
class FakeContract:
    """A contract the fake knows (answers contract details for, accepts orders on)."""

    con_id: int
    symbol: str
    sec_type: str = "STK"
    expiry: str = ""
    strike: float = 0.0
    right: str = ""
    multiplier: str = ""
    exchange: str = "SMART"
    primary_exchange: str = "NASDAQ"
    currency: str = "USD"
    local_symbol: str = ""
    trading_class: str = ""
    price: float = 100.0
    quote: OptionQuoteScript | None = None  # an option's market data (tws_market.py); stocks quote `price`

    def __post_init__(self) -> None:
        if not self.local_symbol:
            self.local_symbol = self.symbol
        if not self.trading_class:
            self.trading_class = self.symbol if self.sec_type == "OPT" else "NMS"

    def matches(self, req: dict[str, str]) -> bool:
        """Does a contract request (conId / symbol / secType / expiry / strike / right) select this contract?"""
        if req.get("conId") and req["conId"] != "0":
            return int(req["conId"]) == self.con_id
        if req.get("symbol", "").upper() != self.symbol or req.get("secType", "STK") != self.sec_type:
            return False
        if self.sec_type == "OPT":  # an empty expiry, strike or right selects all (as TWS answers them)
            strike = float(req.get("strike") or 0)
            expiry, right = req.get("lastTradeDateOrContractMonth", ""), req.get("right", "")[:1].upper()
            return (
                (not expiry or expiry == self.expiry)
                and (not strike or abs(strike - self.strike) < 1e-6)
                and (not right or right == self.right)
            )
        return True

    def wire(self, *, with_primary: bool = False) -> list[Any]:
        """The contract's fields as openOrder / execDetails / position carry them."""
        head = [self.con_id, self.symbol, self.sec_type, self.expiry, _num(self.strike), self.right, self.multiplier,
                self.exchange]
        if with_primary:
            head.append(self.primary_exchange)
        return [*head, self.currency, self.local_symbol, self.trading_class]


@dataclass
class OrderScript:
    """What the fake does with one incoming order.

    action: fill | partial | reject | rest | duplicate | pacing | drop | silent | locate.
    `fill_qty` for partial (default half), `price` overrides the contract's price, `reason` for reject.
    locate: a short sale of shares IB cannot borrow yet: acknowledged, then warning 404 and status `Inactive`
    with whyHeld `locate` (the order is held, still live: IB keeps looking); `FakeTWS.locate(ref)` finds the
    shares (the order goes `Submitted` and fills).
    drop: accept (unless `drop_before_ack`), then close every connection; with `fill_while_down` the order
    fills while the client is away (it finds it in completed orders and executions on reconnect).
    """

    action: str = "fill"
    price: float | None = None
    fill_qty: float | None = None
    reason: str = "Order rejected - reason: insufficient buying power"
    drop_before_ack: bool = False
    fill_while_down: bool = False

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"action: unknown {self.action!r}; allowed: {', '.join(ACTIONS)}")


@dataclass
class FakeOrder:
    """An order the fake accepted."""

    order_id: int
    client_id: int
    perm_id: int
    contract: FakeContract
    action: str
    quantity: float
    order_type: str
    lmt_price: str
    aux_price: str
    tif: str
    account: str
    order_ref: str
    parent_id: int = 0
    transmit: bool = True
    script: Any = None               # an untransmitted order's script, run when its child transmits the pair
    status: str = "PreSubmitted"
    filled: float = 0.0
    avg_price: float = 0.0
    last_fill_price: float = 0.0
    completed_status: str = ""
    why_held: str = ""               # "locate": held while IB looks for shares to borrow (live, though Inactive)

    @property
    def remaining(self) -> float:
        return max(self.quantity - self.filled, 0.0)

    @property
    def is_done(self) -> bool:
        return self.status in ("Filled", "Cancelled") or (self.status == "Inactive" and not self.why_held)


@dataclass
class FakeExecution:
    """One execution of a FakeOrder."""

    exec_id: str
    order: FakeOrder
    shares: float
    price: float
    time: datetime
    cum_qty: float
    avg_price: float
    commission: float


@dataclass
class _Conn:
    writer: asyncio.StreamWriter
    client_id: int = -1
    alive: bool = True


def _num(value: float) -> str:
    return "" if value == 0 else repr(float(value))


def _ib_time(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y%m%d %H:%M:%S UTC")


class FakeTWS:
    """The fake TWS server. `await start()`, then connect ib_async to `port`."""

    def __init__(
        self,
        *,
        server_version: int = MAX_SERVER_VERSION,
        account: str = "DU1234567",
        next_order_id: int = 1,
        commission_per_share: float = 0.005,
        min_commission: float = 1.0,
        now: Callable[[], datetime] | None = None,
    ) -> None:
        if not MIN_SERVER_VERSION <= server_version <= MAX_SERVER_VERSION:
            raise ValueError(f"server_version: must be {MIN_SERVER_VERSION}..{MAX_SERVER_VERSION}")
        self.server_version = server_version
        self.account = account
        self.next_order_id = next_order_id
        self.commission_per_share = commission_per_share
        self.min_commission = min_commission
        self._now = now or (lambda: datetime.now(UTC))
        self.host = "127.0.0.1"
        self.port = 0
        self.contracts: list[FakeContract] = []
        self.positions: dict[int, tuple[float, float]] = {}  # conId -> (qty, avg cost, commissions in: IB)
        self.account_values: dict[str, float] = {
            "NetLiquidation": 100_000.0, "TotalCashValue": 100_000.0, "BuyingPower": 400_000.0,
        }
        self.orders: dict[int, FakeOrder] = {}   # every accepted order by order id (open and done)
        self.manual_orders: list[FakeOrder] = []  # placed by hand in TWS (no API client, empty orderRef)
        self.executions: list[FakeExecution] = []
        self.received: list[list[str]] = []       # every message received, as fields
        self.place_requests: list[list[str]] = []  # every placeOrder message, accepted or not
        self.cancel_requests: list[int] = []
        self.scripts: deque[OrderScript] = deque()
        self.default_script = OrderScript("fill")
        self.refuse_connections = False
        self.connect_count = 0
        self._server: asyncio.AbstractServer | None = None
        self._conns: list[_Conn] = []
        self._perm_ids = itertools.count(900_001)
        self._exec_ids = itertools.count(1)
        self._con_ids = itertools.count(265_598)
        self._used_order_ids: set[int] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._changed = asyncio.Event()
        self.market = FakeMarketData(self)  # market data and option chains (tws_market.py)

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> FakeTWS:
        """Listen on 127.0.0.1 (an ephemeral port unless `port` was set)."""
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        """Close every connection and stop listening."""
        await self.drop_connections()
        await self.stop_listening()
        for task in list(self._tasks):
            task.cancel()

    async def stop_listening(self) -> None:
        """Close the listening socket (new connections are refused); live connections stay up."""
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
            self._server = None

    async def resume_listening(self) -> None:
        """Listen again on the same port."""
        if self._server is None:
            self._server = await asyncio.start_server(self._handle, self.host, self.port)

    async def __aenter__(self) -> FakeTWS:
        return await self.start()

    async def __aexit__(self, *_exc: object) -> None:
        await self.stop()

    # ------------------------------------------------------------------ fixtures

    def add_stock(self, symbol: str, price: float = 100.0, *, primary_exchange: str = "NASDAQ") -> FakeContract:
        """A stock or ETF the fake knows."""
        contract = FakeContract(next(self._con_ids), symbol.upper(), "STK", primary_exchange=primary_exchange,
                                price=price)
        self.contracts.append(contract)
        return contract

    def add_option(
        self, underlying: str, expiry: str, strike: float, right: str, price: float = 2.5,
        quote: OptionQuoteScript | None = None,
    ) -> FakeContract:
        """An equity option (expiry YYYYMMDD, right C/P); multiplier 100. With a `quote` it answers market data
        (bid/ask, model greeks, open interest) and a market buy fills at its ask."""
        root = underlying.upper()
        local = occ_symbol(root, date(int(expiry[:4]), int(expiry[4:6]), int(expiry[6:8])), right, strike)
        contract = FakeContract(next(self._con_ids), root, "OPT", expiry=expiry, strike=strike, right=right.upper(),
                                multiplier="100", primary_exchange="", local_symbol=local, trading_class=root,
                                price=quote.ask if quote is not None and price == 2.5 else price, quote=quote)
        self.contracts.append(contract)
        return contract

    def set_position(self, contract: FakeContract, quantity: float, avg_cost: float) -> None:
        self.positions[contract.con_id] = (quantity, avg_cost)

    def place_manual_order(self, contract: FakeContract, action: str, quantity: float, price: float) -> FakeOrder:
        """An order the account holder placed by hand in TWS: order id 0, client id 0, an empty orderRef; filled
        at once. Its execution and status go to every connected client (as to a master API client) and the
        position changes, as a real account shows it."""
        order = FakeOrder(order_id=0, client_id=0, perm_id=next(self._perm_ids), contract=contract,
                          action=action.upper(), quantity=float(quantity), order_type="MKT", lmt_price="",
                          aux_price="", tif="DAY", account=self.account, order_ref="")
        self.manual_orders.append(order)
        self._execute(order, float(quantity), price)
        return order

    def script(self, *actions: OrderScript | str) -> None:
        """Queue what happens to the next incoming orders (then `default_script` applies)."""
        for action in actions:
            self.scripts.append(action if isinstance(action, OrderScript) else OrderScript(action))

    # ------------------------------------------------------------------ inspection

    @property
    def connection_count(self) -> int:
        return sum(1 for c in self._conns if c.alive)

    def orders_with_ref(self, order_ref: str) -> list[FakeOrder]:  # manual orders are in `manual_orders`
        return [o for o in self.orders.values() if o.order_ref == order_ref]

    def messages(self, msg_id: int) -> list[list[str]]:
        return [m for m in self.received if m and m[0] == str(msg_id)]

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        """Wait until predicate() is true (re-checked whenever the fake's state changes)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while not predicate():
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise TimeoutError("FakeTWS.wait_for: condition not met")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(remaining, 0.05))

    # ------------------------------------------------------------------ actions

    async def drop_connections(self) -> None:
        """Close every client connection (the listening socket stays up)."""
        for conn in self._conns:
            if conn.alive:
                conn.alive = False
                with contextlib.suppress(Exception):
                    conn.writer.close()
        self._conns = []
        self._notify()

    def fill(
        self, order: FakeOrder | int | str, quantity: float | None = None, price: float | None = None,
        *, push: bool = True,
    ) -> None:
        """Execute (part of) an open order now; pushed to the connected client unless `push` is False (the
        messages are lost, as during an IB connectivity outage: the client finds them only by asking)."""
        target = self._find_order(order)
        if target.is_done:
            raise ValueError(f"order {target.order_id} is {target.status}")
        qty = target.remaining if quantity is None else min(quantity, target.remaining)
        self._execute(target, qty, target.contract.price if price is None else price, push=push)

    def locate(self, order: FakeOrder | int | str) -> None:
        """IB found the shares to borrow for an order held for a locate: it goes `Submitted` and fills (at once,
        unless its script was `rest`-like)."""
        target = self._find_order(order)
        if target.why_held != "locate" or target.status != "Inactive":
            raise ValueError(f"order {target.order_id} is not held for a locate ({target.status})")
        target.status, target.why_held = "Submitted", ""
        self._broadcast(self._open_order_fields(target))
        self._broadcast(self._order_status_fields(target))
        self._execute(target, target.remaining, target.contract.price)

    def edit_by_hand(self, order: FakeOrder | int | str, *, stop_price: float | None = None,
                     quantity: float | None = None) -> FakeOrder:
        """The account holder edits an open order in TWS: the same IB order id and orderRef, a new trigger price
        (auxPrice) and/or quantity. TWS tells the API client that placed it by openOrder and orderStatus, as for
        a modification of its own (nothing is sent to a client that is not connected: it finds the new values by
        asking for its open orders)."""
        target = self._find_order(order)
        if target.is_done:
            raise ValueError(f"order {target.order_id} is {target.status}")
        if stop_price is not None:
            target.aux_price = _num(stop_price)
        if quantity is not None:
            target.quantity = float(quantity)
        self._broadcast(self._open_order_fields(target))
        self._broadcast(self._order_status_fields(target))
        return target

    def trade(self, symbol: str, price: float) -> list[str]:
        """The market trades `symbol` at `price`: live STP orders it crosses fill there (a child only once its
        parent has filled). Returns the orderRefs that filled."""
        fired = []
        for order in list(self.orders.values()):
            if order.contract.symbol != symbol or order.order_type != "STP" or order.is_done or not order.transmit:
                continue
            parent = self.orders.get(order.parent_id) if order.parent_id else None
            if parent is not None and parent.filled <= 0:
                continue
            stop = float(order.aux_price)
            if (price <= stop) if order.action == "SELL" else (price >= stop):
                self._execute(order, order.remaining, price)
                fired.append(order.order_ref)
        return fired

    def split(self, symbol: str, ratio: float) -> None:
        """A `ratio`-for-1 stock split (0.1: 1-for-10) as IB processes it overnight: the position holds `ratio`
        times the shares (whole shares, the rest paid as cash) at its average cost over `ratio`, the price is over
        `ratio`, and every open order on the stock is cancelled (IB cancels GTC orders on a split); their statuses
        go to every connected client."""
        for contract in self.contracts:
            if contract.symbol != symbol or contract.sec_type != "STK":
                continue
            contract.price /= ratio
            held = self.positions.get(contract.con_id)
            if held is not None:
                qty, cost = held
                new = math.copysign(math.floor(abs(qty) * ratio + 1e-9), qty)
                if new:
                    self.positions[contract.con_id] = (new, cost / ratio)
                else:
                    self.positions.pop(contract.con_id)
            for order in self.orders.values():
                if order.contract is contract and not order.is_done:
                    order.status, order.why_held = "Cancelled", ""
                    self._broadcast(self._order_status_fields(order))
        self._notify()

    def send_error(self, req_id: int, code: int, message: str) -> None:
        """Push an error message (e.g. 1100 / 1101 / 1102 connectivity) to every connected client."""
        for conn in self._live():
            self._send_error(conn, req_id, code, message)

    # ------------------------------------------------------------------ connection handling

    def _live(self) -> list[_Conn]:
        return [c for c in self._conns if c.alive]

    def _notify(self) -> None:
        self._changed.set()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.refuse_connections:
            writer.close()
            return
        conn = _Conn(writer)
        try:
            if not await self._handshake(reader, conn):
                return
            self._conns.append(conn)
            self.connect_count += 1
            self._notify()
            while conn.alive:
                fields = await self._read_message(reader)
                if fields is None:
                    break
                self.received.append(fields)
                self._dispatch(conn, fields)
                self._notify()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            conn.alive = False
            with contextlib.suppress(Exception):
                writer.close()
            self._notify()

    async def _handshake(self, reader: asyncio.StreamReader, conn: _Conn) -> bool:
        magic = await reader.readexactly(4)
        if magic != b"API\0":
            return False
        fields = await self._read_message(reader)
        if not fields:
            return False
        _low, _, high = fields[0].partition(" ")[0].lstrip("v").partition("..")
        if int(high) < self.server_version:
            return False
        conn.writer.write(self._frame([self.server_version, _ib_time(self._now())]))
        return True

    @staticmethod
    async def _read_message(reader: asyncio.StreamReader) -> list[str] | None:
        try:
            header = await reader.readexactly(4)
        except asyncio.IncompleteReadError:
            return None
        (size,) = struct.unpack(">I", header)
        body = await reader.readexactly(size)
        fields = body.decode(errors="backslashreplace").split("\0")
        if fields and fields[-1] == "":
            fields.pop()
        return fields

    @staticmethod
    def _frame(fields: Iterable[Any]) -> bytes:
        body = "".join(f"{'' if f is None else f}\0" for f in fields).encode()
        return struct.pack(">I", len(body)) + body

    def _send(self, conn: _Conn, fields: Iterable[Any]) -> None:
        if conn.alive:
            conn.writer.write(self._frame(fields))

    def _broadcast(self, fields: list[Any]) -> None:
        for conn in self._live():
            self._send(conn, fields)

    def _send_error(self, conn: _Conn, req_id: int, code: int, message: str) -> None:
        self._send(conn, [OUT_ERROR, 2, req_id, code, message, ""])

    # ------------------------------------------------------------------ request dispatch

    def _dispatch(self, conn: _Conn, fields: list[str]) -> None:
        handler = self._handlers().get(int(fields[0]))
        if handler is not None:
            handler(conn, fields)

    def _handlers(self) -> dict[int, Callable[[_Conn, list[str]], None]]:
        return {
            IN_START_API: self._on_start_api,
            IN_REQ_IDS: self._on_req_ids,
            IN_REQ_POSITIONS: self._on_req_positions,
            IN_REQ_OPEN_ORDERS: self._on_req_open_orders,
            IN_REQ_ALL_OPEN_ORDERS: self._on_req_open_orders,
            IN_REQ_COMPLETED_ORDERS: self._on_req_completed_orders,
            IN_REQ_EXECUTIONS: self._on_req_executions,
            IN_REQ_CONTRACT_DETAILS: self._on_req_contract_details,
            IN_REQ_ACCOUNT_UPDATES: self._on_req_account_updates,
            IN_REQ_ACCOUNT_UPDATES_MULTI: self._on_req_account_updates_multi,
            IN_REQ_ACCOUNT_SUMMARY: self._on_req_account_summary,
            IN_REQ_CURRENT_TIME: self._on_req_current_time,
            IN_PLACE_ORDER: self._on_place_order,
            IN_CANCEL_ORDER: self._on_cancel_order,
            IN_REQ_MKT_DATA: lambda conn, fields: self.market.on_req_mkt_data(conn, fields),
            IN_CANCEL_MKT_DATA: lambda conn, fields: self.market.on_cancel_mkt_data(conn, fields),
            IN_REQ_SEC_DEF_OPT_PARAMS: lambda conn, fields: self.market.on_req_sec_def_opt_params(conn, fields),
        }

    def _on_start_api(self, conn: _Conn, fields: list[str]) -> None:
        conn.client_id = int(fields[2])
        self._send(conn, [OUT_NEXT_VALID_ID, 1, self._next_valid_id()])
        self._send(conn, [OUT_MANAGED_ACCOUNTS, 1, self.account])

    def _next_valid_id(self) -> int:
        used = max(self._used_order_ids, default=0)
        return max(self.next_order_id, used + 1)

    def _on_req_ids(self, conn: _Conn, _fields: list[str]) -> None:
        self._send(conn, [OUT_NEXT_VALID_ID, 1, self._next_valid_id()])

    def _on_req_current_time(self, conn: _Conn, _fields: list[str]) -> None:
        self._send(conn, [OUT_CURRENT_TIME, 1, int(self._now().timestamp())])

    def _on_req_positions(self, conn: _Conn, _fields: list[str]) -> None:
        by_id = {c.con_id: c for c in self.contracts}
        for con_id, (qty, avg_cost) in self.positions.items():
            contract = by_id[con_id]
            self._send(conn, [OUT_POSITION, 3, self.account, *contract.wire(), _num(qty) or "0", _num(avg_cost)])
        self._send(conn, [OUT_POSITION_END, 1])

    def _on_req_open_orders(self, conn: _Conn, fields: list[str]) -> None:
        all_clients = int(fields[0]) == IN_REQ_ALL_OPEN_ORDERS
        for order in self.orders.values():
            if not order.is_done and (all_clients or order.client_id == conn.client_id):
                self._send(conn, self._open_order_fields(order))
                self._send(conn, self._order_status_fields(order))
        self._send(conn, [OUT_OPEN_ORDER_END, 1])

    def _on_req_completed_orders(self, conn: _Conn, _fields: list[str]) -> None:
        for order in self.orders.values():
            if order.is_done:
                self._send(conn, self._completed_order_fields(order))
        self._send(conn, [OUT_COMPLETED_ORDERS_END])

    def _on_req_executions(self, conn: _Conn, fields: list[str]) -> None:
        req_id, client_id = int(fields[2]), int(fields[3] or 0)
        symbol = fields[6] if len(fields) > 6 else ""
        chosen = [
            e for e in self.executions
            if (not client_id or e.order.client_id == client_id) and (not symbol or e.order.contract.symbol == symbol)
        ]
        for execution in chosen:
            self._send(conn, self._exec_fields(req_id, execution))
        for execution in chosen:
            self._send(conn, self._commission_fields(execution))
        self._send(conn, [OUT_EXEC_DETAILS_END, 1, req_id])

    def _on_req_contract_details(self, conn: _Conn, fields: list[str]) -> None:
        req_id = int(fields[2])
        names = ("conId", "symbol", "secType", "lastTradeDateOrContractMonth", "strike", "right", "multiplier",
                 "exchange", "primaryExchange", "currency", "localSymbol", "tradingClass")
        request = dict(zip(names, fields[3:15], strict=False))
        found = [c for c in self.contracts if c.matches(request)]
        if not found:
            self._send_error(conn, req_id, ERR_UNKNOWN_CONTRACT, NO_SECURITY)
            return
        for contract in found:
            self._send(conn, self._contract_details_fields(req_id, contract, request.get("exchange") or "SMART"))
        self._send(conn, [OUT_CONTRACT_DETAILS_END, 1, req_id])

    def _on_req_account_updates(self, conn: _Conn, fields: list[str]) -> None:
        if fields[2] != "1":
            return
        for tag, value in self.account_values.items():
            self._send(conn, [OUT_ACCOUNT_VALUE, 2, tag, value, "USD", self.account])
        self._send(conn, [OUT_ACCOUNT_DOWNLOAD_END, 1, self.account])

    def _on_req_account_updates_multi(self, conn: _Conn, fields: list[str]) -> None:
        req_id = int(fields[2])
        for tag, value in self.account_values.items():
            self._send(conn, [OUT_ACCOUNT_UPDATE_MULTI, 1, req_id, self.account, "", tag, value, "USD"])
        self._send(conn, [OUT_ACCOUNT_UPDATE_MULTI_END, 1, req_id])

    def _on_req_account_summary(self, conn: _Conn, fields: list[str]) -> None:
        req_id = int(fields[2])
        for tag, value in self.account_values.items():
            self._send(conn, [OUT_ACCOUNT_SUMMARY, 1, req_id, self.account, tag, value, "USD"])
        self._send(conn, [OUT_ACCOUNT_SUMMARY_END, 1, req_id])

    # ------------------------------------------------------------------ orders

    def _on_place_order(self, conn: _Conn, fields: list[str]) -> None:
        self.place_requests.append(fields)
        order_id = int(fields[1])
        names = ("conId", "symbol", "secType", "lastTradeDateOrContractMonth", "strike", "right", "multiplier",
                 "exchange", "primaryExchange", "currency", "localSymbol", "tradingClass")
        request = dict(zip(names, fields[2:14], strict=False))
        existing = self.orders.get(order_id)
        if existing is not None and not existing.is_done and existing.client_id == conn.client_id:
            self._modify(existing, fields)
            return
        parent_id = int(fields[28] or 0)
        if parent_id or (fields[18] == "STP" and not self.scripts):
            script = OrderScript("rest")  # a stop (an attached child, or one unscripted) rests until trade() hits it
        else:
            script = self.scripts.popleft() if self.scripts else self.default_script
        if script.action == "pacing":
            self._send_error(conn, order_id, ERR_PACING, "Max rate of messages per second has been exceeded:max=50")
            return
        if script.action == "duplicate" or order_id in self._used_order_ids:
            self._send_error(conn, order_id, ERR_DUPLICATE_ORDER_ID, "Duplicate order id")
            return
        contract = next((c for c in self.contracts if c.matches(request)), None)
        if contract is None:
            self._send_error(conn, order_id, ERR_UNKNOWN_CONTRACT, NO_SECURITY)
            return
        self._used_order_ids.add(order_id)
        order = FakeOrder(
            order_id=order_id, client_id=conn.client_id, perm_id=next(self._perm_ids), contract=contract,
            action=fields[16], quantity=float(fields[17]), order_type=fields[18], lmt_price=fields[19],
            aux_price=fields[20], tif=fields[21], account=fields[23] or self.account, order_ref=fields[26],
            parent_id=parent_id, transmit=fields[27] not in ("0", "False", ""),
        )
        if not order.transmit:
            # TWS holds an untransmitted order (no status) until an order with transmit set goes: then both go
            order.status, order.script = "PendingSubmit", script
            self.orders[order_id] = order
            return
        if script.action == "reject":
            self.orders[order_id] = order
            order.status, order.completed_status = "Inactive", f"Rejected: {script.reason}"
            self._send_error(conn, order_id, ERR_REJECTED, script.reason)
            return
        self.orders[order_id] = order
        if script.action == "silent":
            return
        if script.action == "drop":
            self._drop_after(order, script)
            return
        self._acknowledge(order)
        parent = self.orders.get(order.parent_id) if order.parent_id else None
        if parent is not None and not parent.transmit:
            parent.transmit = True  # the child transmits the pair: the parent goes live now, the child rests
            self._go_live(parent, parent.script or self.default_script)
            return
        self._go_live(order, script, acknowledged=True)

    def _go_live(self, order: FakeOrder, script: OrderScript, *, acknowledged: bool = False) -> None:
        if not acknowledged:
            self._acknowledge(order)
        if script.action == "locate":
            self._hold_for_locate(order, script)
            return
        contract = order.contract
        price = contract.price if script.price is None else script.price
        if order.order_type == "LMT" and script.price is None and order.lmt_price:
            price = float(order.lmt_price)
        if script.action == "fill":
            self._execute(order, order.quantity, price)
        elif script.action == "partial":
            qty = script.fill_qty if script.fill_qty is not None else max(order.quantity // 2, 1)
            self._execute(order, min(qty, order.quantity), price)

    def _acknowledge(self, order: FakeOrder) -> None:
        for status in ("PreSubmitted", "Submitted"):
            order.status = status
            self._broadcast(self._open_order_fields(order))
            self._broadcast(self._order_status_fields(order))

    def _hold_for_locate(self, order: FakeOrder, script: OrderScript) -> None:
        """A short sale IB cannot borrow for yet: warning 404 to the client that placed it, then `Inactive` with
        whyHeld "locate" (live: `locate` finds the shares)."""
        order.status, order.why_held, order.script = "Inactive", "locate", script
        for conn in self._live():
            if conn.client_id == order.client_id:
                self._send_error(conn, order.order_id, WARN_LOCATING, LOCATING)
        self._broadcast(self._order_status_fields(order))

    def _drop_after(self, order: FakeOrder, script: OrderScript) -> None:
        if not script.drop_before_ack:
            self._acknowledge(order)
        else:
            order.status = "Submitted"

        async def drop() -> None:
            await asyncio.sleep(0.05)  # let the client read the acknowledgement first
            await self.drop_connections()
            if script.fill_while_down:
                price = order.contract.price if script.price is None else script.price
                self._execute(order, order.quantity, price)

        task = asyncio.get_running_loop().create_task(drop())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _modify(self, order: FakeOrder, fields: list[str]) -> None:
        order.quantity, order.lmt_price, order.aux_price = float(fields[17]), fields[19], fields[20]
        order.order_ref = fields[26] or order.order_ref
        self._broadcast(self._open_order_fields(order))
        self._broadcast(self._order_status_fields(order))

    def _on_cancel_order(self, conn: _Conn, fields: list[str]) -> None:
        order_id = int(fields[2])
        self.cancel_requests.append(order_id)
        order = self.orders.get(order_id)
        if order is None or order.is_done:
            self._send_error(conn, order_id, ERR_NOT_CANCELLABLE,
                             f"Cancel attempted when order is not in a cancellable state. Order permId ="
                             f"{order.perm_id if order else 0}")
            return
        order.status, order.why_held = "Cancelled", ""
        self._broadcast(self._order_status_fields(order))
        self._send_error(conn, order_id, ERR_CANCELLED, "Order Canceled - reason:")
        for child in [o for o in self.orders.values() if o.parent_id == order_id and not o.is_done]:
            if order.filled <= 0:  # an attached child goes with a parent that never filled
                child.status = "Cancelled"
                self._broadcast(self._order_status_fields(child))

    def _find_order(self, ref: FakeOrder | int | str) -> FakeOrder:
        if isinstance(ref, FakeOrder):
            return ref
        if isinstance(ref, int):
            return self.orders[ref]
        matches = self.orders_with_ref(ref)
        if not matches:
            raise KeyError(f"no order with orderRef {ref!r}")
        return matches[-1]

    def _execute(self, order: FakeOrder, qty: float, price: float, *, push: bool = True) -> None:
        if qty <= 0:
            return
        total_cost = order.avg_price * order.filled + price * qty
        order.filled += qty
        order.avg_price = total_cost / order.filled
        order.last_fill_price = price
        if order.remaining <= 0:
            order.status = "Filled"
        commission = round(max(self.min_commission, self.commission_per_share * qty), 4)
        execution = FakeExecution(
            exec_id=f"0000e0d5.{next(self._exec_ids):08x}.01.01", order=order, shares=qty, price=price,
            time=self._now(), cum_qty=order.filled, avg_price=order.avg_price, commission=commission,
        )
        self.executions.append(execution)
        self._apply_position(order, qty, price, commission)
        if push:
            self._broadcast(self._exec_fields(-1, execution))
            self._broadcast(self._order_status_fields(order))
            self._broadcast(self._open_order_fields(order))
            self._broadcast(self._commission_fields(execution))
        self._notify()

    def _apply_position(self, order: FakeOrder, qty: float, price: float, commission: float = 0.0) -> None:
        """The position after an execution; its average cost holds the commissions paid to open it, as IB's
        avgCost does (a buy of 5 at 20 for a 1.00 commission: 20.20)."""
        signed = qty if order.action == "BUY" else -qty
        old_qty, old_cost = self.positions.get(order.contract.con_id, (0.0, 0.0))
        mult = float(order.contract.multiplier or 1)
        new_qty = old_qty + signed
        if new_qty == 0:
            self.positions.pop(order.contract.con_id, None)
            return
        same_side = old_qty == 0 or (old_qty > 0) == (signed > 0)
        paid = price * mult * qty + (commission if signed > 0 else -commission)  # a short's proceeds, less it
        cost = (old_cost * abs(old_qty) + paid) / abs(new_qty) if same_side else old_cost
        self.positions[order.contract.con_id] = (new_qty, cost)

    # ------------------------------------------------------------------ encoders (match ib_async decoder.py)

    def _order_status_fields(self, order: FakeOrder) -> list[Any]:
        return [OUT_ORDER_STATUS, order.order_id, order.status, _num(order.filled) or "0", _num(order.remaining) or "0",
                _num(order.avg_price) or "0", order.perm_id, order.parent_id, _num(order.last_fill_price) or "0",
                order.client_id, order.why_held, ""]

    def _exec_fields(self, req_id: int, ex: FakeExecution) -> list[Any]:
        order = ex.order
        fields: list[Any] = [
            OUT_EXEC_DETAILS, req_id, order.order_id, *order.contract.wire(), ex.exec_id, _ib_time(ex.time),
            order.account, "ISLAND", "BOT" if order.action == "BUY" else "SLD", _num(ex.shares), _num(ex.price),
            order.perm_id, order.client_id, 0, _num(ex.cum_qty), _num(ex.avg_price), order.order_ref, "", "", "", 1,
        ]
        if self.server_version >= 178:
            fields.append(0)
        return fields

    def _commission_fields(self, ex: FakeExecution) -> list[Any]:
        return [OUT_COMMISSION_REPORT, 1, ex.exec_id, ex.commission, "USD", "", "", ""]

    def _contract_details_fields(self, req_id: int, c: FakeContract, exchange: str) -> list[Any]:
        return [
            OUT_CONTRACT_DETAILS, req_id, c.symbol, c.sec_type, c.expiry, _num(c.strike), c.right, exchange,
            c.currency, c.local_symbol, c.trading_class, c.trading_class, c.con_id, 0.01, c.multiplier,
            "ACTIVETIM,ADJUST,LMT,MKT,STP", "SMART,ISLAND,NYSE,ARCA", 1, 0, f"{c.symbol} FAKE", c.primary_exchange,
            c.expiry[:6], "", "", "", "US/Eastern", "", "", "", "", 0,
            1, "", "", "26,26", c.expiry, "COMMON" if c.sec_type == "STK" else "", "1", "1", "100",
        ]

    def _order_prefix(self, order: FakeOrder) -> list[Any]:
        return [order.action, _num(order.quantity), order.order_type, order.lmt_price, order.aux_price, order.tif,
                "", order.account, "O", 0, order.order_ref]

    def _open_order_fields(self, order: FakeOrder) -> list[Any]:
        sv = self.server_version
        fields: list[Any] = [OUT_OPEN_ORDER, order.order_id, *order.contract.wire(), *self._order_prefix(order),
                             order.client_id, order.perm_id, 0, 0, 0, "", "", "", "", ""]
        if sv < 177:
            fields.append("")  # faProfile
        fields += [""] * 23 + [order.parent_id, 0, "", 0, "", ""]           # modelCode .. deltaNeutralAuxPrice
        fields += [0, 0, "", "", "", "", ""]                                  # continuousUpdate .. comboLegsDescrip
        fields += [0, 0, 0]                                                   # combo legs, order combo legs, params
        fields += ["", "", ""]                                                # scale init/subs/increment
        fields += [""]                                                        # hedgeType
        fields += [0, "", "", 0, 0]                                           # optOutSmartRouting .. dncPresent
        fields += [""]                                                        # algoStrategy
        fields += [0, 0, order.status] + [""] * 14 + [0, 0]                  # solicited, whatIf, orderState, randomize
        fields += [0]                                                         # conditions
        fields += [""] * 16                                                   # adjustedOrderType .. usePriceMgmtAlgo
        fields += ["", 0, 0]                                                  # duration, postToAts, autoCancelParent
        fields += [""] * 5                                                    # minTradeQty .. midOffsetAtHalf
        return fields

    def _completed_order_fields(self, order: FakeOrder) -> list[Any]:
        fields: list[Any] = [OUT_COMPLETED_ORDER, *order.contract.wire(), *self._order_prefix(order),
                             order.perm_id, 0, 0, 0, "", "", "", ""]
        if self.server_version < 177:
            fields.append("")  # faProfile
        fields += [""] * 23                                                   # modelCode .. deltaNeutralAuxPrice
        fields += [0, 0, "", "", ""]                                          # continuousUpdate .. comboLegsDescrip
        fields += [0, 0, 0]                                                   # combo legs, order combo legs, params
        fields += ["", "", ""]                                                # scale
        fields += [""]                                                        # hedgeType
        fields += ["", "", 0, 0]                                              # clearingAccount .. dncPresent
        fields += [""]                                                        # algoStrategy
        fields += [0, order.status, 0, 0]                                     # solicited, status, randomize
        fields += [0]                                                         # conditions
        fields += ["", "", "", 0, 0, "", _num(order.filled) or "0", "", 0, "", 0, 0, "",
                   _ib_time(self._now()), order.completed_status or order.status]
        fields += [""] * 5
        return fields
