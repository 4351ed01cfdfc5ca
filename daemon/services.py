"""The operator surface around the core: alerts, metrics endpoint, webhook intake, dashboard, Telegram."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any

from config.settings import Settings
from pipeline.core.clock import LiveClock
from pipeline.core.models import StageOutcome

if TYPE_CHECKING:
    from daemon.process import Daemon


class Services:
    """The operator surface around the core: alerts, metrics endpoint, webhook intake."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.settings = daemon.settings
        self.alerts: Any = None
        self.metrics: Any = None
        self.metrics_server: Any = None
        self.webhook: Any = None
        self.broker_monitor: Any = None
        self.metrics_port: int | None = None
        self.webhook_port: int | None = None
        self.dashboard: Any = None
        self.telegram: Any = None
        self.dashboard_port: int | None = None
        self._decisions: asyncio.Queue[StageOutcome] | None = None
        self._decision_task: asyncio.Task[None] | None = None

    async def start_before_core(self) -> None:
        from adapters.alerts import AlertDispatcher, BrokerDownMonitor, build_alert_sinks
        from daemon.metrics import Metrics

        core = self.daemon.core
        wall = LiveClock()
        # [pipeline] enable_alerting=false: alerts are only logged (no journal row, no webhook)
        sinks = build_alert_sinks(self.settings.alerts, core.journal) if self.settings.pipeline.enable_alerting else []
        self.alerts = AlertDispatcher(self.settings.alerts, wall, sinks)
        self.alerts.start()
        self.broker_monitor = BrokerDownMonitor(self.alerts, wall, self.settings.alerts.broker_down_alert_seconds)
        core.alerts.attach(self.alerts.alert)
        self.metrics = metrics = Metrics()
        self._decisions = core.bus.decisions.subscribe()  # every signal's outcome, counted from the start
        core.event_observer = self._observe_event
        for topic in core.bus.topics():
            metrics.watch_queue_depth(topic.name, topic.depth)

    async def start_after_core(self) -> None:
        from adapters.webhook import WebhookServer
        from daemon.metrics import MetricsServer

        if self._decisions is not None:
            self._decision_task = asyncio.create_task(self._count_decisions(self._decisions), name="decision-metrics")
        if self.settings.metrics.port:
            self.metrics_server = MetricsServer(self.settings.metrics, self.metrics, self.daemon.healthy)
            self.metrics_port = await self.metrics_server.start()  # it logs metrics_listening
        if self.settings.webhook.token is not None and self.settings.webhook.token.get_secret_value():
            self.webhook = WebhookServer(self.settings.webhook, self._submit_external, self.daemon.clock,
                                         secrets=self.settings.secret_values())
            self.webhook_port = await self.webhook.start()  # it logs webhook_listening
        if self.settings.dashboard.token is not None and self.settings.dashboard.token.get_secret_value():
            from daemon.dashboard import DashboardData, DashboardServer

            self.dashboard = DashboardServer(self.settings.dashboard,
                                             DashboardData(self.daemon, self.settings.dashboard.page_rows),
                                             self.daemon.core.kill_switch)
            self.dashboard_port = await self.dashboard.start()  # it logs dashboard_listening
        if self.settings.telegram.token is not None and self.settings.telegram.token.get_secret_value().strip():
            from daemon.telegram_bot import TelegramBot

            self.telegram = TelegramBot(self.settings.telegram, self.daemon)
            self.telegram.start()  # it logs telegram_listening once the Bot API answers

    async def _submit_external(self, signal: Any) -> str:
        """Webhook intake: id and journal row first (so a 202 is never lost), then the pipeline's queue."""
        from pipeline.record.recorder import signal_id_for

        core = self.daemon.core
        if not signal.signal_id:
            signal.signal_id = signal_id_for(signal)
        if core.journal is not None:
            core.journal.record_signal(signal, self.daemon.clock.now())
            core.journal.record_decision(signal.signal_id, "intake", "accepted", str(signal.source),
                                         self.daemon.clock.now())
            await core.journal.flush()
        await core.bus.signals.publish(signal)
        return signal.signal_id

    async def _count_decisions(self, queue: asyncio.Queue[StageOutcome]) -> None:
        """Each decision the orchestrator publishes: counted by stage and outcome, its latency observed."""
        while True:
            decided = await queue.get()
            self.metrics.signal(decided.stage, decided.outcome)
            self.metrics.observe_latency("decision", decided.seconds)

    def _observe_event(self, event: Any) -> None:
        from pipeline.core.models import Fill

        if isinstance(event, Fill):
            self.metrics.fill(event.broker)
        else:
            self.metrics.order(event.broker, str(event.status))

    def reconfigure(self, settings: Settings) -> None:
        """Reloaded settings for the operator surface: alert repeat interval and broker-down threshold, the
        webhook's rate limit."""
        self.settings = settings
        if self.alerts is not None:
            self.alerts.reconfigure(settings.alerts)
        if self.broker_monitor is not None:
            self.broker_monitor.reconfigure(settings.alerts.broker_down_alert_seconds)
        if self.webhook is not None:
            self.webhook.reconfigure(settings.webhook)

    def bars(self, count: int) -> None:
        if self.metrics is not None:
            self.metrics.bars(count)

    def alert_nowait(self, kind: str, message: str, severity: str = "warning") -> None:
        if self.alerts is not None:
            self.alerts.alert_nowait(kind, message, severity)

    async def refresh(self) -> None:
        core = self.daemon.core
        metrics = self.metrics
        if metrics is None:
            return
        metrics.set_kill_switch(core.kill_switch.is_active())
        metrics.set_daily_pnl(core.state.get_daily_pnl())
        metrics.set_open_positions(core.ledger.count())
        for name, broker in core.brokers.items():
            state = core.router.broker_state(name) if broker.is_connected() else "down"
            metrics.set_broker_health(name, state)
            await self.broker_monitor.check(name, state != "down")

    async def stop_intake(self) -> None:
        if self.webhook is not None:
            self.webhook.begin_shutdown()

    async def stop(self) -> None:
        if self._decision_task is not None:
            self._decision_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._decision_task
        for service in (self.telegram, self.dashboard, self.webhook, self.metrics_server):
            if service is not None:
                with contextlib.suppress(Exception):
                    await service.stop()
        if self.alerts is not None:
            with contextlib.suppress(Exception):
                await self.alerts.stop()

