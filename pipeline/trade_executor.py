"""TradeExecutor: the spec's direct path from a signal to an order, built from the same stages as BotOrchestrator.

| feature           | TradeExecutor (this)                          | BotOrchestrator                         |
|-------------------|-----------------------------------------------|-----------------------------------------|
| kill switch       | in-memory `KillSwitch()`                       | persistent (file-backed)                |
| signal validation | basic: the signal's own field rules           | freshness + dedup `SignalGuard`         |
| risk assessment   | `RiskGate` (8 checks)                          | + `UnifiedRisk` (correlation, VaR)      |
| order submission  | one attempt (`max_order_retries=0`)           | retry with exponential backoff          |
| fill validation   | none (nothing consumes fills here)            | `OrderValidator`                        |
| audit trail       | none of its own (journal only, if you keep one)| every stage recorded (SignalRecorder)  |
| feedback          | none                                          | rolling Sharpe weight adjustment        |

The stages are the orchestrator's own (market price, RiskGate, sizing, InstrumentRouter, ETF/option sizing), so a
rule changed there is changed here. The account is given per call, as the spec's `process_signal(signal, account)`.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Callable, Mapping
from datetime import datetime

from config.settings import BrokerSettings, ExecutorConfig, PipelineConfig
from pipeline.core.calendar import MarketCalendar
from pipeline.core.clock import Clock, LiveClock
from pipeline.core.models import AccountState, PipelineResult, RiskDecision, TradeSignal
from pipeline.core.ports import Broker
from pipeline.entry.signal_guard import validation_failure
from pipeline.execution.order_router import OrderRouter
from pipeline.orchestrator import BotOrchestrator
from pipeline.safety.kill_switch import KillSwitch
from pipeline.safety.state_manager import PersistentStateManager


class BasicSignalCheck:
    """The direct path's signal validation: the signal's own field rules, no freshness or dedup."""

    def check(self, signal: TradeSignal, now: datetime | None = None) -> RiskDecision:
        problem = validation_failure(signal)
        if problem is not None:
            return RiskDecision(False, f"invalid signal: {problem}", check="validation")
        return RiskDecision(True, "well formed")


class TradeExecutor:
    """Full signal-to-position pipeline without the hardening (the spec's TradeExecutor)."""

    def __init__(
        self,
        config: ExecutorConfig | None = None,
        *,
        broker: Broker | None = None,
        price_lookup: Callable[[str], float | None] | None = None,
        clock: Clock | None = None,
        calendar: MarketCalendar | None = None,
        sectors: Mapping[str, str] | None = None,
    ) -> None:
        """Without `broker` an approved signal ends as an order intent; without `price_lookup` every entry is
        rejected at the market-price stage (entries are sized on the market, never on the signal's price)."""
        self.config = config or ExecutorConfig()
        self.clock = clock or LiveClock()
        self._dir = tempfile.TemporaryDirectory(prefix="ordergate-executor-")  # the breaker's scratch state only
        pipeline = PipelineConfig(
            executor_config=self.config, enable_signal_recording=False, enable_unified_risk=False,
            enable_feedback_loop=False, enable_alerting=False, enable_analytics=False, max_order_retries=0,
            state_dir=self._dir.name,
        )
        self.kill_switch = KillSwitch()  # in memory
        self.router = None
        if broker is not None:
            venue = BrokerSettings.model_construct(primary=broker.name, fallback=None)
            self.router = OrderRouter({broker.name: broker}, None, self.clock, pipeline, venue,
                                      kill_switch=self.kill_switch)
        self._account = AccountState(equity=0.0, cash=0.0, buying_power=0.0)
        self._lock = asyncio.Lock()
        self.pipeline = BotOrchestrator(
            pipeline, lambda: self._account, clock=self.clock, calendar=calendar,
            state=PersistentStateManager(self._dir.name, self.clock, calendar, durable=False),
            router=self.router, sectors=dict(sectors) if sectors is not None else None, price_lookup=price_lookup,
            kill_switch=self.kill_switch, guard=BasicSignalCheck(), pnl_from_state=False,
        )

    async def process_signal(self, signal: TradeSignal, account: AccountState) -> PipelineResult:
        """Validate, size, route and (with a broker) submit once; the result carries the order result."""
        async with self._lock:
            self._account = account
            result = await self.pipeline.process_signal(signal)
            if result.order_task is not None:
                await asyncio.wait([result.order_task])
            return result

    def activate_kill_switch(self, reason: str = "manual halt") -> None:
        self.kill_switch.activate(reason)

    def deactivate_kill_switch(self) -> None:
        self.kill_switch.deactivate()
