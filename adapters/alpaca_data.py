"""AlpacaBarFeed: minute bars from alpaca-py's `StockDataStream` (feed iex or sip) as a MarketDataFeed.

The SDK stream runs `_run_forever()` as a task on our loop (never `run()`), under a supervisor that starts a
fresh stream with backoff if the task ends or dies (the SDK itself reconnects after websocket errors).
Bars arrive one frame at a time per symbol; they are batched per bar timestamp and a batch is released when
every ticker has reported, when a later timestamp arrives, or `batch_window_seconds` after its first bar.
A bar at or before the last one released for its symbol (a replay after a reconnect) is dropped.
Bars missed while disconnected are not backfilled here.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable
from datetime import UTC, datetime
from typing import Any

import structlog
from alpaca.data.enums import DataFeed
from alpaca.data.live.stock import StockDataStream

from adapters.alpaca import _secret, supervise_stream
from config.settings import AlpacaSettings
from pipeline.clock import Clock
from pipeline.models import Bar

log = structlog.get_logger("ordergate.alpaca_data")




def _utc(ts: datetime) -> datetime:
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


class _ObservedDataStream(StockDataStream):
    """StockDataStream that reports connect/disconnect to the feed."""

    def __init__(self, *args: Any, feed_owner: AlpacaBarFeed, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._owner = feed_owner

    async def _start_ws(self) -> None:
        await super()._start_ws()
        self._owner._set_connected(True)

    async def close(self) -> None:
        try:
            await super().close()
        finally:
            self._owner._set_connected(False)


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
        self.connects = 0
        self.bars_received = 0

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
        stream, task = self._stream, self._task
        if stream is not None:
            with contextlib.suppress(Exception):
                await stream.stop_ws()
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if stream is not None:
            with contextlib.suppress(Exception):
                await stream.close()
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
        elif not value and self._connected:
            log.warning("alpaca_bars_disconnected")
        self._connected = value

    # -- stream -----------------------------------------------------------------------------------------
    def _make_stream(self) -> _ObservedDataStream:
        stream = _ObservedDataStream(
            _secret(self.settings.api_key), _secret(self.settings.secret_key), feed=DataFeed(self.settings.feed),
            url_override=self.settings.data_stream_url, feed_owner=self,
        )
        stream._reconnect_min_backoff, stream._reconnect_max_backoff = self.stream_backoff
        stream.subscribe_bars(self._on_bar, *self.tickers)
        return stream

    async def _supervise(self) -> None:
        await supervise_stream(self, self._make_stream, lambda: self._set_connected(False), self.stream_backoff,
                               "alpaca_bars_stream")

    # -- batching ---------------------------------------------------------------------------------------
    async def _on_bar(self, raw: Any) -> None:
        try:
            bar = Bar(symbol=raw.symbol, timestamp=_utc(raw.timestamp), open=float(raw.open), high=float(raw.high),
                      low=float(raw.low), close=float(raw.close), volume=float(raw.volume), timeframe="1m")
        except (AttributeError, TypeError, ValueError):
            log.warning("alpaca_bar_malformed", bar=repr(raw)[:200])
            return
        await self.add_bar(bar)

    async def add_bar(self, bar: Bar) -> None:
        """Buffer one bar; release whatever batches are complete."""
        last = self._last_released.get(bar.symbol)
        if last is not None and bar.timestamp <= last:
            log.debug("alpaca_bar_stale", symbol=bar.symbol, ts=bar.timestamp.isoformat())
            return
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
