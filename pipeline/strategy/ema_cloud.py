"""EMA-cloud strategy: 1m bars -> timeframe bars -> three EMA clouds -> trade signals.

`BarAggregator` builds bars of one timeframe from smaller ones, aligned to the New York session (09:30 ET
open; buckets never straddle the close or midnight ET; daily bars cover the regular session).
`EmaCloudStrategy.on_bar` feeds each completed bar to three incremental EMA clouds per (symbol, timeframe):
fast (5/12), pullback (8/9) and trend (34/50), and emits at most one `TradeSignal` per completed bar. It
also keeps the recent `CloudState`s and bars the exit monitor reads.

Hot path rules: no pandas, plain floats, no per-bar dict rebuilding; objects are allocated only for a
completed bar (its `CloudState`) or a signal. A replay of `BarBatch`es (time steps of many symbols) takes the
column path from its first step: `columns.ColumnAggregator` builds the buckets of every symbol at once and
`cloud_columns.CloudColumns` advances the clouds of every bar a step completes at once; the set-up rules then
run only for the tracks whose bar may hold one. Both paths give the same rows, states and signals.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from itertools import islice
from typing import TYPE_CHECKING, Any

import numpy as np
import structlog
from pydantic import ValidationError

from config.settings import DEFAULT_STRATEGY, StrategySettings, StrategySpec, format_validation_error
from pipeline.core.batch import BarBatch
from pipeline.core.calendar import NEW_YORK, MarketCalendar, daily_session_date
from pipeline.core.models import TIMEFRAME_SECONDS, Bar, CloudState, Direction, SignalType, TradeSignal
from pipeline.strategy.cloud_columns import CloudColumns, ColumnTrack, Completed, row_bar, row_state
from pipeline.strategy.indicators import CloudEmas, EmaCloud
from pipeline.strategy.rescale import check_ratio, scale_values, split_rows

if TYPE_CHECKING:
    from pipeline.strategy.columns import ColumnAggregator

log = structlog.get_logger(__name__)

DAILY = "1d"
DAY_SECONDS = TIMEFRAME_SECONDS[DAILY]
SESSION_OPEN = time(9, 30)
SESSION_CLOSE = time(16, 0)
STOP_BUFFER_PCT = 0.001      # stop sits this far beyond the supporting cloud edge
MIN_STOP_PCT = 0.0025        # and at least this far from entry
COLUMNS_MIN_SYMBOLS = 8      # a replay of fewer symbols per time step goes bar by bar (numpy's overhead would win)
DEFAULT_HISTORY = 64         # completed bars / cloud states kept per (symbol, timeframe)
_INF = math.inf
_NO_BARS: tuple[Bar, ...] = ()
# one completed bar of a track: (open time, open, high, low, close, volume, fast short, fast long, pullback short,
# pullback long, trend short, trend long)
Row = tuple[datetime, float, float, float, float, float, float, float, float, float, float, float]
_ALL_GOOD = np.ones(0, dtype=bool)  # marker: every bar of a checked batch is good

# tie-break among signals of equal conviction on one bar: the more specific setup wins
_PRIORITY = {
    SignalType.PULLBACK_ENTRY_LONG: 4, SignalType.PULLBACK_ENTRY_SHORT: 4,
    SignalType.TREND_ALIGNED_LONG: 3, SignalType.TREND_ALIGNED_SHORT: 3,
    SignalType.CLOUD_CROSS_BULLISH: 2, SignalType.CLOUD_CROSS_BEARISH: 2,
    SignalType.CLOUD_FLIP_BULLISH: 1, SignalType.CLOUD_FLIP_BEARISH: 1,
}


def _timeframe_seconds(timeframe: str, field: str = "timeframe") -> int:
    try:
        return TIMEFRAME_SECONDS[timeframe]
    except (KeyError, TypeError):
        raise ValueError(f"{field}: unknown timeframe {timeframe!r}; allowed: {', '.join(TIMEFRAME_SECONDS)}") from None


class SessionHours:
    """The New York day that contains a timestamp: midnight bounds and session open/close, all UTC.

    One-entry cache: consecutive bars almost always fall on the same day, so the lookup is two comparisons.
    """

    __slots__ = ("calendar", "close", "day", "hi", "lo", "open")

    def __init__(self, calendar: MarketCalendar | None) -> None:
        self.calendar = calendar
        self.day: date | None = None
        self.lo = self.hi = self.open = self.close = datetime.min.replace(tzinfo=UTC)

    def locate(self, ts: datetime) -> None:
        """Point the cache at the New York day of `ts`."""
        if self.day is None or not (self.lo <= ts < self.hi):
            self.set_day(ts.astimezone(NEW_YORK).date())

    def set_day(self, day: date) -> None:
        if day == self.day:
            return
        self.day = day
        self.lo = datetime.combine(day, time(0), NEW_YORK).astimezone(UTC)
        self.hi = datetime.combine(day + timedelta(days=1), time(0), NEW_YORK).astimezone(UTC)
        session = self.calendar.session(day) if self.calendar is not None else None
        if session is None:  # weekend/holiday without a calendar answer: the regular hours
            self.open = datetime.combine(day, SESSION_OPEN, NEW_YORK).astimezone(UTC)
            self.close = datetime.combine(day, SESSION_CLOSE, NEW_YORK).astimezone(UTC)
        else:
            self.open, self.close = session[0].astimezone(UTC), session[1].astimezone(UTC)

    def intraday_bucket(self, ts: datetime, seconds: int) -> tuple[datetime, datetime]:
        """(start, end) of the `seconds` bucket holding `ts`: aligned to the open (to the close after it),
        cut at the close and at midnight ET."""
        self.locate(ts)
        anchor = self.close if ts >= self.close else self.open
        k = math.floor((ts - anchor).total_seconds() / seconds)
        start = anchor + timedelta(seconds=k * seconds)
        end = start + timedelta(seconds=seconds)
        if start < self.lo:
            start = self.lo
        if end > self.hi:
            end = self.hi
        if start < self.close < end:
            end = self.close
        return start, end

    def bar_end(self, ts: datetime, seconds: int) -> datetime:
        """When a bar of `seconds` opening at `ts` closes (cut at the session close / midnight ET)."""
        if seconds >= DAY_SECONDS:
            # a daily bar is the session of the date it names (midnight ET, 00:00Z, 20:00Z, the close...)
            self.set_day(daily_session_date(ts))
            return self.close
        self.locate(ts)
        end = ts + timedelta(seconds=seconds)
        if end > self.hi:
            end = self.hi
        if ts < self.close < end:
            end = self.close
        return end


class _Partial:
    """The bucket being built for one symbol (reused; `active` is False once it has been emitted)."""

    __slots__ = ("active", "close", "end", "high", "last", "low", "open", "stamp", "volume")

    def __init__(self) -> None:
        self.active = False
        self.stamp = self.end = self.last = datetime.min.replace(tzinfo=UTC)
        self.open = self.high = self.low = self.close = self.volume = 0.0

    def start(self, bar: Bar, stamp: datetime, end: datetime) -> None:
        self.active = True
        self.stamp, self.end, self.last = stamp, end, bar.timestamp
        self.open, self.high, self.low, self.close, self.volume = bar.open, bar.high, bar.low, bar.close, bar.volume

    def merge(self, bar: Bar) -> None:
        self.last = bar.timestamp
        if bar.high > self.high:
            self.high = bar.high
        if bar.low < self.low:
            self.low = bar.low
        self.close = bar.close
        self.volume += bar.volume

    def rescale(self, ratio: float) -> None:
        """Its prices divided by `ratio`, its volume multiplied by it (a stock split)."""
        self.open /= ratio
        self.high /= ratio
        self.low /= ratio
        self.close /= ratio
        self.volume *= ratio

    def emit(self, symbol: str, timeframe: str) -> Bar:
        self.active = False
        return Bar(symbol, self.stamp, self.open, self.high, self.low, self.close, self.volume, timeframe)


class BarAggregator:
    """Aggregates smaller bars (usually 1m) into `timeframe` bars per symbol, aligned to the NY session.

    Intraday buckets start at the 09:30 ET open (09:30-09:35, ... for 5m), end at the close at the latest
    (the 15:30 1h bucket is 15:30-16:00), and bars after the close form buckets aligned to the close. A daily
    bucket is the regular session of one New York date, stamped at midnight ET; bars outside it are ignored.
    A bucket is emitted as soon as a bar ending at the bucket's end arrives, or else when a bar of a later
    bucket arrives. Bars already of `timeframe` pass straight through; larger bars are ignored; late or
    repeated bars (at or before the last one aggregated) are dropped.
    """

    __slots__ = ("_hours", "_partials", "_src_deltas", "daily", "seconds", "timeframe")

    def __init__(self, timeframe: str, calendar: MarketCalendar | None = None) -> None:
        self.seconds = _timeframe_seconds(timeframe)
        self.timeframe = timeframe
        self.daily = self.seconds >= DAY_SECONDS
        self._hours = SessionHours(calendar)
        self._partials: dict[str, _Partial] = {}
        self._src_deltas = {tf: timedelta(seconds=s) for tf, s in TIMEFRAME_SECONDS.items()}

    @property
    def calendar(self) -> MarketCalendar | None:
        """The calendar whose sessions bound the buckets."""
        return self._hours.calendar

    def update(self, bar: Bar) -> Sequence[Bar]:
        """Feed one bar; returns the bars of `timeframe` it completed (usually none, at most two)."""
        src = TIMEFRAME_SECONDS.get(bar.timeframe)
        if src is None:
            raise ValueError(f"timeframe: unknown bar timeframe {bar.timeframe!r}")
        if src == self.seconds:
            return (bar,)
        if src > self.seconds:
            return _NO_BARS
        ts = bar.timestamp
        p = self._partials.get(bar.symbol)
        if p is None:
            p = self._partials[bar.symbol] = _Partial()
        elif ts < p.end:
            if not p.active or ts <= p.last or ts < p.stamp:
                return _NO_BARS  # late or repeated bar of a bucket already built
            p.merge(bar)
            if ts + self._src_deltas[bar.timeframe] >= p.end:
                return (p.emit(bar.symbol, self.timeframe),)
            return _NO_BARS
        previous = p.emit(bar.symbol, self.timeframe) if p.active else None
        done = self._open_bucket(p, bar)
        if previous is None:
            return (done,) if done is not None else _NO_BARS
        return (previous, done) if done is not None else (previous,)

    def _open_bucket(self, p: _Partial, bar: Bar) -> Bar | None:
        """Start the bucket holding `bar`; returns it at once if `bar` also completes it."""
        ts = bar.timestamp
        hours = self._hours
        if self.daily:
            hours.locate(ts)
            if not (hours.open <= ts < hours.close):
                return None
            stamp, end = hours.lo, hours.close
        else:
            stamp, end = hours.intraday_bucket(ts, self.seconds)
        p.start(bar, stamp, end)
        if ts + self._src_deltas[bar.timeframe] >= end:
            return p.emit(bar.symbol, self.timeframe)
        return None

    def rescale(self, symbol: str, ratio: float) -> bool:
        """The bucket of `symbol` (being built, or the last one built) after a `ratio` split; False when it has
        none."""
        p = self._partials.get(symbol)
        if p is None:
            return False
        p.rescale(ratio)
        return True

    def flush(self, symbol: str) -> Bar | None:
        """Emit the unfinished bucket of `symbol` now (end of a replay), if there is one."""
        p = self._partials.get(symbol)
        if p is None or not p.active:
            return None
        return p.emit(symbol, self.timeframe)

    def close_time_at(self, ts: datetime) -> datetime:
        """When a bar of this aggregator's timeframe opening at `ts` closes (see `bar_close_time`)."""
        return self._hours.bar_end(ts, self.seconds)

    def bar_close_time(self, bar: Bar) -> datetime:
        """When `bar` (of this aggregator's timeframe) closes: open + timeframe, cut at the session close;
        for daily bars the session close of their date."""
        return self._hours.bar_end(bar.timestamp, TIMEFRAME_SECONDS.get(bar.timeframe, self.seconds))


