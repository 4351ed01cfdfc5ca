"""ReplayFeed: bars from CSV files — ours (`timestamp,symbol,open,high,low,close,volume`) or one symbol's per
file in the Yahoo / Stooq layout (`Date,Open,High,Low,Close[,Adj Close],Volume[,OpenInt]`, symbol from
`--symbol` or the file name). A header is required; several files are merged by time.

Timestamps are ISO 8601 with a zone or epoch seconds; daily bars may be date-only, and any stamp of a daily
row means the NYSE session of that date (stamped midnight ET, closing at that session's close). Each file is
streamed and yielded as batches of the bars that share a timestamp, so a million-bar file never sits in memory
as Bar objects: a time-sorted intraday file is read columnar, chunk by chunk, into `BarBatch`es
(`adapters.replay_columns`; a chunk with any problem is read row by row, as every other file is). A file
grouped by symbol rather than sorted by time is detected on a sample and sorted in memory. The bar interval
is inferred from the most common gap between a symbol's bars unless given. Bad rows are never trusted: they
are skipped and reported in `problems` with their file and line number, and the replay goes on.
"""

from __future__ import annotations

import asyncio
import csv
import heapq
import math
import re
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import TextIO

from config.symbols import symbol_problem
from pipeline.core.batch import BarBatch
from pipeline.core.calendar import NEW_YORK, MarketCalendar, daily_session_date, default_calendar
from pipeline.core.clock import SimulatedClock
from pipeline.core.models import TIMEFRAME_SECONDS, Bar

COLUMNS = ("timestamp", "symbol", "open", "high", "low", "close", "volume")
SAMPLE_ROWS = 5000
MAX_STORED_PROBLEMS = 10_000
YIELD_EVERY_BATCHES = 256
_MAX_EPOCH_SECONDS = 1e11  # beyond year 5000: almost surely milliseconds
MAX_CACHED_SYMBOLS = 100_000
MIN_YEAR, MAX_YEAR = 1970, 2200  # bar times are shifted by intervals and sessions: year 9999 would overflow
_DAILY_GAP_SECONDS = 20 * 3600


class ReplayError(ValueError):
    """The replay file as a whole cannot be used (missing, no header, missing columns, bad timeframe)."""


@dataclass(frozen=True, slots=True)
class ReplayProblem:
    """A row that was skipped, and why. `line` is the 1-based line of the file (the header is line 1)."""

    line: int
    reason: str
    file: str = ""   # which file, when several are replayed together


class BadRow(ValueError):
    """A row that cannot be trusted (internal)."""


Row = tuple[datetime, str, float, float, float, float, float]


