"""ColumnAggregator: `BarAggregator`'s intraday buckets for a whole time step at once (numpy over the symbols).

The buckets being built are numpy columns, one row per symbol; a `BarBatch` (all bars at one timestamp)
updates them with a handful of array operations instead of a Python call per bar. The rules are
`BarAggregator.update`'s, bar for bar: a bar inside its symbol's active bucket merges (late or repeated bars
are dropped), a bar past it emits the bucket and opens the next one, and a bucket is emitted as soon as a
bar ending at its end arrives. The emitted `Bar`s carry the same floats the row-by-row aggregator would
compute (max/min/sum in float64, in the same order). Daily targets stay with `BarAggregator`.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np

from pipeline.core.batch import BarBatch, from_ns, to_ns
from pipeline.core.calendar import MarketCalendar
from pipeline.core.models import TIMEFRAME_SECONDS, Bar
from pipeline.strategy.cloud_columns import Completed

_NONE = np.iinfo(np.int64).min
_STAMP_CACHE = 256


class ColumnAggregator:
    """Intraday `timeframe` buckets of many symbols as numpy columns (see the module docstring)."""

    __slots__ = ("_cap", "_hours", "_last_rows", "_last_symbols", "_rows", "_span", "_stamps", "_uniform", "active",
                 "close", "end", "high", "last", "low", "names", "open", "seconds", "stamp", "timeframe", "volume")

    def __init__(self, timeframe: str, calendar: MarketCalendar | None = None) -> None:
        self.seconds = TIMEFRAME_SECONDS[timeframe]
        if self.seconds >= TIMEFRAME_SECONDS["1d"]:
            raise ValueError("ColumnAggregator: intraday timeframes only (daily buckets stay with BarAggregator)")
        self.timeframe = timeframe
        from pipeline.strategy.ema_cloud import SessionHours  # the one session-bucket rule

        self._hours = SessionHours(calendar)
        self._rows: dict[str, int] = {}
        self.names: list[str] = []
        self._cap = 0
        self._last_symbols: tuple[str, ...] | None = None
        self._last_rows = np.empty(0, dtype=np.intp)
        self._span: slice | None = None  # the rows of the cached symbols, when they are one contiguous range
        self._stamps: dict[int, datetime] = {}
        # when every row of `_span` is in one state (a replay whose symbols all trade each step): (active, stamp,
        # end, last) of them all, so a step checks four scalars instead of four columns; None otherwise
        self._uniform: tuple[bool, int, int, int] | None = None
        self._grow(64)

    def _grow(self, cap: int) -> None:
        def more(old: np.ndarray | None, fill: float | int | bool, dtype: type) -> np.ndarray:
            new = np.full(cap, fill, dtype=dtype)
            if old is not None:
                new[: old.size] = old
            return new

        first = self._cap == 0
        self.active = more(None if first else self.active, False, np.bool_)
        self.stamp = more(None if first else self.stamp, _NONE, np.int64)
        self.end = more(None if first else self.end, _NONE, np.int64)
        self.last = more(None if first else self.last, _NONE, np.int64)
        self.open = more(None if first else self.open, 0.0, np.float64)
        self.high = more(None if first else self.high, 0.0, np.float64)
        self.low = more(None if first else self.low, 0.0, np.float64)
        self.close = more(None if first else self.close, 0.0, np.float64)
        self.volume = more(None if first else self.volume, 0.0, np.float64)
        self._cap = cap

    def rows(self, symbols: tuple[str, ...]) -> np.ndarray:
        """The row of each symbol (new symbols get one); cached for the same tuple (a replay's usual case)."""
        if symbols is self._last_symbols:
            return self._last_rows
        table = self._rows
        out = np.empty(len(symbols), dtype=np.intp)
        for i, s in enumerate(symbols):
            row = table.get(s)
            if row is None:
                row = table[s] = len(self.names)
                self.names.append(s)
                if row >= self._cap:
                    self._grow(self._cap * 2)
            out[i] = row
        self._last_symbols, self._last_rows = symbols, out
        self._uniform = None
        first = int(out[0]) if out.size else 0
        self._span = slice(first, first + out.size) if out.size and bool(
            (out == np.arange(first, first + out.size)).all()) else None
        return out

    def _stamp(self, ns: int) -> datetime:
        ts = self._stamps.get(ns)
        if ts is None:
            if len(self._stamps) >= _STAMP_CACHE:
                self._stamps.clear()
            ts = self._stamps[ns] = from_ns(ns)
        return ts

    def _bars(self, rows: np.ndarray | slice, positions: np.ndarray, stamp: int | None = None) -> Completed:
        """The buckets of `rows` as `Completed` (`stamp`: the open time they all share, when known)."""
        if stamp is not None:
            stamp_ns: int | np.ndarray = stamp
            stamps: datetime | list[datetime] = self._stamp(stamp)
        else:
            stamp_ns = self.stamp[rows]
            stamps = list(map(self._stamp, stamp_ns.tolist()))
        if isinstance(rows, slice):  # copies: the columns of a span are views the next bucket overwrites
            return Completed(positions, stamp_ns, stamps, self.open[rows].copy(), self.high[rows].copy(),
                             self.low[rows].copy(), self.close[rows].copy(), self.volume[rows].copy())
        return Completed(positions, stamp_ns, stamps, self.open[rows], self.high[rows], self.low[rows],
                         self.close[rows], self.volume[rows])

    def update(self, batch: BarBatch, positions: np.ndarray, rows: np.ndarray, o: np.ndarray, h: np.ndarray,
               low: np.ndarray, c: np.ndarray, v: np.ndarray) -> tuple[Completed | None, Completed | None]:
        """Feed the bars at `positions` of a batch (their rows and prices given; each row at most once).
        Returns (buckets emitted because a later bar arrived, buckets completed by these bars), each a
        `Completed` or None; a position may be in both (the previous bucket first)."""
        ts = batch.ts_ns
        src_ns = TIMEFRAME_SECONDS[batch.timeframe] * 1_000_000_000
        span = self._span
        if span is not None and rows is self._last_rows:  # every symbol of the cached tuple, nothing else
            uniform = self._uniform
            if uniform is not None:
                done = self._uniform_step(uniform, span, batch, ts, src_ns, rows, positions, o, h, low, c, v)
                if done is not None:
                    return done
            else:  # every symbol merges into its bucket?
                end = self.end[span]
                if bool((ts < end).all()) and bool(self.active[span].all()) and bool((ts > self.last[span]).all()) \
                        and bool((ts >= self.stamp[span]).all()):
                    self._merge_span(span, ts, h, low, c, v)
                    finished = ts + src_ns >= end
                    if not finished.any():
                        return None, None
                    dr, dp = rows[finished], positions[finished]
                    self.active[dr] = False
                    return None, self._bars(dr, dp)
        self._uniform = None
        end = self.end[rows]
        inside = ts < end
        new = ~inside
        done_rows: list[np.ndarray] = []
        done_pos: list[np.ndarray] = []
        if inside.any():
            merge = inside & self.active[rows] & (ts > self.last[rows]) & (ts >= self.stamp[rows])
            if merge.any():
                mr = rows[merge]
                self.last[mr] = ts
                self.high[mr] = np.maximum(self.high[mr], h[merge])
                self.low[mr] = np.minimum(self.low[mr], low[merge])
                self.close[mr] = c[merge]
                self.volume[mr] = self.volume[mr] + v[merge]
                finished = ts + src_ns >= end[merge]
                if finished.any():
                    done_rows.append(mr[finished])
                    done_pos.append(positions[merge][finished])
        previous: Completed | None = None
        if new.any():
            nr = rows[new]
            was = self.active[nr]
            if was.any():
                previous = self._bars(nr[was], positions[new][was])
            self.active[nr] = True
            s_ns, e_ns = self._open_bucket(nr, batch, ts, o[new], h[new], low[new], c[new], v[new])
            if ts + src_ns >= e_ns:
                done_rows.append(nr)
                done_pos.append(positions[new])
        if span is not None and rows is self._last_rows and not inside.any():  # the whole span opened as one
            self._uniform = (ts + src_ns < e_ns, s_ns, e_ns, ts)
        if not done_rows:
            return previous, None
        dr = done_rows[0] if len(done_rows) == 1 else np.concatenate(done_rows)
        dp = done_pos[0] if len(done_pos) == 1 else np.concatenate(done_pos)
        self.active[dr] = False
        return previous, self._bars(dr, dp)

    def _open_bucket(self, index: np.ndarray | slice, batch: BarBatch, ts: int, o: np.ndarray, h: np.ndarray,
                     low: np.ndarray, c: np.ndarray, v: np.ndarray) -> tuple[int, int]:
        """Start the rows at `index` (rows or a span) on the bucket holding `batch`'s time with these bars' values;
        the bucket's (start, end) in ns."""
        start, stop = self._hours.intraday_bucket(batch.timestamp, self.seconds)
        s_ns, e_ns = to_ns(start), to_ns(stop)
        self._stamps.setdefault(s_ns, start)
        self.stamp[index] = s_ns
        self.end[index] = e_ns
        self.last[index] = ts
        self.open[index] = o
        self.high[index] = h
        self.low[index] = low
        self.close[index] = c
        self.volume[index] = v
        return s_ns, e_ns

    def _merge_span(self, span: slice, ts: int, h: np.ndarray, low: np.ndarray, c: np.ndarray, v: np.ndarray) -> None:
        self.last[span] = ts
        high, low_col, volume = self.high[span], self.low[span], self.volume[span]
        np.maximum(high, h, out=high)
        np.minimum(low_col, low, out=low_col)
        self.close[span] = c
        np.add(volume, v, out=volume)

    def _uniform_step(self, uniform: tuple[bool, int, int, int], span: slice, batch: BarBatch, ts: int, src_ns: int,
                      rows: np.ndarray, positions: np.ndarray, o: np.ndarray, h: np.ndarray, low: np.ndarray,
                      c: np.ndarray, v: np.ndarray) -> tuple[Completed | None, Completed | None] | None:
        """`update` of a span whose rows share one state: the same rules, decided once for all of them (the
        columns are kept exactly as the general path keeps them). None when the step is not one of the two
        usual cases (all merge, all open a new bucket): the general path takes it."""
        active, s_ns, e_ns, last_ns = uniform
        if ts < e_ns:
            if not (active and ts > last_ns and ts >= s_ns):
                return None
            self._merge_span(span, ts, h, low, c, v)
            if ts + src_ns < e_ns:
                self._uniform = (True, s_ns, e_ns, ts)
                return None, None
            self.active[span] = False
            self._uniform = (False, s_ns, e_ns, ts)
            return None, self._bars(span, positions, s_ns)
        previous = self._bars(span, positions, uniform[1]) if active else None
        s_ns, e_ns = self._open_bucket(span, batch, ts, o, h, low, c, v)
        if ts + src_ns >= e_ns:
            self.active[span] = False
            self._uniform = (False, s_ns, e_ns, ts)
            return previous, self._bars(span, positions, s_ns)
        self.active[span] = True
        self._uniform = (True, s_ns, e_ns, ts)
        return previous, None

    def rescale(self, symbol: str, ratio: float) -> bool:
        """The bucket being built for `symbol` after a `ratio` split: prices divided by it, the volume multiplied.
        False when it has no row here."""
        row = self._rows.get(symbol)
        if row is None:
            return False
        for column in (self.open, self.high, self.low, self.close):
            column[row] /= ratio
        self.volume[row] *= ratio
        return True

    def flush(self, symbol: str) -> Bar | None:
        """Emit the unfinished bucket of `symbol` now (end of a replay), if there is one."""
        row = self._rows.get(symbol)
        if row is None or not self.active[row]:
            return None
        self._uniform = None
        self.active[row] = False
        rows = np.array([row], dtype=np.intp)
        done = self._bars(rows, rows)
        return Bar(symbol, done.stamps[0], float(done.open[0]), float(done.high[0]), float(done.low[0]),
                   float(done.close[0]), float(done.volume[0]), self.timeframe)