class _Track:
    """Clouds, history and volume average of one (symbol, timeframe).

    The history is one tuple per completed bar, `Row` (timestamp, open, high, low, close, volume, then the six
    EMAs fast short/long, pullback short/long, trend short/long): the rules read the tuples, and a `CloudState`
    or `Bar` is built only when something asks for one (the exit monitor, for held tickers; a set-up's stop).
    """

    __slots__ = (
        "align_dir", "align_fired", "count", "emas", "last_ts", "prev_align", "rel_volume", "rows", "symbol",
        "timeframe", "vol_n", "vol_sum", "vols",
    )

    def __init__(self, symbol: str, timeframe: str, spans: tuple[int, ...], history: int, lookback: int) -> None:
        self.symbol = symbol
        self.timeframe = timeframe
        self.emas = CloudEmas(spans)  # type: ignore[arg-type]
        self.rows: deque[Row] = deque(maxlen=history)
        self.vols: deque[float] = deque(maxlen=lookback)
        self.vol_sum = 0.0
        self.vol_n = 0
        self.count = 0
        self.rel_volume = 1.0      # of the latest completed bar, against the `lookback` bars before it
        self.last_ts: datetime | None = None
        self.align_dir = 0         # structural alignment of the clouds: +1 bullish stack, -1 bearish, 0 none
        self.align_fired = False   # TREND_ALIGNED already given for the current alignment episode
        self.prev_align = 0        # align_dir as of the previous completed bar

    def update(self, when: datetime, o: float, h: float, low: float, c: float, v: float) -> Row:
        """Advance by one completed bar: its relative volume (against the previous `lookback` bars, 1.0 with
        no average yet), the volume window, the six EMAs; records and returns its row."""
        vols = self.vols
        n = len(vols)
        self.rel_volume = 1.0 if n == 0 or self.vol_sum <= 0.0 else v * n / self.vol_sum
        if n == vols.maxlen:
            self.vol_sum -= vols[0]
        vols.append(v)
        self.vol_sum += v
        self.vol_n += 1
        if self.vol_n & 1023 == 0:  # wipe accumulated rounding now and then
            self.vol_sum = math.fsum(vols)
        e = self.emas
        e.update(c)
        row = (when, o, h, low, c, v, e.fs, e.fl, e.ps, e.pl, e.ts, e.tl)
        self.rows.append(row)
        self.last_ts = when
        self.count += 1
        return row

    def rescale(self, ratio: float) -> None:
        """After a `ratio` split: the EMAs and the rows' prices divided by it, the rows' volumes and the volume
        window (and its sum) multiplied by it. The relative volume (a ratio of volumes), the count and the
        alignment episode stay."""
        self.emas.rescale(ratio)
        split_rows(self.rows, ratio)
        scale_values(self.vols, ratio)
        self.vol_sum *= ratio

    def state(self, row: Row) -> CloudState:
        """The `CloudState` of one of its rows."""
        return row_state(self.symbol, self.timeframe, row)

    def bar(self, row: Row) -> Bar:
        """The completed `Bar` of one of its rows."""
        return row_bar(self.symbol, self.timeframe, row)


