"""CloudColumns: the tracks of one timeframe on a replay's column path, their state as numpy columns.

A track (one symbol on one timeframe) keeps, for each completed bar, what `ema_cloud._Track.update` and
`EmaCloudStrategy._advance_alignment` keep: the six EMAs, the relative volume against the last `lookback`
volumes, the count of bars, and the trend-alignment episode. Here those live in columns, one row per track, so
the bars a time step completes for many symbols advance them with a handful of array operations
(`advance`) instead of a Python call chain per bar. The arithmetic is the scalar path's, operation for
operation in float64 (beta * ema + alpha * close; the volume sum less the oldest, plus the newest; an exact
`math.fsum` every 1024 bars), so every value equals the scalar path's to the bit. Each track still keeps its
history as `Row` tuples in a deque (the rules and the exit monitor read those).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from datetime import datetime
from itertools import repeat
from typing import NamedTuple

import numpy as np

from pipeline.core.models import Bar, CloudState
from pipeline.strategy.rescale import split_rows

NO_TIME = np.iinfo(np.int64).min


class Completed(NamedTuple):
    """Bars completed in one time step for several symbols: their positions in the batch, open times (`stamp_ns`
    one int when they share it, else one per bar; `stamps` the same as datetimes) and OHLCV columns."""

    positions: np.ndarray
    stamp_ns: int | np.ndarray
    stamps: datetime | list[datetime]
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray

    def take(self, keep: np.ndarray) -> Completed:
        """The bars where `keep` (a bool mask) holds."""
        stamps = self.stamps if isinstance(self.stamps, datetime) else \
            [s for s, k in zip(self.stamps, keep.tolist(), strict=True) if k]
        stamp_ns = self.stamp_ns[keep] if isinstance(self.stamp_ns, np.ndarray) else self.stamp_ns
        return Completed(self.positions[keep], stamp_ns, stamps, self.open[keep], self.high[keep], self.low[keep],
                         self.close[keep], self.volume[keep])


class Advanced(NamedTuple):
    """What `CloudColumns.advance` did: the bars it took (`kept`, as a `Completed`), their tracks, the row each
    appended, and the set-up candidates (index into the kept bars, the row before, that bar's fresh alignment,
    its relative volume)."""

    kept: Completed
    tracks: list[ColumnTrack]
    rows: list[tuple]
    candidates: list[tuple[int, tuple, int, float]]


def row_state(symbol: str, timeframe: str, row: tuple) -> CloudState:
    """The `CloudState` of a track's row of history."""
    return CloudState(symbol, timeframe, row[0], row[4], row[6], row[7], row[8], row[9], row[10], row[11])


def row_bar(symbol: str, timeframe: str, row: tuple) -> Bar:
    """The completed `Bar` of a track's row of history."""
    return Bar(symbol, row[0], row[1], row[2], row[3], row[4], row[5], timeframe)


class ColumnTrack:
    """One (symbol, timeframe) of a `CloudColumns`: its rows of history, and its scalars read from the columns
    (the attributes `ema_cloud._Track` has)."""

    __slots__ = ("_columns", "row", "rows", "symbol", "timeframe")

    def __init__(self, columns: CloudColumns, row: int, symbol: str, timeframe: str, history: int) -> None:
        self._columns = columns
        self.row = row
        self.symbol = symbol
        self.timeframe = timeframe
        self.rows: deque[tuple] = deque(maxlen=history)

    def state(self, row: tuple) -> CloudState:
        return row_state(self.symbol, self.timeframe, row)

    def bar(self, row: tuple) -> Bar:
        return row_bar(self.symbol, self.timeframe, row)

    def rescale(self, ratio: float) -> None:
        """Its rows of history and its row of the columns after a `ratio` split (`CloudColumns.rescale_row`)."""
        split_rows(self.rows, ratio)
        self._columns.rescale_row(self.row, ratio)

    @property
    def count(self) -> int:
        return int(self._columns.count[self.row])

    @property
    def last_ts(self) -> datetime | None:
        return self.rows[-1][0] if self.rows else None

    @property
    def rel_volume(self) -> float:
        return float(self._columns.rel_volume[self.row])

    @property
    def align_dir(self) -> int:
        return int(self._columns.align_dir[self.row])

    @property
    def prev_align(self) -> int:
        return int(self._columns.prev_align[self.row])

    @property
    def align_fired(self) -> bool:
        return bool(self._columns.align_fired[self.row])


