"""Prometheus metrics of the daemon and the loopback HTTP server that exposes them (`/metrics`, `/healthz`).

`Metrics` owns its own `CollectorRegistry` (never the process-global one), so several can coexist in one
process (tests, replays). Updates go through small helpers that cache the labelled children, so a hot-path
update is a dict lookup and a locked add.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from time import perf_counter
from typing import Any

import structlog
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import choose_encoder

from adapters.connection_cap import CappedTCPSite
from config.settings import MetricsSettings

PREFIX = "ordergate"
# Stage latency: the in-process stages run in µs, broker round trips in ms to seconds.
LATENCY_BUCKETS: tuple[float, ...] = (
    5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0,
)
BROKER_HEALTH_VALUES: dict[str, float] = {"connected": 1.0, "degraded": 0.5, "down": 0.0}

HealthCheck = Callable[[], tuple[bool, str]]
_log = structlog.get_logger("ordergate.metrics")
MAX_CONNECTIONS = 64  # Prometheus keeps one connection per scraper
IDLE_TIMEOUT_SECONDS = 15.0  # to send a request head after connecting or after the last answer


class Metrics:
    """The daemon's metrics on a private registry, with cheap update helpers."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        reg = self.registry
        self.signals_total = Counter(
            f"{PREFIX}_signals", "Signals by pipeline stage and outcome", ["stage", "outcome"], registry=reg
        )
        self.orders_total = Counter(f"{PREFIX}_orders", "Orders by broker and status", ["broker", "status"],
                                    registry=reg)
        self.fills_total = Counter(f"{PREFIX}_fills", "Fills by broker", ["broker"], registry=reg)
        self.bars_total = Counter(f"{PREFIX}_bars", "Bars processed", registry=reg)
        self.stage_latency_seconds = Histogram(
            f"{PREFIX}_stage_latency_seconds", "Time spent in a pipeline stage", ["stage"],
            buckets=LATENCY_BUCKETS, registry=reg,
        )
        self.bus_queue_depth = Gauge(f"{PREFIX}_bus_queue_depth", "Deepest subscriber queue of a bus topic",
                                     ["topic"], registry=reg)
        self.kill_switch_active = Gauge(f"{PREFIX}_kill_switch_active", "1 while the kill switch is active",
                                        registry=reg)
        # realised only: the figure the daily loss limit and the auto kill are checked against (`status` shows it too)
        self.daily_pnl = Gauge(f"{PREFIX}_daily_pnl", "Today's realised P&L in dollars (closed trades; what the "
                               "daily loss limit counts)", registry=reg)
        self.open_positions = Gauge(f"{PREFIX}_open_positions", "Open positions", registry=reg)
        self.broker_health = Gauge(
            f"{PREFIX}_broker_health", "Broker connection: 1 connected, 0.5 degraded, 0 down", ["broker"],
            registry=reg,
        )
        self._children: dict[tuple[str, ...], Any] = {}

    def _child(self, metric: Any, kind: str, *labels: str) -> Any:
        key = (kind, *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    # -- counters -------------------------------------------------------------------------------------
    def signal(self, stage: str, outcome: str) -> None:
        """Count a signal leaving `stage` with `outcome` (approved, rejected, error...)."""
        self._child(self.signals_total, "signal", stage, outcome).inc()

    def order(self, broker: str, status: str) -> None:
        """Count an order reaching `status` at `broker`."""
        self._child(self.orders_total, "order", broker, str(status)).inc()

    def fill(self, broker: str) -> None:
        self._child(self.fills_total, "fill", broker).inc()

    def bars(self, count: int = 1) -> None:
        self.bars_total.inc(count)

    # -- latency --------------------------------------------------------------------------------------
    def observe_latency(self, stage: str, seconds: float) -> None:
        self._child(self.stage_latency_seconds, "latency", stage).observe(seconds)

    @contextmanager
    def time_stage(self, stage: str) -> Iterator[None]:
        """Observe the time the `with` block takes as `stage` latency."""
        started = perf_counter()
        try:
            yield
        finally:
            self.observe_latency(stage, perf_counter() - started)

    # -- gauges ---------------------------------------------------------------------------------------
    def set_queue_depth(self, topic: str, depth: int) -> None:
        self._child(self.bus_queue_depth, "depth", topic).set(depth)

    def watch_queue_depth(self, topic: str, depth: Callable[[], float]) -> None:
        """Read a topic's depth at scrape time (e.g. `bus.signals.depth`) instead of pushing it."""
        self._child(self.bus_queue_depth, "depth", topic).set_function(depth)

    def set_kill_switch(self, active: bool) -> None:
        self.kill_switch_active.set(1 if active else 0)

    def set_daily_pnl(self, pnl: float) -> None:
        self.daily_pnl.set(pnl)

    def set_open_positions(self, count: int) -> None:
        self.open_positions.set(count)

    def set_broker_health(self, broker: str, state: str | float) -> None:
        """`state`: 'connected', 'degraded', 'down' or a number in [0, 1]."""
        value = BROKER_HEALTH_VALUES[state] if isinstance(state, str) else float(state)
        self._child(self.broker_health, "health", broker).set(value)

    def render(self, accept: str = "") -> tuple[bytes, str]:
        """(exposition body, content type) for an Accept header (Prometheus text by default)."""
        encoder, content_type = choose_encoder(accept)
        return encoder(self.registry), content_type


class MetricsServer:
    """aiohttp server on loopback: `/metrics` (Prometheus text) and `/healthz` (200 ok / 503 reason)."""

    def __init__(self, settings: MetricsSettings, metrics: Metrics, health: HealthCheck) -> None:
        self.settings = settings
        self.metrics = metrics
        self.health = health
        self.port: int | None = None
        self._runner: web.AppRunner | None = None

    def build_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/metrics", self._handle_metrics)
        app.router.add_get("/healthz", self._handle_health)
        return app

    async def start(self, port_override: int | None = None) -> int | None:
        """Bind and return the port; None when `[metrics] port` is 0 and no override (0 = ephemeral) is given."""
        port = self.settings.port if port_override is None else port_override
        if port_override is None and port == 0:
            _log.info("metrics_disabled")
            return None
        if self._runner is not None:
            return self.port
        # bounded like the webhook: a flood of scrapers or idle sockets cannot take the daemon's descriptors
        runner = web.AppRunner(self.build_app(), access_log=None, handle_signals=False,
                               keepalive_timeout=IDLE_TIMEOUT_SECONDS)
        await runner.setup()
        try:
            await CappedTCPSite(runner, self.settings.host, port, max_connections=MAX_CONNECTIONS,
                                logger=_log).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = int(runner.addresses[0][1])
        _log.info("metrics_listening", host=self.settings.host, port=self.port)
        return self.port

    async def stop(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def _handle_metrics(self, request: web.Request) -> web.Response:
        body, content_type = self.metrics.render(request.headers.get("Accept", ""))
        return web.Response(body=body, headers={"Content-Type": content_type})

    async def _handle_health(self, request: web.Request) -> web.Response:
        try:
            healthy, reason = self.health()
        except Exception as exc:
            healthy, reason = False, f"health check failed: {type(exc).__name__}: {str(exc)[:200]}"
        if healthy:
            return web.json_response({"status": "ok", "detail": reason})
        return web.json_response({"status": "unhealthy", "reason": reason}, status=503)