class RowParser:
    """Turns CSV rows into checked tuples; remembers the last timestamp text (rows of one time step repeat it)."""

    def __init__(self, header: list[str], path: Path, mode: str = "sample", symbol: str | None = None) -> None:
        names = [h.strip().lower() for h in header]
        self.layout = detect_layout(header, path)
        self.symbol: str | None = None
        if self.layout.one_symbol:
            self.symbol, self.symbol_origin = _symbol_for(path, symbol, self.layout)
            names = ["timestamp" if i == self.layout.date_column else n for i, n in enumerate(names)]
            names.append("symbol")
        elif symbol is not None:
            raise ReplayError(f"replay file {path}: --symbol {symbol} given but the file has a symbol column")
        else:
            self.symbol_origin = "the symbol column"
        self.index = [names.index(c) for c in COLUMNS]
        self.width = len(header)
        self._last_text: str | None = None
        self._last_ts: datetime | None = None
        self._symbols: dict[str, str] = {}
        self.mode = mode  # "sample" (timeframe unknown), "daily" or "intraday"
        self._cal: MarketCalendar | None = None

    def parse(self, row: list[str]) -> Row:
        """A checked row; raises BadRow naming the problem. Fast path first, the careful one to explain."""
        if len(row) < self.width:
            raise BadRow(f"expected {self.width} fields, got {len(row)}")
        if self.symbol is not None:
            row = [*row[: self.width], self.symbol]
        i_ts, i_sym, i_o, i_h, i_l, i_c, i_v = self.index
        ts = self._timestamp(row[i_ts].strip())
        symbol = self.symbol_of(row[i_sym])
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
            raise BadRow("symbol: empty")
        o = _price(row[i_o], "open")
        h = _price(row[i_h], "high")
        low = _price(row[i_l], "low")
        c = _price(row[i_c], "close")
        volume = _number(row[i_v], "volume")
        if volume < 0:
            raise BadRow(f"volume: negative ({volume})")
        if h < low:
            raise BadRow(f"high < low ({h} < {low})")
        if not low <= o <= h:
            raise BadRow(f"open {o} outside [low {low}, high {h}]")
        if not low <= c <= h:
            raise BadRow(f"close {c} outside [low {low}, high {h}]")
        return ts, symbol, o, h, low, c, volume

    def symbol_of(self, text: str) -> str:
        """The upper-case broker symbol of a row (each distinct text checked once), "" when the cell is empty."""
        symbol = self._symbols.get(text)
        if symbol is None:
            symbol = text.strip().upper()
            problem = symbol_problem(symbol) if symbol else None
            if problem is not None:
                raise BadRow(f"symbol: {problem}")
            if len(self._symbols) < MAX_CACHED_SYMBOLS:
                self._symbols[text] = symbol
        return symbol

    def _timestamp(self, text: str) -> datetime:
        if text == self._last_text and self._last_ts is not None:
            return self._last_ts
        if self.mode == "daily":
            ts = self._session_stamp(text)
        else:
            ts = parse_timestamp(text, allow_date=self.mode == "sample")
        self._last_text, self._last_ts = text, ts
        return ts

    def _session_stamp(self, text: str) -> datetime:
        """A daily row is the NYSE session of the date it names: stamped at midnight ET of that date (the
        aggregator's convention), so its close is that session's close, early closes included."""
        day = stamp_date(text)
        if self._cal is None:
            self._cal = default_calendar()
        if self._cal.session(day) is None:
            raise BadRow(f"timestamp: {day.isoformat()} is not an NYSE session (weekend or holiday)")
        return datetime.combine(day, time(0), NEW_YORK).astimezone(UTC)


@dataclass(frozen=True, slots=True)
class Layout:
    """The column layout of a replay file: ours (a symbol column) or one symbol per file (Yahoo, Stooq...)."""

    name: str
    header: str
    one_symbol: bool
    date_column: int = -1

    def describe(self) -> str:
        return f"{self.name} ({self.header})"


_DATE_NAMES = ("date", "datetime", "timestamp", "time", "")
_OHLCV = ("open", "high", "low", "close", "volume")
_TICKER = re.compile(r"^[A-Z][A-Z0-9.\-]{0,9}$")


def detect_layout(header: list[str], path: Path) -> Layout:
    """Which layout a header is, or a ReplayError saying what a header must name."""
    names = [h.strip().lower() for h in header]
    text = ",".join(h.strip() for h in header)[:120]
    if all(c in names for c in COLUMNS):
        return Layout("ordergate", text, one_symbol=False)
    if "symbol" not in names and all(c in names for c in _OHLCV):
        date_column = next((names.index(d) for d in _DATE_NAMES if d in names), -1)
        if date_column >= 0:
            if "adj close" in names:
                name = "Yahoo, one symbol, Adj Close ignored"
            elif "openint" in names:
                name = "Stooq, one symbol"
            else:
                name = "one symbol per file"
            return Layout(name, text, one_symbol=True, date_column=date_column)
    missing = [c for c in COLUMNS if c not in names]
    raise ReplayError(
        f"replay file {path}: header must name the columns {', '.join(COLUMNS)} (missing {', '.join(missing)}), or "
        f"be one symbol's Date,Open,High,Low,Close[,Adj Close],Volume (Yahoo, Stooq) with --symbol "
        f"(first line was {text!r})"
    )


def _symbol_for(path: Path, given: str | None, layout: Layout) -> tuple[str, str]:
    """The symbol of a one-symbol file: --symbol, else the file's name when it is a ticker."""
    if given is not None:
        symbol = given.strip().upper()
        if not _TICKER.match(symbol):
            raise ReplayError(f"--symbol: {given!r} is not a ticker (1-10 letters, digits, '.' or '-')")
        return symbol, "--symbol"
    stem = path.stem.strip().upper()
    if _TICKER.match(stem):
        return stem, "the file name"
    raise ReplayError(f"replay file {path}: the {layout.name} layout has no symbol column and the file name is not "
                      "a ticker: give --symbol")


