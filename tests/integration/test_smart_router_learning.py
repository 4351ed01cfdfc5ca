"""Smart routing with two brokers: identical venues keep the primary; the scores learn from every final entry."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from adapters.paper import PaperBroker
from config.settings import BrokerSettings, PaperSettings, PipelineConfig, SmartRouterSettings
from pipeline.core.clock import SimulatedClock
from pipeline.core.models import OrderIntent, Side, client_order_id_for
from pipeline.execution.order_router import OrderRouter
from pipeline.execution.smart_router import SmartRouter, Venue
from tests.conftest import enter

NOW = datetime(2026, 11, 24, 16, 0, tzinfo=UTC)
SMART = SmartRouterSettings(enabled=True, split_notional_threshold=1e9)


async def _router(primary: str, fallback: str) -> OrderRouter:
    clock = SimulatedClock(NOW)
    brokers = {}
    for name in (primary, fallback):  # as the Core builds them: the primary first
        broker = PaperBroker(PaperSettings(persistent=False), clock, name=name)
        await broker.connect()
        broker.set_price("AAPL", 100.0)
        brokers[name] = broker
    router = OrderRouter(brokers, None, clock, PipelineConfig(), BrokerSettings(primary=primary, fallback=fallback))
    router.smart = SmartRouter(SMART, [Venue(n) for n in brokers], clock)  # as Core does
    return router


def _intent(n: int) -> OrderIntent:
    signal_id = f"sig-learn-{n}"
    return OrderIntent(client_order_id=client_order_id_for(signal_id), signal_id=signal_id, symbol="AAPL",
                       side=Side.BUY, quantity=10, ticker="AAPL", reference_price=100.0)


@pytest.mark.parametrize(("primary", "fallback"), [("paper", "ibkr"), ("ibkr", "paper"), ("alpaca", "paper")])
async def test_identical_venues_send_entries_to_the_primary(primary: str, fallback: str) -> None:
    router = await _router(primary, fallback)
    result = await router.dispatch(_intent(1))
    assert result.broker == primary
    assert router.venues[_intent(1).client_order_id] == primary


async def test_scores_learn_and_move_entries_off_a_venue_that_does_not_fill() -> None:
    router = await _router("paper", "ibkr")
    sent = []
    for n in range(6):  # entries at the primary end unfilled, those at the fallback fill
        intent = _intent(n)
        result = await router.dispatch(intent)
        sent.append(result.broker)
        router.record_outcome(intent.client_order_id, filled=result.broker == "ibkr")
        router.record_outcome(intent.client_order_id, filled=True)  # a second release is not counted twice
    assert sent[0] == "paper" and sent[-3:] == ["ibkr"] * 3
    paper, ibkr = router.smart.venues["paper"], router.smart.venues["ibkr"]
    assert paper.filled == 0 and paper.submitted >= 1 and ibkr.filled == ibkr.submitted >= 3


async def test_a_filled_entry_in_the_core_teaches_its_venue(paper_core: Any) -> None:
    """End to end: the lifecycle's final entry state reaches the smart router's venue history."""
    core = await paper_core(pipeline={"enable_unified_risk": False}, smart_router={"enabled": True})
    result = await enter(core)
    venue = core.router.smart.venues["paper"]
    assert (venue.submitted, venue.filled) == (1, 1)
    # and the PipelineResult carries what happened
    assert result.order_result is not None and result.order_result.broker == "paper"
