"""The smart router inside the daemon core: decisions journaled with scores, large entries sliced TWAP-style."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from config.settings import load_settings
from daemon.core import Core
from pipeline.core.clock import SimulatedClock
from pipeline.core.models import TradeSignal
from tests.conftest import make_signal

NOW = datetime(2026, 11, 24, 16, 0, tzinfo=UTC)


async def _core(tmp_path: Path, enabled: bool) -> Core:
    settings = load_settings(
        state_dir=tmp_path / "state", broker={"primary": "paper"}, paper={"persistent": False},
        exits={"broker_stop": False},
        pipeline={"enable_unified_risk": False},
        smart_router={"enabled": enabled, "split_notional_threshold": 5_000.0, "slices": 4,
                      "slice_interval_seconds": 60.0},
    )
    core = Core(settings, SimulatedClock(NOW))
    await core.start()
    core.brokers["paper"].set_price("AAPL", 100.0)
    return core


def _signal() -> TradeSignal:
    return make_signal("AAPL", 100.0, 98.0, at=NOW)


async def test_large_entry_is_sliced_and_the_decision_journaled(tmp_path: Path) -> None:
    core = await _core(tmp_path, enabled=True)
    try:
        result = await core.orchestrator.process_signal(_signal())
        assert result.success
        parent = result.intent
        for _minute in range(5):  # the slices are due one simulated minute apart
            await core.settle()
            core.clock.advance(60)
        await result.order_task
        await core.settle()
        submitted = [r.client_order_id for r in core.brokers["paper"].request_log if r.method == "submit_order"]
        assert len(submitted) == 4 and all(c.startswith(parent.client_order_id) for c in submitted)
        holding = core.ledger.holding("AAPL")
        assert holding.quantity == parent.quantity            # children sum to the parent
        await core.journal.flush()
        rows = await core.journal.query("SELECT detail FROM decisions WHERE stage='smart_router'")
        detail = json.loads(rows[0]["detail"])
        assert detail["venue"] == "paper" and detail["scores"] and len(detail["children"]) == 4
        assert len(core.orchestrator.reservations) == 0      # every slice settled, nothing left reserved
    finally:
        await core.stop()


async def test_off_by_default_sends_one_order(tmp_path: Path) -> None:
    core = await _core(tmp_path, enabled=False)
    try:
        result = await core.orchestrator.process_signal(_signal())
        await result.order_task
        await core.settle()
        submitted = [r for r in core.brokers["paper"].request_log if r.method == "submit_order"]
        assert [r.client_order_id for r in submitted] == [result.intent.client_order_id]
    finally:
        await core.stop()