def stamp_date(text: str) -> date:
    """The date a daily row names: a date-only row, the date written in an ISO stamp (any time, any zone), or
    the exchange date of epoch seconds (see `daily_session_date`)."""
    if len(text) == 10 and text[4:5] == "-" and text[7:8] == "-":
        try:
            return date.fromisoformat(text)
        except ValueError:
            raise BadRow(f"timestamp: {text!r} is not a date (YYYY-MM-DD)") from None
    if text[:1].isdigit() and "-" not in text and ":" not in text:
        return daily_session_date(parse_timestamp(text))
    try:
        return datetime.fromisoformat(text).date()
    except ValueError:
        raise BadRow(f"timestamp: {text[:40]!r} is neither a date, ISO 8601 nor epoch seconds") from None


def parse_timestamp(text: str, allow_date: bool = False) -> datetime:
    """ISO 8601 with a zone, or epoch seconds -> UTC datetime; with `allow_date` a date-only text is midnight
    UTC of that date (only daily bars may have one). Raises ValueError naming the problem."""
    if not text:
        raise BadRow("timestamp: empty")
    if text[0] in "0123456789" and ("-" not in text and ":" not in text):
        try:
            seconds = float(text)
        except ValueError:
            raise BadRow(f"timestamp: {text[:40]!r} is neither ISO 8601 nor epoch seconds") from None
        if not math.isfinite(seconds) or not 0 <= seconds < _MAX_EPOCH_SECONDS:
            raise BadRow(f"timestamp: epoch {text[:40]!r} out of range (epoch seconds expected, not milliseconds)")
        ts = datetime.fromtimestamp(seconds, UTC)
        if ts.year > MAX_YEAR:
            raise BadRow(f"timestamp: epoch {text[:40]!r} out of range (years {MIN_YEAR}-{MAX_YEAR})")
        return ts
    try:
        ts = datetime.fromisoformat(text)
    except ValueError:
        raise BadRow(f"timestamp: {text[:40]!r} is neither ISO 8601 nor epoch seconds") from None
    if ts.tzinfo is None:
        if len(text) == 10:
            if allow_date:
                return ts.replace(tzinfo=UTC)
            raise BadRow(f"timestamp: {text!r} has a date and no time: only daily bars (--timeframe 1d) may")
        raise BadRow(f"timestamp: {text[:40]!r} has no time zone (use Z or an offset)")
    try:
        ts = ts.astimezone(UTC)
    except OverflowError:
        ts = None
    if ts is None or not MIN_YEAR <= ts.year <= MAX_YEAR:
        raise BadRow(f"timestamp: {text[:40]!r} out of range (years {MIN_YEAR}-{MAX_YEAR})")
    return ts


