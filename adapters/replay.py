"""ReplayFeed: bars from a CSV file (`timestamp,symbol,open,high,low,close,volume`, header required).

Timestamps are ISO 8601 with a zone or epoch seconds. The file is streamed: rows are read one at a time and
yielded as batches of the bars that share a timestamp, so a million-bar file never sits in memory as Bar
objects (a file grouped by symbol rather than sorted by time is detected on a sample and sorted in memory).
The bar interval is inferred from the most common gap between a symbol's bars unless given. Bad rows are
never trusted: they are skipped and reported in `problems` with their line number, and the replay goes on.
"""

from __future__ import annotations

import asyncio
import csv
import math
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TextIO

from pipeline.calendar import MarketCalendar, default_calendar
from pipeline.clock import SimulatedClock
from pipeline.models import TIMEFRAME_SECONDS, Bar

COLUMNS = ("timestamp", "symbol", "open", "high", "low", "close", "volume")
SAMPLE_ROWS = 5000
MAX_STORED_PROBLEMS = 10_000
YIELD_EVERY_BATCHES = 256
_MAX_EPOCH_SECONDS = 1e11  # beyond year 5000: almost surely milliseconds
_DAILY_GAP_SECONDS = 20 * 3600


class ReplayError(ValueError):
    """The replay file as a whole cannot be used (missing, no header, missing columns, bad timeframe)."""


@dataclass(frozen=True, slots=True)
class ReplayProblem:
    """A row that was skipped, and why. `line` is the 1-based line of the file (the header is line 1)."""

    line: int
    reason: str


class _BadRow(ValueError):
    """A row that cannot be trusted (internal)."""


Row = tuple[datetime, str, float, float, float, float, float]


class _Parser:
    """Turns CSV rows into checked tuples; remembers the last timestamp text (rows of one time step repeat it)."""

    def __init__(self, header: list[str], path: Path) -> None:
        names = [h.strip().lower() for h in header]
        missing = [c for c in COLUMNS if c not in names]
        if missing:
            raise ReplayError(
                f"replay file {path}: header must name the columns {', '.join(COLUMNS)}; missing {', '.join(missing)}"
                f" (first line was {','.join(header)[:120]!r})"
            )
        self.index = [names.index(c) for c in COLUMNS]
        self.width = len(names)
        self._last_text: str | None = None
        self._last_ts: datetime | None = None

    def parse(self, row: list[str]) -> Row:
        """A checked row; raises _BadRow naming the problem. Fast path first, the careful one to explain."""
        if len(row) < self.width:
            raise _BadRow(f"expected {self.width} fields, got {len(row)}")
        i_ts, i_sym, i_o, i_h, i_l, i_c, i_v = self.index
        ts = self._timestamp(row[i_ts].strip())
        symbol = row[i_sym].strip()
        try:
            o, h, low, c, v = float(row[i_o]), float(row[i_h]), float(row[i_l]), float(row[i_c]), float(row[i_v])
        except ValueError:
            return self._explain(ts, symbol, row)
        # NaN fails every comparison, so it takes the careful path too
        if symbol and 0.0 < low <= o <= h < math.inf and low <= c <= h and 0.0 <= v < math.inf:
            return ts, symbol, o, h, low, c, v
        return self._explain(ts, symbol, row)

    def _explain(self, ts: datetime, symbol: str, row: list[str]) -> Row:
        _, _, i_o, i_h, i_l, i_c, i_v = self.index
        if not symbol:
            raise _BadRow("symbol: empty")
        o = _price(row[i_o], "open")
        h = _price(row[i_h], "high")
        low = _price(row[i_l], "low")
        c = _price(row[i_c], "close")
        volume = _number(row[i_v], "volume")
        if volume < 0:
            raise _BadRow(f"volume: negative ({volume})")
        if h < low:
            raise _BadRow(f"high < low ({h} < {low})")
        if not low <= o <= h:
            raise _BadRow(f"open {o} outside [low {low}, high {h}]")
        if not low <= c <= h:
            raise _BadRow(f"close {c} outside [low {low}, high {h}]")
        return ts, symbol, o, h, low, c, volume

    def _timestamp(self, text: str) -> datetime:
        if text == self._last_text and self._last_ts is not None:
            return self._last_ts
        ts = parse_timestamp(text)
        self._last_text, self._last_ts = text, ts
        return ts


