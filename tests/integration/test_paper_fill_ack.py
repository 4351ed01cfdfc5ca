"""The paper broker takes a fill as delivered only once the daemon has journaled and applied it.

Found by the real-daemon chaos run: two exit fills at the paper broker never reached the journal and were never
sent again — the broker counted a fill as delivered as soon as the daemon had queued it on its bus, so a crash
between the queue and the journal lost it for good (and left its exit `pending`, retried for ever).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from config.settings import load_settings
from daemon.core import Core
from pipeline.core.clock import SimulatedClock
from pipeline.core.models import Fill, OrderIntent, Side
from tests.conftest import SESSION
from tests.pg import backend_settings


def _settings(tmp_path: Path, **journal: Any) -> Any:
    return load_settings(state_dir=tmp_path / "state", broker={"primary": "paper", "fallback": None},
                         paper={"persistent": True}, exits={"broker_stop": False},
                         shutdown={"cancel_inflight_entries": False}, **journal)


async def test_a_fill_not_yet_journaled_is_not_acknowledged_and_comes_again_after_a_crash(
    tmp_path: Path, journal_backend: str, request: pytest.FixtureRequest,
) -> None:
    backend = backend_settings(journal_backend, request)  # on SQLite and on PostgreSQL
    core = Core(_settings(tmp_path, **backend), SimulatedClock(SESSION))
    await core.start()
    paper: Any = core.brokers["paper"]
    paper.set_price("AAPL", 100.0)
    stuck = asyncio.Event()
    real = core.lifecycle.on_broker_event

    async def journal_too_slow(event: Any) -> None:  # the daemon is killed before this fill is journaled
        if isinstance(event, Fill):
            stuck.set()
            await asyncio.Event().wait()
        await real(event)

    core.lifecycle.on_broker_event = journal_too_slow  # type: ignore[method-assign]
    intent = OrderIntent(client_order_id="og-entry-ack0000000000000001", signal_id="sig-ack", symbol="AAPL",
                         side=Side.BUY, quantity=5, ticker="AAPL", reference_price=100.0)
    core.lifecycle.register_intent(intent)
    core.router.dispatch(intent)
    await asyncio.wait_for(stuck.wait(), 10)
    # another order is booked meanwhile: the book on disk is rewritten with whatever the broker counts as taken
    paper.set_price("MSFT", 400.0)
    other = OrderIntent(client_order_id="og-entry-ack0000000000000002", signal_id="sig-ack2", symbol="MSFT",
                        side=Side.BUY, quantity=1, ticker="MSFT", reference_price=400.0)
    core.lifecycle.register_intent(other)
    await asyncio.wait_for(core.router.dispatch(other), 10)
    book = json.loads((tmp_path / "state" / "paper_book.json").read_text())
    assert book["acked_fill_seq"] == 0, "the broker took the fill as delivered before the journal had it"
    # "crash": nothing more of this process reaches the disk; a new daemon starts on the same state dir
    for task in list(asyncio.all_tasks()):
        if task is not asyncio.current_task() and "broker-events" in task.get_name():
            task.cancel()
    if journal_backend == "postgresql":  # the crashed process's session ends with it (and its instance lock)
        core.journal._drop()
    core2 = Core(_settings(tmp_path, **backend), SimulatedClock(SESSION))
    await core2.start()
    try:
        await core2.settle()
        assert core2.journal is not None
        rows = await core2.journal.query("SELECT fill_id FROM fills WHERE client_order_id = ?",
                                         (intent.client_order_id,))
        assert len(rows) == 1, "the fill the first daemon never journaled was sent again and journaled"
        assert core2.ledger.holding("AAPL").quantity == 5
    finally:
        await core2.stop()