def _structure(row: Row) -> int:
    """+1 when all three clouds are bullish and the fast and pullback clouds sit above the trend cloud,
    -1 for the bearish mirror, else 0."""
    _, _, _, _, _, _, fs, fl, ps, pl, ts, tl = row
    if fs > fl and ps > pl and ts > tl and fl > ts and pl > ts:
        return 1
    if fs < fl and ps < pl and ts < tl and fl < ts and pl < ts:
        return -1
    return 0


def _hi(a: float, b: float) -> float:
    return a if a >= b else b


def _lo(a: float, b: float) -> float:
    return b if a >= b else a


def _conviction(s: CloudState, direction: int, structure: int, rel_volume: float) -> float:
    """0-100: 15 per cloud whose colour agrees, 10 when stacked that way, 5 when price is beyond the trend
    cloud, and up to 40 from relative volume (20 at average volume, 40 at twice it or more)."""
    if direction > 0:
        agree = (s.fast_short > s.fast_long) + (s.pullback_short > s.pullback_long) + (s.trend_short > s.trend_long)
        beyond = s.close > _hi(s.trend_short, s.trend_long)
    else:
        agree = (s.fast_short < s.fast_long) + (s.pullback_short < s.pullback_long) + (s.trend_short < s.trend_long)
        beyond = s.close < _lo(s.trend_short, s.trend_long)
    rv = rel_volume if rel_volume < 2.0 else 2.0
    if not rv > 0.0:  # also NaN
        rv = 0.0
    score = 15.0 * agree + (10.0 if structure == direction else 0.0) + (5.0 if beyond else 0.0) + 20.0 * rv
    return round(min(100.0, max(0.0, score)), 2)


