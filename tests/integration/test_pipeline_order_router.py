"""OrderRouter idempotency and fallback against the paper broker's scripted faults."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from adapters.paper import PaperBroker
from config.settings import BrokerSettings, PaperSettings, PipelineConfig
from pipeline.core.clock import SimulatedClock
from pipeline.core.models import OrderIntent, OrderStatus, Side, client_order_id_for
from pipeline.execution.order_router import OrderRouter
from tests.pg import make_journal

NOW = datetime(2026, 11, 24, 16, 0, tzinfo=UTC)


async def _nosleep(_seconds: float) -> None:
    return None


@pytest.fixture
async def setup(tmp_path: Path, journal_backend: str, request: pytest.FixtureRequest):
    clock = SimulatedClock(NOW)
    primary = PaperBroker(PaperSettings(persistent=False), clock, name="paper")
    fallback = PaperBroker(PaperSettings(persistent=False), clock, name="ibkr")
    for broker in (primary, fallback):
        await broker.connect()
        broker.set_price("AAPL", 100.0)
    journal = make_journal(journal_backend, tmp_path, request)  # each test on SQLite and on PostgreSQL
    await journal.open()
    config = PipelineConfig(max_order_retries=3, retry_backoff_base=0.01, order_timeout_seconds=2.0)
    router = OrderRouter({"paper": primary, "ibkr": fallback}, journal, clock, config,
                         BrokerSettings(primary="paper", fallback="ibkr", down_after_failures=2))
    router.sleep = _nosleep
    yield router, primary, fallback, journal
    await journal.close()
    for broker in (primary, fallback):
        await broker.close()


def _intent(n: int = 1) -> OrderIntent:
    signal_id = f"sig-test-{n}"
    return OrderIntent(client_order_id=client_order_id_for(signal_id), signal_id=signal_id, symbol="AAPL",
                       side=Side.BUY, quantity=10, ticker="AAPL", reference_price=100.0)


def _calls(broker: PaperBroker, method: str, coid: str) -> int:
    return sum(1 for r in broker.request_log if r.method == method and r.client_order_id == coid)


async def _orders_at(broker: PaperBroker, coid: str) -> int:
    return 1 if await broker.get_order_by_client_id(coid) is not None else 0


async def test_reply_lost_after_accept_is_found_by_client_order_id(setup) -> None:
    router, primary, _fallback, journal = setup
    primary.faults.timeout_after_accept = 1
    intent = _intent()
    result = await router.submit(intent)
    assert result.status in (OrderStatus.NEW, OrderStatus.FILLED)
    assert _calls(primary, "submit_order", intent.client_order_id) == 1
    assert _calls(primary, "get_order_by_client_id", intent.client_order_id) >= 1
    assert len([o for o in await primary.get_open_orders()]) + len(primary.positions()) >= 1
    row = await journal.get_order(intent.client_order_id)
    assert row["broker"] == "paper" and row["status"] in ("new", "filled")


async def test_two_transient_failures_then_success_is_one_order(setup) -> None:
    router, primary, _fallback, _journal = setup
    primary.faults.transient_failures = 2
    intent = _intent(2)
    result = await router.submit(intent)
    assert result.status in (OrderStatus.NEW, OrderStatus.FILLED)
    assert _calls(primary, "submit_order", intent.client_order_id) == 3
    assert await _orders_at(primary, intent.client_order_id) == 1


async def test_rejection_is_final_and_journaled_with_reason(setup) -> None:
    router, primary, fallback, journal = setup
    primary.faults.reject_next = "insufficient day-trading buying power"
    intent = _intent(3)
    result = await router.submit(intent)
    assert result.status == OrderStatus.REJECTED
    assert _calls(primary, "submit_order", intent.client_order_id) == 1
    assert _calls(fallback, "submit_order", intent.client_order_id) == 0
    row = await journal.get_order(intent.client_order_id)
    assert row["status"] == "rejected" and "day-trading" in row["reason"]


async def test_primary_down_sends_to_fallback_with_same_id(setup) -> None:
    router, primary, fallback, journal = setup
    primary.faults.unavailable = True
    intent = _intent(4)
    result = await router.submit(intent)
    assert result.broker == "ibkr" and result.status in (OrderStatus.NEW, OrderStatus.FILLED)
    assert await _orders_at(fallback, intent.client_order_id) == 1
    primary.faults.unavailable = False
    assert await _orders_at(primary, intent.client_order_id) == 0
    row = await journal.get_order(intent.client_order_id)
    assert row["broker"] == "ibkr"
    # while the primary's breaker is open, the next entry goes straight to the fallback
    primary.faults.unavailable = True
    nxt = _intent(5)
    await router.submit(nxt)
    assert _calls(primary, "submit_order", nxt.client_order_id) == 0
    assert await _orders_at(fallback, nxt.client_order_id) == 1


async def test_ambiguous_failure_on_primary_never_goes_to_fallback(setup) -> None:
    router, primary, fallback, _journal = setup
    primary.faults.transient_failures = 10  # 5xx: the primary was reached, so it may hold the order
    intent = _intent(6)
    result = await router.submit(intent)
    assert result.status == OrderStatus.REJECTED
    assert _calls(fallback, "submit_order", intent.client_order_id) == 0


async def test_with_both_up_nothing_is_sent_to_both(setup) -> None:
    router, primary, fallback, _journal = setup
    for n in range(10, 30):
        intent = _intent(n)
        await router.submit(intent)
        held = await _orders_at(primary, intent.client_order_id) + await _orders_at(fallback, intent.client_order_id)
        assert held == 1


async def test_resubmitting_a_journaled_intent_does_not_duplicate(setup) -> None:
    router, primary, _fallback, _journal = setup
    intent = _intent(40)
    first = await router.submit(intent)
    again = await router.submit(intent)  # a restart replaying the same signal
    assert again.client_order_id == first.client_order_id
    assert _calls(primary, "submit_order", intent.client_order_id) == 1


async def test_resend_whose_broker_cannot_be_asked_stays_pending_and_never_goes_elsewhere(setup) -> None:
    router, primary, fallback, journal = setup
    intent = _intent(41)
    await router.submit(intent)                       # placed at the primary
    router.venues.clear()                             # a restarted process: only the journal remembers
    primary.faults.unavailable = True
    again = await router.submit(intent)
    assert again.status == OrderStatus.PENDING and "unconfirmed" in again.reason
    assert _calls(fallback, "submit_order", intent.client_order_id) == 0
    primary.faults.unavailable = False
    assert _calls(primary, "submit_order", intent.client_order_id) == 1
    assert (await journal.get_order(intent.client_order_id))["status"] != "rejected"


async def test_retries_wait_the_same_growing_backoff_and_stop_after_max_retries(setup) -> None:
    """The first attempt goes out without tenacity and the retries continue its backoff: max_order_retries (3)
    more attempts, each after a wait of the next power of two of the base (full jitter: between half and all)."""
    router, primary, _fallback, _journal = setup
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    router.sleep = sleep
    primary.faults.transient_failures = 10
    intent = _intent(9)
    result = await router.submit(intent)
    assert result.status == OrderStatus.REJECTED and "after 4 attempts" in (result.reason or "")
    assert _calls(primary, "submit_order", intent.client_order_id) == 4
    assert len(waits) == 3
    for n, wait in enumerate(waits):
        exp = 0.01 * 2 ** n
        assert exp / 2 <= wait <= exp, (n, wait)