class CloudColumns:
    """The column state of every track of one timeframe (see the module docstring)."""

    def __init__(self, timeframe: str, spans: tuple[int, ...], lookback: int, history: int) -> None:
        if len(spans) != 6:
            raise ValueError(f"spans: need six EMA spans (three clouds), got {len(spans)}")
        if lookback < 1:
            raise ValueError(f"lookback: must be at least 1, got {lookback}")
        alphas = [2.0 / (s + 1.0) for s in spans]
        self._alpha = np.array(alphas, dtype=np.float64)
        self._beta = np.array([1.0 - a for a in alphas], dtype=np.float64)
        self.timeframe = timeframe
        self.lookback = lookback
        self.history = history
        self.tracks: list[ColumnTrack] = []
        self._cap = 0
        self._grow(64)

    def _grow(self, cap: int) -> None:
        def more(name: str, shape: tuple[int, ...], fill: float | int | bool, dtype: type) -> None:
            new = np.full(shape, fill, dtype=dtype)
            old = getattr(self, name, None)
            if old is not None:
                new[: old.shape[0]] = old
            setattr(self, name, new)

        more("ema", (cap, 6), 0.0, np.float64)
        more("count", (cap,), 0, np.int64)
        more("vols", (cap, self.lookback), 0.0, np.float64)
        more("vol_len", (cap,), 0, np.int64)
        more("vol_head", (cap,), 0, np.int64)
        more("vol_sum", (cap,), 0.0, np.float64)
        more("vol_n", (cap,), 0, np.int64)
        more("rel_volume", (cap,), 1.0, np.float64)
        more("align_dir", (cap,), 0, np.int64)
        more("prev_align", (cap,), 0, np.int64)
        more("align_fired", (cap,), False, np.bool_)
        more("last_ns", (cap,), NO_TIME, np.int64)
        more("last_high", (cap,), 0.0, np.float64)
        more("last_low", (cap,), 0.0, np.float64)
        more("last_close", (cap,), 0.0, np.float64)
        self._cap = cap

    def add(self, symbol: str) -> ColumnTrack:
        """A new track (the next row)."""
        row = len(self.tracks)
        if row >= self._cap:
            self._grow(self._cap * 2)
        track = ColumnTrack(self, row, symbol, self.timeframe, self.history)
        self.tracks.append(track)
        return track

    def rescale_row(self, row: int, ratio: float) -> None:
        """One track's prices (its EMAs, the last bar's high, low and close) divided by `ratio`, its volumes (the
        window and its sum) multiplied by it: a `ratio` split. The relative volume, a ratio of volumes, stays."""
        self.ema[row] /= ratio
        self.last_high[row] /= ratio
        self.last_low[row] /= ratio
        self.last_close[row] /= ratio
        self.vols[row] *= ratio
        self.vol_sum[row] *= ratio

    def advance(self, rows: np.ndarray, bars: Completed, setups_from: int | None) -> Advanced | None:
        """Advance the tracks `rows` (distinct) by one completed bar each (`bars`, in the same order); a bar not
        after its track's last one is dropped. `setups_from`: the count of bars a track must exceed to look for
        set-ups (None: no set-ups, the strategy is off). None when every bar was dropped."""
        stamp_ns = bars.stamp_ns
        later = stamp_ns > self.last_ns[rows]
        if not later.all():
            if not later.any():
                return None
            bars = bars.take(later)
            rows = rows[later]
            stamp_ns = bars.stamp_ns
        o, h, low, c, v = bars.open, bars.high, bars.low, bars.close, bars.volume
        # the volume window: the relative volume of this bar against the window before it, then the window moves
        n = self.vol_len[rows]
        total = self.vol_sum[rows]
        with np.errstate(divide="ignore", invalid="ignore"):
            rel = v * n / total
        rel[(n == 0) | (total <= 0.0)] = 1.0
        full = n == self.lookback
        heads = self.vol_head[rows]
        if full.any():
            total = np.where(full, total - self.vols[rows, heads], total)
        self.vols[rows, heads] = v
        self.vol_head[rows] = (heads + 1) % self.lookback
        self.vol_len[rows] = np.minimum(n + 1, self.lookback)
        total = total + v
        counted = self.vol_n[rows] + 1
        self.vol_n[rows] = counted
        wipe = (counted & 1023) == 0
        if wipe.any():  # the exact sum now and then, as the scalar path does
            for at in np.flatnonzero(wipe).tolist():
                row = int(rows[at])
                total[at] = math.fsum(self.vols[row, : int(self.vol_len[row])].tolist())
        self.vol_sum[rows] = total
        self.rel_volume[rows] = rel
        # the six EMAs: the first bar seeds them
        before = self.count[rows]
        old = self.ema[rows]
        emas = self._beta * old + self._alpha * c[:, None]
        first = before == 0
        if first.any():
            emas[first] = c[first, None]
        self.ema[rows] = emas
        self.count[rows] = before + 1
        # the alignment episode (EmaCloudStrategy._advance_alignment)
        fs, fl, ps, pl, ts, tl = emas.T
        structure = ((fs > fl) & (ps > pl) & (ts > tl) & (fl > ts) & (pl > ts)).astype(np.int64) - \
            ((fs < fl) & (ps < pl) & (ts < tl) & (fl < ts) & (pl < ts)).astype(np.int64)
        align = self.align_dir[rows]
        self.prev_align[rows] = align
        fired = self.align_fired[rows] & (structure == align)
        self.align_dir[rows] = structure
        on_side = np.where(structure > 0, c > np.maximum(ps, pl), c < np.minimum(ps, pl))
        fresh = (structure != 0) & ~fired & on_side
        self.align_fired[rows] = fired | fresh
        # the rows of history
        stamps: Iterable[datetime] = repeat(bars.stamps) if isinstance(bars.stamps, datetime) else bars.stamps
        cur_rows = list(zip(stamps, o.tolist(), h.tolist(), low.tolist(), c.tolist(), v.tolist(),
                            *emas.T.tolist(), strict=False))
        track_list = self.tracks
        tracks = [track_list[r] for r in rows.tolist()]
        candidates: list[tuple[int, tuple, int, float]] = []
        if setups_from is not None:
            look = (before > 0) & (before + 1 > setups_from)
            if look.any():
                maybe = look & self._maybe_setups(rows, old, emas, c, structure, align, fresh)
                if maybe.any():
                    fresh_dir = np.where(fresh, structure, 0)
                    for at in np.flatnonzero(maybe).tolist():
                        candidates.append((at, tracks[at].rows[-1], int(fresh_dir[at]), float(rel[at])))
        for track, row in zip(tracks, cur_rows, strict=True):
            track.rows.append(row)
        self.last_ns[rows] = stamp_ns
        self.last_high[rows] = h
        self.last_low[rows] = low
        self.last_close[rows] = c
        return Advanced(bars, tracks, cur_rows, candidates)

    def _maybe_setups(self, rows: np.ndarray, previous: np.ndarray, emas: np.ndarray, c: np.ndarray,
                      structure: np.ndarray, align_before: np.ndarray, fresh: np.ndarray) -> np.ndarray:
        """Where `ema_cloud._setups` can find a set-up on this bar (the same comparisons, over the columns: the
        rule itself then decides, bar by bar, for these only)."""
        p_high, p_low, pc = self.last_high[rows], self.last_low[rows], self.last_close[rows]
        p_fs, p_fl, p_ps, p_pl, p_a, p_b = previous.T
        fs, fl, ps, pl, a, b = emas.T
        p_tr_hi, p_tr_lo = np.maximum(p_a, p_b), np.minimum(p_a, p_b)
        tr_hi, tr_lo = np.maximum(a, b), np.minimum(a, b)
        cross = ((pc <= p_tr_hi) & (c > tr_hi)) | ((pc >= p_tr_lo) & (c < tr_lo))
        flip = (p_fs >= p_fl) != (fs >= fl)
        top, bottom = np.maximum(p_ps, p_pl), np.minimum(p_ps, p_pl)
        long_pull = (structure > 0) & (align_before > 0) & (p_low <= top) & (pc <= top) & (c > np.maximum(ps, pl))
        short_pull = (structure < 0) & (align_before < 0) & (p_high >= bottom) & (pc >= bottom) & \
            (c < np.minimum(ps, pl))
        return cross | flip | fresh | long_pull | short_pull
