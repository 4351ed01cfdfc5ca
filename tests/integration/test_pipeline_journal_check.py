"""The journal's start-up check on real SQLite files: what `Journal.open()` calls intact, missing, empty, damaged."""

from __future__ import annotations

import shutil
import sqlite3
import struct
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pipeline.core.models import OrderIntent, Side, client_order_id_for
from pipeline.record.journal import Journal
from pipeline.record.journal_check import journal_damage, wal_problem

NOW = datetime(2026, 11, 24, 16, 0, tzinfo=UTC)


def _crashed_copy(tmp_path: Path, commits: int = 20) -> Path:
    """A WAL database copied while its writer still has it open (what SIGKILL leaves): data only in the WAL."""
    live = tmp_path / "live"
    live.mkdir()
    conn = sqlite3.connect(live / "j.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA wal_autocheckpoint=0")
    conn.execute("CREATE TABLE t (x INTEGER, pad TEXT)")
    for i in range(commits):
        conn.execute("INSERT INTO t VALUES (?, ?)", (i, "x" * 3000))  # one page or more per commit
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in ("j.db", "j.db-wal"):
        shutil.copy(live / name, copy / name)
    conn.close()
    return copy / "j.db"


def _frames(wal: Path) -> tuple[int, int]:
    data = wal.read_bytes()
    page_size = struct.unpack(">I", data[8:12])[0]
    frame = 24 + page_size
    return frame, (len(data) - 32) // frame


def test_a_sound_wal_after_a_crash_checks_clean_and_keeps_its_rows(tmp_path: Path) -> None:
    db = _crashed_copy(tmp_path)
    assert wal_problem(db.with_name("j.db-wal")) is None
    assert journal_damage(db) is None
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM t").fetchone()[0] == 20


def test_a_damaged_frame_before_later_commits_is_damage(tmp_path: Path) -> None:
    db = _crashed_copy(tmp_path)
    wal = db.with_name("j.db-wal")
    frame, count = _frames(wal)
    assert count > 10
    data = bytearray(wal.read_bytes())
    at = 32 + 3 * frame + 24 + 100  # inside the page of the 4th frame
    data[at:at + 8] = b"\xff" * 8
    wal.write_bytes(bytes(data))
    # SQLite alone would quietly keep only the first commits
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        assert conn.execute("SELECT COUNT(*) FROM t").fetchone()[0] < 20
    problem = journal_damage(db)
    assert problem is not None and "j.db-wal" in problem and "committed frames follow" in problem


def test_a_torn_last_frame_is_an_unfinished_transaction_not_damage(tmp_path: Path) -> None:
    db = _crashed_copy(tmp_path)
    wal = db.with_name("j.db-wal")
    frame, count = _frames(wal)
    data = bytearray(wal.read_bytes())
    at = 32 + (count - 1) * frame + 24 + 10
    data[at:at + 4] = b"\x00\x01\x02\x03"
    wal.write_bytes(bytes(data))
    assert journal_damage(db) is None


@pytest.mark.parametrize("garbage", [b"\xde\xad\xbe\xef" * 1024, b"short"])
def test_a_wal_that_is_not_sqlites_is_damage(tmp_path: Path, garbage: bytes) -> None:
    db = _crashed_copy(tmp_path)
    db.with_name("j.db-wal").write_bytes(garbage)
    problem = journal_damage(db)
    assert problem is not None and problem.startswith("j.db-wal:")


def _intent(n: int) -> OrderIntent:
    return OrderIntent(client_order_id=client_order_id_for(f"sig-{n}"), signal_id=f"sig-{n}", symbol="AAPL",
                       side=Side.BUY, quantity=10, ticker="AAPL", reference_price=100.0)


async def _open(path: Path) -> Journal:
    journal = Journal(path)
    await journal.open()
    return journal


async def test_open_reports_missing_empty_intact_and_moves_a_damaged_journal_aside(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    journal = await _open(path)
    assert (journal.condition.state, journal.condition.lost) == ("missing", True)
    await journal.close()
    journal = await _open(path)
    assert journal.condition.state == "empty"
    await journal.record_order_intent(_intent(1), "paper", NOW)
    await journal.close()
    journal = await _open(path)
    assert (journal.condition.state, journal.condition.lost) == ("intact", False)
    await journal.close()

    path.write_bytes(b"garbage" * 1000)
    journal = await _open(path)
    try:
        condition = journal.condition
        assert condition.state == "damaged" and "journal.db" in condition.detail
        assert condition.preserved == (str(tmp_path / "journal.db.damaged-1"),)
        assert (tmp_path / "journal.db.damaged-1").read_bytes() == b"garbage" * 1000
        assert await journal.query("SELECT * FROM orders") == []  # a new journal was begun beside it
    finally:
        await journal.close()
    path.write_bytes(b"more garbage")
    journal = await _open(path)
    await journal.close()
    assert journal.condition.preserved == (str(tmp_path / "journal.db.damaged-2"),)  # never over the first
    assert (tmp_path / "journal.db.damaged-1").read_bytes() == b"garbage" * 1000
