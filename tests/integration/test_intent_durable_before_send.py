"""The router starts an intent's durable write as the decision hands it over (`dispatch`), before its order task
runs: the order still reaches the broker only after its row is committed, and a write that fails sends nothing."""

from __future__ import annotations

import io
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import structlog

from adapters.paper import PaperBroker
from config.settings import BrokerSettings, PaperSettings, PipelineConfig
from pipeline.core.clock import SimulatedClock
from pipeline.core.models import OrderIntent, OrderStatus, Side, client_order_id_for
from pipeline.execution import order_router
from pipeline.execution.order_router import OrderRouter
from pipeline.record.journal import Journal

NOW = datetime(2026, 11, 24, 16, 0, tzinfo=UTC)


def _intent(n: int) -> OrderIntent:
    signal_id = f"sig-durable-{n}"
    return OrderIntent(client_order_id=client_order_id_for(signal_id), signal_id=signal_id, symbol="AAPL",
                       side=Side.BUY, quantity=5, ticker="AAPL", reference_price=100.0, created_at=NOW)


@pytest.fixture
async def setup(tmp_path: Path):
    clock = SimulatedClock(NOW)
    broker = PaperBroker(PaperSettings(persistent=False), clock, name="paper")
    await broker.connect()
    broker.set_price("AAPL", 100.0)
    journal = Journal(tmp_path / "journal.db")
    await journal.open()
    router = OrderRouter({"paper": broker}, journal, clock, PipelineConfig(max_order_retries=0),
                         BrokerSettings(primary="paper", fallback=None))
    seen: list[tuple[str, int]] = []  # (client order id, its committed order rows as the broker is called)
    original = broker.submit_order

    async def submit_order(intent: OrderIntent) -> Any:
        with sqlite3.connect(journal.path) as conn:  # another connection: sees committed rows only
            rows = conn.execute("SELECT COUNT(*) FROM orders WHERE client_order_id=?",
                                (intent.client_order_id,)).fetchone()[0]
        seen.append((intent.client_order_id, rows))
        return await original(intent)

    broker.submit_order = submit_order  # type: ignore[method-assign]
    yield router, journal, seen
    await journal.close()
    await broker.close()


async def test_each_dispatched_intent_is_committed_before_the_broker_sees_it(setup) -> None:
    router, _journal, seen = setup
    intents = [_intent(i) for i in range(5)]
    tasks = [router.dispatch(i) for i in intents]  # arriving together: they share group commits
    results = [await t for t in tasks]
    assert all(r.status in (OrderStatus.NEW, OrderStatus.FILLED) for r in results)
    assert sorted(seen) == sorted((i.client_order_id, 1) for i in intents)


async def test_a_dispatched_intent_whose_write_fails_is_never_sent(setup, monkeypatch: pytest.MonkeyPatch) -> None:
    router, journal, seen = setup
    # the router logs the failed write: to a stream of this test's own (a CLI test earlier in the session may have
    # left the module's cached logger writing to its closed capture stream)
    monkeypatch.setattr(order_router, "log", structlog.wrap_logger(structlog.PrintLogger(io.StringIO())))
    await journal.run(lambda conn: conn.execute("PRAGMA query_only=ON"))  # every write fails, as on a full disk
    task = router.dispatch(_intent(7))
    with pytest.raises(sqlite3.Error):
        await task
    assert seen == []