def parse_timestamp(text: str) -> datetime:
    """ISO 8601 with a zone, or epoch seconds -> UTC datetime. Raises ValueError naming the problem."""
    if not text:
        raise _BadRow("timestamp: empty")
    if text[0] in "0123456789" and ("-" not in text and ":" not in text):
        try:
            seconds = float(text)
        except ValueError:
            raise _BadRow(f"timestamp: {text[:40]!r} is neither ISO 8601 nor epoch seconds") from None
        if not math.isfinite(seconds) or not 0 <= seconds < _MAX_EPOCH_SECONDS:
            raise _BadRow(f"timestamp: epoch {text[:40]!r} out of range (epoch seconds expected, not milliseconds)")
        return datetime.fromtimestamp(seconds, UTC)
    try:
        ts = datetime.fromisoformat(text)
    except ValueError:
        raise _BadRow(f"timestamp: {text[:40]!r} is neither ISO 8601 nor epoch seconds") from None
    if ts.tzinfo is None:
        raise _BadRow(f"timestamp: {text[:40]!r} has no time zone (use Z or an offset)")
    return ts.astimezone(UTC)


def _number(text: str, name: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise _BadRow(f"{name}: {text.strip()[:30]!r} is not a number") from None
    if not math.isfinite(value):
        raise _BadRow(f"{name}: not finite ({text.strip()[:30]})")
    return value


def _price(text: str, name: str) -> float:
    value = _number(text, name)
    if value <= 0:
        raise _BadRow(f"{name}: non-positive price ({value})")
    return value


def _open(path: Path) -> tuple[TextIO, Iterator[list[str]], _Parser]:
    try:
        fh = path.open(newline="", encoding="utf-8")
    except FileNotFoundError:
        raise ReplayError(f"replay file {path} does not exist") from None
    except OSError as exc:
        raise ReplayError(f"replay file {path} cannot be read: {exc}") from None
    reader = csv.reader(fh)
    header = next(reader, None)
    if not header:
        fh.close()
        raise ReplayError(f"replay file {path} is empty (a header {','.join(COLUMNS)} is required)")
    try:
        parser = _Parser(header, path)
    except ReplayError:
        fh.close()
        raise
    return fh, reader, parser


def timeframe_for_gap(seconds: float) -> str:
    """The timeframe name of a bar interval: exact match, '1d' for a day or more, else the nearest."""
    if seconds >= _DAILY_GAP_SECONDS:
        return "1d"
    for name, length in TIMEFRAME_SECONDS.items():
        if length == seconds:
            return name
    return min(TIMEFRAME_SECONDS, key=lambda name: abs(math.log(TIMEFRAME_SECONDS[name] / max(seconds, 1.0))))


@dataclass(slots=True)
class _Sample:
    timeframe: str | None
    time_sorted: bool


def _sample(path: Path, rows: int = SAMPLE_ROWS) -> _Sample:
    """Look at the first rows: the most common gap between a symbol's bars, and whether the file is time-sorted."""
    fh, reader, parser = _open(path)
    gaps: Counter[float] = Counter()
    last: dict[str, datetime] = {}
    newest: datetime | None = None
    time_sorted = True
    with fh:
        for count, row in enumerate(reader):
            if count >= rows:
                break
            if not row:
                continue
            try:
                ts, symbol, *_ = parser.parse(row)
            except _BadRow:
                continue
            previous = last.get(symbol)
            if previous is not None and ts > previous:
                gaps[(ts - previous).total_seconds()] += 1
            if previous is None or ts > previous:
                last[symbol] = ts
            if newest is not None and ts < newest:
                time_sorted = False
            newest = ts if newest is None or ts > newest else newest
    if not gaps:
        return _Sample(None, time_sorted)
    gap = max(gaps.items(), key=lambda item: (item[1], -item[0]))[0]
    return _Sample(timeframe_for_gap(gap), time_sorted)


def infer_timeframe(path: str | Path) -> str | None:
    """The bar interval of a replay file from its first rows ('1m', '5m', '1d', ...), or None if undecidable."""
    return _sample(Path(path)).timeframe


class _Reader:
    """Reads a replay file into batches, collecting problems (shared by ReplayFeed and load_bars)."""

    def __init__(self, path: Path, timeframe: str | None) -> None:
        self.path = path
        self.problems: list[ReplayProblem] = []
        self.problem_count = 0
        self.bars_read = 0
        sample = _sample(path)
        self.time_sorted = sample.time_sorted
        if timeframe is None:
            if sample.timeframe is None:
                self._problem(0, "bar interval could not be inferred (fewer than two bars per symbol); assuming 1m")
            timeframe = sample.timeframe or "1m"
        self.timeframe = timeframe

    def _problem(self, line: int, reason: str) -> None:
        self.problem_count += 1
        if len(self.problems) < MAX_STORED_PROBLEMS:
            self.problems.append(ReplayProblem(line, reason))

    def _rows(self) -> Iterator[tuple[int, Row]]:
        """Checked rows in file order, with per-symbol order and duplicate checks."""
        fh, reader, parser = _open(self.path)
        last: dict[str, datetime] = {}
        with fh:
            for row in reader:
                line = reader.line_num  # type: ignore[attr-defined]
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue
                try:
                    parsed = parser.parse(row)
                except _BadRow as exc:
                    self._problem(line, str(exc))
                    continue
                ts, symbol = parsed[0], parsed[1]
                previous = last.get(symbol)
                if previous is not None and ts <= previous:
                    if ts == previous:
                        self._problem(line, f"duplicate bar for {symbol} at {ts.isoformat()}")
                    else:
                        self._problem(
                            line, f"out of order: {symbol} at {ts.isoformat()} is before its previous bar at "
                            f"{previous.isoformat()}",
                        )
                    continue
                last[symbol] = ts
                yield line, parsed

    def batches(self) -> Iterator[list[Bar]]:
        """Lists of bars sharing one timestamp, in time order."""
        if self.time_sorted:
            return self._sorted_batches()
        return self._grouped_batches()

    def _sorted_batches(self) -> Iterator[list[Bar]]:
        tf = self.timeframe
        current: datetime | None = None
        batch: list[Bar] = []
        for line, (ts, symbol, o, h, low, c, v) in self._rows():
            if current is not None and ts < current:
                self._problem(
                    line, f"late row: {symbol} at {ts.isoformat()} comes after bars at {current.isoformat()} were "
                    "replayed (the file must be sorted by time)",
                )
                continue
            if ts != current:
                if batch:
                    yield batch
                batch = []
                current = ts
            batch.append(Bar(symbol, ts, o, h, low, c, v, tf))
            self.bars_read += 1
        if batch:
            yield batch

    def _grouped_batches(self) -> Iterator[list[Bar]]:
        tf = self.timeframe
        rows = [parsed for _, parsed in self._rows()]
        rows.sort(key=lambda r: r[0])  # stable: file order within a timestamp
        batch: list[Bar] = []
        for ts, symbol, o, h, low, c, v in rows:
            if batch and ts != batch[0].timestamp:
                yield batch
                batch = []
            batch.append(Bar(symbol, ts, o, h, low, c, v, tf))
            self.bars_read += 1
        if batch:
            yield batch


def _check_timeframe(timeframe: str | None) -> None:
    if timeframe is not None and timeframe not in TIMEFRAME_SECONDS:
        raise ReplayError(f"timeframe: unknown {timeframe!r}; allowed: {', '.join(TIMEFRAME_SECONDS)}")


def load_bars(path: str | Path, timeframe: str | None = None) -> tuple[list[Bar], list[ReplayProblem]]:
    """Every good bar of a replay file in time order, and the problems of the bad rows."""
    _check_timeframe(timeframe)
    reader = _Reader(Path(path), timeframe)
    bars = [bar for batch in reader.batches() for bar in batch]
    return bars, reader.problems


class ReplayFeed:
    """A MarketDataFeed over a CSV file. Advances the SimulatedClock to each batch's bar close before yielding."""

    def __init__(
        self,
        path: str | Path,
        clock: SimulatedClock | None,
        timeframe: str | None = None,
        pace_bars_per_s: float = 0.0,
    ) -> None:
        _check_timeframe(timeframe)
        if pace_bars_per_s < 0 or not math.isfinite(pace_bars_per_s):
            raise ReplayError(f"pace_bars_per_s: must be >= 0, got {pace_bars_per_s!r}")
        self.path = Path(path)
        if not self.path.is_file():
            raise ReplayError(f"replay file {self.path} does not exist")
        if clock is not None and not hasattr(clock, "advance_to"):
            raise ReplayError(f"clock: a replay needs a SimulatedClock (or None), got {type(clock).__name__}")
        self.clock = clock
        self.pace_bars_per_s = pace_bars_per_s
        self._requested_timeframe = timeframe
        self._cal: MarketCalendar | None = None
        self._reader: _Reader | None = None
        self._closed = False
        self.batches_read = 0
        self.unpaced_until: datetime | None = None  # batches up to this time go without pacing (a resumed run)

    def _get_reader(self) -> _Reader:
        if self._reader is None:
            self._reader = _Reader(self.path, self._requested_timeframe)
        return self._reader

    @property
    def timeframe(self) -> str:
        """The bar interval (given, or inferred from the file)."""
        return self._get_reader().timeframe

    @property
    def problems(self) -> list[ReplayProblem]:
        """Rows skipped so far, with line numbers (stored up to MAX_STORED_PROBLEMS; see `problem_count`)."""
        return self._get_reader().problems

    @property
    def problem_count(self) -> int:
        return self._get_reader().problem_count

    @property
    def bars_read(self) -> int:
        return self._get_reader().bars_read

    async def warm_up(self, start: datetime) -> list[list[Bar]]:
        """Nothing: a replay starts at the file's first bar."""
        return []

    async def batches(self) -> AsyncIterator[list[Bar]]:
        """Yield each time step's bars; pace between batches (0 = as fast as possible)."""
        reader = self._get_reader()
        interval = timedelta(seconds=TIMEFRAME_SECONDS[reader.timeframe])
        delay = 1.0 / self.pace_bars_per_s if self.pace_bars_per_s > 0 else 0.0
        for batch in reader.batches():
            if self._closed:
                break
            if self.clock is not None:
                self.clock.advance_to(self._close_time(batch[0].timestamp, interval))
            self.batches_read += 1
            yield batch
            if delay and (self.unpaced_until is None or batch[0].timestamp > self.unpaced_until):
                await asyncio.sleep(delay)
            elif self.batches_read % YIELD_EVERY_BATCHES == 0:
                await asyncio.sleep(0)

    def _close_time(self, ts: datetime, interval: timedelta) -> datetime:
        """When the bar's data is known: open + interval, but a daily bar closes with its NYSE session."""
        if interval < timedelta(days=1):
            return ts + interval
        session = self._calendar().session_for(ts)
        if session is not None and session[1] >= ts:
            return session[1]
        return ts + interval

    def _calendar(self) -> MarketCalendar:
        if self._cal is None:
            self._cal = default_calendar()
        return self._cal

    async def close(self) -> None:
        self._closed = True


__all__ = [
    "COLUMNS",
    "ReplayError",
    "ReplayFeed",
    "ReplayProblem",
    "infer_timeframe",
    "load_bars",
    "parse_timestamp",
    "timeframe_for_gap",
]
