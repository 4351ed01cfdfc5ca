"""FakeAlpaca: a scriptable Alpaca wire fake (REST + trade_updates websocket + market-data websocket).

An aiohttp server on 127.0.0.1 (ephemeral port) speaking the JSON/msgpack shapes alpaca-py 0.44 parses, so the
real `TradingClient`, `TradingStream` and `StockDataStream` run against it over a loopback socket.

Fixture (tests and the daemon-level suite)::

    async with FakeAlpaca() as fake:                 # api_key="test-key", secret_key="test-secret"
        settings = fake.alpaca_settings(request_timeout_seconds=2)   # an AlpacaSettings pointed at the fake
        fake.env(tickers=["AAPL"])   # ORDERGATE_* variables for `ordergate run` as a subprocess

Scripting (each `next_submit_*` queues the behaviour of the next POST /v2/orders; unscripted submits are
accepted and stay open):

    fake.next_submit_accepts()
    fake.next_submit_fills(price, partials=(40, 30))   # new, partial_fill x2, fill (rest) pushed on the stream
    fake.market_fills(slippage=0.003)                  # unscripted market orders fill at last price x (1 +- 0.3 %)
    fake.next_submit_rejects("insufficient buying power", status=403)
    fake.next_submit_rate_limited(reset_in=1.0, times=1)   # 429 with X-RateLimit-Reset (epoch seconds)
    fake.next_submit_errors(status=500, times=1)
    fake.next_submit_hangs()                            # the order IS stored, the reply never comes
    fake.next_submit_reply_held(); fake.release_replies()  # the reply (the order as accepted) comes when released
    fake.next_replace_reply_held()                       # likewise for the next PATCH /v2/orders/{id}
    fake.next_replace_done_then_errors(status=500)       # the next PATCH is done and announced, its reply a 5xx
    fake.next_cancel_done_then_errors(status=500)        # likewise for the next DELETE /v2/orders/{id}
    await fake.fill(client_order_id, qty, price, times=2)   # an execution; times=2 sends the frame twice
    await fake.cancel(client_order_id)                   # broker-side cancel
    fake.drop_trade_stream(block=True) / fake.allow_trade_stream()
    fake.hold_trade_updates(); await fake.release_trade_updates()   # the stream lags behind REST: frames wait
    await fake.push_bar("AAPL", ts, o, h, l, c, v) ; fake.drop_data_stream()
    fake.set_position("AAPL", 10, 100.0) ; fake.account.update(equity="...")
    await fake.place_manual_order("AAPL", 10, "buy", 100.0)  # a hand-placed order (foreign id), filled at once
    fake.positions_lag = 2.0   # GET /v2/positions answers the positions as they were 2 s ago
    fake.fail_requests("GET", "/v2/orders", status=503, times=1)   # the next matching requests answer 503
    fake.clock_offset = -10.0     # Alpaca's clock 10 s behind the host's: its timestamps and GET /v2/clock
    fake.split("AAPL", 2.0)       # a 2-for-1 split overnight: position x2 at half its price, open orders' qty x2
                                  # at their old prices, history split-adjusted for adjustment=split
    fake.options.add("AAPL", expiry, "C", 100, bid=3.1, ask=3.3, delta=0.5, iv=0.27, open_interest=1500)
                                  # option contracts + snapshots (tests/fakes/alpaca_options.py)

Buying power is checked like Alpaca does: an order that opens or adds to a position needs its cost at the price it
will fill at (a market order: the last price moved by the fill slippage; a limit: its limit) within the account's
`buying_power` less what the open orders hold, else 403 "insufficient buying power" (code 40310000); fills move
`cash` and `buying_power`. A duplicate `client_order_id` is answered 422 like Alpaca. Everything received is in
`fake.requests` (method, path, query, json body); orders are in `fake.orders` (Alpaca JSON dicts keyed by order id).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import msgpack
from aiohttp import WSMsgType, web

from config.settings import AlpacaSettings
from pipeline.instruments.occ import is_occ
from tests.fakes.alpaca_options import FakeOptionsAPI

FINAL = {"filled", "canceled", "expired", "rejected", "replaced"}
DUPLICATE_MESSAGE = "client_order_id must be unique"


def _iso(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _now() -> datetime:
    return datetime.now(UTC)


def _num(value: float) -> str:
    return f"{value:.10g}"


@dataclass
class RecordedRequest:
    """One HTTP request the fake received."""

    method: str
    path: str
    query: dict[str, str]
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    at: float = 0.0  # loop time (monotonic) when it arrived


@dataclass
class SubmitScript:
    """How the fake answers one POST /v2/orders."""

    kind: str  # accept | fill | reject | rate_limit | error | hang | held
    price: float = 100.0
    partials: tuple[float, ...] = ()
    status: int = 200
    message: str = ""
    code: int = 0
    reset_in: float = 1.0
    delay: float = 0.02


class FakeAlpaca:
    """Alpaca's trading REST API, its trade_updates websocket and its market-data websocket, scriptable."""

    def __init__(self, api_key: str = "test-key", secret_key: str = "test-secret") -> None:
        self.api_key = api_key
        self.secret_key = secret_key
        self.requests: list[RecordedRequest] = []
        self.orders: dict[str, dict[str, Any]] = {}
        self.positions: dict[str, dict[str, Any]] = {}
        self.prices: dict[str, float] = {}
        self.account: dict[str, Any] = _account_json()
        self.clock_open = True
        self.trade_sockets: set[web.WebSocketResponse] = set()
        self.data_sockets: set[web.WebSocketResponse] = set()
        self.data_subscriptions: set[str] = set()
        self.splits: list[tuple[str, float, datetime]] = []  # (symbol, ratio, effective) as `split` made them
        self.history: list[dict[str, Any]] = []  # minute bars served by GET /v2/stocks/bars (S, t, o, h, l, c, v)
        self.history_fail = 0  # answer that many history requests with a 500
        self.history_page_size = 10_000  # bars per page at most (the SDK asks for 10 000)
        self.history_delay = 0.0  # seconds before a history page is answered
        self.trade_stream_connects = 0
        self.data_stream_connects = 0
        self.block_trade_stream = False
        self.sent_trade_frames: list[dict[str, Any]] = []
        self._held_frames: list[dict[str, Any]] | None = None  # trade_updates frames held back (hold_trade_updates)
        self.fill_slippage = 0.0  # market orders are funded (and, with market_fills, filled) this far from the last
        self.auto_fill: SubmitScript | None = None  # how unscripted market orders are answered (market_fills)
        self.submit_answers: list[int] = []  # the HTTP status of every POST /v2/orders answered
        self._holds: dict[str, float] = {}  # order id -> buying power held per unfilled unit
        self.positions_lag = 0.0  # seconds GET /v2/positions lags behind the account (Alpaca's can)
        self._position_history: deque[tuple[float, list[dict[str, Any]]]] = deque(maxlen=1000)
        self.clock_offset = 0.0  # seconds Alpaca's clock is ahead of the host's (negative: behind)
        self._failures: list[list[Any]] = []  # [method, path, status, times left]
        self._scripts: deque[SubmitScript] = deque()
        self._hung: list[asyncio.Future[None]] = []
        self._held: asyncio.Event | None = None  # replies of `held` submits wait for it (release_replies)
        self._held_replaces = 0  # the next this many replace replies wait for it too
        self._erring_replaces: list[int] = []  # statuses the next replaces answer with, once done
        self._erring_cancels: list[int] = []   # statuses the next cancels answer with, once done
        self._tasks: set[asyncio.Task[Any]] = set()
        self._runner: web.AppRunner | None = None
        self.port = 0
        self.options = FakeOptionsAPI(self.now, self.prices)  # option contracts and snapshots (alpaca_options.py)

    # -- lifecycle ------------------------------------------------------------------------------------
    async def start(self) -> FakeAlpaca:
        app = web.Application()
        app.router.add_get("/v2/account", self._account)
        app.router.add_get("/v2/clock", self._clock)
        app.router.add_post("/v2/orders", self._submit)
        app.router.add_get("/v2/orders", self._list_orders)
        app.router.add_delete("/v2/orders", self._cancel_all)
        app.router.add_get("/v2/orders:by_client_order_id", self._by_client_id)
        app.router.add_get("/v2/orders/{order_id}", self._get_order)
        app.router.add_delete("/v2/orders/{order_id}", self._cancel_one)
        app.router.add_patch("/v2/orders/{order_id}", self._replace)
        app.router.add_get("/v2/positions", self._list_positions)
        app.router.add_delete("/v2/positions", self._close_all)
        app.router.add_delete("/v2/positions/{symbol}", self._close_one)
        app.router.add_get("/stream", self._trade_ws)
        app.router.add_get("/v2/stocks/bars", self._history_bars)
        self.options.routes(app)
        app.router.add_get("/v2/{feed}", self._data_ws)
        app.middlewares.append(self._record_and_auth)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)  # 0 at first; a restart reuses the port
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._positions_changed()
        return self

    async def stop(self) -> None:
        self.release_replies()
        for fut in self._hung:
            if not fut.done():
                fut.cancel()
        for ws in list(self.trade_sockets | self.data_sockets):
            with contextlib.suppress(Exception):
                await ws.close()
        for task in list(self._tasks):
            task.cancel()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeAlpaca:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- addresses ------------------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def trading_stream_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/stream"

    def data_stream_url(self, feed: str = "iex") -> str:
        return f"ws://127.0.0.1:{self.port}/v2/{feed}"

    def alpaca_settings(self, **overrides: Any) -> AlpacaSettings:
        """AlpacaSettings pointed at this fake (keys included)."""
        values: dict[str, Any] = {
            "api_key": self.api_key, "secret_key": self.secret_key, "paper": True, "base_url": self.base_url,
            "trading_stream_url": self.trading_stream_url, "data_stream_url": self.data_stream_url("iex"),
            "data_url": self.base_url, "feed": "iex",
        }
        values.update(overrides)
        return AlpacaSettings(**values)

    def env(self, tickers: list[str] | None = None) -> dict[str, str]:
        """Environment for `ordergate run` as a subprocess pointed at this fake (bars too when `tickers`)."""
        bars = {"ORDERGATE_DATA__SOURCE": "alpaca", "ORDERGATE_DATA__TICKERS": json.dumps(tickers)} if tickers else {}
        return {**bars,
            "ORDERGATE_BROKER__PRIMARY": "alpaca",
            "ORDERGATE_ALPACA__API_KEY": self.api_key,
            "ORDERGATE_ALPACA__SECRET_KEY": self.secret_key,
            "ORDERGATE_ALPACA__BASE_URL": self.base_url,
            "ORDERGATE_ALPACA__TRADING_STREAM_URL": self.trading_stream_url,
            "ORDERGATE_ALPACA__DATA_STREAM_URL": self.data_stream_url("iex"),
            "ORDERGATE_ALPACA__DATA_URL": self.base_url,
        }

    def now(self) -> datetime:
        """Alpaca's time: the host's plus `clock_offset`."""
        return _now() + timedelta(seconds=self.clock_offset)

    # -- scripting ------------------------------------------------------------------------------------
    def fail_requests(self, method: str, path: str, status: int = 503, times: int = 1) -> None:
        """Answer the next `times` requests for METHOD PATH (exact path) with `status` (a 5xx: server error)."""
        self._failures.append([method.upper(), path, status, times])

    def next_submit_accepts(self) -> None:
        self._scripts.append(SubmitScript("accept"))

    def next_submit_fills(self, price: float, partials: tuple[float, ...] = (), delay: float = 0.02) -> None:
        """Accept, then push new, one partial_fill per `partials` qty, and a fill for the rest."""
        self._scripts.append(SubmitScript("fill", price=price, partials=tuple(partials), delay=delay))

    def market_fills(self, slippage: float = 0.0, delay: float = 0.02) -> None:
        """Unscripted market orders fill in full after `delay` at the last price moved `slippage` against them."""
        self.fill_slippage = slippage
        self.auto_fill = SubmitScript("fill", delay=delay)

    def next_submit_rejects(self, message: str, status: int = 403, code: int = 40310000) -> None:
        self._scripts.append(SubmitScript("reject", status=status, message=message, code=code))

    def next_submit_rate_limited(self, reset_in: float = 1.0, times: int = 1) -> None:
        for _ in range(times):
            self._scripts.append(SubmitScript("rate_limit", status=429, reset_in=reset_in))

    def next_submit_errors(self, status: int = 500, times: int = 1) -> None:
        for _ in range(times):
            self._scripts.append(SubmitScript("error", status=status))

    def next_submit_hangs(self) -> None:
        """The next order is stored and acknowledged on the stream, but the HTTP reply never comes."""
        self._scripts.append(SubmitScript("hang"))

    def next_submit_reply_held(self) -> None:
        """The next order is stored and acknowledged on the stream at once, but its HTTP reply (the order as it
        was when accepted) only goes out at `release_replies()`: stream events overtake a slow reply."""
        self._scripts.append(SubmitScript("held"))

    def next_replace_reply_held(self) -> None:
        """Likewise for the next PATCH /v2/orders/{id}: done and announced on the stream, its reply held."""
        self._held_replaces += 1

    def next_replace_done_then_errors(self, status: int = 500) -> None:
        """The next PATCH /v2/orders/{id} is done and announced on the stream, but answered with `status` (a 5xx
        at the worst moment: the client cannot tell it from a replace that never happened)."""
        self._erring_replaces.append(status)

    def next_cancel_done_then_errors(self, status: int = 500) -> None:
        """The next DELETE /v2/orders/{id} cancels the order (announced on the stream), but is answered with
        `status`."""
        self._erring_cancels.append(status)

    def release_replies(self) -> None:
        if self._held is not None:
            self._held.set()

    def set_position(self, symbol: str, qty: float, avg_price: float, price: float | None = None) -> None:
        """Put a position straight into the account (qty signed: negative = short)."""
        self.prices[symbol] = price if price is not None else avg_price
        if qty == 0:
            self.positions.pop(symbol, None)
            self._positions_changed()
            return
        self.positions[symbol] = _position_json(symbol, qty, avg_price, self.prices[symbol])
        self._positions_changed()

    async def place_manual_order(self, symbol: str, qty: float, side: str, price: float, *,
                                 client_order_id: str | None = None) -> dict[str, Any]:
        """An order the account holder placed by hand (web app, another program): a client order id ordergate
        did not make (a UUID, as Alpaca assigns one), filled at once; its new and fill events go out on
        trade_updates to every listener, as a real account shows them, and the position changes."""
        order = self._new_order({"symbol": symbol, "qty": _num(qty), "side": side, "type": "market",
                                 "time_in_force": "day", "client_order_id": client_order_id or str(uuid.uuid4())})
        self._set_status(order, "new")
        await self.push_trade_update("new", order)
        await self.fill(order["client_order_id"], qty, price)
        return order

    async def rest_manual_order(self, symbol: str, qty: float, side: str, limit_price: float) -> dict[str, Any]:
        """A limit order the account holder placed by hand that rests (no fill): a client order id ordergate did
        not make; as at Alpaca, the shares it would sell are held by it (an order of ours beyond what is left is
        refused: insufficient qty available)."""
        order = self._new_order({"symbol": symbol, "qty": _num(qty), "side": side, "type": "limit",
                                 "limit_price": _num(limit_price), "time_in_force": "gtc",
                                 "client_order_id": str(uuid.uuid4())})
        self._set_status(order, "new")
        await self.push_trade_update("new", order)
        return order

    def order_by_client_id(self, client_order_id: str) -> dict[str, Any] | None:
        return next((o for o in self.orders.values() if o["client_order_id"] == client_order_id), None)

    def submits(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.method == "POST" and r.path == "/v2/orders"]

    async def fill(self, client_order_id: str, qty: float, price: float, *, times: int = 1, send: bool = True) -> str:
        """Execute `qty` at `price` on the order; push the event `times` times. Returns the execution id."""
        order = self.order_by_client_id(client_order_id)
        if order is None:
            raise KeyError(client_order_id)
        execution_id = self._execute(order, qty, price)
        event = "fill" if order["status"] == "filled" else "partial_fill"
        extra = {"execution_id": execution_id, "price": _num(price), "qty": _num(qty),
                 "position_qty": self.positions.get(order["symbol"], {}).get("qty", "0")}
        for _ in range(times if send else 0):
            await self.push_trade_update(event, order, **extra)
        return execution_id

    async def trade(self, symbol: str, price: float) -> list[str]:
        """The market trades `symbol` at `price`: resting stop orders it crosses trigger and fill there (sell stops
        at or below their stop price, buy stops at or above), pushed on trade_updates to whoever listens.
        Returns the client order ids that filled."""
        self.prices[symbol] = price
        if symbol in self.positions:
            pos = self.positions[symbol]
            self.positions[symbol] = _position_json(symbol, float(pos["qty"]), float(pos["avg_entry_price"]), price,
                                                    pos["asset_class"])
        fired = []
        for order in list(self.orders.values()):
            if order["symbol"] != symbol or order["type"] != "stop" or order["status"] in FINAL \
                    or order["status"] in ("held", "pending_cancel"):
                continue
            stop = float(order["stop_price"])
            if (price <= stop) if order["side"] == "sell" else (price >= stop):
                remaining = float(order["qty"]) - float(order["filled_qty"])
                await self.fill(order["client_order_id"], remaining, price)
                fired.append(order["client_order_id"])
        return fired

    def replaces(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.method == "PATCH" and r.path.startswith("/v2/orders/")]

    async def cancel(self, client_order_id: str) -> None:
        order = self.order_by_client_id(client_order_id)
        if order is None:
            raise KeyError(client_order_id)
        self._set_status(order, "canceled", "canceled_at")
        await self.push_trade_update("canceled", order)

    async def push_trade_update(self, event: str, order: dict[str, Any], **extra: Any) -> None:
        """Send one trade_updates frame (as Alpaca does) to every listening socket (held back, in order, while
        `hold_trade_updates` is on)."""
        data = {"event": event, "order": dict(order), "timestamp": order["updated_at"], **extra}
        frame = {"stream": "trade_updates", "data": data}
        if self._held_frames is not None:
            self._held_frames.append(frame)
            return
        await self._send_trade_frame(frame)

    def hold_trade_updates(self) -> None:
        """The trade_updates stream lags behind REST (a stalled websocket): frames wait, the orders, positions
        and account move at once; `release_trade_updates` sends them."""
        if self._held_frames is None:
            self._held_frames = []

    async def release_trade_updates(self) -> int:
        """Send the held frames in order and stop holding; returns how many."""
        frames, self._held_frames = self._held_frames or [], None
        for frame in frames:
            await self._send_trade_frame(frame)
        return len(frames)

    async def _send_trade_frame(self, frame: dict[str, Any]) -> None:
        self.sent_trade_frames.append(frame)
        for ws in list(self.trade_sockets):
            with contextlib.suppress(Exception):
                await ws.send_str(json.dumps(frame))

    def drop_trade_stream(self, block: bool = False) -> None:
        """Close every trade_updates socket; with `block`, refuse new ones until `allow_trade_stream()`."""
        self.block_trade_stream = block
        for ws in list(self.trade_sockets):
            self.trade_sockets.discard(ws)
            self._spawn(ws.close())

    def allow_trade_stream(self) -> None:
        self.block_trade_stream = False

    def add_history(self, symbol: str, ts: datetime, o: float, h: float, low: float, c: float, v: float) -> None:
        """A minute bar the historical bars endpoint serves."""
        self.history.append({"S": symbol, "t": ts, "o": o, "h": h, "l": low, "c": c, "v": v})

    def split(self, symbol: str, ratio: float, *, at: datetime | None = None) -> None:
        """A `ratio`-for-1 stock split (0.1: 1-for-10) processed overnight, as Alpaca does it: the position holds
        `ratio` times the shares (whole shares: the fraction is paid as cash in lieu at the new price) at its
        average price over `ratio`; each open order on the symbol keeps its prices and gets `ratio` times its
        quantity (what alpaca-py issue 469 reports of a resting stop: 50 shares, still at the pre-split stop); the
        last price is over `ratio`, and history before `at` (default: now) is split-adjusted when asked for with
        adjustment=split. No trade_updates event is sent (Alpaca sends none for a corporate action)."""
        self.splits.append((symbol, ratio, at or self.now()))
        price = self.prices.get(symbol)
        if price is not None:
            self.prices[symbol] = price / ratio
        pos = self.positions.get(symbol)
        if pos is not None:
            qty, avg = float(pos["qty"]), float(pos["avg_entry_price"])
            exact = qty * ratio
            new = math.copysign(math.floor(abs(exact) + 1e-9), exact) if qty == int(qty) else exact
            new_price = (price / ratio) if price is not None else avg / ratio
            self.account["cash"] = _num(float(self.account["cash"]) + (exact - new) * new_price)
            if abs(new) < 1e-9:
                self.positions.pop(symbol)
            else:
                self.positions[symbol] = _position_json(symbol, new, avg / ratio, new_price, pos["asset_class"])
            self._positions_changed()
        for order in self.orders.values():
            if order["symbol"] == symbol and order["status"] not in FINAL:
                order["qty"] = _num(math.floor(float(order["qty"]) * ratio + 1e-9))

    async def replace_by_hand(self, client_order_id: str, *, stop_price: float | None = None,
                              limit_price: float | None = None, qty: float | None = None) -> dict[str, Any]:
        """The account holder edits an open order in Alpaca's app (a stop moved): as a PATCH without a
        client_order_id, the new order gets one Alpaca makes up and `replaces` the old, which ends `replaced`;
        trade_updates says `replaced` (the old order, `replaced_by` set) then `new` (the new one)."""
        old = self.order_by_client_id(client_order_id)
        if old is None or old["status"] in FINAL:
            raise KeyError(f"no open order {client_order_id}")
        new = self._replacement(old, str(uuid.uuid4()),
                                {"qty": qty, "limit_price": limit_price, "stop_price": stop_price})
        await self.push_trade_update("replaced", old)
        await self.push_trade_update("new", new)
        return new

    def pay_dividend(self, symbol: str, per_share: float) -> float:
        """A cash dividend on the position in `symbol` posts to the account (an activity, no order and no
        trade_updates event, as Alpaca books it): cash and equity go up by quantity x per_share (a short pays it).
        Returns the amount."""
        pos = self.positions.get(symbol)
        amount = round(float(pos["qty"]) * per_share, 2) if pos is not None else 0.0
        self.move_cash(amount)
        return amount

    def move_cash(self, amount: float) -> None:
        """Cash moves without a fill (a dividend, a fee, interest, a deposit or a withdrawal): cash, buying power
        and equity by `amount`."""
        for key in ("cash", "buying_power", "equity", "portfolio_value"):
            self.account[key] = _num(float(self.account[key]) + amount)

    def history_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path == "/v2/stocks/bars"]

    def drop_data_stream(self) -> None:
        for ws in list(self.data_sockets):
            self.data_sockets.discard(ws)
            self._spawn(ws.close())

    async def push_bar(
        self, symbol: str, ts: datetime, o: float, h: float, low: float, c: float, v: float,
    ) -> None:
        """Send one minute bar ("T": "b", `t` a msgpack Timestamp) to every subscribed data socket."""
        await self.push_bars([{"S": symbol, "t": ts, "o": o, "h": h, "l": low, "c": c, "v": v}])

    async def push_bars(self, bars: list[dict[str, Any]]) -> None:
        """Send several bars in one msgpack frame: dicts with S, t (datetime), o, h, l, c, v."""
        frame = []
        for bar in bars:
            item = {"T": "b", "n": 10, "vw": bar["c"], **bar}
            item["t"] = msgpack.Timestamp.from_datetime(bar["t"])
            frame.append(item)
            self.prices[bar["S"]] = float(bar["c"])
        payload = msgpack.packb(frame)
        for ws in list(self.data_sockets):
            with contextlib.suppress(Exception):
                await ws.send_bytes(payload)

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        """Poll until `predicate()` is true (raises TimeoutError after `timeout`)."""
        async with asyncio.timeout(timeout):
            while not predicate():
                await asyncio.sleep(0.01)

    # -- order state ----------------------------------------------------------------------------------
    def _set_status(self, order: dict[str, Any], status: str, stamp: str | None = None) -> None:
        now = _iso(self.now())
        order["status"] = status
        order["updated_at"] = now
        if stamp:
            order[stamp] = now

    def _replacement(self, old: dict[str, Any], client_order_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        """The order that takes `old`'s place (its own id, `replaces` the old, the changed fields); the old one ends
        `replaced` with `replaced_by` set."""
        now = _iso(_now())
        new = dict(old)
        new.update({"id": str(uuid.uuid4()), "client_order_id": client_order_id, "created_at": now, "updated_at": now,
                    "submitted_at": now, "filled_qty": "0", "filled_avg_price": None, "filled_at": None,
                    "replaces": old["id"], "replaced_by": None, "replaced_at": None, "status": "new"})
        for name, value in changes.items():
            if value is not None:
                new[name] = _num(float(value))
        self._set_status(old, "replaced", "replaced_at")
        old["replaced_by"] = new["id"]
        self.orders[new["id"]] = new
        return new

    def _execute(self, order: dict[str, Any], qty: float, price: float) -> str:
        filled = float(order["filled_qty"])
        avg = float(order["filled_avg_price"] or 0.0)
        total = filled + qty
        order["filled_avg_price"] = _num((filled * avg + qty * price) / total)
        order["filled_qty"] = _num(total)
        done = total >= float(order["qty"]) - 1e-9
        self._set_status(order, "filled" if done else "partially_filled", "filled_at" if done else None)
        signed = qty if order["side"] == "buy" else -qty
        asset_class = order.get("asset_class", "us_equity")
        self._move_cash(order, signed, price, 100.0 if asset_class == "us_option" else 1.0)
        self._apply_to_position(order["symbol"], signed, price, asset_class)
        return str(uuid.uuid4())

    def _move_cash(self, order: dict[str, Any], signed_qty: float, price: float, multiplier: float) -> None:
        """A fill pays or receives cash; buying power goes down by what it opens and up by what it closes."""
        held = self._held_qty(order["symbol"])
        closing = min(abs(signed_qty), abs(held)) if held and (held > 0) != (signed_qty > 0) else 0.0
        opening = abs(signed_qty) - closing
        self.account["cash"] = _num(float(self.account["cash"]) - signed_qty * price * multiplier)
        power = float(self.account["buying_power"]) + (closing - opening) * price * multiplier
        self.account["buying_power"] = _num(power)
        if float(order["filled_qty"]) >= float(order["qty"]) - 1e-9:
            self._holds.pop(order["id"], None)

    def _held_qty(self, symbol: str) -> float:
        current = self.positions.get(symbol)
        return float(current["qty"]) if current else 0.0

    def _qty_problem(self, body: dict[str, Any]) -> str:
        """Alpaca's refusal of an order against a held position beyond what is available: the position less what
        the open orders on that side (resting stops included) already reserve; "" when it fits."""
        symbol = str(body["symbol"])
        held = self._held_qty(symbol)
        if not held or (held > 0) == (body["side"] == "buy"):
            return ""
        side = "sell" if held > 0 else "buy"
        reserved = sum(float(o["qty"]) - float(o["filled_qty"]) for o in self.orders.values()
                       if o["symbol"] == symbol and o["side"] == side and o["status"] not in FINAL)
        available = abs(held) - reserved
        qty = float(body.get("qty") or 0)
        if qty > available + 1e-9:
            return f"insufficient qty available for order (requested: {qty:g}, available: {max(available, 0):g})"
        return ""

    def _funding_problem(self, body: dict[str, Any]) -> tuple[str, float] | None:
        """None when there is nothing to fund (it only closes, or no price is known); ("insufficient buying power",
        0) when its opening part costs more at its fill price than the buying power left; else ("", cost per unit)."""
        symbol = str(body["symbol"])
        qty = float(body.get("qty") or 0)
        buy = body["side"] == "buy"
        held = self._held_qty(symbol)
        closing = min(qty, abs(held)) if held and (held > 0) != buy else 0.0
        if qty - closing <= 1e-9:
            return None
        last = self.prices.get(symbol)
        kind = body["type"]
        if kind in ("limit", "stop_limit"):
            unit = float(body["limit_price"])
        elif last is not None:
            unit = last * (1 + self.fill_slippage) if buy else last
        elif kind == "stop":
            unit = float(body["stop_price"]) * (1 + self.fill_slippage)
        else:
            return None  # no price known: nothing to check against
        multiplier = 100.0 if is_occ(symbol) else 1.0
        unit *= multiplier
        available = float(self.account["buying_power"]) - sum(
            hold * (float(o["qty"]) - float(o["filled_qty"]))
            for oid, hold in self._holds.items() if (o := self.orders.get(oid)) and o["status"] not in FINAL)
        if (qty - closing) * unit > available + 1e-6:
            return ("insufficient buying power", 0.0)
        return ("", unit)

    def _apply_to_position(self, symbol: str, signed_qty: float, price: float, asset_class: str) -> None:
        self.prices[symbol] = price
        current = self.positions.get(symbol)
        qty = float(current["qty"]) if current else 0.0
        avg = float(current["avg_entry_price"]) if current else 0.0
        new_qty = qty + signed_qty
        if abs(new_qty) < 1e-9:
            self.positions.pop(symbol, None)
        else:
            if qty == 0 or (qty > 0) != (new_qty > 0):
                avg = price
            elif abs(new_qty) > abs(qty):
                avg = (abs(qty) * avg + abs(signed_qty) * price) / abs(new_qty)
            self.positions[symbol] = _position_json(symbol, new_qty, avg, price, asset_class)
        self._positions_changed()

    def _positions_changed(self) -> None:
        """Remember the positions as of now, for a lagging positions endpoint (`positions_lag`)."""
        try:
            now = asyncio.get_running_loop().time()
        except RuntimeError:
            return
        self._position_history.append((now, [dict(p) for p in self.positions.values()]))

    def _positions_seen(self) -> list[dict[str, Any]]:
        """What GET /v2/positions answers: the positions as they were `positions_lag` seconds ago."""
        if self.positions_lag <= 0:
            return list(self.positions.values())
        cutoff = asyncio.get_running_loop().time() - self.positions_lag
        seen: list[dict[str, Any]] | None = None
        for at, snapshot in self._position_history:
            if at > cutoff:
                break
            seen = snapshot
        if seen is None:  # the lag reaches back before the fake started: what it started with
            return self._position_history[0][1] if self._position_history else list(self.positions.values())
        return seen

    def _new_order(self, body: dict[str, Any]) -> dict[str, Any]:
        now = _iso(self.now())
        symbol = str(body.get("symbol", ""))
        option = is_occ(symbol)
        order: dict[str, Any] = _order_json(body, now, "us_option" if option else "us_equity")
        self.orders[order["id"]] = order
        return order

    # -- HTTP -----------------------------------------------------------------------------------------
    @web.middleware
    async def _record_and_auth(self, request: web.Request, handler: Any) -> web.StreamResponse:
        body = None
        if request.can_read_body:
            raw = await request.read()
            with contextlib.suppress(ValueError):
                body = json.loads(raw) if raw else None
        self.requests.append(RecordedRequest(request.method, request.path, dict(request.query), body,
                                             dict(request.headers), asyncio.get_running_loop().time()))
        is_ws = request.headers.get("Upgrade", "").lower() == "websocket"
        if not is_ws and (request.headers.get("APCA-API-KEY-ID") != self.api_key
                          or request.headers.get("APCA-API-SECRET-KEY") != self.secret_key):
            return _error(401, 40110000, "request is not authorized")
        for failure in self._failures:
            if failure[0] == request.method and failure[1] == request.path and failure[3] > 0:
                failure[3] -= 1
                return _error(failure[2], 50010000, "service unavailable")
        return await handler(request)

    async def _account(self, request: web.Request) -> web.Response:
        return web.json_response(self.account)

    async def _clock(self, request: web.Request) -> web.Response:
        now = self.now()
        return web.json_response({
            "timestamp": now.isoformat(), "is_open": self.clock_open,
            "next_open": (now + timedelta(hours=17)).isoformat(), "next_close": (now + timedelta(hours=2)).isoformat(),
        })

    async def _submit(self, request: web.Request) -> web.StreamResponse:
        response = await self._answer_submit(request)
        self.submit_answers.append(response.status)
        return response

    async def _answer_submit(self, request: web.Request) -> web.StreamResponse:
        body = json.loads(await request.read() or b"{}")
        script = self._scripts.popleft() if self._scripts else None
        if script is None:
            market = body.get("type") == "market" and self.auto_fill is not None
            script = self.auto_fill if market else SubmitScript("accept")
            if market:
                script = SubmitScript("fill", price=self._fill_price(body), delay=script.delay)
        if script.kind == "rate_limit":
            reset = _now().timestamp() + script.reset_in
            return _error(429, 42910000, "rate limit exceeded",
                          {"X-RateLimit-Limit": "200", "X-RateLimit-Remaining": "0",
                           "X-RateLimit-Reset": str(int(reset + 0.999))})
        if script.kind == "error":
            return _error(script.status, 50010000, "internal server error")
        if script.kind == "reject":
            return _error(script.status, script.code, script.message)
        problem = _order_problem(body)
        if problem:
            return _error(422, 40010000, problem)
        coid = body.get("client_order_id")
        if coid and self.order_by_client_id(coid) is not None:
            return _error(422, 40010001, DUPLICATE_MESSAGE)
        short_of = self._qty_problem(body)
        if short_of:
            return _error(403, 40310000, short_of)
        funding = self._funding_problem(body)
        if funding is not None and funding[0]:
            return _error(403, 40310000, funding[0])
        order = self._new_order(body)
        if funding is not None:
            self._holds[order["id"]] = funding[1]
        self._spawn(self._after_submit(order, script))
        if script.kind == "hang":
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._hung.append(fut)
            await fut
        if script.kind == "held":
            accepted = dict(order)
            self._held = self._held or asyncio.Event()
            await self._held.wait()
            return web.json_response(accepted)
        return web.json_response(order)

    def _fill_price(self, body: dict[str, Any]) -> float:
        last = self.prices.get(str(body["symbol"]), 0.0)
        return last * (1 + self.fill_slippage) if body["side"] == "buy" else last * (1 - self.fill_slippage)

    async def _after_submit(self, order: dict[str, Any], script: SubmitScript) -> None:
        await asyncio.sleep(script.delay)
        if order["status"] != "accepted":
            return
        self._set_status(order, "new")
        await self.push_trade_update("new", order)
        if script.kind != "fill":
            return
        remaining = float(order["qty"])
        for qty in script.partials:
            await asyncio.sleep(script.delay)
            remaining -= qty
            await self.fill(order["client_order_id"], qty, script.price)
        if remaining > 1e-9:
            await asyncio.sleep(script.delay)
            await self.fill(order["client_order_id"], remaining, script.price)

    async def _history_bars(self, request: web.Request) -> web.Response:
        """Historical bars as the data API pages them: by symbol then time, `limit` a page, a next_page_token."""
        if self.history_delay:
            await asyncio.sleep(self.history_delay)
        if self.history_fail > 0:
            self.history_fail -= 1
            return _error(500, 50010000, "internal server error")
        q = request.query
        if q.get("timeframe") != "1Min":
            return _error(422, 42210000, f"unsupported timeframe {q.get('timeframe')!r}")
        symbols = set(q.get("symbols", "").split(","))
        start = _parse_ts(q["start"]) if "start" in q else datetime.min.replace(tzinfo=UTC)
        end = _parse_ts(q["end"]) if "end" in q else datetime.max.replace(tzinfo=UTC)
        rows = sorted((b for b in self.history if b["S"] in symbols and start <= b["t"] <= end),
                      key=lambda b: (b["S"], b["t"]))
        offset = int(q.get("page_token") or 0)
        limit = min(int(q.get("limit") or 1000), self.history_page_size)
        page = rows[offset:offset + limit]
        adjusted = q.get("adjustment", "raw") in ("split", "all")
        bars: dict[str, list[dict[str, Any]]] = {}
        for b in page:
            k = self._split_factor(b["S"], b["t"]) if adjusted else 1.0
            bars.setdefault(b["S"], []).append({"t": _iso(b["t"]), "o": b["o"] / k, "h": b["h"] / k,
                                                 "l": b["l"] / k, "c": b["c"] / k, "v": b["v"] * k, "n": 10,
                                                 "vw": b["c"] / k})
        token = str(offset + limit) if offset + limit < len(rows) else None
        return web.json_response({"bars": bars, "next_page_token": token})

    def _split_factor(self, symbol: str, ts: datetime) -> float:
        """What a bar of `symbol` at `ts` is divided by in split-adjusted history: every later split's ratio."""
        factor = 1.0
        for split_symbol, ratio, at in self.splits:
            if split_symbol == symbol and ts < at:
                factor *= ratio
        return factor

    async def _list_orders(self, request: web.Request) -> web.Response:
        q = request.query
        status = q.get("status", "open")
        orders = list(self.orders.values())
        if status == "open":
            orders = [o for o in orders if o["status"] not in FINAL]
        elif status == "closed":
            orders = [o for o in orders if o["status"] in FINAL]
        if "after" in q:
            after = _parse_ts(q["after"])
            orders = [o for o in orders if _parse_ts(o["submitted_at"]) > after]
        if "until" in q:
            until = _parse_ts(q["until"])
            orders = [o for o in orders if _parse_ts(o["submitted_at"]) < until]
        if "symbols" in q:
            wanted = set(q["symbols"].split(","))
            orders = [o for o in orders if o["symbol"] in wanted]
        orders.sort(key=lambda o: o["submitted_at"], reverse=q.get("direction", "desc") == "desc")
        limit = min(int(q.get("limit", 50)), 500)
        return web.json_response(orders[:limit])

    async def _by_client_id(self, request: web.Request) -> web.Response:
        order = self.order_by_client_id(request.query.get("client_order_id", ""))
        if order is None:
            return _error(404, 40410000, "order not found")
        return web.json_response(order)

    async def _get_order(self, request: web.Request) -> web.Response:
        order = self.orders.get(request.match_info["order_id"])
        if order is None:
            return _error(404, 40410000, "order not found")
        return web.json_response(order)

    async def _cancel_one(self, request: web.Request) -> web.Response:
        order = self.orders.get(request.match_info["order_id"])
        if order is None:
            return _error(404, 40410000, "order not found")
        if order["status"] in FINAL:
            return _error(422, 42210000, f"order is already in \"{order['status']}\" state")
        self._set_status(order, "pending_cancel")
        self._spawn(self.cancel(order["client_order_id"]))
        if self._erring_cancels:
            return _error(self._erring_cancels.pop(0), 50010000, "internal server error")
        return web.Response(status=204)

    async def _replace(self, request: web.Request) -> web.Response:
        """PATCH /v2/orders/{id}: a new order (its own id, `replaces` the old) takes the open order's place; the old
        one ends `replaced`. Only qty, limit/stop price, time_in_force and client_order_id may change."""
        old = self.orders.get(request.match_info["order_id"])
        if old is None:
            return _error(404, 40410000, "order not found")
        if old["status"] in FINAL or old["status"] == "pending_cancel":
            return _error(422, 42210000, f"order is already in \"{old['status']}\" state")
        body = json.loads(await request.read() or b"{}")
        coid = body.get("client_order_id") or str(uuid.uuid4())
        if self.order_by_client_id(coid) is not None:
            return _error(422, 40010001, DUPLICATE_MESSAGE)
        new = self._replacement(old, coid, {name: body.get(name) for name in ("qty", "limit_price", "stop_price")})
        if body.get("time_in_force"):
            new["time_in_force"] = body["time_in_force"]

        async def announce() -> None:
            await self.push_trade_update("replaced", old)
            await self.push_trade_update("new", new)

        self._spawn(announce())
        if self._erring_replaces:
            return _error(self._erring_replaces.pop(0), 50010000, "internal server error")
        if self._held_replaces:
            self._held_replaces -= 1
            replaced = dict(new)
            self._held = self._held or asyncio.Event()
            await self._held.wait()
            return web.json_response(replaced)
        return web.json_response(new)

    async def _cancel_all(self, request: web.Request) -> web.Response:
        out = []
        for order in list(self.orders.values()):
            if order["status"] not in FINAL:
                self._set_status(order, "pending_cancel")
                self._spawn(self.cancel(order["client_order_id"]))
                out.append({"id": order["id"], "status": 200, "body": None})
        return web.json_response(out, status=207)

    async def _list_positions(self, request: web.Request) -> web.Response:
        return web.json_response(self._positions_seen())

    async def _close_one(self, request: web.Request) -> web.Response:
        symbol = request.match_info["symbol"]
        if symbol not in self.positions:
            return _error(404, 40410000, "position not found")
        return web.json_response(self._close_order(symbol))

    async def _close_all(self, request: web.Request) -> web.Response:
        if request.query.get("cancel_orders") in ("true", "True"):
            await self._cancel_all(request)
        out = [{"symbol": s, "status": 200, "order_id": None, "body": self._close_order(s)}
               for s in list(self.positions)]
        for item in out:
            item["order_id"] = item["body"]["id"]
        return web.json_response(out, status=207)

    def _close_order(self, symbol: str) -> dict[str, Any]:
        qty = float(self.positions[symbol]["qty"])
        side = "sell" if qty > 0 else "buy"
        order = self._new_order({"symbol": symbol, "qty": _num(abs(qty)), "side": side, "type": "market",
                                 "time_in_force": "day", "client_order_id": str(uuid.uuid4())})
        self._spawn(self._after_submit(order, SubmitScript("fill", price=self.prices.get(symbol, 0.0))))
        return order

    # -- websockets -----------------------------------------------------------------------------------
    async def _trade_ws(self, request: web.Request) -> web.StreamResponse:
        if self.block_trade_stream:
            return web.Response(status=503, text="stream unavailable")
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.trade_stream_connects += 1
        try:
            async for msg in ws:
                if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                    break
                await self._trade_ws_message(ws, json.loads(msg.data))
        finally:
            self.trade_sockets.discard(ws)
        return ws

    async def _trade_ws_message(self, ws: web.WebSocketResponse, msg: dict[str, Any]) -> None:
        action = msg.get("action")
        data = msg.get("data") or {}
        if action == "authenticate":
            ok = data.get("key_id") == self.api_key and data.get("secret_key") == self.secret_key
            status = "authorized" if ok else "unauthorized"
            await ws.send_str(json.dumps({"stream": "authorization",
                                          "data": {"status": status, "action": "authenticate"}}))
            if not ok:
                await ws.close()
        elif action == "listen":
            streams = list(data.get("streams", []))
            if "trade_updates" in streams:
                self.trade_sockets.add(ws)
            await ws.send_str(json.dumps({"stream": "listening", "data": {"streams": streams}}))

    async def _data_ws(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["feed"] not in ("iex", "sip"):
            return _error(404, 40410000, "not found")
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.data_stream_connects += 1
        await ws.send_bytes(msgpack.packb([{"T": "success", "msg": "connected"}]))
        authed = False
        try:
            async for msg in ws:
                if msg.type != WSMsgType.BINARY:
                    break
                req = msgpack.unpackb(msg.data)
                if req.get("action") == "auth":
                    authed = req.get("key") == self.api_key and req.get("secret") == self.secret_key
                    reply = ({"T": "success", "msg": "authenticated"} if authed
                             else {"T": "error", "code": 402, "msg": "auth failed"})
                    await ws.send_bytes(msgpack.packb([reply]))
                elif req.get("action") == "subscribe" and authed:
                    self.data_subscriptions.update(req.get("bars", []))
                    self.data_sockets.add(ws)
                    await ws.send_bytes(msgpack.packb([_subscription_json(self.data_subscriptions)]))
        finally:
            self.data_sockets.discard(ws)
        return ws

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


# -- Alpaca JSON shapes (field sets of alpaca-py's models) ---------------------------------------------
def _error(status: int, code: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"code": code, "message": message}, status=status, headers=headers)


def _parse_ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _order_problem(body: dict[str, Any]) -> str | None:
    for name in ("symbol", "side", "type", "time_in_force"):
        if not body.get(name):
            return f"{name} is required"
    if body.get("qty") is None and body.get("notional") is None:
        return "qty or notional is required"
    if body["type"] in ("limit", "stop_limit") and body.get("limit_price") is None:
        return "limit_price is required"
    if body["type"] in ("stop", "stop_limit") and body.get("stop_price") is None:
        return "stop_price is required"
    return None


def _order_json(body: dict[str, Any], now: str, asset_class: str) -> dict[str, Any]:
    order_class = body.get("order_class") or "simple"
    order = {
        "id": str(uuid.uuid4()), "client_order_id": body.get("client_order_id") or str(uuid.uuid4()),
        "created_at": now, "updated_at": now, "submitted_at": now, "filled_at": None, "expired_at": None,
        "expires_at": None, "canceled_at": None, "failed_at": None, "replaced_at": None, "replaced_by": None,
        "replaces": None, "asset_id": str(uuid.uuid5(uuid.NAMESPACE_OID, str(body["symbol"]))),
        "symbol": body["symbol"], "asset_class": asset_class, "notional": None,
        "qty": _num(float(body.get("qty") or 0)), "filled_qty": "0", "filled_avg_price": None,
        "order_class": order_class, "order_type": body["type"], "type": body["type"], "side": body["side"],
        "time_in_force": body["time_in_force"], "limit_price": _opt(body.get("limit_price")),
        "stop_price": _opt(body.get("stop_price")), "status": "accepted",
        "extended_hours": bool(body.get("extended_hours", False)), "legs": None, "trail_percent": None,
        "trail_price": None, "hwm": None, "position_intent": None,
    }
    if order_class == "bracket":
        order["legs"] = _bracket_legs(body, now)
    return order


def _bracket_legs(body: dict[str, Any], now: str) -> list[dict[str, Any]]:
    exit_side = "sell" if body["side"] == "buy" else "buy"
    legs = []
    for kind, price_field, price in (("limit", "limit_price", body["take_profit"]["limit_price"]),
                                     ("stop", "stop_price", body["stop_loss"]["stop_price"])):
        leg = _order_json({"symbol": body["symbol"], "qty": body["qty"], "side": exit_side, "type": kind,
                           "time_in_force": body["time_in_force"], price_field: price}, now, "us_equity")
        leg["status"] = "held"
        legs.append(leg)
    return legs


def _opt(value: Any) -> str | None:
    return None if value is None else _num(float(value))


def _position_json(symbol: str, qty: float, avg: float, price: float, asset_class: str = "us_equity") -> dict:
    mult = 100.0 if asset_class == "us_option" else 1.0
    return {
        "asset_id": str(uuid.uuid5(uuid.NAMESPACE_OID, symbol)), "symbol": symbol, "exchange": "NASDAQ",
        "asset_class": asset_class, "asset_marginable": True, "avg_entry_price": _num(avg), "qty": _num(qty),
        "side": "long" if qty > 0 else "short", "market_value": _num(qty * price * mult),
        "cost_basis": _num(qty * avg * mult), "unrealized_pl": _num((price - avg) * qty * mult),
        "unrealized_plpc": "0", "unrealized_intraday_pl": "0", "unrealized_intraday_plpc": "0",
        "current_price": _num(price), "lastday_price": _num(price), "change_today": "0",
        "qty_available": _num(qty),
    }


def _account_json() -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()), "account_number": "PA0FAKE0001", "status": "ACTIVE", "crypto_status": "ACTIVE",
        "currency": "USD", "buying_power": "200000", "regt_buying_power": "200000",
        "non_marginable_buying_power": "100000", "cash": "100000", "accrued_fees": "0",
        "portfolio_value": "100000", "pattern_day_trader": False, "trading_blocked": False,
        "transfers_blocked": False, "account_blocked": False, "created_at": "2024-01-02T14:30:00Z",
        "trade_suspended_by_user": False, "multiplier": "2", "shorting_enabled": True, "equity": "100000",
        "last_equity": "100000", "long_market_value": "0", "short_market_value": "0", "initial_margin": "0",
        "maintenance_margin": "0", "last_maintenance_margin": "0", "sma": "0", "options_buying_power": "100000",
        "options_approved_level": 2, "options_trading_level": 2,
    }


def _subscription_json(bars: set[str]) -> dict[str, Any]:
    return {"T": "subscription", "trades": [], "quotes": [], "bars": sorted(bars), "updatedBars": [],
            "dailyBars": [], "statuses": [], "lulds": [], "corrections": [], "cancelErrors": []}
