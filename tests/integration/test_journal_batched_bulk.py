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


async def test_a_batched_journal_knows_the_orders_and_fills_it_held_when_opened(tmp_path: Path) -> None:
    """Intents and fills join the bulk rows with their answer from a filter of the keys journaled: a replay on a
    journal that holds orders already still finds them there (False: not written, not sent again)."""
    fill = Fill("f1", _intent(1).client_order_id, "AAPL", Side.BUY, 1.0, 100.0, TS, "paper")
    earlier = Journal(tmp_path / "journal.db")
    await earlier.open()
    assert await earlier.record_order_intent(_intent(1), "paper", TS)
    assert await earlier.record_fill(fill)
    await earlier.close()
    journal = Journal(tmp_path / "journal.db", durability="batched")
    await journal.open()
    try:
        assert not await journal.record_order_intent(_intent(1), "paper", TS)
        assert not await journal.record_fill(fill)
        assert await journal.record_order_intent(_intent(2), "paper", TS)
        assert not await journal.record_order_intent(_intent(2), "paper", TS)  # a repeat within the run
        other_broker = Fill("f1", _intent(1).client_order_id, "AAPL", Side.BUY, 1.0, 100.0, TS, "alpaca")
        assert await journal.record_fill(other_broker)  # the key is (broker, fill id)
        assert await journal.query("SELECT COUNT(*) AS n FROM orders") == [{"n": 2}]
        assert await journal.query("SELECT COUNT(*) AS n FROM fills") == [{"n": 2}]
    finally:
        await journal.close()


async def test_a_batched_intent_whose_write_fails_is_neither_written_nor_answered_written(tmp_path: Path) -> None:
    """The buffered rows go in before the intent joins them: when that write fails the intent's answer is the
    error (the router sends nothing) and the intent is not left buffered to appear later as never sent."""
    journal = Journal(tmp_path / "journal.db", durability="batched", batch_rows=3)
    await journal.open()
    try:
        await journal.run(lambda conn: conn.execute("DROP TABLE decisions"))
        journal.record_decision("sig-1", "external", "approved", ts=TS)
        journal.record_decision("sig-2", "external", "approved", ts=TS)
        try:
            await journal.record_order_intent(_intent(1), "paper", TS)
        except Exception as exc:
            assert "decisions" in str(exc)
        else:
            raise AssertionError("the failed write answered the intent as written")
        left = journal._take_all()  # the decision rows wait for a write that works; the intent is not among them
        assert [sql for sql, _ in left if "INTO orders" in sql] == []
        assert len(left) == 2
        assert await journal.query("SELECT COUNT(*) AS n FROM orders") == [{"n": 0}]
    finally:
        await journal.close()


async def test_a_batched_trade_row_gets_the_id_sqlite_would_give_it(tmp_path: Path) -> None:
    """Closed trades join the bulk rows with an id of their own: the one AUTOINCREMENT gives (one above any id ever
    used, a deleted row's included), still right after another writer added a row in between (`run`)."""
    from pipeline.record.trade_journal import TradeJournalWriter
    from tests.integration.test_exits_journal import DAY

    journal = Journal(tmp_path / "journal.db", durability="batched")
    await journal.open()
    try:
        writer = TradeJournalWriter(journal)
        first = [await writer.record(DAY[0]) for _ in range(3)]
        assert first == [1, 2, 3]
        await journal.run(lambda conn: conn.execute("DELETE FROM trades WHERE id = 3"))
        assert await writer.record(DAY[0]) == 4  # never 3 again
        await journal.run(lambda conn: conn.execute(
            "INSERT INTO trades(ticker, entry_time, exit_time, day) VALUES ('X', '2026-11-24T16:00:00+00:00',"
            " '2026-11-24T16:00:00+00:00', '2026-11-24')"))  # id 5, written by someone else
        assert await writer.record(DAY[0]) == 6
        await journal.write(lambda conn: conn.execute(  # write joins the open transaction: still no id twice
            "INSERT INTO trades(ticker, entry_time, exit_time, day) VALUES ('Y', '2026-11-24T16:00:00+00:00',"
            " '2026-11-24T16:00:00+00:00', '2026-11-24')"))  # id 7
        assert await writer.record(DAY[0]) == 8
        await journal.set_kv("k", {"n": 1})  # a buffered row of its own: ids go on
        await journal.set_kv("k", {"n": 2})
        assert await writer.record(DAY[0]) == 9
        assert await journal.get_kv("k") == {"n": 2}
        rows = await journal.query("SELECT id FROM trades ORDER BY id")
        assert [r["id"] for r in rows] == [1, 2, 4, 5, 6, 7, 8, 9]
    finally:
        await journal.close()


