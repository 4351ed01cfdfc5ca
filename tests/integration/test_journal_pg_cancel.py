"""The PostgreSQL journal's connection after a call that did not finish: a task cancelled while its transaction
was opening (asyncpg then keeps the half-begun transaction as the connection's outer one, so every later
`transaction()` is only a savepoint inside it and nothing is ever committed), and a connection lost inside a
transaction (asyncpg reports an InterfaceError, not a connection error). Either way the next durable write is
committed for real (seen from another session) before it is reported durable, and a lost connection is a
JournalUnavailable (an OSError: the daemon holds the broker event instead of dropping it)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest

from adapters.journal_pg import JournalUnavailable, PgJournal
from adapters.journal_pg_schema import quote_ident
from pipeline.core.models import OrderIntent, OrderStatus, Side, client_order_id_for
from tests.pg import instance_name

NOW = datetime(2026, 11, 24, 16, 0, tzinfo=UTC)


def _intent(signal_id: str) -> OrderIntent:
    return OrderIntent(client_order_id=client_order_id_for(signal_id), signal_id=signal_id, symbol="AMD",
                       side=Side.SELL, quantity=58, ticker="AMD", reference_price=255.0)


class _Scripted(asyncpg.Connection):
    """A real connection with one scripted fault. `hang_after_begin`: BEGIN runs on the server, then the call
    waits (for its task to be cancelled there). `die_at`: the first statement starting so is cut by the server
    (pg_terminate_backend of this session), as a server restart cuts it."""

    plan: dict[str, Any] = {}

    async def execute(self, query: str, *args: Any, **kw: Any) -> Any:
        plan = _Scripted.plan
        if plan.get("hang_after_begin") and query.startswith("BEGIN"):
            plan["hang_after_begin"] = False
            result = await super().execute(query, *args, **kw)
            plan["in_begin"].set()
            await asyncio.Event().wait()  # cancelled here, as the daemon's shutdown cancels a loop mid-write
            return result
        if plan.get("die_at") and query.startswith(plan["die_at"]):
            plan["die_at"] = None
            killer = await asyncpg.connect(plan["dsn"])
            try:
                await killer.execute("SELECT pg_terminate_backend($1)", self.get_server_pid())
            finally:
                await killer.close()
        return await super().execute(query, *args, **kw)


@pytest.fixture
async def scripted(pg_dsn: str):
    _Scripted.plan = {"dsn": pg_dsn}
    journal = PgJournal(pg_dsn, instance_name("c"))
    journal.connect_kwargs = {"connection_class": _Scripted}
    await journal.open()
    yield journal
    await journal.close()


async def _committed(dsn: str, journal: PgJournal, sql: str) -> list[Any]:
    """What another session sees: only committed rows."""
    conn = await asyncpg.connect(dsn, server_settings={"search_path": quote_ident(journal.schema)})
    try:
        return [r[0] for r in await conn.fetch(sql)]
    finally:
        await conn.close()


async def test_a_write_cancelled_as_its_transaction_begins_leaves_no_open_transaction(
    pg_dsn: str, scripted: PgJournal,
) -> None:
    in_begin = _Scripted.plan["in_begin"] = asyncio.Event()
    _Scripted.plan["hang_after_begin"] = True
    scripted.record_decision("sig-x", "risk_gate", "approved", ts=NOW)
    flushing = asyncio.create_task(scripted.flush())
    await in_begin.wait()
    flushing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await flushing
    assert scripted.pending_count() == 1  # the cancelled batch is kept for the next write

    entry = _intent("sig-amd")
    assert await scripted.record_order_intent(entry, "paper", NOW)  # reported durable: the router sends it now
    # ... so it must be committed now, for every other session (and after this one ends)
    assert await _committed(pg_dsn, scripted, "SELECT client_order_id FROM orders") == [entry.client_order_id]
    assert await _committed(pg_dsn, scripted, "SELECT signal_id FROM decisions") == ["sig-x"]
    await scripted.update_order(entry.client_order_id, OrderStatus.NEW, ts=NOW, broker="paper")
    assert await _committed(pg_dsn, scripted, "SELECT status FROM orders") == ["new"]


async def test_a_connection_cut_inside_a_transaction_is_journal_unavailable(pg_dsn: str, scripted: PgJournal) -> None:
    entry = _intent("sig-cut")
    assert await scripted.record_order_intent(entry, "paper", NOW)
    _Scripted.plan["die_at"] = "UPDATE orders"  # update_order's first statement, inside its transaction
    with pytest.raises(JournalUnavailable):  # an OSError: the broker event is held and applied again
        await scripted.update_order(entry.client_order_id, OrderStatus.NEW, ts=NOW, broker="paper")
    await scripted.update_order(entry.client_order_id, OrderStatus.NEW, ts=NOW, broker="paper")  # reconnected
    assert await _committed(pg_dsn, scripted, "SELECT status FROM orders") == ["new"]
