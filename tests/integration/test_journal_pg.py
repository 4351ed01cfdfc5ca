"""The PostgreSQL journal against a real server: the schema is the SQLite journal's, one daemon per instance, a
lost commit reply is settled (never reported durable unless it is, never applied twice), a server restart fails
the call in hand and the next call reconnects."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from adapters.journal_pg import JournalInUse, JournalUnavailable, PgJournal, describe_dsn
from adapters.journal_pg_schema import schema_name, to_pg
from pipeline.core.models import Fill, OrderIntent, Side, client_order_id_for
from pipeline.record.journal import Journal
from tests.pg import PgServer, instance_name

NOW = datetime(2026, 11, 24, 16, 0, tzinfo=UTC)


def _intent(signal_id: str = "sig-1") -> OrderIntent:
    return OrderIntent(client_order_id=client_order_id_for(signal_id), signal_id=signal_id, symbol="AAPL",
                       side=Side.BUY, quantity=10, ticker="AAPL", reference_price=100.0)


def _fill(fill_id: str = "f-1") -> Fill:
    return Fill(fill_id=fill_id, client_order_id=_intent().client_order_id, symbol="AAPL", side=Side.BUY,
                quantity=10, price=100.0, timestamp=NOW, broker="paper")


@pytest.fixture
async def pg(pg_dsn: str):
    journal = PgJournal(pg_dsn, instance_name())
    await journal.open()
    yield journal
    await journal.close()


def test_sqlite_dialect_is_translated() -> None:
    assert to_pg("SELECT * FROM t WHERE a=? AND b='?' AND c IN (?,?)") == \
        "SELECT * FROM t WHERE a=$1 AND b='?' AND c IN ($2,$3)"
    assert to_pg("INSERT OR IGNORE INTO signals VALUES (?,?)") == \
        "INSERT INTO signals VALUES ($1,$2) ON CONFLICT DO NOTHING"
    assert to_pg("INSERT OR REPLACE INTO kv(key, value) VALUES (?, ?)") == \
        "INSERT INTO kv(key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value"
    assert describe_dsn("postgresql://og:s3cret@db.example:5433/desk") == "postgresql://og@db.example:5433/desk"


async def test_every_sqlite_table_and_column_is_in_the_instance_schema(tmp_path: Path, pg: PgJournal) -> None:
    lite = Journal(tmp_path / "journal.db")
    await lite.open()
    await lite.close()
    with sqlite3.connect(tmp_path / "journal.db") as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE"
                                             " 'sqlite_%'")]
        expected = {t: [r[1] for r in conn.execute(f"PRAGMA table_info({t})")] for t in tables}
    rows = await pg.query(
        "SELECT c.table_name, c.column_name FROM information_schema.columns c JOIN information_schema.tables t"
        " USING (table_schema, table_name) WHERE c.table_schema = ? AND t.table_type = 'BASE TABLE' ORDER BY"
        " c.table_name, c.ordinal_position", (pg.schema,))
    got: dict[str, list[str]] = {}
    for row in rows:
        got.setdefault(row["table_name"], []).append(row["column_name"])
    assert set(got) == set(expected)
    for table, columns in expected.items():  # the same columns in the same order, then the desk's three
        assert got[table] == [*columns, "instance", "rowid", "og_token"], table


async def test_rows_carry_their_instance_and_instances_are_apart(pg_dsn: str) -> None:
    a, b = PgJournal(pg_dsn, instance_name("a")), PgJournal(pg_dsn, instance_name("b"))
    await a.open()
    await b.open()
    try:
        assert a.condition.state == "missing" and b.condition.state == "missing"
        assert await a.record_order_intent(_intent(), "paper", NOW)
        assert await b.record_order_intent(_intent(), "paper", NOW)  # the same client order id, another account
        assert await a.record_fill(_fill()) and not await a.record_fill(_fill())
        assert [r["instance"] for r in await a.query("SELECT instance FROM orders")] == [a.instance]
        assert await b.fills() == []
        again = PgJournal(pg_dsn, a.instance)
        with pytest.raises(JournalInUse, match="one daemon per instance"):
            await again.open()  # a second daemon on the same instance (this host or another) is refused
    finally:
        await a.close()
        await b.close()
    reopened = PgJournal(pg_dsn, a.instance)  # the lock went with the first daemon's session
    await reopened.open()
    try:
        assert reopened.condition.state == "intact"
        assert len(await reopened.fills()) == 1
    finally:
        await reopened.close()


class _LostReply(asyncpg.Connection):
    """A real connection whose first matching statement runs (or not) and then 'drops' before its reply."""

    plan: dict[str, Any] = {}

    async def execute(self, query: str, *args: Any, **kw: Any) -> Any:
        plan = _LostReply.plan
        if query.startswith(plan.get("sql", "\0")) and not plan.get("fired"):
            plan["fired"] = True
            if plan["commit_first"]:
                await super().execute(query, *args, **kw)  # committed (an autocommit statement) ...
            raise ConnectionResetError("connection reset by peer")  # ... and the reply never came
        return await super().execute(query, *args, **kw)


async def _lossy(pg: PgJournal, sql: str, *, commit_first: bool) -> dict[str, Any]:
    """From now on `pg` connects with _LostReply connections, armed for `sql`."""
    _LostReply.plan = {"sql": sql, "commit_first": commit_first}
    pg.connect_kwargs = {"connection_class": _LostReply}
    pg._drop()
    return _LostReply.plan


@pytest.mark.parametrize("commit_first", [True, False])
async def test_a_fill_whose_reply_is_lost_is_settled_once(pg: PgJournal, commit_first: bool) -> None:
    lost = await _lossy(pg, "INSERT INTO fills", commit_first=commit_first)
    assert await pg.record_fill(_fill())  # ours either way: committed before, or written again now
    assert lost["fired"]
    assert len(await pg.fills()) == 1
    assert not await pg.record_fill(_fill())  # a redelivery is a duplicate


@pytest.mark.parametrize(("sql", "commit_first"), [("INSERT INTO orders", False), ("COMMIT", True)])
async def test_an_intent_whose_reply_is_lost_is_durable_exactly_when_reported(
    pg: PgJournal, sql: str, commit_first: bool,
) -> None:
    lost = await _lossy(pg, sql, commit_first=commit_first)  # lost before the insert, or after the commit
    pg.record_decision("sig-1", "risk_gate", "approved", ts=NOW)
    assert await pg.record_order_intent(_intent(), "paper", NOW)
    assert lost["fired"]
    assert (await pg.get_order(_intent().client_order_id))["status"] == "pending"
    decisions = await pg.query("SELECT stage FROM decisions WHERE signal_id = ?", ("sig-1",))
    assert [d["stage"] for d in decisions] == ["risk_gate"]  # the rolled-back batch was written once, again
    assert not await pg.record_order_intent(_intent(), "paper", NOW)  # journaled: the router will not resend


async def test_a_reconnect_takes_the_lock_back_from_its_own_lost_session(pg: PgJournal, pg_dsn: str,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A connection lost on our side while the server still keeps its session (a network cut it has not noticed,
    or a terminate it has not processed yet) holds the instance's advisory lock: the reconnect is not refused as
    'in use by another ordergate' for as long as the server keeps it, it ends our own old session and goes on.
    Another daemon's session is never ended: a second daemon on the instance is still refused."""
    assert await pg.record_order_intent(_intent("sig-a"), "paper", NOW)
    old = pg._conn
    assert old is not None
    monkeypatch.setattr(asyncpg.Connection, "terminate", lambda self: None)  # the cut: the server keeps it
    pg._drop()
    monkeypatch.undo()
    try:
        assert not old.is_closed()  # its session, and the lock with it, live on at the server
        assert await pg.record_order_intent(_intent("sig-b"), "paper", NOW)
        assert await pg.record_fill(_fill())
        other = PgJournal(pg_dsn, pg.instance)
        with pytest.raises(JournalInUse, match="one daemon per instance"):
            await other.open()  # ours now: another daemon is refused, and our session is not ended
        assert await pg.record_order_intent(_intent("sig-c"), "paper", NOW)
    finally:
        old.terminate()


