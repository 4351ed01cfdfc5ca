"""An order's status changes buffered between two flushes reach its row as one UPDATE: the row must end exactly as
if each change had been written on its own (an order never moves backwards, a later non-null field wins, a null
one keeps what is there), and every change still gets its own order event row (the audit trail)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from pipeline.core.models import OrderIntent, OrderStatus, Side
from pipeline.record.journal import Journal

TS = datetime(2026, 11, 24, 16, 0, tzinfo=UTC)
COLUMNS = "status, updated_ts, broker, broker_order_id, reason, filled_qty, filled_avg_price"

# (status, broker, broker_order_id, reason, filled_qty, filled_avg_price): a late submit reply after the fill, a
# partial fill, a rejection after an acceptance, nulls between values
CHANGES: list[tuple[Any, ...]] = [
    (OrderStatus.NEW, "paper", "b-1", None, 0.0, None),
    (OrderStatus.PARTIALLY_FILLED, None, None, None, 4.0, 100.5),
    (OrderStatus.FILLED, "paper", None, "done", 10.0, 100.25),
    (OrderStatus.NEW, "fallback", "b-2", None, None, None),
    ("canceled", None, None, "late cancel", None, None),
    (OrderStatus.PENDING, None, None, "fallback from paper", None, None),
]


def _intent(i: int) -> OrderIntent:
    return OrderIntent(client_order_id=f"og-entry-{i:020x}", signal_id=f"sig-{i}", symbol="AAPL", side=Side.BUY,
                       quantity=10.0, created_at=TS)


async def _apply(journal: Journal, coid: str, changes: list[tuple[Any, ...]], flush_each: bool) -> None:
    for n, (status, broker, boid, reason, qty, avg) in enumerate(changes):
        await journal.update_order(coid, status, ts=TS + timedelta(seconds=n), broker=broker, broker_order_id=boid,
                                   reason=reason, filled_qty=qty, filled_avg_price=avg)
        if flush_each:
            await journal.flush()


SEQUENCES = [list(p) for p in itertools.permutations(CHANGES, 3)] + [CHANGES, CHANGES[::-1]]


@pytest.mark.parametrize("durability", ["batched", "full"])
async def test_merged_updates_end_as_the_statements_one_by_one(tmp_path: Path, durability: str) -> None:
    journal = Journal(tmp_path / "journal.db", durability=durability)  # type: ignore[arg-type]
    await journal.open()
    try:
        for i, changes in enumerate(SEQUENCES):
            one_by_one, merged = _intent(2 * i), _intent(2 * i + 1)
            for intent in (one_by_one, merged):
                assert await journal.record_order_intent(intent, "paper", TS)
            await _apply(journal, one_by_one.client_order_id, changes, flush_each=True)
            await _apply(journal, merged.client_order_id, changes, flush_each=False)
            assert journal.pending_count() == len(changes) + 1  # an event row each, one merged update
            rows = {r["client_order_id"]: r for r in await journal.query(
                f"SELECT client_order_id, {COLUMNS} FROM orders WHERE client_order_id IN (?, ?)",
                (one_by_one.client_order_id, merged.client_order_id))}
            expected = {k: v for k, v in rows[one_by_one.client_order_id].items() if k != "client_order_id"}
            got = {k: v for k, v in rows[merged.client_order_id].items() if k != "client_order_id"}
            assert got == expected, changes
            events = await journal.query(
                "SELECT status, reason FROM order_events WHERE client_order_id = ? ORDER BY id",
                                         (merged.client_order_id,))
            assert [(e["status"], e["reason"]) for e in events] == [(str(c[0]), c[3]) for c in changes]
    finally:
        await journal.close()


async def test_a_batched_order_still_buffered_is_inserted_as_its_updates_leave_it(tmp_path: Path) -> None:
    """Batched, an intent waits in the buffer with its status changes: it is inserted as the changes leave it, one
    INSERT instead of an INSERT and an UPDATE, and the row is the same as the statements one by one."""
    journal = Journal(tmp_path / "journal.db", durability="batched")
    await journal.open()
    try:
        for i, changes in enumerate([*SEQUENCES, []]):
            one_by_one, buffered = _intent(2 * i), _intent(2 * i + 1)
            assert await journal.record_order_intent(one_by_one, "paper", TS)
            await journal.flush()
            await _apply(journal, one_by_one.client_order_id, changes, flush_each=True)
            assert await journal.record_order_intent(buffered, "paper", TS)
            await _apply(journal, buffered.client_order_id, changes, flush_each=False)
            assert journal._order_rows  # the intent is still buffered, its changes with it
            rows = {r["client_order_id"]: r for r in await journal.query(
                f"SELECT client_order_id, created_ts, intent, {COLUMNS} FROM orders WHERE client_order_id IN (?, ?)",
                (one_by_one.client_order_id, buffered.client_order_id))}
            expected = {k: v for k, v in rows[one_by_one.client_order_id].items() if k not in ("client_order_id",
                                                                                                "intent")}
            got = {k: v for k, v in rows[buffered.client_order_id].items() if k not in ("client_order_id", "intent")}
            assert got == expected, changes
            assert not journal._order_rows and not journal._updates
        order = await journal.query("SELECT client_order_id FROM orders ORDER BY rowid")
        assert [r["client_order_id"] for r in order] == [_intent(i).client_order_id for i in range(len(order))]
    finally:
        await journal.close()


async def test_a_failed_flush_keeps_the_merged_update_and_later_changes_follow_it(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal.db")
    await journal.open()
    try:
        intent = _intent(1)
        assert await journal.record_order_intent(intent, "paper", TS)
        await journal.update_order(intent.client_order_id, OrderStatus.FILLED, ts=TS, filled_qty=10.0)

        def refuse(conn: Any, rows: Any) -> None:
            raise OSError("disk full")

        import pipeline.record.journal as module

        original = module._insert_rows
        module._insert_rows = refuse  # type: ignore[assignment]
        try:
            with pytest.raises(OSError):
                await journal.flush()
        finally:
            module._insert_rows = original  # type: ignore[assignment]
        await journal.update_order(intent.client_order_id, OrderStatus.NEW, ts=TS + timedelta(seconds=1),
                                   reason="late reply")
        await journal.flush()
        row = (await journal.query(f"SELECT {COLUMNS} FROM orders"))[0]
        assert (row["status"], row["filled_qty"], row["reason"]) == ("filled", 10.0, "late reply")
        assert await journal.query("SELECT COUNT(*) AS n FROM order_events") == [{"n": 2}]
    finally:
        await journal.close()
