"""Issue 17: the columnar replay path (pandas' C reader -> BarBatch -> ColumnAggregator -> engine) gives exactly
what the row-by-row path gives: the same batches and problems (file and line), the same signals and cloud
states, the same trades. Each check runs both paths on the same real file and compares."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest

import adapters.replay_columns as replay_columns
from adapters.replay import RowReader
from adapters.synthetic import write_csv
from config.settings import StrategySettings, load_settings
from pipeline.core.batch import BarBatch
from pipeline.strategy.ema_cloud import EmaCloudStrategy

HEADER = "timestamp,symbol,open,high,low,close,volume\n"


@pytest.fixture
def columns_always(monkeypatch: pytest.MonkeyPatch) -> None:
    """The strategy takes the column path for any batch size (the replay does from 8 symbols a step)."""
    monkeypatch.setattr("pipeline.strategy.ema_cloud.COLUMNS_MIN_SYMBOLS", 1)


def _file(tmp_path: Path, tickers: int = 6, bars: int = 900) -> Path:
    path = tmp_path / "bars.csv"
    write_csv(path, [f"T{i}" for i in range(tickers)], seed=4, n_bars=bars)
    return path


def _both(path: Path) -> tuple[RowReader, list[list], RowReader, list]:
    rows = RowReader(path, None, None, columnar=False)
    row_batches = [list(b) for b in rows.batches()]
    cols = RowReader(path, None, None, columnar=True)
    col_batches = list(cols.batches())
    return rows, row_batches, cols, col_batches


def test_columnar_feed_equals_the_row_reader_on_a_clean_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(replay_columns, "CHUNK_BYTES", 20_000)  # many chunks: time steps cross chunk borders
    rows, a, cols, b = _both(_file(tmp_path))
    assert all(isinstance(x, BarBatch) for x in b)
    assert len(a) == len(b) == 900 and [list(x) for x in b] == a
    assert rows.problems == cols.problems == [] and rows.bars_read == cols.bars_read == 5400


def test_bad_rows_mid_file_are_named_by_line_as_before(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A chunk with a problem goes the careful way: the same rows skipped, the same reasons and line numbers."""
    monkeypatch.setattr(replay_columns, "CHUNK_BYTES", 8_000)
    lines = _file(tmp_path, 3, 400).read_text().splitlines(keepends=True)
    rng = random.Random(7)
    body = lines[1:]
    for index in sorted(rng.sample(range(50, len(body) - 50), 12), reverse=True):
        ts, sym, o, h, low, c, v = body[index].rstrip("\n").split(",")
        bad = rng.choice([
            f"{ts},{sym},{o},{h},{low},{c}\n",                      # short row
            f"{ts},{sym},{o},{low},{h},{c},{v}\n",                   # high < low
            f"{ts},{sym},abc,{h},{low},{c},{v}\n",                   # not a number
            f"{ts[:19]},{sym},{o},{h},{low},{c},{v}\n",               # no zone
            "\n",                                                    # blank line
            body[index - 1],                                         # duplicate of the row before
            f"{ts},{sym},{o},{h},{low},{c},-5\n",                    # negative volume
            f"{ts},,{o},{h},{low},{c},{v}\n",                        # empty symbol
            f"2013-01-04T14:30:00Z,{sym},{o},{h},{low},{c},{v}\n",   # late / out of order
        ])
        body.insert(index, bad)
    path = tmp_path / "bad.csv"
    path.write_text(HEADER + "".join(body))
    rows, a, cols, b = _both(path)
    assert rows.problems and rows.problems == cols.problems
    assert [list(x) for x in b] == a and rows.bars_read == cols.bars_read


def test_quoted_fields_switch_to_the_row_reader_for_the_rest(tmp_path: Path) -> None:
    lines = _file(tmp_path, 2, 50).read_text().splitlines(keepends=True)
    ts, sym, *rest = lines[30].rstrip("\n").split(",")
    lines[30] = f'{ts},"{sym}",{",".join(rest)}\n'
    path = tmp_path / "quoted.csv"
    path.write_text("".join(lines))
    rows, a, cols, b = _both(path)
    assert [list(x) for x in b] == a and rows.problems == cols.problems == []