def _stop(s: CloudState, direction: int, extreme: float | None = None) -> float | None:
    """Stop beyond the nearest cloud edge on the protective side of entry (pullback or trend cloud), with a
    buffer and a minimum distance; `extreme` (a pullback bar's low/high) widens it. None when no cloud
    supports the trade or the stop would be on the wrong side of entry."""
    entry = s.close
    if direction > 0:
        support = -_INF
        for edge in (_lo(s.pullback_short, s.pullback_long), _lo(s.trend_short, s.trend_long)):
            if support < edge < entry:
                support = edge
        if support == -_INF:
            return None
        if extreme is not None and extreme < support:
            support = extreme
        stop = min(support - entry * STOP_BUFFER_PCT, entry * (1.0 - MIN_STOP_PCT))
        return stop if 0.0 < stop < entry else None
    resistance = _INF
    for edge in (_hi(s.pullback_short, s.pullback_long), _hi(s.trend_short, s.trend_long)):
        if entry < edge < resistance:
            resistance = edge
    if resistance == _INF:
        return None
    if extreme is not None and extreme > resistance:
        resistance = extreme
    stop = max(resistance + entry * STOP_BUFFER_PCT, entry * (1.0 + MIN_STOP_PCT))
    return stop if stop > entry and math.isfinite(stop) else None


def _setups(track: _Track | ColumnTrack, prev: Row, cur: Row, fresh_alignment: int) -> list[
    tuple[SignalType, int, float | None]
]:
    """Every setup present on the bar just completed (`cur`, after `prev`): (type, direction, extreme for the stop).

    Hot path (runs on every completed bar): cloud edges are computed inline, not through helpers."""
    found: list[tuple[SignalType, int, float | None]] = []
    _, _, p_high, p_low, pc, _, p_fs, p_fl, p_ps, p_pl, a, b = prev
    p_tr_lo, p_tr_hi = (b, a) if a >= b else (a, b)
    _, _, _, _, c, _, fs, fl, ps, pl, a, b = cur
    tr_lo, tr_hi = (b, a) if a >= b else (a, b)
    if pc <= p_tr_hi and c > tr_hi:
        found.append((SignalType.CLOUD_CROSS_BULLISH, 1, None))
    elif pc >= p_tr_lo and c < tr_lo:
        found.append((SignalType.CLOUD_CROSS_BEARISH, -1, None))
    was_bull = p_fs >= p_fl
    if was_bull != (fs >= fl):
        if was_bull:
            found.append((SignalType.CLOUD_FLIP_BEARISH, -1, None))
        else:
            found.append((SignalType.CLOUD_FLIP_BULLISH, 1, None))
    if fresh_alignment > 0:
        found.append((SignalType.TREND_ALIGNED_LONG, 1, None))
    elif fresh_alignment < 0:
        found.append((SignalType.TREND_ALIGNED_SHORT, -1, None))
    if track.align_dir > 0 and track.prev_align > 0:
        top = p_ps if p_ps >= p_pl else p_pl
        # the previous bar dipped into the pullback cloud and closed in it; this one closes above it again
        if p_low <= top and pc <= top and c > _hi(ps, pl):
            found.append((SignalType.PULLBACK_ENTRY_LONG, 1, p_low))
    elif track.align_dir < 0 and track.prev_align < 0:
        bottom = p_pl if p_ps >= p_pl else p_ps
        if p_high >= bottom and pc >= bottom and c < _lo(ps, pl):
            found.append((SignalType.PULLBACK_ENTRY_SHORT, -1, p_high))
    return found


class _SymbolSlot:
    """Per-symbol holder: one track per configured timeframe and the timeframes completed on the last bar."""

    __slots__ = ("completed", "rejected", "tracks")

    def __init__(self, tracks: list[_Track]) -> None:
        self.tracks = tracks
        self.completed: list[str] = []
        self.rejected = 0


