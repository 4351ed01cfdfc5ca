"""AlpacaBroker: the Broker port over alpaca-py 0.44 (REST `TradingClient` + `TradingStream` trade_updates).

- REST: the SDK is synchronous `requests` with no timeout and its own 429/504 retry loop (3 tries, 3 s
  apart). We switch that loop off (`client._retry = 0`), give every HTTP request a connect/read timeout
  (a mounted `HTTPAdapter`), run each call in a dedicated thread pool bounded by `asyncio.wait_for`, and
  meter calls with a client-side token bucket (Alpaca allows 200 requests a minute). Retrying is the
  OrderRouter's job; the adapter only classifies failures:
    422 duplicate client_order_id -> DuplicateClientOrderId; other 4xx -> OrderRejected(Alpaca's message);
    429 -> RetryableBrokerError(retry_after from X-RateLimit-Reset), and the bucket pauses until then;
    5xx / read timeout / dropped connection -> RetryableBrokerError(ambiguous=True for a submit);
    connection refused / connect timeout (nothing sent) -> BrokerUnavailable.
- Stream: a `TradingStream` subclass runs `_run_forever()` as a task on our loop (never `run()`), under a
  supervisor that restarts it with backoff if it dies. Every time the stream is listening again after a
  drop, the orders this process tracks that are not final are looked up one by one by client order id
  (GET /v2/orders:by_client_order_id: by identity, so a skewed clock hides nothing) and missed fills are
  synthesized from `filled_qty`, with the deterministic id f"{order_id}:{cum_qty}". `resolve_order` does the
  same for one order (the daemon's resolver, issue 12); `clock_offset` measures Alpaca's clock (GET /v2/clock).
  Fills are emitted once: by execution id, and by cumulative quantity per client order id.
- Events go to the handler in order: for a fill event the `Fill` first, then the `OrderUpdate`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

import requests
import structlog
from alpaca.common.enums import Sort
from alpaca.common.exceptions import APIError
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import OrderClass, OrderSide, QueryOrderStatus, TimeInForce
from alpaca.trading.models import Order, TradeUpdate
from alpaca.trading.requests import (
    GetOrdersRequest,
    LimitOrderRequest,
    MarketOrderRequest,
    ReplaceOrderRequest,
    StopLossRequest,
    StopOrderRequest,
    TakeProfitRequest,
)
from alpaca.trading.stream import TradingStream
from pydantic import ValidationError
from requests.adapters import HTTPAdapter
from urllib3.exceptions import ConnectTimeoutError

from adapters.alpaca_options import AlpacaOptionChains, build_option_data_client
from adapters.chain_venue import ChainVenueMixin
from config.settings import AlpacaSettings, OptionsSettings, Settings
from pipeline.core.clock import Clock, monotonic
from pipeline.core.models import (
    AccountSnapshot,
    AssetClass,
    BrokerEvent,
    BrokerPosition,
    Fill,
    OrderIntent,
    OrderResult,
    OrderStatus,
    OrderType,
    OrderUpdate,
    Side,
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
from pipeline.core.rate_limit import TokenBucket
from pipeline.instruments.chains import PrefetchedChains
from pipeline.instruments.occ import OccError, is_occ, parse_occ, to_ours

log = structlog.get_logger("ordergate.alpaca")

T = TypeVar("T")
C = TypeVar("C")
EPS = 1e-9
CHECK_EVERY = 0.1  # seconds: how often an order waiting for the rate limiter asks its send guard again
MAX_RETRY_AFTER = 60.0
MAX_TRACKED = 20_000

# Alpaca order status -> ours. Anything open and not listed is NEW (or PARTIALLY_FILLED when it has fills).
_ORDER_STATUS = {
    "filled": OrderStatus.FILLED,
    "partially_filled": OrderStatus.PARTIALLY_FILLED,
    "canceled": OrderStatus.CANCELED,
    "expired": OrderStatus.EXPIRED,
    "rejected": OrderStatus.REJECTED,
    "replaced": OrderStatus.REPLACED,
}
# trade_updates event -> the status it reports; events not listed (pending_*, restated, ...) are skipped.
# `done_for_day` ("done executing for the day, no further updates until the next trading day") is `day_end_status`.
_EVENT_STATUS = {
    "new": OrderStatus.NEW,
    "accepted": OrderStatus.NEW,
    "partial_fill": OrderStatus.PARTIALLY_FILLED,
    "fill": OrderStatus.FILLED,
    "canceled": OrderStatus.CANCELED,
    "rejected": OrderStatus.REJECTED,
    "expired": OrderStatus.EXPIRED,
    "replaced": OrderStatus.REPLACED,
}


# -- settings -------------------------------------------------------------------------------------------
def validate_alpaca_settings(settings: Settings) -> list[str]:
    """Problems with the [alpaca] section for the brokers/data source that use it; each names the field."""
    uses = []
    if "alpaca" in (settings.broker.primary, settings.broker.fallback):
        uses.append("broker.primary" if settings.broker.primary == "alpaca" else "broker.fallback")
    if settings.data.source == "alpaca":
        uses.append("data.source")
    if not uses:
        return []
    alpaca = settings.alpaca
    why = f"required because {' and '.join(uses)} = 'alpaca'"
    problems = []
    for field in ("api_key", "secret_key"):
        value = getattr(alpaca, field)
        if value is None or not value.get_secret_value().strip():
            problems.append(f"alpaca.{field}: {why} (set ORDERGATE_ALPACA__{field.upper()})")
    checks = (("base_url", ("http://", "https://")), ("trading_stream_url", ("ws://", "wss://")),
              ("data_stream_url", ("ws://", "wss://")), ("data_url", ("http://", "https://")))
    for field, schemes in checks:
        value = getattr(alpaca, field)
        if value is not None and not value.startswith(schemes):
            problems.append(f"alpaca.{field}: must start with {' or '.join(schemes)}, got {value!r}")
    for field in ("base_url", "data_url"):
        value = getattr(alpaca, field)
        if value and value.rstrip("/").endswith("/v2"):
            problems.append(f"alpaca.{field}: give the host without /v2 (the SDK adds it), got {value!r}")
    return problems


def secret_value(value: Any) -> str:
    """The text of a SecretStr setting ('' when unset)."""
    return value.get_secret_value() if value is not None else ""


# -- rate limit -----------------------------------------------------------------------------------------
class RequestPacer:
    """Client-side rate limit of the REST calls: requests queue (one at a time) for a `TokenBucket` token."""

    def __init__(self, per_minute: int, burst: int | None = None, now: Callable[[], float] = monotonic) -> None:
        self.bucket = TokenBucket.per_minute(per_minute, burst, now)
        self._lock = asyncio.Lock()

    def pause_for(self, seconds: float) -> None:
        """No request leaves before `seconds` from now (a 429's reset)."""
        self.bucket.pause_for(seconds)

    async def acquire(self, check: Callable[[], None] | None = None) -> None:
        """Wait for a token. `check()` is called before the wait, every 0.1 s of it and once a token is there; an
        exception it raises (the kill switch's refusal) leaves the queue at once without spending a token."""
        async with self._lock:
            if check is not None:
                check()
            while (delay := self.bucket.take()) > 0:
                await asyncio.sleep(delay if check is None else min(delay, CHECK_EVERY))
                if check is not None:
                    check()


class _TimeoutAdapter(HTTPAdapter):
    """requests transport with a default (connect, read) timeout: the SDK never passes one."""

    def __init__(self, timeout: tuple[float, float]) -> None:
        super().__init__()
        self.timeout = timeout

    def send(self, request: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self.timeout
        return super().send(request, **kwargs)


def build_trading_client(settings: AlpacaSettings) -> TradingClient:
    """A TradingClient with the SDK's internal retry loop off and a timeout on every HTTP request."""
    client = TradingClient(
        api_key=secret_value(settings.api_key), secret_key=secret_value(settings.secret_key), paper=settings.paper,
        url_override=settings.base_url.rstrip("/") if settings.base_url else None,
    )
    return with_request_timeout(without_sdk_retry(client), settings.request_timeout_seconds)


def without_sdk_retry(client: C) -> C:
    """One attempt per call: our router retries with backoff (the SDK would sleep 3 s x 3 in a thread)."""
    client._retry = 0  # type: ignore[attr-defined]
    return client


def close_rest_client(client: Any) -> None:
    """Close an alpaca-py REST client's HTTP session (the SDK has no public close)."""
    client._session.close()



def with_request_timeout(client: C, timeout: float) -> C:
    """Mount a (connect, read) timeout on an alpaca-py REST client's requests session."""
    adapter = _TimeoutAdapter((min(5.0, timeout), timeout))
    client._session.mount("http://", adapter)  # type: ignore[attr-defined]
    client._session.mount("https://", adapter)  # type: ignore[attr-defined]
    return client


# -- mapping --------------------------------------------------------------------------------------------
def _f(value: Any, default: float = 0.0) -> float:
    if value is None or value == "":
        return default
    return float(value)


def _enum_value(value: Any) -> str:
    return str(getattr(value, "value", value))


# time in force of an order that lives one session at most: done for the day is done
_ONE_SESSION = frozenset({"day", "opg", "cls", "ioc", "fok"})
DONE_FOR_DAY = "done_for_day"
MAX_REPLACEMENTS = 20  # edits of one order followed by `replacement_of` (a chain longer than this is not a person's)
CALCULATED = "calculated"  # "completed for the day (filled or done for day), settlement calculations pending"


def day_end_status(order: Order) -> OrderStatus | None:
    """What `done_for_day` says of an order: the end (expired) of one that lives a session at most; nothing of
    a GTC order, which rests on to the next trading day (a protective stop): it is still working."""
    return OrderStatus.EXPIRED if _enum_value(order.time_in_force) in _ONE_SESSION else None


def order_status(order: Order) -> OrderStatus:
    """Our status for an Alpaca order."""
    raw = _enum_value(order.status)
    status = _ORDER_STATUS.get(raw) or (day_end_status(order) if raw == DONE_FOR_DAY else None)
    if status is None and raw == CALCULATED:  # filled, or done for the day: which one its quantities say
        qty = _f(order.qty)
        status = OrderStatus.FILLED if qty > EPS and _f(order.filled_qty) >= qty - EPS else day_end_status(order)
    if status is not None:
        return status
    return OrderStatus.PARTIALLY_FILLED if _f(order.filled_qty) > EPS else OrderStatus.NEW


def order_result(order: Order, broker: str) -> OrderResult:
    """An Alpaca order as an OrderResult."""
    return OrderResult(
        client_order_id=order.client_order_id, status=order_status(order), broker=broker,
        broker_order_id=str(order.id), symbol=to_ours(order.symbol or ""),
        side=Side(_enum_value(order.side)) if order.side else None, quantity=_f(order.qty),
        filled_qty=_f(order.filled_qty), filled_avg_price=_f(order.filled_avg_price, 0.0) or None,
        submitted_at=order.submitted_at, stop_price=_f(order.stop_price, 0.0) or None,
    )


def _round_price(price: float) -> float:
    return round(price, 2) if price >= 1.0 else round(price, 4)


def _error_message(exc: APIError) -> str:
    try:
        return str(exc.message)
    except (ValueError, KeyError, TypeError):
        return str(exc)[:300] or "no message"


def _is_duplicate(message: str) -> bool:
    text = message.lower()
    return "client_order_id" in text and ("unique" in text or "duplicate" in text or "exists" in text)


def _connect_failed(exc: requests.exceptions.ConnectionError) -> bool:
    """True when the connection was never made (refused, unresolvable, connect timeout): nothing was sent."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True
    seen: set[int] = set()
    stack: list[Any] = [exc]
    while stack:
        item = stack.pop()
        if item is None or id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, ConnectTimeoutError | ConnectionRefusedError):
            return True
        stack.extend([getattr(item, "reason", None), item.__cause__, item.__context__,
                      *[a for a in getattr(item, "args", ()) if isinstance(a, BaseException)]])
    return False


async def close_stream(stream: Any, *tasks: asyncio.Task[Any] | None) -> None:
    """Close an alpaca-py websocket stream (TradingStream, StockDataStream): ask the socket to stop, cancel and
    await the tasks that run it (None: skipped), then close it; each step swallows its own error, so a broken
    stream never blocks a shutdown."""
    if stream is not None:
        with contextlib.suppress(Exception):
            await stream.stop_ws()
    for task in tasks:
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
    if stream is not None:
        with contextlib.suppress(Exception):
            await stream.close()


async def supervise_stream(
    closing: Callable[[], bool], make_stream: Callable[[], Any], on_closed: Callable[[], None],
    backoff: tuple[float, float], event: str,
) -> None:
    """Run an SDK stream's `_run_forever()` on our loop; if it ever ends or dies, start a fresh one after an
    exponential backoff, until `closing()`. `make_stream` builds each stream (its owner keeps it, for stopping)."""
    failures = 0
    while not closing():
        stream = make_stream()
        try:
            await stream._run_forever()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception(f"{event}_crashed")
        on_closed()
        if closing():
            return
        failures += 1
        low, high = backoff
        delay = min(high, low * 2 ** min(failures - 1, 10))
        log.warning(f"{event}_restart", delay=delay)
        await asyncio.sleep(delay)


@dataclass(slots=True)
class _Tracked:
    """What this process knows about one order (for dedup and catch-up)."""

    client_order_id: str
    order_id: str | None = None
    symbol: str = ""
    side: Side | None = None
    submitted_at: datetime | None = None
    reported_qty: float = 0.0
    reported_notional: float = 0.0
    last_update: tuple[OrderStatus, float] | None = None

    @property
    def final(self) -> bool:
        return self.last_update is not None and self.last_update[0].is_final


class _SupervisedTradingStream(TradingStream):
    """TradingStream that tells the broker when it is listening (every reconnect) and when it closes."""

    def __init__(self, *args: Any, on_listening: Callable[[], Any], on_closed: Callable[[], None],
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._on_listening = on_listening
        self._on_closed = on_closed

    async def _dispatch(self, msg: dict) -> None:
        if msg.get("stream") == "listening" and "trade_updates" in (msg.get("data") or {}).get("streams", []):
            await self._on_listening()
            return
        await super()._dispatch(msg)

    async def close(self) -> None:
        try:
            await super().close()
        finally:
            self._on_closed()


# -- the broker -----------------------------------------------------------------------------------------
class AlpacaBroker(ChainVenueMixin):
    """The Broker port over alpaca-py: orders via REST in threads, updates and fills from trade_updates."""

    def __init__(
        self,
        settings: AlpacaSettings,
        clock: Clock,
        name: str = "alpaca",
        *,
        stream_backoff: tuple[float, float] = (1.0, 30.0),
        catch_up_margin_seconds: float = 5.0,  # unused since catch-up is by client order id (kept for callers)
        options: OptionsSettings | None = None,
        chain_tickers: list[str] | None = None,
    ) -> None:
        self.name = name
        self.settings = settings
        self.clock = clock
        self.timeout = settings.request_timeout_seconds
        self.stream_backoff = stream_backoff
        self.catch_up_margin = timedelta(seconds=catch_up_margin_seconds)
        self.bucket = RequestPacer(settings.requests_per_minute)
        self._client: TradingClient | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._handler: BrokerEventHandler | None = None
        self._send_guard: SendGuard = send_anything
        self._stream: _SupervisedTradingStream | None = None
        self._stream_task: asyncio.Task[None] | None = None
        self._listening = asyncio.Event()
        self._connects = 0
        self._closing = False
        self._event_lock = asyncio.Lock()
        self._tracked: dict[str, _Tracked] = {}
        self._seen_fills: OrderedDict[str, None] = OrderedDict()
        self._catch_up_tasks: set[asyncio.Task[None]] = set()
        self.reconnects = 0  # how many times the stream came back after a drop
        # the option chain port: contracts and snapshots fetched in the background, answered while fresh
        self._option_data: Any = None
        self.option_fetcher = AlpacaOptionChains(self._call, self._trading_client, self._option_data_client,
                                                 options or OptionsSettings())
        self.option_chains = PrefetchedChains(self.option_fetcher.fetch, clock, chain_tickers or [],
                                              options or OptionsSettings(), source=name)

    # -- lifecycle --------------------------------------------------------------------------------------
    async def connect(self) -> None:
        """Check REST and the keys (GET /v2/account), then start the supervised stream and wait until it listens."""
        if not secret_value(self.settings.api_key) or not secret_value(self.settings.secret_key):
            raise BrokerError("alpaca: api_key and secret_key are required (ORDERGATE_ALPACA__API_KEY/SECRET_KEY)")
        self._closing = False
        self._executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix=f"{self.name}-rest")
        self._client = build_trading_client(self.settings)
        try:
            await self.get_account()
        except OrderRejected as exc:
            raise BrokerError(f"alpaca: account check failed: {exc.reason}") from None
        self._stream_task = asyncio.create_task(self._supervise_stream(), name=f"{self.name}-trade-updates")
        try:
            await asyncio.wait_for(self._listening.wait(), self.timeout)
        except TimeoutError:
            await self.close()
            raise BrokerUnavailable(f"alpaca: trade_updates stream not listening within {self.timeout}s") from None
        self.option_chains.start()
        log.info("alpaca_connected", broker=self.name, base_url=self.settings.base_url or "default")

    async def close(self) -> None:
        self._closing = True
        self._listening.clear()
        await self.option_chains.stop()
        await close_stream(self._stream, self._stream_task)
        for pending in list(self._catch_up_tasks):
            pending.cancel()
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
        if self._client is not None:
            close_rest_client(self._client)
        if self._option_data is not None:
            close_rest_client(self._option_data)
            self._option_data = None
        self._stream = self._stream_task = None

    def set_event_handler(self, handler: BrokerEventHandler) -> None:
        self._handler = handler

    # -- option chains (the port itself: ChainVenueMixin) ------------------------------------------------
    def _trading_client(self) -> TradingClient:
        if self._client is None:
            raise BrokerUnavailable("alpaca: not connected")
        return self._client

    def _option_data_client(self) -> Any:
        if self._option_data is None:
            self._option_data = build_option_data_client(self.settings)
        return self._option_data

    def set_send_guard(self, guard: SendGuard) -> None:
        self._send_guard = guard

    def is_connected(self) -> bool:
        return self._listening.is_set() and not self._closing

    # -- REST -------------------------------------------------------------------------------------------
    async def _call(self, fn: Callable[..., T], *args: Any, op: str, submit: bool = False,
                    check: Callable[[], None] | None = None) -> T:
        """One SDK call in a thread, rate-limited and bounded; SDK/transport errors become port errors. `check` is
        called while it waits for the rate limiter (see RequestPacer.acquire)."""
        if self._client is None or self._executor is None:
            raise BrokerUnavailable(f"alpaca {op}: not connected")
        await self.bucket.acquire(check)
        loop = asyncio.get_running_loop()
        try:
            return await asyncio.wait_for(loop.run_in_executor(self._executor, functools.partial(fn, *args)),
                                          self.timeout)
        except TimeoutError:
            raise RetryableBrokerError(f"alpaca {op}: no answer within {self.timeout}s", ambiguous=submit) from None
        except APIError as exc:
            raise self._api_error(exc, op, submit) from None
        except requests.exceptions.ConnectionError as exc:
            if _connect_failed(exc):
                raise BrokerUnavailable(f"alpaca {op}: cannot connect ({type(exc).__name__})") from None
            raise RetryableBrokerError(f"alpaca {op}: connection lost: {exc}", ambiguous=submit) from None
        except requests.exceptions.RequestException as exc:
            raise RetryableBrokerError(f"alpaca {op}: {type(exc).__name__}: {exc}", ambiguous=submit) from None
        except RuntimeError as exc:  # executor shut down during close()
            raise BrokerUnavailable(f"alpaca {op}: {exc}") from None

    def _api_error(self, exc: APIError, op: str, submit: bool) -> BrokerError:
        status = exc.status_code or 0
        message = _error_message(exc)
        if status == 429:
            retry_after = self._retry_after(exc)
            self.bucket.pause_for(retry_after if retry_after is not None else 1.0)
            return RetryableBrokerError(f"alpaca {op}: rate limited (429): {message}", retry_after=retry_after)
        if status >= 500:
            return RetryableBrokerError(f"alpaca {op}: server error {status}: {message}", ambiguous=submit)
        if status == 422 and submit and _is_duplicate(message):
            return DuplicateClientOrderId(message, code=status)
        return OrderRejected(message, code=status)

    def _retry_after(self, exc: APIError) -> float | None:
        headers = exc.response.headers if exc.response is not None else {}
        reset, after = headers.get("X-RateLimit-Reset"), headers.get("Retry-After")
        try:
            if reset is not None:
                return min(MAX_RETRY_AFTER, max(0.0, float(reset) - self.clock.now().timestamp()))
            if after is not None:
                return min(MAX_RETRY_AFTER, max(0.0, float(after)))
        except ValueError:
            pass
        return None

    async def submit_order(self, intent: OrderIntent) -> OrderResult:
        """POST /v2/orders with client_order_id = intent.client_order_id."""
        request = self._order_request(intent)
        coid = intent.client_order_id
        fresh = coid not in self._tracked
        # the local send time, until the broker's own timestamp is known
        self._track(coid, symbol=intent.symbol, side=intent.side,
                    submitted_at=self.clock.now() if fresh else None)
        submit = self._client_fn("submit_order")
        guard = self._send_guard

        def guarded_submit(req: Any) -> Any:  # in the REST worker thread, after the rate limiter's wait
            guard(intent)
            return submit(req)

        try:
            order = await self._call(guarded_submit, request, op="submit", submit=True,
                                     check=lambda: guard(intent))
        except BrokerError as exc:
            certainly_absent = not getattr(exc, "ambiguous", False) and not isinstance(exc, DuplicateClientOrderId)
            if fresh and certainly_absent and self._tracked[coid].order_id is None:
                self._tracked.pop(coid, None)  # nothing reached Alpaca: nothing to watch
            raise
        self._remember(order)
        log.info("alpaca_order_submitted", client_order_id=intent.client_order_id, order_id=str(order.id),
                 status=_enum_value(order.status))
        return order_result(order, self.name)

    async def get_order_by_client_id(self, client_order_id: str) -> OrderResult | None:
        order = await self._order_by_client_id(client_order_id)
        if order is None:
            return None
        self._remember(order)
        return order_result(order, self.name)

    async def _order_by_client_id(self, client_order_id: str) -> Any:
        """GET /v2/orders:by_client_order_id; None when Alpaca has no such order (404)."""
        try:
            return await self._call(self._client_fn("get_order_by_client_id"), client_order_id, op="lookup")
        except OrderRejected as exc:
            if exc.code == 404:
                return None
            raise

    async def _order_id(self, client_order_id: str) -> str:
        """Alpaca's id of an order: the one this process saw, else looked up (OrderRejected 404 when none)."""
        tracked = self._tracked.get(client_order_id)
        if tracked is not None and tracked.order_id is not None:
            return tracked.order_id
        found = await self.get_order_by_client_id(client_order_id)
        if found is None:
            raise OrderRejected(f"alpaca: no order with client_order_id {client_order_id}", code=404)
        return found.broker_order_id

    async def cancel_order(self, client_order_id: str) -> None:
        """Cancel by client order id (looked up when this process has not seen the order's id)."""
        order_id = await self._order_id(client_order_id)
        await self._call(self._client_fn("cancel_order_by_id"), order_id, op="cancel")

    def stop_refusal(self, intent: OrderIntent) -> str | None:
        """Protective stops Alpaca cannot hold (StopVenue): none on options, none GTC on fractional shares."""
        if intent.asset_class == AssetClass.OPTION:
            return "alpaca takes no stop orders on options (market and limit only)"
        if float(intent.quantity) != int(intent.quantity):
            return f"alpaca: a GTC stop needs whole shares, the position is {intent.quantity:g}"
        return None

    async def replace_stop(
        self, client_order_id: str, *, quantity: float, stop_price: float, new_client_order_id: str
    ) -> OrderResult:
        """PATCH /v2/orders/{id} (alpaca-py `replace_order_by_id`): Alpaca answers with the new order, which
        carries `new_client_order_id`; the old one ends `replaced` on trade_updates."""
        if quantity != int(quantity) or quantity <= 0:
            raise OrderRejected(f"quantity: a replace takes whole shares, got {quantity!r}", code="invalid")
        tracked = self._tracked.get(client_order_id)
        order_id = await self._order_id(client_order_id)
        request = ReplaceOrderRequest(qty=int(quantity), stop_price=_round_price(stop_price),
                                      client_order_id=new_client_order_id)
        self._track(new_client_order_id, symbol=tracked.symbol if tracked else None,
                    side=tracked.side if tracked else None, submitted_at=self.clock.now())
        order = await self._call(self._client_fn("replace_order_by_id"), order_id, request, op="replace",
                                 submit=True)
        self._remember(order)
        log.info("alpaca_order_replaced", client_order_id=order.client_order_id, replaces=client_order_id,
                 order_id=str(order.id))
        return order_result(order, self.name)

    async def replacement_of(self, client_order_id: str) -> OrderResult | None:
        """The order an edit made outside ordergate (Alpaca's app, another API client) put in this one's place:
        its `replaced_by`, followed to the last of a chain of edits (GET /v2/orders/{id}); None when the order
        was not replaced or Alpaca has none by this id."""
        order = await self._order_by_client_id(client_order_id)
        hops = 0
        while order is not None and order.replaced_by is not None and hops < MAX_REPLACEMENTS:
            order = await self._call(self._client_fn("get_order_by_id"), str(order.replaced_by), op="lookup")
            hops += 1
        if order is None or hops == 0:
            return None
        self._remember(order)
        return order_result(order, self.name)

    async def get_open_orders(self) -> list[OrderResult]:
        request = GetOrdersRequest(status=QueryOrderStatus.OPEN, limit=500, direction=Sort.ASC)
        orders = await self._call(self._client_fn("get_orders"), request, op="open_orders")
        return [order_result(o, self.name) for o in orders]

    async def get_positions(self) -> list[BrokerPosition]:
        positions = await self._call(self._client_fn("get_all_positions"), op="positions")
        out = []
        for p in positions:
            qty = abs(_f(p.qty)) * (-1.0 if _enum_value(p.side) == "short" else 1.0)
            out.append(BrokerPosition(symbol=to_ours(p.symbol), quantity=qty, avg_price=_f(p.avg_entry_price),
                                      market_price=_f(p.current_price) if p.current_price else None,
                                      broker=self.name))
        return out

    async def get_account(self) -> AccountSnapshot:
        account = await self._call(self._client_fn("get_account"), op="account")
        return AccountSnapshot(equity=_f(account.equity), cash=_f(account.cash),
                               buying_power=_f(account.buying_power), broker=self.name,
                               account_id=str(account.account_number or ""), paper=self.settings.paper)

    async def get_clock(self) -> dict[str, Any]:
        """Alpaca's market clock: timestamp, is_open, next_open, next_close."""
        clock = await self._call(self._client_fn("get_clock"), op="clock")
        return clock.model_dump()

    async def close_position(self, symbol: str) -> OrderResult:
        """DELETE /v2/positions/{symbol}: Alpaca places the closing market order."""
        venue_symbol = parse_occ(symbol).compact if is_occ(symbol) else symbol
        order = await self._call(self._client_fn("close_position"), venue_symbol, op="close_position", submit=True)
        self._remember(order)
        return order_result(order, self.name)

    async def close_all_positions(self, cancel_orders: bool = True) -> list[OrderResult]:
        """DELETE /v2/positions (optionally cancelling open orders first): the closing orders placed."""
        responses = await self._call(self._client_fn("close_all_positions"), cancel_orders, op="close_all",
                                     submit=True)
        out = []
        for resp in responses:
            if isinstance(resp.body, Order):
                self._remember(resp.body)
                out.append(order_result(resp.body, self.name))
        return out

    def _client_fn(self, name: str) -> Callable[..., Any]:
        if self._client is None:
            raise BrokerUnavailable("alpaca: not connected")
        return getattr(self._client, name)

    # -- order requests ---------------------------------------------------------------------------------
    def _order_request(self, intent: OrderIntent) -> MarketOrderRequest | LimitOrderRequest | StopOrderRequest:
        """The alpaca-py request for an intent; a malformed intent is an OrderRejected naming the field."""
        option = intent.asset_class == AssetClass.OPTION
        qty = float(intent.quantity)
        if not qty > 0:
            raise OrderRejected(f"quantity: must be positive, got {intent.quantity!r}", code="invalid")
        symbol = intent.symbol
        if option:
            try:
                symbol = parse_occ(intent.symbol).compact  # Alpaca's form: the OCC symbol without padding
            except OccError as exc:
                raise OrderRejected(f"symbol: {exc}", code="invalid") from None
        if option and qty != int(qty):
            raise OrderRejected(f"quantity: options trade whole contracts, got {qty}", code="invalid")
        try:
            tif = TimeInForce(intent.time_in_force)
        except ValueError:
            raise OrderRejected(f"time_in_force: unknown {intent.time_in_force!r}", code="invalid") from None
        common: dict[str, Any] = {"symbol": symbol, "qty": qty, "side": OrderSide(str(intent.side)),
                                  "time_in_force": tif, "client_order_id": intent.client_order_id}
        try:
            return self._typed_request(intent, common, option)
        except ValidationError as exc:
            first = exc.errors()[0]
            raise OrderRejected(f"invalid order: {first.get('msg', exc)}", code="invalid") from None

    def _typed_request(self, intent: OrderIntent, common: dict[str, Any], option: bool) -> Any:
        kind = intent.order_type
        if kind == OrderType.MARKET:
            return MarketOrderRequest(**common)
        if kind == OrderType.LIMIT:
            return LimitOrderRequest(limit_price=_round_price(self._need(intent.limit_price, "limit_price")), **common)
        if kind == OrderType.STOP:
            return StopOrderRequest(stop_price=_round_price(self._need(intent.stop_price, "stop_price")), **common)
        if kind == OrderType.BRACKET:
            if option:
                raise OrderRejected("order_type: Alpaca has no bracket orders for options", code="invalid")
            take = self._need(intent.take_profit_price or intent.target_price, "take_profit_price")
            stop = self._need(intent.stop_price or intent.stop_loss, "stop_loss")
            legs = {"order_class": OrderClass.BRACKET, "take_profit": TakeProfitRequest(limit_price=_round_price(take)),
                    "stop_loss": StopLossRequest(stop_price=_round_price(stop))}
            if intent.limit_price:
                return LimitOrderRequest(limit_price=_round_price(intent.limit_price), **legs, **common)
            return MarketOrderRequest(**legs, **common)
        raise OrderRejected(f"order_type: unsupported {kind!r}", code="invalid")

    @staticmethod
    def _need(value: float | None, field: str) -> float:
        if value is None or not value > 0:
            raise OrderRejected(f"{field}: a positive price is required, got {value!r}", code="invalid")
        return float(value)

    # -- tracking and events ----------------------------------------------------------------------------
    def _track(self, client_order_id: str, **fields: Any) -> _Tracked:
        tracked = self._tracked.get(client_order_id)
        if tracked is None:
            tracked = self._tracked[client_order_id] = _Tracked(client_order_id)
        for key, value in fields.items():
            if value is not None:
                setattr(tracked, key, value)
        return tracked

    def track(
        self, client_order_id: str, *, filled_qty: float, filled_notional: float, symbol: str = "",
        side: Side | None = None, submitted_at: datetime | None = None,
    ) -> None:
        """Adopt an order sent before this process started, with the fills the journal already holds.

        Seeds the per-order fill bookkeeping so a later `resync()` (or stream event) emits only what the
        journal is missing, never the part it already has.
        """
        tracked = self._track(client_order_id, symbol=symbol or None, side=side, submitted_at=submitted_at)
        tracked.reported_qty = filled_qty
        tracked.reported_notional = filled_notional

    def _remember(self, order: Order) -> _Tracked:
        return self._track(order.client_order_id, order_id=str(order.id), symbol=to_ours(order.symbol or "") or None,
                           side=Side(_enum_value(order.side)) if order.side else None,
                           submitted_at=order.submitted_at)

    async def _emit(self, event: BrokerEvent) -> None:
        if self._handler is None:
            log.warning("alpaca_event_without_handler", client_order_id=event.client_order_id)
            return
        try:
            await self._handler(event)
        except Exception:  # a handler bug must not kill the stream
            log.exception("alpaca_event_handler_failed", client_order_id=event.client_order_id)

    async def _on_trade_update(self, update: TradeUpdate) -> None:
        try:
            async with self._event_lock:
                await self._apply_trade_update(update)
        except Exception:
            log.exception("alpaca_trade_update_failed")

    async def _apply_trade_update(self, update: TradeUpdate) -> None:
        order = update.order
        tracked = self._remember(order)
        event = _enum_value(update.event)
        if event in ("fill", "partial_fill"):
            fill_id = str(update.execution_id) if update.execution_id else f"{order.id}:{_f(order.filled_qty):g}"
            if fill_id in self._seen_fills:
                log.info("alpaca_duplicate_fill_ignored", client_order_id=order.client_order_id, fill_id=fill_id)
                return
            self._seen_fills[fill_id] = None
            fill = self._next_fill(tracked, order, fill_id, update.price, update.qty, update.timestamp)
            if fill is not None:
                await self._emit(fill)
        status = day_end_status(order) if event == DONE_FOR_DAY else _EVENT_STATUS.get(event)
        if status is None:
            log.debug("alpaca_event_skipped", event_type=event, client_order_id=order.client_order_id)
            return
        await self._emit_update(tracked, order, status, update.timestamp)

    def _next_fill(self, tracked: _Tracked, order: Order, fill_id: str, price: float | None, qty: float | None,
                   ts: datetime) -> Fill | None:
        """The fill that brings what we reported up to the order's cumulative filled_qty (None when nothing new)."""
        cum = _f(order.filled_qty)
        inc = cum - tracked.reported_qty
        if inc <= EPS:
            return None
        if price is None or qty is None or abs(qty - inc) > EPS:
            avg = _f(order.filled_avg_price)
            price = (cum * avg - tracked.reported_notional) / inc if avg else (price or 0.0)
        tracked.reported_qty = cum
        tracked.reported_notional += inc * price
        return Fill(fill_id=fill_id, client_order_id=order.client_order_id,
                    symbol=to_ours(order.symbol or "") or tracked.symbol,
                    side=Side(_enum_value(order.side)) if order.side else (tracked.side or Side.BUY),
                    quantity=inc, price=price, timestamp=ts, broker=self.name, broker_order_id=str(order.id))

    async def _emit_update(self, tracked: _Tracked, order: Order, status: OrderStatus, ts: datetime) -> None:
        key = (status, _f(order.filled_qty))
        if tracked.last_update == key:
            return
        tracked.last_update = key
        if status.is_final and len(self._tracked) > MAX_TRACKED:
            self._prune()
        await self._emit(OrderUpdate(
            client_order_id=order.client_order_id, status=status, broker=self.name, broker_order_id=str(order.id),
            symbol=to_ours(order.symbol or "") or tracked.symbol, side=tracked.side, filled_qty=key[1],
            filled_avg_price=_f(order.filled_avg_price) or None, timestamp=ts,
        ))

    # -- stream supervision -----------------------------------------------------------------------------
    def _make_stream(self) -> _SupervisedTradingStream:
        stream = _SupervisedTradingStream(
            secret_value(self.settings.api_key), secret_value(self.settings.secret_key), paper=self.settings.paper,
            url_override=self.settings.trading_stream_url, on_listening=self._on_listening,
            on_closed=self._on_stream_closed,
        )
        stream._reconnect_min_backoff, stream._reconnect_max_backoff = self.stream_backoff
        stream.subscribe_trade_updates(self._on_trade_update)
        self._stream = stream  # the running one, for stopping
        return stream

    async def _supervise_stream(self) -> None:
        await supervise_stream(lambda: self._closing, self._make_stream, self._on_stream_closed, self.stream_backoff,
                               "alpaca_stream")

    def _on_stream_closed(self) -> None:
        if self._listening.is_set():
            log.warning("alpaca_stream_disconnected", broker=self.name)
        self._listening.clear()

    async def _on_listening(self) -> None:
        self._connects += 1
        self._listening.set()
        if self._connects > 1:
            self.reconnects += 1
            log.info("alpaca_stream_reconnected", broker=self.name, reconnects=self.reconnects)
            task = asyncio.create_task(self._catch_up(), name=f"{self.name}-catch-up")
            self._catch_up_tasks.add(task)
            task.add_done_callback(self._catch_up_tasks.discard)

    async def _catch_up(self, attempts: int = 5) -> None:
        """After a reconnect: catch up, retrying with backoff while REST fails."""
        low, high = self.stream_backoff
        for attempt in range(1, attempts + 1):
            try:
                await self.resync()
                return
            except BrokerError as exc:
                log.warning("alpaca_catch_up_failed", error=str(exc), attempt=attempt)
                await asyncio.sleep(min(high, low * 2 ** (attempt - 1)))
        log.error("alpaca_catch_up_gave_up", attempts=attempts)

    async def resync(self) -> int:
        """Look up every tracked, not-final order by its client order id and emit the fills and status changes
        the stream missed (by identity, not by a time window: a skewed clock cannot hide an order).

        Runs by itself after every stream reconnect; the reconciler may call it too. Returns how many
        orders were checked. Raises BrokerError when Alpaca cannot be asked (the orders not yet checked are
        checked on the next call).
        """
        pending = [t.client_order_id for t in self._tracked.values() if not t.final]
        for coid in pending:
            await self.resolve_order(coid)
        self._prune()
        return len(pending)

    async def resolve_order(self, client_order_id: str) -> OrderResult | None:
        """GET the order by client order id; emit what the stream missed of it. None when Alpaca has no such order."""
        order = await self._order_by_client_id(client_order_id)
        if order is None:
            return None
        async with self._event_lock:
            await self._reconcile_order(order)
        return order_result(order, self.name)

    async def clock_offset(self) -> float:
        """Seconds Alpaca's clock is ahead of ours (GET /v2/clock against the midpoint of the request)."""
        before = self.clock.now()
        clock = await self._call(self._client_fn("get_clock"), op="clock")
        after = self.clock.now()
        midpoint = before + (after - before) / 2
        return (clock.timestamp - midpoint).total_seconds()

    def _prune(self) -> None:
        """Bound memory in a long run: forget the oldest final orders and fill ids."""
        if len(self._tracked) > MAX_TRACKED:
            final = [coid for coid, t in self._tracked.items() if t.final]
            for coid in final[: len(self._tracked) - MAX_TRACKED]:
                del self._tracked[coid]
        while len(self._seen_fills) > MAX_TRACKED:
            self._seen_fills.popitem(last=False)

    async def _reconcile_order(self, order: Order) -> None:
        tracked = self._remember(order)
        fill = self._next_fill(tracked, order, f"{order.id}:{_f(order.filled_qty):g}", None, None, order.updated_at)
        if fill is not None and fill.fill_id not in self._seen_fills:
            self._seen_fills[fill.fill_id] = None
            log.info("alpaca_missed_fill_recovered", client_order_id=order.client_order_id, qty=fill.quantity)
            await self._emit(fill)
        await self._emit_update(tracked, order, order_status(order), order.updated_at)