def test_windows_line_ends_read_the_same(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(replay_columns, "CHUNK_BYTES", 5_000)
    text = _file(tmp_path, 4, 200).read_text()
    path = tmp_path / "crlf.csv"
    path.write_bytes(text.replace("\n", "\r\n").encode())
    rows, a, cols, b = _both(path)
    assert len(b) == 200 and [list(x) for x in b] == a and rows.problems == cols.problems == []


def test_one_symbol_layout_intraday_reads_the_same(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Yahoo's layout (Date,Open,High,Low,Close,Adj Close,Volume; the symbol from the file name), minute bars."""
    monkeypatch.setattr(replay_columns, "CHUNK_BYTES", 3_000)
    rows = _file(tmp_path, 1, 300).read_text().splitlines()[1:]
    path = tmp_path / "SPY.csv"
    body = [f"{ts},{o},{h},{low},{c},{c},{v}" for ts, _, o, h, low, c, v in (r.split(",") for r in rows)]
    body.insert(120, body[119])  # a duplicate row: that chunk goes the careful way
    path.write_text("Date,Open,High,Low,Close,Adj Close,Volume\n" + "\n".join(body) + "\n")
    rows_reader, a, cols, b = _both(path)
    assert len(a) == 300 and {bar.symbol for batch in a for bar in batch} == {"SPY"}
    assert [list(x) for x in b] == a and rows_reader.problems == cols.problems and len(cols.problems) == 1


def test_time_texts_of_mixed_widths_read_the_same(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The time column is read from the chunk's bytes when every line's first field has one width, and by
    pandas otherwise (here some steps say Z, others +00:00): the same batches either way."""
    monkeypatch.setattr(replay_columns, "CHUNK_BYTES", 4_000)
    lines = _file(tmp_path, 3, 300).read_text().splitlines(keepends=True)
    body = [line.replace("+00:00,", "Z,", 1) if (i // 150) % 3 == 1 else line for i, line in enumerate(lines[1:])]
    path = tmp_path / "zones.csv"
    path.write_text(lines[0] + "".join(body))
    first = replay_columns._first_fields
    widths: list[bool] = []
    monkeypatch.setattr(replay_columns, "_first_fields", lambda raw, n: widths.append(first(raw, n) is None) or
                        first(raw, n))
    rows, a, cols, b = _both(path)
    assert True in widths and False in widths  # both ways were taken
    assert len(a) == 300 and [list(x) for x in b] == a and rows.problems == cols.problems == []


@pytest.mark.parametrize("timeframes", [["5m"], ["5m", "15m", "1m"]])
def test_strategy_on_columns_gives_the_signals_and_states_of_bar_by_bar(tmp_path: Path, timeframes: list[str],
                                                                       columns_always: None) -> None:
    path = _file(tmp_path, 8, 1500)
    batches = list(RowReader(path, None, None, columnar=True).batches())
    # symbols come and go: drop a few bars (a halted ticker) so the batches differ in shape
    rng = random.Random(3)
    shaped = []
    for batch in batches:
        keep = [bar for bar in batch if rng.random() > 0.05]
        if keep:
            shaped.append(BarBatch.from_bars(keep))
    scalar = EmaCloudStrategy(StrategySettings(timeframes=timeframes))
    columns = EmaCloudStrategy(StrategySettings(timeframes=timeframes))
    expected = [(k, j, s) for k, batch in enumerate(shaped) for j, bar in enumerate(batch) for s in scalar.on_bar(bar)]
    got = [(k, j, s) for k, batch in enumerate(shaped) for j, s in columns.on_batch(batch)]
    assert columns._mode == "columns" and expected and got == expected
    for symbol in (f"T{i}" for i in range(8)):
        assert columns.completed_on_last_bar(symbol) == scalar.completed_on_last_bar(symbol)
        for tf in timeframes:
            assert columns.recent_states(symbol, tf, 64) == scalar.recent_states(symbol, tf, 64)
            assert columns.recent_bars(symbol, tf, 64) == scalar.recent_bars(symbol, tf, 64)


def test_a_bad_bar_in_a_batch_is_rejected_alone(tmp_path: Path, columns_always: None) -> None:
    batches = list(RowReader(_file(tmp_path, 3, 60), None, None, columnar=True).batches())
    scalar = EmaCloudStrategy(StrategySettings())
    columns = EmaCloudStrategy(StrategySettings())
    for k, batch in enumerate(batches):
        bars = list(batch)
        if k % 7 == 3:
            bars[1].low = float("nan")
        for bar in bars:
            scalar.on_bar(bar)
        columns.on_batch(BarBatch.from_bars(bars))
    assert columns._mode == "columns" and columns.rejected_bars == scalar.rejected_bars > 0
    assert columns.recent_states("T1", "5m", 64) == scalar.recent_states("T1", "5m", 64)


def test_replay_trades_are_the_same_on_both_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from daemon.replay import replay

    path = _file(tmp_path, 10, 2400)
    settings = load_settings(state_dir=tmp_path / "state")
    columnar = asyncio.run(replay(settings, path))
    monkeypatch.setattr(replay_columns.ColumnReader, "batches", lambda self: self.reader._sorted_batches())
    by_rows = asyncio.run(replay(settings, path))
    assert columnar["entries"] > 20
    for key in ("bars", "signals", "entries", "exits", "trades", "stages", "total", "equity_curve"):
        assert columnar[key] == by_rows[key], key


def test_steps_of_every_symbol_take_the_one_state_path_with_the_same_buckets(tmp_path: Path,
                                                                            columns_always: None) -> None:
    """Whole steps (every symbol, the same tuple each step: the replay's usual case) go the one-state path of
    ColumnAggregator; a step without a symbol, and the steps after it, go the general one. Both give the bars,
    signals and cloud states of bar by bar, across session closes and overnight gaps."""
    path = _file(tmp_path, 9, 2400)
    batches = list(RowReader(path, None, None, columnar=True).batches())
    shaped = []
    for k, batch in enumerate(batches):
        bars = list(batch)
        if 700 <= k < 703 or k == 1500:  # a halted symbol for a few steps, then whole steps again
            bars = bars[1:]
        shaped.append(batch if len(bars) == len(batch) else BarBatch.from_bars(bars))
    scalar = EmaCloudStrategy(StrategySettings(timeframes=["5m", "15m"]))
    columns = EmaCloudStrategy(StrategySettings(timeframes=["5m", "15m"]))
    expected = [(k, j, s) for k, batch in enumerate(shaped) for j, bar in enumerate(batch) for s in scalar.on_bar(bar)]
    got = [(k, j, s) for k, batch in enumerate(shaped) for j, s in columns.on_batch(batch)]
    assert columns._mode == "columns" and expected and got == expected
    for symbol in (f"T{i}" for i in range(9)):
        assert columns.completed_on_last_bar(symbol) == scalar.completed_on_last_bar(symbol)
        for tf in ("5m", "15m"):
            assert columns.recent_states(symbol, tf, 64) == scalar.recent_states(symbol, tf, 64)
            assert columns.recent_bars(symbol, tf, 64) == scalar.recent_bars(symbol, tf, 64)
            assert columns.bars_seen(symbol, tf) == scalar.bars_seen(symbol, tf) > 100


def _careful_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the chunks that go the careful (row by row) way."""
    calls: list[int] = []
    careful = replay_columns.ColumnReader._careful

    def counted(self: replay_columns.ColumnReader, *args: object) -> object:
        calls.append(1)
        return careful(self, *args)

    monkeypatch.setattr(replay_columns.ColumnReader, "_careful", counted)
    return calls


def test_a_clean_file_is_read_by_pyarrow_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every chunk of a clean file is parsed by the columnar path (pyarrow), none row by row, and each chunk
    is split in blocks parsed on threads: the values are the row reader's to the bit."""
    monkeypatch.setattr(replay_columns, "CHUNK_BYTES", 30_000)
    monkeypatch.setattr(replay_columns, "BLOCK_BYTES", 6_000)  # several blocks a chunk: dictionaries unified
    calls = _careful_calls(monkeypatch)
    rows, a, cols, b = _both(_file(tmp_path, 7, 700))
    assert calls == [] and [list(x) for x in b] == a and rows.problems == cols.problems == []
    assert {bar.symbol for batch in b for bar in batch} == {f"T{i}" for i in range(7)}


def test_numbers_pyarrow_does_not_take_are_read_the_careful_way_as_float_reads_them(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """float() reads "1_000" and " 97.5 "; pyarrow does not take the first: that chunk goes row by row, and both
    paths give the row reader's values (no row lost, no problem reported)."""
    monkeypatch.setattr(replay_columns, "CHUNK_BYTES", 6_000)
    lines = _file(tmp_path, 3, 300).read_text().splitlines(keepends=True)
    ts, sym, o, h, low, c, v = lines[200].rstrip("\n").split(",")
    lines[200] = f"{ts},{sym},{o},{h},{low},{c},1_{int(float(v)):03d}\n"
    ts, sym, o, h, low, c, v = lines[500].rstrip("\n").split(",")
    lines[500] = f"{ts}, {sym} , {o} ,{h},{low},{c},{v}\n"
    path = tmp_path / "odd.csv"
    path.write_text("".join(lines))
    calls = _careful_calls(monkeypatch)
    rows, a, cols, b = _both(path)
    assert len(calls) == 1  # the "1_000" chunk only: the spaces are read by pyarrow as float() reads them
    assert len(a) == 300 and [list(x) for x in b] == a and rows.problems == cols.problems == []
    assert rows.bars_read == cols.bars_read == 900
