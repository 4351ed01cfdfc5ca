"""PaperBroker fault injection: each scripted failure behaves like the real one, and the book stays exact."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from adapters.paper import PaperBroker, PaperRequest
from config.settings import PaperSettings
from pipeline.core.clock import SimulatedClock
from pipeline.core.models import BrokerEvent, Fill, OrderIntent, OrderStatus, OrderUpdate, Side
from pipeline.core.ports import BrokerUnavailable, DuplicateClientOrderId, OrderRejected, RetryableBrokerError

T0 = datetime(2026, 11, 17, 15, 0, tzinfo=UTC)


def intent(coid: str, qty: float = 10, side: Side = Side.BUY) -> OrderIntent:
    return OrderIntent(client_order_id=coid, signal_id=f"sig-{coid}", symbol="AAPL", side=side, quantity=qty)


async def ready_broker(path: Path | None = None) -> tuple[PaperBroker, list[BrokerEvent]]:
    broker = PaperBroker(PaperSettings(slippage_bps=0), SimulatedClock(T0), state_path=path)
    events: list[BrokerEvent] = []

    async def handler(event: BrokerEvent) -> None:
        events.append(event)

    broker.set_event_handler(handler)
    await broker.connect()
    broker.set_price("AAPL", 100.0)
    return broker, events


async def submit_like_router(broker: PaperBroker, order: OrderIntent, attempts: int = 5):
    """A minimal idempotent submit loop: after an ambiguous failure, look the id up before resending."""
    ambiguous = False
    for _ in range(attempts):
        if ambiguous:
            found = await broker.get_order_by_client_id(order.client_order_id)
            if found is not None:
                return found
        try:
            return await broker.submit_order(order)
        except RetryableBrokerError as exc:
            ambiguous = ambiguous or exc.ambiguous
    raise AssertionError("gave up")


def kinds(events: list[BrokerEvent]) -> list[str]:
    return [f"fill:{e.client_order_id}" if isinstance(e, Fill) else f"{e.status}:{e.client_order_id}"
            for e in events]


async def test_timeout_after_accept_leaves_exactly_one_order(tmp_path: Path) -> None:
    broker, events = await ready_broker(tmp_path / "book.json")
    broker.faults.timeout_after_accept = 1
    with pytest.raises(RetryableBrokerError) as info:
        await broker.submit_order(intent("t1"))
    assert info.value.ambiguous is True
    found = await broker.get_order_by_client_id("t1")
    assert found is not None and found.status == OrderStatus.FILLED
    with pytest.raises(DuplicateClientOrderId):
        await broker.submit_order(intent("t1"))
    broker.faults.timeout_after_accept = 1
    result = await submit_like_router(broker, intent("t2"))
    assert result.client_order_id == "t2"
    assert [o.client_order_id for o in broker.all_orders()] == ["t1", "t2"]
    assert broker.position("AAPL")[0] == 20
    await broker.flush_events()
    assert sum(isinstance(e, Fill) for e in events) == 2
    assert [r for r in broker.request_log if r.client_order_id == "t2"] == [
        PaperRequest("submit_order", "t2"), PaperRequest("get_order_by_client_id", "t2"),
    ]
    await broker.close()


async def test_transient_failures_then_success_books_one_order() -> None:
    broker, _ = await ready_broker()
    broker.faults.transient_failures = 2
    for _ in range(2):
        with pytest.raises(RetryableBrokerError) as info:
            await broker.submit_order(intent("tr"))
        assert info.value.ambiguous is False
        assert await broker.get_order_by_client_id("tr") is None
    result = await broker.submit_order(intent("tr"))
    assert result.status == OrderStatus.FILLED
    assert broker.submissions() == 3
    assert len(broker.all_orders()) == 1
    await broker.close()


async def test_reject_next() -> None:
    broker, events = await ready_broker()
    broker.faults.reject_next = "insufficient shares to locate"
    with pytest.raises(OrderRejected, match="insufficient shares") as info:
        await broker.submit_order(intent("rj"))
    assert not isinstance(info.value, RetryableBrokerError)
    assert await broker.get_order_by_client_id("rj") is None
    assert broker.faults.reject_next is None
    await broker.submit_order(intent("ok"))
    await broker.flush_events()
    assert kinds(events) == ["new:ok", "fill:ok", "filled:ok"]
    await broker.close()


async def test_unavailable_refuses_every_call() -> None:
    broker, _ = await ready_broker()
    broker.faults.unavailable = True
    assert not broker.is_connected()
    with pytest.raises(BrokerUnavailable):
        await broker.submit_order(intent("u1"))
    with pytest.raises(BrokerUnavailable):
        await broker.get_positions()
    with pytest.raises(BrokerUnavailable):
        await broker.get_order_by_client_id("u1")
    assert broker.all_orders() == []
    broker.faults.unavailable = False
    assert broker.is_connected()
    await broker.submit_order(intent("u1"))
    await broker.close()


async def test_duplicate_fill_delivery_repeats_the_same_fill_id() -> None:
    broker, events = await ready_broker()
    broker.faults.duplicate_fill_delivery = 1
    await broker.submit_order(intent("df"))
    await broker.submit_order(intent("df2"))
    await broker.flush_events()
    fills = [e for e in events if isinstance(e, Fill)]
    assert [f.client_order_id for f in fills] == ["df", "df", "df2"]
    assert fills[0].fill_id == fills[1].fill_id != fills[2].fill_id
    assert len(broker.all_fills()) == 2
    assert broker.position("AAPL")[0] == 20
    await broker.close()


async def test_drop_updates_then_redeliver_in_order() -> None:
    broker, events = await ready_broker()
    broker.faults.drop_updates = True
    await broker.submit_order(intent("h1"))
    await broker.submit_order(intent("h2"))
    await broker.flush_events()
    assert events == []
    assert broker.redeliver() == 6
    await broker.flush_events()
    assert kinds(events) == ["new:h1", "fill:h1", "filled:h1", "new:h2", "fill:h2", "filled:h2"]
    await broker.close()


async def test_reorder_updates_swaps_the_next_two() -> None:
    broker, events = await ready_broker()
    broker.faults.reorder_updates = 1
    await broker.submit_order(intent("r1"))
    await broker.flush_events()
    assert kinds(events) == ["fill:r1", "new:r1", "filled:r1"]
    assert broker.faults.reorder_updates == 0
    await broker.close()


async def test_latency_delays_calls() -> None:
    broker, _ = await ready_broker()
    broker.faults.latency_s = 0.05
    started = time.monotonic()
    await broker.get_open_orders()
    assert time.monotonic() - started >= 0.045
    await broker.close()


async def test_request_log_counts_calls() -> None:
    broker, _ = await ready_broker()
    await broker.submit_order(intent("c1"))
    await broker.get_order_by_client_id("c1")
    await broker.get_account()
    methods = [r.method for r in broker.request_log]
    assert methods == ["connect", "submit_order", "get_order_by_client_id", "get_account"]
    assert broker.submissions() == 1
    await broker.close()


async def test_concurrent_submits_of_one_id_book_one_order() -> None:
    broker, _ = await ready_broker()
    broker.faults.latency_s = 0.01
    results = await asyncio.gather(*(broker.submit_order(intent("same")) for _ in range(5)),
                                   return_exceptions=True)
    assert sum(not isinstance(r, Exception) for r in results) == 1
    assert all(isinstance(r, DuplicateClientOrderId) for r in results if isinstance(r, Exception))
    assert broker.position("AAPL")[0] == 10
    await broker.close()


async def test_events_after_reorder_and_duplicates_cover_every_fill_once_by_id() -> None:
    broker, events = await ready_broker()
    broker.faults.reorder_updates = 2
    broker.faults.duplicate_fill_delivery = 2
    for i in range(4):
        await broker.submit_order(intent(f"m{i}", qty=1))
    await broker.flush_events()
    fill_ids = {e.fill_id for e in events if isinstance(e, Fill)}
    assert fill_ids == {f.fill_id for f in broker.all_fills()}
    finals = [e for e in events if isinstance(e, OrderUpdate) and e.status == OrderStatus.FILLED]
    assert {e.client_order_id for e in finals} == {f"m{i}" for i in range(4)}
    await broker.close()