class EmaCloudStrategy:
    """Turns bars into `TradeSignal`s from three EMA clouds per (symbol, timeframe), and keeps the cloud
    states and recent bars the exit monitor reads.

    Signals start after warm-up (the trend cloud's long span of completed bars). When `settings.enabled`
    is false the clouds are still maintained (exits need them) but no signal is emitted.
    """

    # its positions get the spec's seven exits (the cloud reads included)
    exits: tuple[str, ...] = ("stop_loss", "momentum_exhaustion", "cloud_flip", "profit_target", "time_stop",
                              "eod_close", "trailing_stop")

    def __init__(
        self,
        settings: StrategySettings,
        *,
        calendar: MarketCalendar | None = None,
        history: int = DEFAULT_HISTORY,
        name: str = DEFAULT_STRATEGY,
        tickers: Sequence[str] | None = None,
    ) -> None:
        self.name = name
        self.tickers: tuple[str, ...] | None = tuple(tickers) if tickers is not None else None
        if history < 2:
            raise ValueError(f"history: must keep at least 2 bars, got {history}")
        for name in ("fast_cloud", "pullback_cloud", "trend_cloud"):
            short, long = getattr(settings, name)
            try:
                EmaCloud(short, long)
            except ValueError as exc:
                raise ValueError(f"strategy.{name}: {exc}") from None
        self._spans = (*settings.fast_cloud, *settings.pullback_cloud, *settings.trend_cloud)
        self.timeframes: tuple[str, ...] = tuple(dict.fromkeys(settings.timeframes))
        for tf in self.timeframes:
            _timeframe_seconds(tf, "strategy.timeframes")
        self._aggregators = tuple(BarAggregator(tf, calendar) for tf in self.timeframes)
        self._index = {tf: i for i, tf in enumerate(self.timeframes)}
        self._history = history
        self._lookback = settings.volume_lookback
        self.warmup_bars = max(settings.trend_cloud[1], max(self._spans))
        self.min_conviction = float(settings.min_conviction)
        self.enabled = settings.enabled
        self._symbols: dict[str, _SymbolSlot] = {}
        self.rejected_bars = 0
        # a BarBatch replay updates the intraday buckets of a whole time step at once (ColumnAggregator); the
        # first call decides which aggregators hold the buckets, so one state is authoritative for good
        self._columns: tuple[ColumnAggregator | None, ...] | None = None
        self._mode: str | None = None
        self._slot_key: tuple[str, ...] | None = None
        self._slot_row: list[_SymbolSlot | None] = []
        self._unique: dict[tuple[str, ...], bool] = {}
        self._slot_set: frozenset[str] = frozenset()
        self._slot_gaps = False  # `_slot_row` has a symbol without a slot
        self._dirty: dict[str, _SymbolSlot] = {}  # symbols whose latest bar completed something (columns path)
        self._clouds: tuple[CloudColumns, ...] = ()  # columns path: each timeframe's tracks as columns
        self._slot_rows = np.empty(0, dtype=np.intp)

    @classmethod
    def from_spec(cls, spec: StrategySpec, *, calendar: MarketCalendar | None = None) -> EmaCloudStrategy:
        """Build from a `[[strategies]]` table: its `params` are [strategy] fields (fast_cloud, trend_cloud,
        min_conviction, enabled, ...; the defaults for those not given), plus its timeframes and tickers."""
        try:
            settings = StrategySettings.model_validate({**spec.params, "timeframes": list(spec.timeframes)})
        except ValidationError as exc:
            raise ValueError(f"strategies.{spec.name}.params: {format_validation_error(exc)}") from None
        return cls(settings, calendar=calendar, name=spec.name, tickers=spec.tickers)

    def state(self) -> dict[str, Any]:
        """What it has seen: completed bars per symbol and timeframe, and how many bars it refused."""
        return {"kind": "ema_cloud", "enabled": self.enabled, "warmup_bars": self.warmup_bars,
                "bars_seen": {s: {tf: t.count for tf, t in zip(self.timeframes, slot.tracks, strict=True)}
                              for s, slot in self._symbols.items()},
                "rejected_bars": self.rejected_bars}

    def rescale(self, symbol: str, ratio: float) -> bool:
        """Rescale `symbol`'s state after a split of `ratio` new shares per old one, as if its whole history had
        been split-adjusted: every track's EMAs and rows of history, the volume window and the buckets being
        built (both paths). Prices are divided by `ratio`, volumes multiplied by it; counts, timestamps and
        the alignment episodes stay. False when it holds nothing for `symbol`; ValueError for a bad `ratio`."""
        ratio = check_ratio(ratio)
        slot = self._symbols.get(symbol)
        held = slot is not None
        if slot is not None:
            for track in slot.tracks:
                track.rescale(ratio)
        for agg in self._aggregators:
            held = agg.rescale(symbol, ratio) or held
        for column in self._columns or ():
            if column is not None:
                held = column.rescale(symbol, ratio) or held
        return held

    # ------------------------------------------------------------------ hot path
    def on_batch(self, batch: Sequence[Bar]) -> list[tuple[int, TradeSignal]]:
        """Feed one time step (bars sharing a timestamp). Returns (position in the batch, signal) in batch order:
        exactly what `on_bar` gives bar by bar. A `BarBatch` of distinct symbols updates the intraday buckets
        of all its symbols with a few numpy operations; a list of bars goes bar by bar."""
        if self._mode is None:
            # columns only from the start: tracks built bar by bar stay on that path
            self._mode = "columns" if isinstance(batch, BarBatch) and len(batch) >= COLUMNS_MIN_SYMBOLS and all(
                not agg.daily for agg in self._aggregators) and not self._symbols else "bars"
            if self._mode == "columns":
                from pipeline.strategy.columns import ColumnAggregator

                self._columns = tuple(ColumnAggregator(tf, agg.calendar) for tf, agg in
                                      zip(self.timeframes, self._aggregators, strict=True))
                self._clouds = tuple(CloudColumns(tf, self._spans, self._lookback, self._history)
                                     for tf in self.timeframes)
        if self._mode == "columns":
            if isinstance(batch, BarBatch):
                if batch.checked or self._distinct(batch.symbols):
                    return self._on_columns(batch)
                return [(j, s) for j, bar in enumerate(batch) for s in self._one_column_bar(bar)]
            return [(j, s) for j, bar in enumerate(batch) for s in self._one_column_bar(bar)]
        return [(j, s) for j, bar in enumerate(batch) for s in self._on_scalar_bar(bar)]

    def on_bar(self, bar: Bar) -> list[TradeSignal]:
        """Feed one feed bar (usually 1m). Returns the signals of the timeframe bars it completed."""
        if self._mode == "columns":
            return self._one_column_bar(bar)
        return self._on_scalar_bar(bar)

    def _distinct(self, symbols: tuple[str, ...]) -> bool:
        known = self._unique.get(symbols)
        if known is None:
            if len(self._unique) > 1024:
                self._unique.clear()
            known = self._unique[symbols] = len(set(symbols)) == len(symbols)
        return known

    def _one_column_bar(self, bar: Bar) -> list[TradeSignal]:
        """One bar through the column state (a stray single bar once a replay has chosen columns)."""
        problem = bar_problem(bar)
        if problem is not None:
            self._reject(self._symbols.get(bar.symbol) if isinstance(bar.symbol, str) else None, bar, problem)
            return []
        return [s for _, s in self._on_columns(BarBatch.from_bars([bar]))]

    def _slots(self, symbols: tuple[str, ...]) -> list[_SymbolSlot | None]:
        if symbols is not self._slot_key:
            get = self._symbols.get
            self._slot_row = [get(s) for s in symbols]
            self._slot_gaps = None in self._slot_row
            self._slot_set = frozenset(symbols)
            self._slot_key = symbols
            # each symbol's row in the column state (the same in every timeframe's CloudColumns), -1: none yet
            self._slot_rows = np.array([slot.tracks[0].row if slot is not None else -1 for slot in self._slot_row],
                                       dtype=np.intp)
        return self._slot_row

    def _on_columns(self, batch: BarBatch) -> list[tuple[int, TradeSignal]]:
        symbols = batch.symbols
        slots = self._slots(symbols)
        dirty = self._dirty
        if dirty:  # the symbols of this step whose last bar completed something: that list starts afresh
            present = self._slot_set
            if present.issuperset(dirty):  # the usual case: every one of them is in this step
                for slot in dirty.values():
                    slot.completed.clear()
                dirty.clear()
            else:
                for symbol in [s for s in dirty if s in present]:
                    dirty.pop(symbol).completed.clear()
        o, h, low, c, v = batch.open, batch.high, batch.low, batch.close, batch.volume
        ts = batch.timestamp
        if batch.timeframe not in TIMEFRAME_SECONDS or not isinstance(ts, datetime) or ts.tzinfo is None:
            for j, bar in enumerate(batch):
                self._reject(slots[j], bar, bar_problem(bar) or "bar: malformed")
            return []
        if batch.checked:  # the reader proved every row good (stricter than these checks)
            ok, every = _ALL_GOOD, True
        else:
            ok = (0.0 < low) & (low <= h) & (h < _INF) & (0.0 < c) & (c < _INF) & (0.0 < o) & (o < _INF) \
                & (0.0 <= v) & (v < _INF)
            every = bool(ok.all())
        if not every:
            for j in np.flatnonzero(~ok).tolist():
                bar = batch.bar(j)
                self._reject(slots[j], bar, bar_problem(bar) or "bar: malformed")
        if self._slot_gaps:  # a symbol not seen before
            if ok is _ALL_GOOD:
                ok = np.ones(len(symbols), dtype=bool)
            created = False
            for j, slot in enumerate(slots):
                if slot is None and ok[j]:
                    symbol = symbols[j]
                    if not isinstance(symbol, str) or not symbol:
                        ok[j] = False
                        every = False
                        self._reject(None, batch.bar(j), "symbol: must be a non-empty string")
                        continue
                    self._new_slot(symbol)
                    created = True
            if created:
                self._slot_key = None
                slots = self._slots(symbols)
        if every:
            positions = np.arange(len(symbols), dtype=np.intp)
        else:
            positions = np.flatnonzero(ok)
            if positions.size == 0:
                return []
            o, h, low, c, v = o[positions], h[positions], low[positions], c[positions], v[positions]
        src = TIMEFRAME_SECONDS[batch.timeframe]
        # the bars completed in this step, as (timeframe index, kind, Completed); kind 0: emitted because a later
        # bar arrived, 1: completed by its last bar
        groups: list[tuple[int, int, Completed]] = []
        columns = self._columns or ()
        for i, agg in enumerate(self._aggregators):
            if src == agg.seconds:
                groups.append((i, 1, Completed(positions, batch.ts_ns, ts, o, h, low, c, v)))
                continue
            if src > agg.seconds:
                continue
            column = columns[i]
            assert column is not None
            rows = column.rows(symbols)
            previous, done = column.update(batch, positions, rows if every else rows[positions], o, h, low, c, v)
            if previous is not None:
                groups.append((i, 0, previous))
            if done is not None:
                groups.append((i, 1, done))
        if not groups:
            return []
        # (position, timeframe index, kind, signal): each track's bars in order (the groups go by timeframe,
        # then kind), the signals in batch order
        found: list[tuple[int, int, int, TradeSignal]] = []
        for i, kind, bars in groups:
            self._advance_columns(i, kind, bars, slots, symbols, found)
        if len(found) > 1:
            found.sort(key=_event_order)
        return [(j, signal) for j, _, _, signal in found]

    def _advance_columns(self, i: int, kind: int, bars: Completed, slots: list[_SymbolSlot | None],
                         symbols: tuple[str, ...], found: list[tuple[int, int, int, TradeSignal]]) -> None:
        """One timeframe's completed bars of a step through its column state (`CloudColumns.advance`), then the
        set-ups of the tracks that may have one, bar by bar."""
        clouds = self._clouds[i]
        track_rows = self._slot_rows[bars.positions]
        advanced = clouds.advance(track_rows, bars, self.warmup_bars if self.enabled else None)
        if advanced is None:
            return
        tf = self.timeframes[i]
        dirty = self._dirty
        for j in advanced.kept.positions.tolist():
            slot = slots[j]
            assert slot is not None
            completed = slot.completed
            if not completed or completed[-1] != tf:
                completed.append(tf)
                dirty[symbols[j]] = slot
        if not advanced.candidates:
            return
        positions = advanced.kept.positions
        agg = self._aggregators[i]
        for at, prev, fresh, rel_volume in advanced.candidates:
            track = advanced.tracks[at]
            cur = advanced.rows[at]
            setups = _setups(track, prev, cur, fresh)
            if setups:
                signal = self._best_signal(track, cur, setups, rel_volume, agg)
                if signal is not None:
                    found.append((int(positions[at]), i, kind, signal))

    def _on_scalar_bar(self, bar: Bar) -> list[TradeSignal]:
        try:
            slot = self._symbols.get(bar.symbol)
        except TypeError:  # unhashable symbol
            slot = None
        if slot is not None:
            slot.completed.clear()
        try:
            ok = (
                0.0 < bar.low <= bar.high < _INF and 0.0 < bar.close < _INF and 0.0 < bar.open < _INF
                and 0.0 <= bar.volume < _INF and bar.timeframe in TIMEFRAME_SECONDS
                and bar.timestamp.tzinfo is not None
            )
        except (TypeError, AttributeError):  # a non-number price, a non-datetime timestamp
            ok = False
        if not ok or slot is None:
            problem = bar_problem(bar) or (None if ok else "bar: malformed")
            if problem is not None:
                self._reject(slot, bar, problem)
                return []
            if slot is None:
                slot = self._new_slot(bar.symbol)
        signals: list[TradeSignal] = []
        tracks = slot.tracks
        for i, agg in enumerate(self._aggregators):
            for done in agg.update(bar):
                track = tracks[i]
                if track.last_ts is not None and done.timestamp <= track.last_ts:
                    continue
                if not slot.completed or slot.completed[-1] != agg.timeframe:
                    slot.completed.append(agg.timeframe)
                signal = self._on_completed(track, done.timestamp, done.open, done.high, done.low, done.close,
                                            done.volume, agg)
                if signal is not None:
                    signals.append(signal)
        return signals

    def _on_completed(self, track: _Track, when: datetime, o: float, h: float, low: float, c: float, v: float,
                      agg: BarAggregator) -> TradeSignal | None:
        """One completed `timeframe` bar (its open time and OHLCV) through the clouds and the set-ups."""
        rows = track.rows
        prev = rows[-1] if rows else None
        cur = track.update(when, o, h, low, c, v)
        fresh = self._advance_alignment(track, cur)
        if prev is None or not self.enabled or track.count <= self.warmup_bars:
            return None
        setups = _setups(track, prev, cur, fresh)
        if not setups:  # most bars
            return None
        return self._best_signal(track, cur, setups, track.rel_volume, agg)

    @staticmethod
    def _advance_alignment(track: _Track, cur: Row) -> int:
        """Update the alignment episode; returns +1/-1 on the bar a trend alignment (with price on its side)
        is first seen, else 0."""
        structure = _structure(cur)
        track.prev_align = track.align_dir
        if structure != track.align_dir:
            track.align_dir = structure
            track.align_fired = False
        if structure == 0 or track.align_fired:
            return 0
        c, ps, pl = cur[4], cur[8], cur[9]
        on_side = c > _hi(ps, pl) if structure > 0 else c < _lo(ps, pl)
        if not on_side:
            return 0
        track.align_fired = True
        return structure

    def _best_signal(
        self, track: _Track | ColumnTrack, cur: Row, setups: list[tuple[SignalType, int, float | None]],
        rel_volume: float, agg: BarAggregator,
    ) -> TradeSignal | None:
        """The strongest of the bar's set-ups (`_setups`) that has a stop, as a signal; None below
        `min_conviction`."""
        state = track.state(cur)  # the stop and conviction rules read a CloudState
        best: tuple[float, int, SignalType, int, float] | None = None
        for signal_type, direction, extreme in setups:
            stop = _stop(state, direction, extreme)
            if stop is None:
                continue
            conviction = _conviction(state, direction, track.align_dir, rel_volume)
            key = (conviction, _PRIORITY[signal_type], signal_type, direction, stop)
            if best is None or key[:2] > best[:2]:
                best = key
        if best is None or best[0] < self.min_conviction:
            return None
        conviction, _, signal_type, direction, stop = best
        return TradeSignal(
            signal_type=signal_type,
            direction=Direction.LONG if direction > 0 else Direction.SHORT,
            ticker=track.symbol,
            timeframe=track.timeframe,
            conviction=conviction,
            entry_price=state.close,
            stop_loss=stop,
            target_price=None,
            timestamp=agg.close_time_at(cur[0]),
            source="strategy",
            metadata={"relative_volume": round(rel_volume, 4), "setups": [str(s[0]) for s in setups]},
            strategy=self.name,
        )

    # ------------------------------------------------------------------ set-up and bad input
    def _new_slot(self, symbol: str) -> _SymbolSlot:
        tracks: list[Any]
        if self._clouds:  # the column path: each timeframe's track is a row of its CloudColumns
            tracks = [clouds.add(symbol) for clouds in self._clouds]
        else:
            tracks = [_Track(symbol, tf, self._spans, self._history, self._lookback) for tf in self.timeframes]
        slot = self._symbols[symbol] = _SymbolSlot(tracks)
        return slot

    def _reject(self, slot: _SymbolSlot | None, bar: Bar, problem: str) -> None:
        self.rejected_bars += 1
        count = 1
        if slot is not None:
            slot.rejected += 1
            count = slot.rejected
        if count == 1 or count % 1000 == 0:
            log.warning("bar_rejected", symbol=str(getattr(bar, "symbol", ""))[:32], problem=problem, count=count)

    # ------------------------------------------------------------------ accessors for the exit monitor
    def _track(self, symbol: str, timeframe: str) -> _Track | None:
        slot = self._symbols.get(symbol)
        i = self._index.get(timeframe)
        if slot is None or i is None:
            return None
        return slot.tracks[i]

    def cloud_state(self, symbol: str, timeframe: str) -> CloudState | None:
        """The cloud state of the latest completed `timeframe` bar of `symbol`, or None."""
        track = self._track(symbol, timeframe)
        return track.state(track.rows[-1]) if track is not None and track.rows else None

    def recent_states(self, symbol: str, timeframe: str, n: int) -> list[CloudState]:
        """Up to `n` latest cloud states, oldest first."""
        track = self._track(symbol, timeframe)
        return [track.state(row) for row in _tail(track.rows, n)] if track is not None else []

    def recent_bars(self, symbol: str, timeframe: str, n: int) -> list[Bar]:
        """Up to `n` latest completed `timeframe` bars, oldest first."""
        track = self._track(symbol, timeframe)
        return [track.bar(row) for row in _tail(track.rows, n)] if track is not None else []

    def completed_on_last_bar(self, symbol: str) -> list[str]:
        """Timeframes that completed a bar on the most recent `on_bar` call for `symbol`."""
        slot = self._symbols.get(symbol)
        return list(slot.completed) if slot is not None else []

    def close_time(self, bar: Bar) -> datetime:
        """When a completed bar closes (open + timeframe, cut at the session close; daily: the session close)."""
        i = self._index.get(bar.timeframe)
        agg = self._aggregators[i] if i is not None else BarAggregator(bar.timeframe)
        return agg.bar_close_time(bar)

    def bars_seen(self, symbol: str, timeframe: str) -> int:
        """How many completed `timeframe` bars of `symbol` have gone through the clouds."""
        track = self._track(symbol, timeframe)
        return track.count if track is not None else 0

    def is_warm(self, symbol: str, timeframe: str) -> bool:
        """True once signals can be emitted for (symbol, timeframe)."""
        return self.bars_seen(symbol, timeframe) > self.warmup_bars

    def warm_up_minutes(self) -> int:
        """Minutes of trading (1m bars) that complete enough bars of every timeframe to emit signals."""
        return max(TIMEFRAME_SECONDS[tf] for tf in self.timeframes) // 60 * (self.warmup_bars + 2)


