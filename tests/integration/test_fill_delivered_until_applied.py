"""A broker that redelivers fills until its handler returns (the paper broker with a book file) gets a handler that
returns only once the fill is applied; one that cannot be applied in FILL_APPLY_WAIT seconds is let go with an
error, never waited for forever. An in-memory paper book redelivers nothing after a restart: no handshake."""

from __future__ import annotations

import asyncio
from typing import Any

from daemon import broker_events
from pipeline.core.models import BrokerEvent, Fill, Side
from tests.conftest import SESSION


def _fill(n: int) -> Fill:
    return Fill(f"ext-fill-{n}", f"someone-{n}", "AAPL", Side.BUY, 1.0, 100.0, SESSION, "paper")


async def test_the_handler_returns_once_the_fill_is_applied_and_lets_a_stuck_one_go(paper_core, monkeypatch) -> None:
    core = await paper_core(paper={"persistent": True})
    assert core.brokers["paper"].acknowledges_fills
    applied: list[str] = []
    stuck = asyncio.Event()
    original = core.lifecycle.on_broker_event

    async def on_broker_event(event: BrokerEvent) -> Any:
        if isinstance(event, Fill) and event.fill_id == "ext-fill-2":
            await stuck.wait()  # never set: this fill cannot be applied
        await asyncio.sleep(0.01)  # applying takes a while: the handler must still wait for it
        await original(event)
        applied.append(event.fill_id)

    monkeypatch.setattr(core.lifecycle, "on_broker_event", on_broker_event)
    monkeypatch.setattr(broker_events, "FILL_APPLY_WAIT", 0.2)
    handler = core.events.handler_for(core.brokers["paper"])
    await handler(_fill(1))
    assert applied == ["ext-fill-1"]  # applied before the handler returned
    loop = asyncio.get_running_loop()
    started = loop.time()
    await asyncio.wait_for(handler(_fill(2)), 5)  # let go after FILL_APPLY_WAIT, not held
    assert loop.time() - started >= 0.19 and applied == ["ext-fill-1"]
    assert core.events.pending() == 1  # still in the consumer, not dropped
    stuck.set()  # the journal takes it again: applied in order, nothing lost
    await core.events.wait_idle(5)
    assert applied == ["ext-fill-1", "ext-fill-2"]


async def test_an_in_memory_paper_book_needs_no_handshake(paper_core) -> None:
    core = await paper_core()
    broker = core.brokers["paper"]
    assert not broker.acknowledges_fills
    assert core.events.handler_for(broker) == core.events.deliver
