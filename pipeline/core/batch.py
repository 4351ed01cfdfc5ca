"""BarBatch: one time step's bars held as columns (a replay's hot path), read as a sequence of `Bar`s elsewhere.

Every bar of a batch shares its timestamp and timeframe; the prices are float64 numpy columns and the symbols
a tuple, so a million-bar replay makes no Python object per field. Code that wants `Bar` objects (the paper
broker's resting orders, the exit checks of a held ticker, tests) indexes or iterates the batch: each `Bar`
is built on demand and equals the one the row-by-row reader would have built. Live feeds keep lists of
`Bar`s; `TradingEngine` and `EmaCloudStrategy` take both.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, overload

import numpy as np

from pipeline.core.models import Bar

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)


def to_ns(ts: datetime) -> int:
    """Nanoseconds since the epoch of an aware datetime (exact: datetimes hold microseconds)."""
    return (ts - EPOCH) // _US * 1000


def from_ns(ns: int) -> datetime:
    """The UTC datetime of epoch nanoseconds (microsecond precision, as every bar time has)."""
    return EPOCH + timedelta(microseconds=ns // 1000)


class BarBatch(Sequence[Bar]):
    """The bars of one time step as columns: `symbols[i]` has `open[i]`, ... `volume[i]` (float64 arrays)."""

    __slots__ = ("_closes", "_index", "checked", "close", "high", "low", "open", "symbols", "timeframe",
                 "timestamp", "ts_ns", "volume")

    def __init__(self, timestamp: datetime, timeframe: str, symbols: tuple[str, ...], open_: np.ndarray,
                 high: np.ndarray, low: np.ndarray, close: np.ndarray, volume: np.ndarray,
                 ts_ns: int | None = None, checked: bool = False) -> None:
        self.timestamp = timestamp
        # True when the reader proved every row good (0 < low <= open, close <= high < inf, 0 <= volume < inf,
        # distinct symbols): consumers may skip their own checks
        self.checked = checked
        self.ts_ns = to_ns(timestamp) if ts_ns is None else ts_ns
        self.timeframe = timeframe
        self.symbols = symbols
        self.open, self.high, self.low, self.close, self.volume = open_, high, low, close, volume
        self._closes: list[float] | None = None
        self._index: dict[str, int] | None = None

    @classmethod
    def from_bars(cls, bars: Sequence[Bar]) -> BarBatch:
        """Columns of bars that share one timestamp and timeframe (a live or synthetic batch)."""
        first = bars[0]
        cols = np.array([(b.open, b.high, b.low, b.close, b.volume) for b in bars], dtype=np.float64).T
        return cls(first.timestamp, first.timeframe, tuple(b.symbol for b in bars), cols[0], cols[1], cols[2],
                   cols[3], cols[4])

    def closes(self) -> list[float]:
        """The closes as Python floats, built once per batch."""
        if self._closes is None:
            self._closes = self.close.tolist()
        return self._closes

    def position(self, symbol: str) -> int | None:
        """Where `symbol` sits in the batch, or None."""
        if self._index is None:
            self._index = {s: i for i, s in enumerate(self.symbols)}
        return self._index.get(symbol)

    def bar(self, i: int) -> Bar:
        return Bar(self.symbols[i], self.timestamp, float(self.open[i]), float(self.high[i]), float(self.low[i]),
                   float(self.close[i]), float(self.volume[i]), self.timeframe)

    def __len__(self) -> int:
        return len(self.symbols)

    @overload
    def __getitem__(self, i: int) -> Bar: ...

    @overload
    def __getitem__(self, i: slice) -> list[Bar]: ...

    def __getitem__(self, i: int | slice) -> Bar | list[Bar]:
        if isinstance(i, slice):
            return [self.bar(j) for j in range(*i.indices(len(self.symbols)))]
        n = len(self.symbols)
        if not -n <= i < n:
            raise IndexError("BarBatch index out of range")
        return self.bar(i % n)

    def __iter__(self) -> Iterator[Bar]:
        ts, tf = self.timestamp, self.timeframe
        for s, o, h, low, c, v in zip(self.symbols, self.open.tolist(), self.high.tolist(), self.low.tolist(),
                                      self.close.tolist(), self.volume.tolist(), strict=True):
            yield Bar(s, ts, o, h, low, c, v, tf)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (BarBatch, list, tuple)):
            return list(self) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"BarBatch({self.timestamp.isoformat()}, {self.timeframe}, {len(self.symbols)} bars)"


def as_columns(batch: Sequence[Bar] | Any) -> BarBatch:
    """A batch as columns: a BarBatch as it is, a list of bars converted."""
    return batch if isinstance(batch, BarBatch) else BarBatch.from_bars(batch)


__all__ = ["BarBatch", "as_columns", "from_ns", "to_ns"]
