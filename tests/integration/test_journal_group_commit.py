"""The journal's durable writes: intents arriving together share a commit, each caller learns its own outcome,
a failed commit fails every caller of its group and loses no buffered row; batched rows stay bounded; the
batched setting runs the same statements in one open transaction."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pipeline.core.models import Fill, OrderIntent, Side
from pipeline.record.journal import Journal
from pipeline.record.wal_checkpoint import AUTOCHECKPOINT_PAGES, EVERY_COMMITS

TS = datetime(2026, 11, 24, 16, 0, tzinfo=UTC)


def _intent(i: int) -> OrderIntent:
    return OrderIntent(client_order_id=f"og-entry-{i:020x}", signal_id=f"sig-{i}", symbol="AAPL", side=Side.BUY,
                       quantity=1.0, created_at=TS)


def _size(path: Path) -> int:
    return path.stat().st_size


def _wal_left(path: Path) -> bool:
    return Path(f"{path}-wal").exists()


def _on_disk(path: Path, sql: str) -> int:
    with sqlite3.connect(path) as conn:
        return int(conn.execute(sql).fetchone()[0])


@pytest.fixture
async def journal(tmp_path: Path):
    j = Journal(tmp_path / "journal.db")
    await j.open()
    yield j
    await j.close()


async def test_intents_arriving_together_share_commits_and_each_gets_its_answer(journal: Journal) -> None:
    journal.record_decision("sig-0", "external", "x", ts=TS)  # a buffered row rides along with the first group
    before = journal.commits
    answers = await asyncio.gather(*(journal.record_order_intent(_intent(i), "paper", TS) for i in range(20)),
                                   journal.record_order_intent(_intent(3), "paper", TS))  # one id twice
    assert answers[:20] == [True] * 20 and answers[20] is False
    assert 1 <= journal.commits - before <= 3  # the first alone, the rest together (never one each)
    assert _on_disk(journal.path, "SELECT COUNT(*) FROM orders") == 20  # committed before the answers
    assert _on_disk(journal.path, "SELECT COUNT(*) FROM decisions") == 1
    fills = [Fill(f"f{i}", f"og-entry-{i:020x}", "AAPL", Side.BUY, 1.0, 100.0, TS, "paper") for i in range(5)]
    assert await asyncio.gather(*(journal.record_fill(f) for f in [*fills, fills[0]])) == [True] * 5 + [False]


async def test_a_failed_group_fails_each_caller_and_keeps_the_buffered_rows(journal: Journal) -> None:
    await journal.run(lambda conn: conn.execute("PRAGMA query_only=ON"))  # every write fails, as on a full disk
    journal.record_decision("sig-1", "external", "x", ts=TS)
    results = await asyncio.gather(*(journal.record_order_intent(_intent(i), "paper", TS) for i in range(4)),
                                   return_exceptions=True)
    assert all(isinstance(r, sqlite3.OperationalError) for r in results)
    assert journal.pending_count() == 1  # the decision row is still there
    assert await journal.query("SELECT COUNT(*) AS n FROM orders") == [{"n": 0}]  # a read still answers
    await journal.run(lambda conn: conn.execute("PRAGMA query_only=OFF"))
    assert await journal.record_order_intent(_intent(0), "paper", TS) is True
    assert _on_disk(journal.path, "SELECT COUNT(*) FROM decisions") == 1


async def test_buffered_rows_are_committed_once_there_are_enough_without_a_writer(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal.db", batch_rows=10)
    await journal.open()
    try:
        for i in range(25):
            journal.record_decision(f"sig-{i}", "external", "x", ts=TS)
        for _ in range(100):
            await asyncio.sleep(0.01)
            if _on_disk(journal.path, "SELECT COUNT(*) FROM decisions") >= 10:
                break
        assert _on_disk(journal.path, "SELECT COUNT(*) FROM decisions") >= 10
        assert journal.pending_count() < 25
    finally:
        await journal.close()
    assert _on_disk(tmp_path / "journal.db", "SELECT COUNT(*) FROM decisions") == 25


async def test_batched_runs_the_same_statements_in_one_transaction(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal.db", durability="batched", batch_rows=1000)
    await journal.open()
    try:
        before = journal.commits
        assert [await journal.record_order_intent(_intent(i), "paper", TS) for i in (1, 2, 1)] == [True, True, False]
        await journal.update_order(_intent(1).client_order_id, "filled", ts=TS, filled_qty=1.0)
        rows = await journal.query("SELECT status FROM orders ORDER BY client_order_id")  # sees its own rows
        assert [r["status"] for r in rows] == ["filled", "pending"]
        assert journal.commits == before  # nothing committed yet: one open transaction
    finally:
        await journal.close()
    assert _on_disk(tmp_path / "journal.db", "SELECT COUNT(*) FROM order_events") == 1


def test_the_batched_setting_is_honoured_on_simulated_time_only(tmp_path: Path) -> None:
    """A replay runs the journal batched; a live clock keeps it full whatever the setting says."""
    from config.settings import load_settings
    from daemon.core import Core
    from daemon.replay import replay_settings
    from pipeline.core.clock import LiveClock, SimulatedClock

    base = load_settings(state_dir=tmp_path, broker={"primary": "paper"}, paper={"persistent": False})
    replaying = replay_settings(base, "1m", tmp_path / "replay")
    assert replaying.journal.durability == "batched"
    assert Core(replaying, SimulatedClock(TS)).journal.durability == "batched"
    asked = base.model_copy(update={"journal": base.journal.model_copy(update={"durability": "batched"})})
    assert Core(asked, LiveClock()).journal.durability == "full"
    assert Core(base, SimulatedClock(TS)).journal.durability == "full"  # the chaos daemon: simulated, durable


async def test_the_wal_is_checkpointed_off_the_intent_commits(tmp_path: Path) -> None:
    """SQLite checkpoints the WAL inside whichever commit takes it past wal_autocheckpoint pages: with ~11 pages an
    intent, one intent in ~90 waited for megabytes to be copied and fsync'd before its send. A thread of its own
    checkpoints every EVERY_COMMITS commits (the database file grows while the connection's own threshold is
    still ahead), the data is whole after close, and the WAL is folded back."""
    journal = Journal(tmp_path / "journal.db")
    await journal.open()
    try:
        assert await journal.run(lambda conn: conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0]) \
            == AUTOCHECKPOINT_PAGES
        empty = _size(journal.path)
        n = 3 * EVERY_COMMITS  # ~800 pages: short of the connection's own checkpoint (1 000)
        for i in range(n):  # one commit each
            journal.record_decision(f"sig-{i}", "external", "x", ts=TS)
            assert await journal.record_order_intent(_intent(i), "paper", TS) is True
        assert journal.commits >= n
        for _ in range(200):
            if journal.checkpoints >= 2:
                break
            await asyncio.sleep(0.01)
        assert journal.checkpoints >= 2  # one per EVERY_COMMITS commits (the last may still be under way)
        # the background checkpoints copied the intents' pages back into the database file itself
        assert _size(journal.path) > empty
    finally:
        await journal.close()
    assert not _wal_left(journal.path)  # the last connection to close folded the WAL back
    assert _on_disk(journal.path, "SELECT COUNT(*) FROM orders") == 3 * EVERY_COMMITS
