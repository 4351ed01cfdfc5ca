"""The columnar fast path of ReplayFeed: a time-sorted intraday CSV read by pyarrow's CSV reader, chunk by chunk,
into `BarBatch`es (one per time step) without a Python object per field.

Each chunk (a few MB of whole lines) is parsed into columns and then proven good as a whole: every number
parses as float64 and passes the row checks, every distinct timestamp and symbol text passes the row
reader's own checks (`parse_timestamp`, `RowParser._symbol`), time never goes back and no symbol repeats a
time. A chunk that fails any of these (a bad row, a blank line, quoting, a short row...) is read by the
careful row-by-row path instead, which names each bad row by file and line exactly as before; the two
share the per-symbol state, so the stream of batches is the one the row reader would give. Memory stays
bounded: at most one chunk and one unfinished time step are held.

pyarrow parses a chunk's two halves on two threads (it releases the GIL) and its numbers as Python's float()
does (correctly rounded; a text it does not take, such as "1_000", sends the chunk the careful way, where float()
reads it): the values are the row reader's to the bit. Text columns come dictionary-encoded: each distinct
symbol or time text once, with one code per row.
"""

from __future__ import annotations

import csv
import io
import itertools
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
from numpy.lib.stride_tricks import sliding_window_view

from pipeline.core.batch import BarBatch, from_ns, to_ns

if TYPE_CHECKING:
    from adapters.replay import RowParser, RowReader

# a chunk's transient text and columns are freed before the next one is read, so RSS stays flat. Larger chunks
# spread pandas' fixed cost per call (~0.3 ms) thinner (the read alone: 384 KB ~10 % faster, 512 KB ~20 %), but
# glibc's heap then swings between chunks and the bench's RSS growth in the second half went from a steady
# ~0.25 MB to 0.2-1.7 MB (384 KB) and past its 2 MB limit (512 KB) now and then
CHUNK_BYTES = 256 << 10
_TUPLE_CACHE = 4096
_NUMERIC = ("open", "high", "low", "close", "volume")
# a chunk is parsed as two blocks, one per core (the read alone: 0.46 -> 0.34 s per million bars on 2 cores)
BLOCK_BYTES = CHUNK_BYTES // 2
_TEXT = pa.dictionary(pa.int32(), pa.string())
# no quoting (a chunk with a quote goes the careful way before it gets here), a blank line is a short row, and no
# text is a missing value: an empty number fails to convert and sends the chunk the careful way
_PARSE = pa_csv.ParseOptions(quote_char=False, ignore_empty_lines=False)
# malloc's own heap, not pyarrow's default mimalloc: mimalloc keeps what a chunk freed for its threads, and RSS in
# the second half of a replay grew by 2.4-2.5 MB (this pool: 0.4-0.6 MB, as with pandas)
_POOL = pa.system_memory_pool()


def _parse(raw: np.ndarray, width: int, columns: list[int], numeric: dict[int, str]) -> pa.Table | None:
    """The chunk's bytes as an Arrow table of `columns` (named by their index): the numeric ones float64, the
    others dictionary-encoded text. None when pyarrow does not take the chunk (a row of another width, a number it
    cannot read)."""
    names = [str(i) for i in range(width)]
    read = pa_csv.ReadOptions(column_names=names, use_threads=True, block_size=max(BLOCK_BYTES, 1 << 12))
    convert = pa_csv.ConvertOptions(
        include_columns=[names[i] for i in columns], null_values=[], strings_can_be_null=False,
        column_types={names[i]: (pa.float64() if i in numeric else _TEXT) for i in columns},
    )
    try:
        table = pa_csv.read_csv(pa.py_buffer(raw), read_options=read, parse_options=_PARSE, convert_options=convert,
                                memory_pool=_POOL)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        return None
    if any(column.null_count for column in table.columns):
        return None
    return table