async def test_set_kv_batched_ends_as_one_replace_per_call(tmp_path: Path) -> None:
    """Batched, set_kv writes only each key's last value before the rows go in; the kv table ends the same, key by
    key and in row order, as the full journal's one INSERT OR REPLACE per call."""
    stores = [("feedback", {"n": 1}), ("marks", [1.5]), ("feedback", {"n": 2}), ("resume", "t1"),
              ("marks", [2.5]), ("feedback", {"n": 3})]
    tables = []
    for durability in ("full", "batched"):
        journal = Journal(tmp_path / f"{durability}.db", durability=durability, batch_rows=4)
        await journal.open()
        try:
            for i, (key, value) in enumerate(stores):
                await journal.set_kv(key, value)
                if i == 3:
                    assert await journal.get_kv("feedback") == {"n": 2}  # a read sees the last value stored
            await journal.flush()
        finally:
            await journal.close()
        with sqlite3.connect(tmp_path / f"{durability}.db") as conn:
            tables.append(conn.execute("SELECT key, value FROM kv ORDER BY rowid").fetchall())
    assert tables[0] == tables[1] == [("resume", '"t1"'), ("marks", "[2.5]"), ("feedback", '{"n": 3}')]


def test_bulk_rows_go_in_as_multi_row_inserts_with_the_tables_one_insert_per_row_gives(tmp_path: Path) -> None:
    """Many rows of one INSERT go in MULTI_ROWS at a time as one statement: every table ends exactly as one
    INSERT per row leaves it — ids in order, a repeated order ignored (OR IGNORE), a repeated kv key replaced (OR
    REPLACE), and the rows that do not fill a whole statement after the others."""
    import itertools

    from pipeline.record import journal as module

    count = 3 * module.MULTI_ROWS + 5
    rows: list[tuple[str, tuple[object, ...]]] = []
    for i in range(count):
        rows.append((module._INSERT_DECISION, (f"sig-{i}", "intent", "approved", "", TS.isoformat(), None, None,
                                               None, "2026-11-24")))
        coid = f"og-entry-{i % (count - 40):020x}"  # the last 40 repeat earlier ones: ignored
        rows.append((module._INSERT_ORDER, (coid, f"sig-{i}", "entry", "paper", "AAPL", "buy", 1.0, "market",
                                            "pending", TS.isoformat(), TS.isoformat(), "{}", "")))
        rows.append((module._SET_KV, (f"k{i % 7}", str(i))))

    def tables(path: Path, insert: object) -> list[list[tuple[object, ...]]]:
        journal = Journal(path)
        journal._open_sync()
        conn = journal._conn
        assert conn is not None
        with conn:
            insert(conn)
        out = [conn.execute(f"SELECT * FROM {t} ORDER BY rowid").fetchall() for t in ("decisions", "orders", "kv")]
        conn.close()
        return out

    def one_by_one(conn: sqlite3.Connection) -> None:
        for sql, params in rows:
            conn.execute(sql, params)

    bulk = tables(tmp_path / "bulk.db", lambda conn: module._insert_rows(conn, rows))
    single = tables(tmp_path / "single.db", one_by_one)
    assert bulk == single
    assert [len(t) for t in bulk] == [count, count - 40, 7]
    assert module._multi_row(module._SET_KV).count("(?, ?)") == module.MULTI_ROWS
    assert list(itertools.islice((r[0] for r in bulk[0]), 3)) == [1, 2, 3]


async def test_a_batched_journal_writes_no_wal_and_the_daemon_gets_its_wal_back(tmp_path: Path) -> None:
    """Batched (replay): a rollback journal, no WAL (every page was written twice: to the WAL, then into the file
    by its checkpoints); the same file opened by the daemon (full) is in WAL mode again and holds every row."""
    path = tmp_path / "journal.db"
    journal = Journal(path, durability="batched", batch_rows=50)
    await journal.open()
    try:
        for i in range(200):
            journal.record_decision(f"sig-{i}", "external", "approved", ts=TS)
            assert await journal.record_order_intent(_intent(i), "paper", TS)
        assert await journal.query("PRAGMA journal_mode") == [{"journal_mode": "persist"}]
        assert journal.commits >= 3
        assert not (tmp_path / "journal.db-wal").exists()
    finally:
        await journal.close()
    daemon = Journal(path)
    await daemon.open()
    try:
        assert await daemon.query("PRAGMA journal_mode") == [{"journal_mode": "wal"}]
        assert await daemon.query("SELECT COUNT(*) AS n FROM orders") == [{"n": 200}]
        assert daemon.condition.state == "intact"
    finally:
        await daemon.close()
