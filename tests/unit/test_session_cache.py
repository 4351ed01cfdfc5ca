"""The NYSE session table's cache file (pipeline.core.session_cache): a process start reads the sessions back
instead of importing pandas and exchange_calendars, and gets exactly the table they would have built; a file of
other versions, of another range, cut short or overwritten is never trusted; a directory that cannot be written
only means no cache."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest

from pipeline.core import session_cache
from pipeline.core.calendar import MarketCalendar, session_table
from pipeline.core.xnys_rules import session_rows

ROOT = Path(__file__).resolve().parents[2]
START, END = "2019-01-01", "2021-12-31"


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("CACHE_DIRECTORY", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    return tmp_path / "ordergate"


def _file(cache: Path) -> Path:
    (path,) = cache.glob("xnys-*.bin")
    return path


def test_a_table_read_back_is_the_table_built(cache: Path) -> None:
    built = session_rows(START, END)
    assert session_table(START, END) == {d: (o, c) for d, o, c in built}  # built, and written
    assert session_cache.read(START, END) == built
    written = _file(cache).read_bytes()
    assert session_table(START, END) == {d: (o, c) for d, o, c in built}  # read back
    assert _file(cache).read_bytes() == written
    # the half day after Thanksgiving 2020 closes at 13:00 ET; the 4th of July 2020 was observed on Friday the 3rd
    cal = MarketCalendar(START, END)
    session = cal.session(date(2020, 11, 27))
    assert session is not None and (session[1] - session[0]).total_seconds() == 3.5 * 3600
    assert cal.session(date(2020, 7, 3)) is None


def test_a_start_that_finds_the_file_does_not_import_pandas(cache: Path) -> None:
    session_table("2000-01-01", END)
    code = ("import sys; from pipeline.core.calendar import MarketCalendar; "
            f"c = MarketCalendar('2000-01-01', {END!r}); "
            "print(len(c._table), 'pandas' in sys.modules, 'exchange_calendars' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True,
                         env={**os.environ, "XDG_CACHE_HOME": str(cache.parent)})
    count, pandas, calendars = out.stdout.split()
    assert int(count) > 5000 and pandas == "False" and calendars == "False", out.stdout


@pytest.mark.parametrize("damage", ["truncated", "garbage", "other_versions", "other_count", "empty",
                                    "header_not_an_object"])
def test_a_file_that_is_not_the_table_is_ignored_and_written_again(cache: Path, damage: str) -> None:
    built = session_rows(START, END)
    session_table(START, END)
    path = _file(cache)
    data = path.read_bytes()
    head, _, body = data[len(session_cache.MAGIC):].partition(b"\n")
    header = json.loads(head)
    if damage == "truncated":
        path.write_bytes(data[:-5])
    elif damage == "garbage":
        path.write_bytes(b"\x00garbage" * 100)
    elif damage == "other_versions":
        header["key"]["exchange_calendars"] = "0.0.1"
        path.write_bytes(session_cache.MAGIC + json.dumps(header).encode() + b"\n" + body)
    elif damage == "other_count":
        header["rows"] += 1
        path.write_bytes(session_cache.MAGIC + json.dumps(header).encode() + b"\n" + body)
    elif damage == "header_not_an_object":
        path.write_bytes(session_cache.MAGIC + b"[1, 2]\n" + body)
    else:
        path.write_bytes(b"")
    assert session_cache.read(START, END) is None
    assert session_table(START, END) == {d: (o, c) for d, o, c in built}
    assert session_cache.read(START, END) == built  # and the file is whole again


def test_another_range_is_another_file(cache: Path) -> None:
    session_table(START, END)
    assert session_cache.read(START, "2022-12-31") is None


def test_an_unwritable_cache_directory_only_means_no_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the directory would go")
    monkeypatch.setenv("CACHE_DIRECTORY", str(blocker / "ordergate"))
    assert session_cache.cache_dir() == blocker / "ordergate"
    built = session_rows(START, END)
    assert session_table(START, END) == {d: (o, c) for d, o, c in built}
    assert session_cache.read(START, END) is None