async def test_server_restart_fails_the_call_in_hand_then_reconnects(pg_server: PgServer, pg: PgJournal) -> None:
    assert await pg.record_order_intent(_intent("sig-a"), "paper", NOW)
    pg_server.stop()
    try:
        pg.record_decision("sig-b", "risk_gate", "approved", ts=NOW)
        with pytest.raises(JournalUnavailable):
            await pg.record_order_intent(_intent("sig-b"), "paper", NOW)  # not durable: the router sends nothing
        with pytest.raises(JournalUnavailable):
            await pg.record_fill(_fill())
        assert pg.pending_count() == 1  # the buffered decision is kept for the next write
    finally:
        pg_server.start()
    assert await pg.record_order_intent(_intent("sig-b"), "paper", NOW)  # a new connection, the lock taken again
    assert await pg.record_fill(_fill())
    orders = await pg.query("SELECT client_order_id FROM orders ORDER BY created_ts, rowid")
    assert [o["client_order_id"] for o in orders] == [_intent("sig-a").client_order_id,
                                                      _intent("sig-b").client_order_id]
    assert [d["signal_id"] for d in await pg.query("SELECT signal_id FROM decisions")] == ["sig-b"]


async def test_an_unreachable_server_is_one_clear_error(tmp_path: Path) -> None:
    journal = PgJournal(f"postgresql://og:pw-not-shown@/x?host={tmp_path}", "alpha", connect_timeout=2)
    with pytest.raises(JournalUnavailable, match="cannot connect") as err:
        await journal.open()
    assert "pw-not-shown" not in str(err.value)


def test_schema_name_is_per_instance() -> None:
    assert schema_name("family-1") == "ordergate_family_1"


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_split_records_and_fill_counts_in_either_journal(tmp_path: Path, pg_dsn: str, backend: str) -> None:
    """What the split handling keeps in the journal (pipeline.positions.splits): the symbol's fill count at the
    split and the records, oldest first, read back the same from SQLite and PostgreSQL; a damaged one is left out."""
    from fractions import Fraction

    from pipeline.positions.splits import SplitRecord

    journal: Any = Journal(tmp_path / "journal.db") if backend == "sqlite" else PgJournal(pg_dsn, instance_name())
    await journal.open()
    try:
        assert await journal.fill_count("AAPL") == 0
        assert await journal.record_order_intent(_intent(), "paper", NOW)
        assert await journal.record_fill(_fill("f-1")) and await journal.record_fill(_fill("f-2"))
        assert await journal.fill_count("AAPL") == 2 and await journal.fill_count("MSFT") == 0
        first = SplitRecord("AAPL", Fraction(2), 2, NOW.isoformat(), "paper")
        second = SplitRecord("AAPL", Fraction(1, 10), 2, NOW.isoformat(), "paper", whole=False)
        await journal.record_split(first)
        await journal.record_split(second)
        assert await journal.split_records() == [first, second]
        await journal.set_kv("splits", [first.to_json(), {"symbol": "AAPL", "ratio": "0"}])
        assert await journal.split_records() == [first]
    finally:
        await journal.close()
