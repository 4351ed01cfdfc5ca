"""Metrics: counters move and are scraped over real HTTP; /healthz follows the health callable."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from config.settings import MetricsSettings
from daemon.metrics import Metrics, MetricsServer
from pipeline.core.bus import Bus


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample in a Prometheus text exposition (None when absent)."""
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    return None


class Health:
    def __init__(self) -> None:
        self.state: tuple[bool, str] = (True, "loop responsive, primary broker connected")
        self.raises = False

    def __call__(self) -> tuple[bool, str]:
        if self.raises:
            raise RuntimeError("probe exploded")
        return self.state


@pytest.fixture
async def served() -> AsyncIterator[tuple[Metrics, Health, str, aiohttp.ClientSession]]:
    metrics, health = Metrics(), Health()
    server = MetricsServer(MetricsSettings(), metrics, health)
    port = await server.start(port_override=0)
    assert port is not None and port > 0
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
    yield metrics, health, f"http://127.0.0.1:{port}", session
    await session.close()
    await server.stop()


async def scrape(session: aiohttp.ClientSession, base: str) -> str:
    async with session.get(f"{base}/metrics") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        return await resp.text()


async def test_counters_move_and_are_scraped(served: tuple[Metrics, Health, str, aiohttp.ClientSession]) -> None:
    metrics, _, base, session = served
    metrics.signal("risk_gate", "approved")
    metrics.order("paper", "filled")
    metrics.bars(10)
    first = await scrape(session, base)
    assert sample(first, "ordergate_signals_total", stage="risk_gate", outcome="approved") == 1
    assert sample(first, "ordergate_orders_total", broker="paper", status="filled") == 1
    assert sample(first, "ordergate_fills_total", broker="paper") is None
    assert sample(first, "ordergate_bars_total") == 10

    for _ in range(3):
        metrics.signal("risk_gate", "approved")
    metrics.signal("risk_gate", "rejected")
    metrics.fill("paper")
    metrics.fill("paper")
    metrics.bars()
    with metrics.time_stage("orchestrator"):
        pass
    metrics.observe_latency("orchestrator", 0.002)
    second = await scrape(session, base)
    assert sample(second, "ordergate_signals_total", stage="risk_gate", outcome="approved") == 4
    assert sample(second, "ordergate_signals_total", stage="risk_gate", outcome="rejected") == 1
    assert sample(second, "ordergate_fills_total", broker="paper") == 2
    assert sample(second, "ordergate_bars_total") == 11
    assert sample(second, "ordergate_stage_latency_seconds_count", stage="orchestrator") == 2
    assert sample(second, "ordergate_stage_latency_seconds_bucket", stage="orchestrator", le="0.0025") == 2
    assert sample(second, "ordergate_stage_latency_seconds_bucket", stage="orchestrator", le="1e-05") is not None


async def test_gauges(served: tuple[Metrics, Health, str, aiohttp.ClientSession]) -> None:
    metrics, _, base, session = served
    bus = Bus(maxsize=8)
    queue = bus.signals.subscribe()
    metrics.watch_queue_depth("signals", bus.signals.depth)
    metrics.set_queue_depth("orders", 2)
    metrics.set_kill_switch(True)
    metrics.set_daily_pnl(-1234.5)
    metrics.set_open_positions(3)
    metrics.set_broker_health("alpaca", "connected")
    metrics.set_broker_health("ibkr", "degraded")
    metrics.set_broker_health("paper", "down")
    for i in range(5):
        await bus.signals.publish(i)
    text = await scrape(session, base)
    assert sample(text, "ordergate_bus_queue_depth", topic="signals") == 5  # read at scrape time
    assert sample(text, "ordergate_bus_queue_depth", topic="orders") == 2
    assert sample(text, "ordergate_kill_switch_active") == 1
    assert sample(text, "ordergate_daily_pnl") == -1234.5
    assert sample(text, "ordergate_open_positions") == 3
    assert [sample(text, "ordergate_broker_health", broker=b) for b in ("alpaca", "ibkr", "paper")] == [1, 0.5, 0]
    queue.get_nowait()
    metrics.set_kill_switch(False)
    text = await scrape(session, base)
    assert sample(text, "ordergate_bus_queue_depth", topic="signals") == 4
    assert sample(text, "ordergate_kill_switch_active") == 0


def test_registries_are_independent() -> None:
    a, b = Metrics(), Metrics()
    a.signal("guard", "rejected")
    assert a.signals_total.labels("guard", "rejected")._value.get() == 1
    assert b.signals_total.labels("guard", "rejected")._value.get() == 0
    body, _ = b.render()
    assert sample(body.decode(), "ordergate_signals_total", stage="guard", outcome="rejected") == 0


async def test_healthz_follows_health(served: tuple[Metrics, Health, str, aiohttp.ClientSession]) -> None:
    _, health, base, session = served
    async with session.get(f"{base}/healthz") as resp:
        assert resp.status == 200
        assert (await resp.json())["status"] == "ok"
    health.state = (False, "primary broker alpaca disconnected")
    async with session.get(f"{base}/healthz") as resp:
        assert resp.status == 503
        assert await resp.json() == {"status": "unhealthy", "reason": "primary broker alpaca disconnected"}
    health.raises = True
    async with session.get(f"{base}/healthz") as resp:
        assert resp.status == 503
        assert "probe exploded" in (await resp.json())["reason"]
    health.raises, health.state = False, (True, "ok")
    async with session.get(f"{base}/healthz") as resp:
        assert resp.status == 200
    async with session.get(f"{base}/nope") as resp:
        assert resp.status == 404


async def test_port_zero_in_settings_disables() -> None:
    server = MetricsServer(MetricsSettings(port=0), Metrics(), lambda: (True, "ok"))
    assert await server.start() is None
    assert server.port is None
    await server.stop()