def _event_order(event: tuple[int, int, int, Any]) -> tuple[int, int, int]:
    return event[0], event[1], event[2]


def _tail(items: deque, n: int) -> list:
    size = len(items)
    if n <= 0:
        return []
    return list(islice(items, max(0, size - n), size))


def bar_problem(bar: Bar) -> str | None:
    """Why a bar cannot be used, naming the field; None when it is fine. Cheap enough for every bar."""
    try:
        return _bar_fields_problem(bar)
    except (TypeError, AttributeError) as exc:  # a non-number price, a non-datetime timestamp...
        return f"bar: malformed ({exc})"


def _bar_fields_problem(bar: Bar) -> str | None:
    if not (0.0 < bar.low <= bar.high < _INF):
        return f"low/high: need 0 < low <= high, got low={bar.low!r} high={bar.high!r}"
    if not (0.0 < bar.close < _INF) or not (0.0 < bar.open < _INF):
        return f"open/close: must be finite positive prices, got open={bar.open!r} close={bar.close!r}"
    if not (0.0 <= bar.volume < _INF):
        return f"volume: must be finite and >= 0, got {bar.volume!r}"
    if bar.timeframe not in TIMEFRAME_SECONDS:
        return f"timeframe: unknown {str(bar.timeframe)[:20]!r}"
    ts = bar.timestamp
    if not isinstance(ts, datetime) or ts.tzinfo is None:
        return "timestamp: must be a timezone-aware datetime"
    if not isinstance(bar.symbol, str) or not bar.symbol:
        return "symbol: must be a non-empty string"
    return None