def _number(text: str, name: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise BadRow(f"{name}: {text.strip()[:30]!r} is not a number") from None
    if not math.isfinite(value):
        raise BadRow(f"{name}: not finite ({text.strip()[:30]})")
    return value


def _price(text: str, name: str) -> float:
    value = _number(text, name)
    if value <= 0:
        raise BadRow(f"{name}: non-positive price ({value})")
    return value


def open_rows(
    path: Path, mode: str = "sample", symbol: str | None = None
) -> tuple[TextIO, Iterator[list[str]], RowParser]:
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
        parser = RowParser(header, path, mode, symbol)
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
    parser: RowParser


def _sample(path: Path, rows: int = SAMPLE_ROWS, symbol: str | None = None) -> _Sample:
    """Look at the first rows: the most common gap between a symbol's bars, and whether the file is time-sorted."""
    fh, reader, parser = open_rows(path, symbol=symbol)
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
            except BadRow:
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
        return _Sample(None, time_sorted, parser)
    gap = max(gaps.items(), key=lambda item: (item[1], -item[0]))[0]
    return _Sample(timeframe_for_gap(gap), time_sorted, parser)


def infer_timeframe(path: str | Path) -> str | None:
    """The bar interval of a replay file from its first rows ('1m', '5m', '1d', ...), or None if undecidable."""
    return _sample(Path(path)).timeframe


class RowReader:
    """Reads a replay file into batches, collecting problems (shared by ReplayFeed and load_bars)."""

    def __init__(self, path: Path, timeframe: str | None, symbol: str | None = None, columnar: bool = True) -> None:
        self.path = path
        self.symbol = symbol
        self.problems: list[ReplayProblem] = []
        self.problem_count = 0
        self.bars_read = 0
        self.columnar = columnar
        sample = _sample(path, symbol=symbol)
        self.time_sorted = sample.time_sorted
        self.layout = sample.parser.layout
        self.symbol_origin = sample.parser.symbol_origin
        self.file_symbol = sample.parser.symbol
        if timeframe is None:
            if sample.timeframe is None:
                self.problem(0, "bar interval could not be inferred (fewer than two bars per symbol); assuming 1m")
            timeframe = sample.timeframe or "1m"
        self.timeframe = timeframe

    def problem(self, line: int, reason: str) -> None:
        self.problem_count += 1
        if len(self.problems) < MAX_STORED_PROBLEMS:
            self.problems.append(ReplayProblem(line, reason, self.path.name))

    def _rows(self) -> Iterator[tuple[int, Row]]:
        """Checked rows in file order, with per-symbol order and duplicate checks."""
        fh, reader, parser = open_rows(self.path, "daily" if self.timeframe == "1d" else "intraday", self.symbol)
        with fh:
            yield from self.checked_rows(((reader.line_num, row) for row in reader), parser,  # type: ignore[attr-defined]
                                     {})

    def checked_rows(self, rows: Iterable[tuple[int, list[str]]], parser: RowParser,
                 last: dict[str, datetime]) -> Iterator[tuple[int, Row]]:
        """The rows (with their line numbers) that pass the row checks and the per-symbol order and duplicate
        checks against `last` (updated); the others become problems. Shared with the columnar path."""
        for line, row in rows:
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            try:
                parsed = parser.parse(row)
            except BadRow as exc:
                self.problem(line, str(exc))
                continue
            ts, symbol = parsed[0], parsed[1]
            previous = last.get(symbol)
            if previous is not None and ts <= previous:
                if ts == previous:
                    self.problem(line, f"duplicate bar for {symbol} at {ts.isoformat()}")
                else:
                    self.problem(
                        line, f"out of order: {symbol} at {ts.isoformat()} is before its previous bar at "
                        f"{previous.isoformat()}",
                    )
                continue
            last[symbol] = ts
            yield line, parsed

    def batches(self) -> Iterator[Sequence[Bar]]:
        """The bars sharing one timestamp, in time order: BarBatches (columns) from a time-sorted intraday
        file, lists of bars otherwise (daily and grouped files are small, and read row by row)."""
        if self.time_sorted and self.timeframe != "1d" and self.columnar:
            from adapters.replay_columns import ColumnReader

            return ColumnReader(self).batches()
        if self.time_sorted:
            return self._sorted_batches()
        return self._grouped_batches()

    def _sorted_batches(self) -> Iterator[list[Bar]]:
        tf = self.timeframe
        current: datetime | None = None
        batch: list[Bar] = []
        for line, (ts, symbol, o, h, low, c, v) in self._rows():
            if current is not None and ts < current:
                self.problem(
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
    reader = RowReader(Path(path), timeframe)
    bars = [bar for batch in reader.batches() for bar in batch]
    return bars, reader.problems


@dataclass(frozen=True, slots=True)
class FileFormat:
    """How one replay file was read: its layout, where its symbol came from, its bar interval."""

    file: str
    layout: str
    symbol: str | None
    symbol_origin: str
    timeframe: str

    def describe(self) -> str:
        symbol = f"symbol {self.symbol} from {self.symbol_origin}" if self.symbol else "symbols from its symbol column"
        return f"{self.file}: {self.layout}, {symbol}, {self.timeframe} bars"


class _Files:
    """Several replay files as one stream: each is streamed on its own, their batches merged by time."""

    def __init__(self, paths: list[Path], timeframe: str | None, symbols: list[str | None]) -> None:
        self.readers = [RowReader(p, timeframe, s) for p, s in zip(paths, symbols, strict=True)]
        found = {r.timeframe for r in self.readers}
        if len(found) > 1:
            each = ", ".join(f"{r.path.name} {r.timeframe}" for r in self.readers)
            raise ReplayError(f"replay files: bar intervals differ ({each}); replay files of one timeframe together "
                              "or give --timeframe")
        self.timeframe = self.readers[0].timeframe

    @property
    def problems(self) -> list[ReplayProblem]:
        return [p for r in self.readers for p in r.problems]

    @property
    def problem_count(self) -> int:
        return sum(r.problem_count for r in self.readers)

    @property
    def bars_read(self) -> int:
        return sum(r.bars_read for r in self.readers)

    def formats(self) -> list[FileFormat]:
        return [FileFormat(r.path.name, r.layout.describe(), r.file_symbol, r.symbol_origin, r.timeframe)
                for r in self.readers]

    def batches(self) -> Iterator[list[Bar]]:
        if len(self.readers) == 1:
            yield from self.readers[0].batches()
            return
        merged = heapq.merge(*(((b[0].timestamp, i, b) for b in r.batches()) for i, r in enumerate(self.readers)),
                             key=lambda item: (item[0], item[1]))
        current: list[Bar] = []
        for ts, _, batch in merged:
            if current and ts != current[0].timestamp:
                yield current
                current = []
            current.extend(batch)
        if current:
            yield current


class ReplayFeed:
    """A MarketDataFeed over one or several CSV files (merged by time). Advances the SimulatedClock to each
    batch's bar close before yielding."""

    def __init__(
        self,
        path: str | Path | Sequence[str | Path],
        clock: SimulatedClock | None,
        timeframe: str | None = None,
        pace_bars_per_s: float = 0.0,
        symbols: Sequence[str | None] | None = None,
    ) -> None:
        _check_timeframe(timeframe)
        if pace_bars_per_s < 0 or not math.isfinite(pace_bars_per_s):
            raise ReplayError(f"pace_bars_per_s: must be >= 0, got {pace_bars_per_s!r}")
        self.paths = [Path(p) for p in ([path] if isinstance(path, (str, Path)) else path)]
        if not self.paths:
            raise ReplayError("replay: no file given")
        wanted = list(symbols) if symbols else []
        if len(wanted) not in (0, len(self.paths)):
            raise ReplayError(f"--symbol: given {len(wanted)} time(s) for {len(self.paths)} files; give one per file "
                              "(in the files' order) or none")
        self.symbols: list[str | None] = wanted or [None] * len(self.paths)
        self.path = self.paths[0]
        for p in self.paths:
            if not p.is_file():
                raise ReplayError(f"replay file {p} does not exist")
        if clock is not None and not hasattr(clock, "advance_to"):
            raise ReplayError(f"clock: a replay needs a SimulatedClock (or None), got {type(clock).__name__}")
        self.clock = clock
        self.pace_bars_per_s = pace_bars_per_s
        self._requested_timeframe = timeframe
        self._cal: MarketCalendar | None = None
        self._reader: _Files | None = None
        self._closed = False
        self.batches_read = 0
        self.unpaced_until: datetime | None = None  # batches up to this time go without pacing (a resumed run)

    def _get_reader(self) -> _Files:
        if self._reader is None:
            self._reader = _Files(self.paths, self._requested_timeframe, self.symbols)
        return self._reader

    def formats(self) -> list[FileFormat]:
        """How each file was read (layout, symbol, timeframe): what the replay tells the user it read."""
        return self._get_reader().formats()

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
            if self.clock is not None:  # a BarBatch's own timestamp: no Bar built for it
                ts = batch.timestamp if isinstance(batch, BarBatch) else batch[0].timestamp
                self.clock.advance_to(self._close_time(ts, interval))
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
    "FileFormat",
    "ReplayError",
    "ReplayFeed",
    "ReplayProblem",
    "infer_timeframe",
    "load_bars",
    "parse_timestamp",
    "timeframe_for_gap",
]
