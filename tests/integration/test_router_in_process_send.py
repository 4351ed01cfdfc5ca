"""The router arms no timeout for a broker that answers inside the process (AnswersInProcess: the in-memory paper
broker), and still bounds every call the moment that broker could wait (scripted latency, a book file)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from adapters.paper import PaperBroker
from config.settings import BrokerSettings, PaperSettings, PipelineConfig
from pipeline.core.clock import SimulatedClock
from pipeline.core.models import OrderIntent, OrderStatus, Side, client_order_id_for
from pipeline.core.ports import AnswersInProcess
from pipeline.execution.order_router import OrderRouter

NOW = datetime(2026, 11, 24, 16, 0, tzinfo=UTC)


def _intent(n: int) -> OrderIntent:
    signal_id = f"sig-inproc-{n}"
    return OrderIntent(client_order_id=client_order_id_for(signal_id), signal_id=signal_id, symbol="AAPL",
                       side=Side.BUY, quantity=5, ticker="AAPL", reference_price=100.0, created_at=NOW)


async def _router(broker: PaperBroker) -> OrderRouter:
    await broker.connect()
    broker.set_price("AAPL", 100.0)
    return OrderRouter({"paper": broker}, None, SimulatedClock(NOW),
                       PipelineConfig(max_order_retries=0, order_timeout_seconds=0.05),
                       BrokerSettings(primary="paper", fallback=None))


async def test_the_in_memory_paper_broker_answers_in_process(tmp_path: Path) -> None:
    broker = PaperBroker(PaperSettings(persistent=False), SimulatedClock(NOW))
    assert isinstance(broker, AnswersInProcess) and broker.answers_in_process
    broker.faults.latency_s = 0.01
    assert not broker.answers_in_process  # a scripted wait: its calls are bounded again
    broker.faults.latency_s = 0.0
    assert broker.answers_in_process
    stored = PaperBroker(PaperSettings(), SimulatedClock(NOW), state_path=tmp_path / "paper.json")
    assert not stored.answers_in_process  # its book is written in a thread: that can hang


async def test_a_paper_broker_that_can_wait_is_still_timed_out() -> None:
    broker = PaperBroker(PaperSettings(persistent=False), SimulatedClock(NOW))
    router = await _router(broker)
    try:
        assert (await router.submit(_intent(1))).status == OrderStatus.FILLED  # in process: answered, no timer
        broker.faults.latency_s = 0.5  # longer than the router's 0.05 s timeout
        result = await router.submit(_intent(2))
        assert result.status == OrderStatus.PENDING and "unconfirmed" in (result.reason or "")
        assert router.health["paper"].last_error == "timeout"
    finally:
        broker.faults.latency_s = 0.0
        await broker.close()
