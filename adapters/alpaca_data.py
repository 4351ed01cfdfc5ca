"""AlpacaBarFeed: minute bars from alpaca-py's `StockDataStream` (feed iex or sip) as a MarketDataFeed.

The SDK stream runs `_run_forever()` as a task on our loop (never `run()`), under a supervisor that starts a
fresh stream with backoff if the task ends or dies (the SDK itself reconnects after websocket errors).
Bars arrive one frame at a time per symbol; they are batched per bar timestamp and a batch is released when
every ticker has reported, when a later timestamp arrives, or `batch_window_seconds` after its first bar.
A bar at or before the last one released for its symbol (a replay after a reconnect) is dropped.

History comes from the REST data API (`StockHistoricalDataClient.get_stock_bars`, in a thread, with a timeout on
every request): `warm_up(start)` returns the minute bars before the daemon started, for the strategy's
indicators; and on every (re)connect after bars have been released, the minutes missed since the last one are
fetched and released before any live bar that arrived meanwhile (held back until then), so a dropped data
socket leaves no gap in the clouds.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from alpaca.data.enums import Adjustment, DataFeed
from alpaca.data.historical.stock import StockHistoricalDataClient
from alpaca.data.live.stock import StockDataStream
from alpaca.data.requests import StockBarsRequest
from alpaca.data.timeframe import TimeFrame
from tenacity import AsyncRetrying, stop_after_attempt, wait_exponential

from adapters.alpaca import close_stream, secret_value, supervise_stream, with_request_timeout
from config.settings import AlpacaSettings
from pipeline.core.clock import Clock
from pipeline.core.models import Bar

log = structlog.get_logger("ordergate.alpaca_data")

MINUTE = timedelta(minutes=1)
BACKFILL_MAX = timedelta(days=4)  # a longer outage resumes from the last 4 days (a long weekend)
HISTORY_ATTEMPTS = 3


def _utc(ts: datetime) -> datetime:
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def _to_bar(raw: Any) -> Bar | None:
    """Our 1m Bar from an alpaca-py bar (stream or REST), None when it is malformed."""
    try:
        return Bar(symbol=raw.symbol, timestamp=_utc(raw.timestamp), open=float(raw.open), high=float(raw.high),
                   low=float(raw.low), close=float(raw.close), volume=float(raw.volume), timeframe="1m")
    except (AttributeError, TypeError, ValueError):
        log.warning("alpaca_bar_malformed", bar=repr(raw)[:200])
        return None


def _batched(bars: list[Bar]) -> list[list[Bar]]:
    """Bars grouped per timestamp, in time order (symbols sorted within a batch)."""
    by_ts: dict[datetime, list[Bar]] = {}
    for bar in sorted(bars, key=lambda b: (b.timestamp, b.symbol)):
        by_ts.setdefault(bar.timestamp, []).append(bar)
    return list(by_ts.values())


class _ObservedDataStream(StockDataStream):
    """StockDataStream that reports connect/disconnect to the feed."""

    def __init__(self, *args: Any, on_connection: Callable[[bool], None], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._on_connection = on_connection  # told True once connected, False once closed

    async def _start_ws(self) -> None:
        await super()._start_ws()
        self._on_connection(True)

    async def close(self) -> None:
        try:
            await super().close()
        finally:
            self._on_connection(False)


class AlpacaBarFeed:
    """Minute bars for `tickers` from Alpaca's market-data websocket, batched per timestamp."""

    def __init__(
        self,
        settings: AlpacaSettings,
        tickers: Iterable[str],
        clock: Clock,
        *,
        batch_window_seconds: float = 2.0,
        stream_backoff: tuple[float, float] = (1.0, 30.0),
        queue_size: int = 1000,
    ) -> None:
        self.settings = settings
        self.tickers = sorted({t.strip().upper() for t in tickers if t.strip()})
        if not self.tickers:
            raise ValueError("tickers: at least one symbol is required")
        self.clock = clock
        self.batch_window = batch_window_seconds
        self.stream_backoff = stream_backoff
        self._queue: asyncio.Queue[list[Bar] | None] = asyncio.Queue(maxsize=queue_size)
        self._pending: dict[datetime, dict[str, Bar]] = {}
        self._timers: dict[datetime, asyncio.TimerHandle] = {}
        self._last_released: dict[str, datetime] = {}
        self._stream: _ObservedDataStream | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._connected = False
        self._history: StockHistoricalDataClient | None = None
        self._holding: list[Bar] | None = None  # live bars held back while a gap is backfilled
        self._backfill_task: asyncio.Task[None] | None = None
        self.connects = 0
        self.bars_received = 0
        self.bars_backfilled = 0

    # -- lifecycle --------------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the supervised stream task (idempotent; `batches()` calls it)."""
        if self._task is None and not self._closing:
            self._task = asyncio.create_task(self._supervise(), name="alpaca-bars")

    async def batches(self) -> AsyncIterator[list[Bar]]:
        """Lists of bars sharing one timestamp, in time order, until `close()`."""
        self.start()
        while True:
            batch = await self._queue.get()
            if batch is None:
                return
            yield batch

    async def close(self) -> None:
        self._closing = True
        await close_stream(self._stream, self._task, self._backfill_task)
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        with contextlib.suppress(asyncio.QueueFull):
            self._queue.put_nowait(None)

    def is_connected(self) -> bool:
        return self._connected

    def _set_connected(self, value: bool) -> None:
        if value and not self._connected:
            self.connects += 1
            log.info("alpaca_bars_connected", tickers=len(self.tickers), connects=self.connects)
            if self._last_released and self._holding is None and not self._closing:
                self._holding = []
                self._backfill_task = asyncio.get_running_loop().create_task(self._backfill(), name="alpaca-backfill")
        elif not value and self._connected:
            log.warning("alpaca_bars_disconnected")
        self._connected = value

    # -- stream -----------------------------------------------------------------------------------------
    def _make_stream(self) -> _ObservedDataStream:
        stream = _ObservedDataStream(
            secret_value(self.settings.api_key), secret_value(self.settings.secret_key),
            feed=DataFeed(self.settings.feed), url_override=self.settings.data_stream_url,
            on_connection=self._set_connected,
        )
        stream._reconnect_min_backoff, stream._reconnect_max_backoff = self.stream_backoff
        stream.subscribe_bars(self._on_bar, *self.tickers)
        self._stream = stream  # the running one, for stopping
        return stream

    async def _supervise(self) -> None:
        await supervise_stream(lambda: self._closing, self._make_stream, lambda: self._set_connected(False),
                               self.stream_backoff, "alpaca_bars_stream")

    # -- history ----------------------------------------------------------------------------------------
    async def warm_up(self, start: datetime) -> list[list[Bar]]:
        """The minute bars from `start` to now, batched per timestamp in time order, for the indicators; live
        bars continue after them. [] (logged) when the data API cannot be reached: the strategy then warms up
        on live bars."""
        end = self.clock.now()
        try:
            bars = await self._fetch(start, end)
        except Exception as exc:
            log.warning("alpaca_warm_up_failed", start=start.isoformat(), error=str(exc)[:300])
            return []
        for bar in bars:
            self._last_released[bar.symbol] = bar.timestamp  # sorted by time: the last one stays
        log.info("alpaca_warm_up", bars=len(bars), start=start.isoformat(), end=end.isoformat())
        return _batched(bars)

    async def _backfill(self) -> None:
        """After a (re)connect: release the minutes missed since the last released bar, then the live bars held
        back meanwhile."""
        end = self.clock.now()
        start = max(min(self._last_released.values()) + MINUTE, end - BACKFILL_MAX)
        try:
            bars = await self._fetch(start, end)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("alpaca_backfill_failed", start=start.isoformat(), end=end.isoformat(), error=str(exc)[:300])
            bars = []
        else:
            log.info("alpaca_backfill", bars=len(bars), start=start.isoformat(), end=end.isoformat())
        for bar in bars:
            if await self._add(bar):
                self.bars_backfilled += 1
        held, self._holding = self._holding or [], None
        for bar in held:
            await self._add(bar)

    async def _fetch(self, start: datetime, end: datetime) -> list[Bar]:
        """Closed minute bars of every ticker in [start, end] from the REST data API (retried on any failure); the
        bar of a minute not over by `end` is left to the live stream. Split-adjusted: a split since then gives them
        in today's shares, as the live bars are (raw history would show the split as a crash to the indicators)."""
        if end < start:
            return []
        request = StockBarsRequest(symbol_or_symbols=self.tickers, timeframe=TimeFrame.Minute, start=start, end=end,
                                   feed=DataFeed(self.settings.feed), adjustment=Adjustment.SPLIT)
        client = self._history_client()
        async for attempt in AsyncRetrying(stop=stop_after_attempt(HISTORY_ATTEMPTS), reraise=True,
                                           wait=wait_exponential(multiplier=self.stream_backoff[0],
                                                                 max=self.stream_backoff[1])):
            with attempt:
                barset = await asyncio.to_thread(client.get_stock_bars, request)
        bars = [bar for rows in barset.data.values() for raw in rows  # type: ignore[union-attr]
                if (bar := _to_bar(raw)) is not None and bar.timestamp + MINUTE <= end]  # a minute still open waits
        bars.sort(key=lambda b: (b.timestamp, b.symbol))
        return bars

    def _history_client(self) -> StockHistoricalDataClient:
        if self._history is None:
            client = StockHistoricalDataClient(
                secret_value(self.settings.api_key), secret_value(self.settings.secret_key),
                url_override=self.settings.data_url.rstrip("/") if self.settings.data_url else None,
            )
            client._retry = 0  # our own retry loop (the SDK's sleeps 3 s x 3 in the thread)
            self._history = with_request_timeout(client, self.settings.request_timeout_seconds)
        return self._history

    # -- batching ---------------------------------------------------------------------------------------
    async def _on_bar(self, raw: Any) -> None:
        bar = _to_bar(raw)
        if bar is not None:
            await self.add_bar(bar)

    async def add_bar(self, bar: Bar) -> None:
        """Buffer one live bar (held back while a gap is being backfilled); release whatever batches are
        complete."""
        if self._holding is not None:
            self._holding.append(bar)
            return
        await self._add(bar)

    async def _add(self, bar: Bar) -> bool:
        """Buffer one bar unless it is at or before the last released for its symbol; True when buffered."""
        last = self._last_released.get(bar.symbol)
        if last is not None and bar.timestamp <= last:
            log.debug("alpaca_bar_stale", symbol=bar.symbol, ts=bar.timestamp.isoformat())
            return False
        self.bars_received += 1
        older = [t for t in self._pending if t < bar.timestamp]
        if older:
            await self._release(max(older))
        batch = self._pending.setdefault(bar.timestamp, {})
        batch[bar.symbol] = bar
        if len(batch) >= len(self.tickers):
            await self._release(bar.timestamp)
        elif bar.timestamp not in self._timers:
            loop = asyncio.get_running_loop()
            self._timers[bar.timestamp] = loop.call_later(self.batch_window, self._release_later, bar.timestamp)
        return True

    def _release_later(self, ts: datetime) -> None:
        self._timers.pop(ts, None)
        if ts in self._pending:
            asyncio.get_running_loop().create_task(self._release(ts))

    async def _release(self, ts: datetime) -> None:
        """Release the batch at `ts`, and every older one first (time order is kept)."""
        for older in sorted(t for t in self._pending if t < ts):
            await self._release(older)
        handle = self._timers.pop(ts, None)
        if handle is not None:
            handle.cancel()
        batch = self._pending.pop(ts, None)
        if not batch:
            return
        bars = [batch[s] for s in sorted(batch)]
        for bar in bars:
            self._last_released[bar.symbol] = ts
        await self._queue.put(bars)