def _codes(column: pa.ChunkedArray) -> tuple[np.ndarray, list[str]]:
    """A dictionary-encoded text column as (a code per row, each distinct text once): the blocks' dictionaries
    unified, so one text has one code in the whole chunk."""
    if column.num_chunks != 1:
        column = column.unify_dictionaries()
        array = column.combine_chunks() if column.num_chunks else pa.array([], _TEXT)
    else:
        array = column.chunk(0)
    return array.indices.to_numpy(zero_copy_only=False), array.dictionary.to_pylist()


def _counts(text: str) -> tuple[np.ndarray, int, int]:
    """`text`'s UTF-8 bytes as an array, and the commas and line feeds in it, counted by numpy (no multi-byte
    sequence holds an ASCII byte; str.count walks the text at ~1 ns a character, this at a tenth of that)."""
    raw = np.frombuffer(text.encode(), dtype=np.uint8)
    return raw, int(np.count_nonzero(raw == 44)), int(np.count_nonzero(raw == 10))


def _first_fields(raw: np.ndarray, n_lines: int) -> tuple[np.ndarray, list[str]] | None:
    """The first line of each run of lines whose first fields are equal, and those fields' texts: the file's time
    column (one text per time step) read from the chunk's bytes, without a Python string per row (that column
    was half of pandas' time on a chunk). None unless every line's first field has the first line's width (then
    pandas reads the column)."""
    width = int(np.argmax(raw == 44)) if raw.size else 0
    if width <= 0 or raw[width] != 44:
        return None
    starts = np.empty(n_lines, dtype=np.intp)
    starts[0] = 0
    starts[1:] = np.flatnonzero(raw == 10)[: n_lines - 1] + 1
    if int(starts[-1]) + width >= raw.size:
        return None
    fields = sliding_window_view(raw, width)[starts]  # (lines, width) bytes, a copy
    if not bool((raw[starts + width] == 44).all()) or bool(((fields == 44) | (fields == 10)).any()):
        return None
    whole = fields.view(f"V{width}").ravel()
    firsts = np.flatnonzero(np.concatenate(([True], whole[1:] != whole[:-1])))
    return firsts, [fields[i].tobytes().decode() for i in firsts.tolist()]


class _Chunk:
    """Checked rows as columns: time (epoch ns), symbol code, prices and volume."""

    __slots__ = ("c", "g", "h", "low", "o", "ts", "v")

    def __init__(self, ts: np.ndarray, g: np.ndarray, o: np.ndarray, h: np.ndarray, low: np.ndarray,
                 c: np.ndarray, v: np.ndarray) -> None:
        self.ts, self.g, self.o, self.h, self.low, self.c, self.v = ts, g, o, h, low, c, v

    def __len__(self) -> int:
        return int(self.ts.size)

    def cat(self, other: _Chunk) -> _Chunk:
        return _Chunk(*(np.concatenate((a, b)) for a, b in zip(self.cols(), other.cols(), strict=True)))

    def cols(self) -> tuple[np.ndarray, ...]:
        return self.ts, self.g, self.o, self.h, self.low, self.c, self.v

    def part(self, a: int, b: int) -> _Chunk:
        return _Chunk(*(x[a:b] for x in self.cols()))


