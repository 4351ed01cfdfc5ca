"""[pipeline] enable_alerting and enable_analytics switch what they name.

- enable_alerting=false: alerts are only logged; no sink beyond the log (no journal row, no webhook).
- enable_analytics: the per-signal-type statistics of closed trades (count, rolling Sharpe of R) are kept and shown
  in `get_state()["analytics"]` (and status); with it and the feedback loop both off nothing is recorded.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from config.settings import load_settings
from daemon.core import Core
from daemon.services import Services
from pipeline import BotOrchestrator, PipelineConfig, SimulatedClock
from tests.conftest import enter

NOW = datetime(2026, 11, 24, 16, 0, tzinfo=UTC)


@pytest.mark.parametrize("alerting", [True, False])
async def test_alerting_switches_the_sinks_beyond_the_log(tmp_path: Path, alerting: bool) -> None:
    settings = load_settings(state_dir=tmp_path / "state", broker={"primary": "paper"}, paper={"persistent": False},
                             pipeline={"enable_alerting": alerting},
                             alerts={"webhook_url": "http://127.0.0.1:9/hook"})
    core = Core(settings, SimulatedClock(NOW))
    await core.start()
    services = Services(SimpleNamespace(settings=settings, core=core))  # type: ignore[arg-type]
    try:
        await services.start_before_core()
        names = sorted(type(s).__name__ for s in services.alerts.sinks)
        assert names == (["JournalSink", "WebhookSink"] if alerting else [])
        await services.alerts.alert("test_alert", "hello", "warning")
        await services.alerts.stop(0.5)
        await core.journal.flush()
        rows = await core.journal.query("SELECT kind FROM alerts")
        assert [r["kind"] for r in rows] == (["test_alert"] if alerting else [])
    finally:
        await core.stop()


@pytest.mark.parametrize(("analytics", "feedback", "shown", "recorded"), [
    (True, False, True, True), (False, True, False, True), (False, False, False, False),
])
async def test_analytics_keeps_and_shows_the_per_type_statistics(
    paper_core: Any, analytics: bool, feedback: bool, shown: bool, recorded: bool,
) -> None:
    core = await paper_core(pipeline={"enable_unified_risk": False, "enable_analytics": analytics,
                                      "enable_feedback_loop": feedback})
    await enter(core)
    core.brokers["paper"].set_price("AAPL", 97.0)
    core.ledger.mark("AAPL", 97.0)
    await core.lifecycle.emergency_close_all("flatten")  # a closed trade
    await core.settle()
    assert core.feedback.trade_count("cloud_cross_bullish") == (1 if recorded else 0)
    state = core.orchestrator.get_state()
    assert ("analytics" in state) is shown
    if shown:
        assert state["analytics"]["cloud_cross_bullish"]["trades"] == 1


def test_analytics_is_listed_in_get_state_by_default(tmp_path: Path) -> None:
    orchestrator = BotOrchestrator(PipelineConfig(state_dir=str(tmp_path / "s")))
    assert orchestrator.get_state()["analytics"] == {}
