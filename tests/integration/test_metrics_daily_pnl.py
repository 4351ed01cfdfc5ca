"""The daily_pnl gauge is today's realised P&L, and its help says so (an open position's gain is not in it)."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from daemon.metrics import Metrics
from daemon.services import Services
from tests.conftest import enter

NOW = datetime(2026, 11, 24, 16, 0, tzinfo=UTC)


class _Monitor:
    async def check(self, _name: str, _up: bool) -> None:
        return None


async def test_gauge_is_realised_only_and_says_so(paper_core: Any) -> None:
    core = await paper_core(pipeline={"enable_unified_risk": False})
    settings = core.settings
    await enter(core)
    core.brokers["paper"].set_price("AAPL", 110.0)
    core.ledger.mark("AAPL", 110.0)               # an open gain: unrealised
    assert core.ledger.positions()[0].unrealized_pnl > 0
    core.state.record_pnl(-42.0)                   # a closed loss today: realised
    services = Services(SimpleNamespace(settings=settings, core=core))  # type: ignore[arg-type]
    services.metrics = Metrics()
    services.broker_monitor = _Monitor()
    await services.refresh()
    families = {f.name: f for f in text_string_to_metric_families(generate_latest(services.metrics.registry)
                                                                     .decode())}
    gauge = families["ordergate_daily_pnl"]
    assert gauge.samples[0].value == -42.0
    assert "realised" in gauge.documentation and "unrealised" not in gauge.documentation
