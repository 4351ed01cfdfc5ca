"""The batched journal (replay) buffers signals, decision records and order events and puts them into its open
transaction in bulk, but a commit always takes them along: what is on disk never holds an intent, a fill or a
trade without the decision rows recorded before it, and every read sees every row."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from pipeline.core.models import Fill, OrderIntent, OrderStatus, Side
from pipeline.record.journal import Journal

TS = datetime(2026, 11, 24, 16, 0, tzinfo=UTC)


def _intent(i: int) -> OrderIntent:
    return OrderIntent(client_order_id=f"og-entry-{i:020x}", signal_id=f"sig-{i}", symbol="AAPL", side=Side.BUY,
                       quantity=1.0, created_at=TS)


def _committed(path: Path) -> tuple[set[str], set[str], int, int]:
    """What another connection sees: the signal ids with an order, those with a decision row, fills, kv rows."""
    with sqlite3.connect(path) as conn:
        ordered = {r[0] for r in conn.execute("SELECT signal_id FROM orders")}
        decided = {r[0] for r in conn.execute("SELECT signal_id FROM decisions")}
        fills = int(conn.execute("SELECT COUNT(*) FROM fills").fetchone()[0])
        kv = int(conn.execute("SELECT COUNT(*) FROM kv").fetchone()[0])
    return ordered, decided, fills, kv


async def test_every_commit_takes_the_buffered_rows_along(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal.db", durability="batched", batch_rows=7)
    await journal.open()
    try:
        commits = []
        for i in range(40):
            journal.record_decision(f"sig-{i}", "external", "approved", ts=TS)
            assert await journal.record_order_intent(_intent(i), "paper", TS)
            await journal.update_order(_intent(i).client_order_id, OrderStatus.NEW, ts=TS, broker="paper")
            fill = Fill(f"f{i}", _intent(i).client_order_id, "AAPL", Side.BUY, 1.0, 100.0, TS, "paper")
            assert await journal.record_fill(fill)
            await journal.write(lambda conn, i=i: conn.execute("INSERT OR REPLACE INTO kv(key, value) VALUES (?, ?)",
                                                                (f"k{i}", "1")))
            ordered, decided, fills, kv = _committed(journal.path)
            assert ordered <= decided  # never an intent on disk without its decision row
            commits.append(journal.commits)
        assert commits[-1] >= 5  # it did commit along the way (every batch_rows rows)
        rows = await journal.query("SELECT COUNT(*) AS n FROM decisions")  # a read sees every row
        assert rows == [{"n": 40}]
        assert await journal.query("SELECT COUNT(*) AS n FROM order_events") == [{"n": 40}]
        assert await journal.query("SELECT status FROM orders WHERE client_order_id = ?",
                                   (_intent(39).client_order_id,)) == [{"status": "new"}]
    finally:
        await journal.close()
    ordered, decided, fills, kv = _committed(journal.path)
    assert (len(ordered), len(decided), fills, kv) == (40, 40, 40, 40)  # close commits the rest


async def test_write_is_run_under_full_durability(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal.db")
    await journal.open()
    try:
        journal.record_decision("sig-1", "external", "approved", ts=TS)
        await journal.write(lambda conn: conn.execute("INSERT INTO kv(key, value) VALUES ('a', '1')"))
        assert _committed(journal.path)[3] == 1  # on disk when it returns (autocommit on the journal thread)
        assert journal.pending_count() == 1  # the buffered decision waits for its flush, as with run
    finally:
        await journal.close()