class ColumnReader:
    """Streams a time-sorted intraday replay file as BarBatches (see the module docstring)."""

    def __init__(self, reader: RowReader) -> None:
        self.reader = reader
        self.names: list[str] = []          # symbol of each global code
        self._codes: dict[str, int] = {}
        self._tuples: dict[bytes, tuple[str, ...]] = {}
        self._last_ns = np.full(0, np.iinfo(np.int64).min, dtype=np.int64)  # per symbol code: its newest time
        self.current: int | None = None      # newest accepted time (ns): a row before it is late

    # ------------------------------------------------------------------ the stream
    def batches(self) -> Iterator[BarBatch]:
        from adapters.replay import open_rows

        reader = self.reader
        fh, csv_rows, parser = open_rows(reader.path, "intraday", reader.symbol)
        base = csv_rows.line_num  # type: ignore[attr-defined]  # the header's last line
        carry: _Chunk | None = None
        with fh:
            while True:
                text = fh.read(CHUNK_BYTES)
                if not text:
                    break
                if text[-1] != "\n":
                    text += fh.readline()  # whole lines only
                if '"' in text:  # quoting may span lines and chunks: the row reader takes the rest of the file
                    chunk, _ = self._careful(parser, itertools.chain(io.StringIO(text, newline=""), fh), base)
                    more = False
                else:
                    more = True
                    raw, commas, newlines = _counts(text)
                    n_lines = newlines + (text[-1] != "\n")
                    plain = "\r" not in text or text.count("\r\n") == text.count("\r")
                    chunk = self._fast(parser, text, raw, n_lines, commas) if plain else None
                    if chunk is None:
                        chunk, n_lines = self._careful(parser, io.StringIO(text, newline=""), base)
                    base += n_lines
                if carry is not None and len(carry):
                    chunk = carry.cat(chunk) if len(chunk) else carry
                carry = yield from self._emit(chunk)
                if not more:
                    break
        if carry is not None and len(carry):
            yield self._batch(carry, 0, len(carry), int(carry.ts[0]))

    def _emit(self, chunk: _Chunk) -> Iterator[BarBatch]:
        """Yield every complete time step of `chunk`; return the last one (it may go on in the next chunk)."""
        if not len(chunk):
            return chunk
        ts = chunk.ts
        cuts = (np.flatnonzero(ts[1:] != ts[:-1]) + 1).tolist()
        start = 0
        for cut, ns in zip(cuts, ts[[0, *cuts[:-1]]].tolist() if cuts else (), strict=True):
            yield self._batch(chunk, start, cut, ns)
            start = cut
        rest = chunk.part(start, len(chunk))
        return _Chunk(*(x.copy() for x in rest.cols()))  # a copy: the chunk itself is freed once its steps are

    def _batch(self, chunk: _Chunk, a: int, b: int, ns: int) -> BarBatch:
        """The time step of rows a..b of `chunk` (its time `ns`): views of the chunk's columns, no copy."""
        g = chunk.g[a:b]
        key = g.tobytes()
        symbols = self._tuples.get(key)
        if symbols is None:
            if len(self._tuples) >= _TUPLE_CACHE:
                self._tuples.clear()
            names = self.names
            symbols = self._tuples[key] = tuple(names[k] for k in g.tolist())
        self.reader.bars_read += len(symbols)
        return BarBatch(from_ns(ns), self.reader.timeframe, symbols, chunk.o[a:b], chunk.h[a:b], chunk.low[a:b],
                        chunk.c[a:b], chunk.v[a:b], ts_ns=ns, checked=True)

    def _latest(self, n: int) -> np.ndarray:
        if self._last_ns.size < n:
            grown = np.full(max(n, 2 * self._last_ns.size, 64), np.iinfo(np.int64).min, dtype=np.int64)
            grown[: self._last_ns.size] = self._last_ns
            self._last_ns = grown
        return self._last_ns

    def _code(self, symbol: str) -> int:
        code = self._codes.get(symbol)
        if code is None:
            code = self._codes[symbol] = len(self.names)
            self.names.append(symbol)
        return code

    # ------------------------------------------------------------------ a chunk proven good as a whole
    def _fast(self, parser: RowParser, text: str, raw: np.ndarray, n_lines: int, commas: int) -> _Chunk | None:
        from adapters.replay import BadRow, parse_timestamp

        width = parser.width
        if commas != (width - 1) * n_lines:  # a short, long or blank row: the careful path names it
            return None
        i_ts, i_sym, i_o, i_h, i_l, i_c, i_v = parser.index
        numeric = dict(zip((i_o, i_h, i_l, i_c, i_v), _NUMERIC, strict=True))
        steps = _first_fields(raw, n_lines) if i_ts == 0 else None  # the time column without pandas
        wanted = (i_sym, i_o, i_h, i_l, i_c, i_v) if steps is not None else (i_ts, i_sym, i_o, i_h, i_l, i_c, i_v)
        table = _parse(raw, width, [i for i in wanted if i < width], numeric)
        if table is None or table.num_rows != n_lines:
            return None
        o, h, low, c, v = (table.column(str(i)).to_numpy() for i in (i_o, i_h, i_l, i_c, i_v))
        if not bool(((0.0 < low) & (low <= o) & (o <= h) & (h < np.inf) & (low <= c) & (c <= h) & (0.0 <= v)
                     & (v < np.inf)).all()):
            return None
        try:
            if steps is not None:
                firsts, step_texts = steps
            else:
                ts_codes, ts_texts = _codes(table.column(str(i_ts)))
                firsts = np.concatenate(([0], np.flatnonzero(ts_codes[1:] != ts_codes[:-1]) + 1))  # a step repeats
                step_texts = [ts_texts[k] for k in ts_codes[firsts].tolist()]                    # its time text
            stamps = np.fromiter((to_ns(parse_timestamp(t.strip())) for t in step_texts), np.int64, firsts.size)
            if parser.symbol is not None:
                g = np.full(n_lines, self._code(parser.symbol), dtype=np.int64)
            else:
                sym_codes, sym_texts = _codes(table.column(str(i_sym)))
                canon = [parser.symbol_of(t) for t in sym_texts]
                if "" in canon:
                    return None
                g = np.array([self._code(s) for s in canon], dtype=np.int64)[sym_codes]
        except (BadRow, AttributeError, TypeError):
            return None
        ts = np.repeat(stamps, np.diff(np.concatenate((firsts, [n_lines]))))
        if stamps.size > 1 and not bool((stamps[1:] >= stamps[:-1]).all()):
            return None
        if self.current is not None and int(ts[0]) < self.current:
            return None
        latest = self._latest(len(self.names))
        if not bool((ts > latest[g]).all()):  # each symbol's first row here is after its last one before
            return None
        step = np.concatenate(([0], np.cumsum(stamps[1:] != stamps[:-1])))
        key = np.repeat(step, np.diff(np.concatenate((firsts, [n_lines])))) * len(self.names) + g
        if not pd.Index(key).is_unique:  # a symbol twice in one time step
            return None
        np.maximum.at(latest, g, ts)
        self.current = int(ts[-1])
        return _Chunk(ts, g, o, h, low, c, v)

    # ------------------------------------------------------------------ the row reader, for a chunk with a problem
    def _careful(self, parser: RowParser, lines: Iterable[str], base: int) -> tuple[_Chunk, int]:
        """The row reader's checks on these lines (line numbers from `base`); returns the good rows and how many
        lines were read."""
        reader = self.reader
        rows = csv.reader(lines)
        latest = self._latest(len(self.names))
        last = {name: from_ns(int(latest[code])) for code, name in enumerate(self.names)
                if latest[code] != np.iinfo(np.int64).min}
        cols: tuple[list[int], list[int], list[float], list[float], list[float], list[float], list[float]] = (
            [], [], [], [], [], [], [])
        t_ns, g, o, h, lo, c, v = cols
        for line, (ts, symbol, po, ph, pl, pc, pv) in reader.checked_rows(
                ((base + rows.line_num, row) for row in rows), parser, last):  # type: ignore[attr-defined]
            ns = to_ns(ts)
            current = self.current
            if current is not None and ns < current:
                cur = from_ns(current)
                reader.problem(
                    line, f"late row: {symbol} at {ts.isoformat()} comes after bars at {cur.isoformat()} were "
                    "replayed (the file must be sorted by time)",
                )
                continue
            self.current = ns
            t_ns.append(ns)
            g.append(self._code(symbol))
            o.append(po)
            h.append(ph)
            lo.append(pl)
            c.append(pc)
            v.append(pv)
        codes = [self._code(name) for name in last]  # a symbol whose rows were all late has a code too
        latest = self._latest(len(self.names))
        for code, ts in zip(codes, last.values(), strict=True):
            latest[code] = to_ns(ts)
        chunk = _Chunk(np.array(t_ns, dtype=np.int64), np.array(g, dtype=np.int64),
                       *(np.array(x, dtype=np.float64) for x in (o, h, lo, c, v)))
        return chunk, rows.line_num  # type: ignore[attr-defined]
