"""ordergate pipeline package: the domain (models, stages, orchestrator) and its public API.

Every public name of the spec (`order-execution.md`) is importable from here, e.g.
``from pipeline import RiskGate, ExitMonitor, BotOrchestrator``. Names are resolved lazily (PEP 562
`__getattr__`), so ``import pipeline`` stays cheap for the CLI and no import cycle is created.
Brokers (`PaperBroker`, `AlpacaBroker`) are adapters: ``from adapters import PaperBroker``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from config.lazy import lazy_getattr

# public name -> the module that holds it
_EXPORTS: dict[str, str] = {
    # config (re-exported: the spec imports them beside the stages)
    "ExecutorConfig": "config.settings",
    "PipelineConfig": "config.settings",
    "InstrumentMode": "config.settings",
    # models
    "AccountState": "pipeline.core.models",
    "Bar": "pipeline.core.models",
    "ExitSignal": "pipeline.core.models",
    "Fill": "pipeline.core.models",
    "InstrumentDecision": "pipeline.core.models",
    "OrderIntent": "pipeline.core.models",
    "OrderResult": "pipeline.core.models",
    "OrderUpdate": "pipeline.core.models",
    "PipelineResult": "pipeline.core.models",
    "Position": "pipeline.core.models",
    "RiskDecision": "pipeline.core.models",
    "SignalType": "pipeline.core.models",
    "TradeSignal": "pipeline.core.models",
    # time
    "Clock": "pipeline.core.clock",
    "LiveClock": "pipeline.core.clock",
    "SimulatedClock": "pipeline.core.clock",
    "MarketCalendar": "pipeline.core.calendar",
    "default_calendar": "pipeline.core.calendar",
    # entry stages
    "SignalGuard": "pipeline.entry.signal_guard",
    "RiskGate": "pipeline.entry.risk_gate",
    "UnifiedRisk": "pipeline.entry.unified_risk",
    "PositionSizer": "pipeline.entry.sizing",
    "LeveragedETFSizer": "pipeline.entry.sizing",
    "InstrumentRouter": "pipeline.instruments.instrument_router",
    "LEVERAGED_ETF_CATALOG": "pipeline.instruments.instrument_router",
    # execution
    "OrderRouter": "pipeline.execution.order_router",
    "SmartRouter": "pipeline.execution.smart_router",
    "RouteScorer": "pipeline.execution.smart_router",
    "CostOptimizer": "pipeline.execution.smart_router",
    "OrderManager": "pipeline.execution.order_manager",
    "SmartOrderRouter": "pipeline.execution.order_manager",
    "OrderValidator": "pipeline.execution.fill_validator",
    "TradeExecutor": "pipeline.trade_executor",
    # positions and safety
    "ExitMonitor": "pipeline.positions.exit_monitor",
    "LifecycleManager": "pipeline.positions.lifecycle",
    "PositionReconciler": "pipeline.positions.reconciler",
    "ReconciliationReport": "pipeline.positions.reconciler",
    "KillSwitch": "pipeline.safety.kill_switch",
    "PersistentStateManager": "pipeline.safety.state_manager",
    # record and the pipeline
    "Journal": "pipeline.record.journal",
    "TradeJournalWriter": "pipeline.record.trade_journal",
    "SignalRecorder": "pipeline.record.recorder",
    "FeedbackTracker": "pipeline.record.feedback",
    "BotOrchestrator": "pipeline.orchestrator",
    "TradingService": "pipeline.trading_service",
    "TradingConfig": "pipeline.trading_service",
}

__all__ = sorted(_EXPORTS)


__getattr__ = lazy_getattr(__name__, _EXPORTS)


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


if TYPE_CHECKING:  # for type checkers and IDEs; at run time the names resolve lazily above
    from config.settings import ExecutorConfig, InstrumentMode, PipelineConfig  # noqa: F401
    from pipeline.core.calendar import MarketCalendar, default_calendar  # noqa: F401
    from pipeline.core.clock import Clock, LiveClock, SimulatedClock  # noqa: F401
    from pipeline.core.models import (  # noqa: F401
        AccountState,
        Bar,
        ExitSignal,
        Fill,
        InstrumentDecision,
        OrderIntent,
        OrderResult,
        OrderUpdate,
        PipelineResult,
        Position,
        RiskDecision,
        SignalType,
        TradeSignal,
    )
    from pipeline.entry.risk_gate import RiskGate  # noqa: F401
    from pipeline.entry.signal_guard import SignalGuard  # noqa: F401
    from pipeline.entry.sizing import LeveragedETFSizer, PositionSizer  # noqa: F401
    from pipeline.entry.unified_risk import UnifiedRisk  # noqa: F401
    from pipeline.execution.fill_validator import OrderValidator  # noqa: F401
    from pipeline.execution.order_manager import OrderManager, SmartOrderRouter  # noqa: F401
    from pipeline.execution.order_router import OrderRouter  # noqa: F401
    from pipeline.execution.smart_router import CostOptimizer, RouteScorer, SmartRouter  # noqa: F401
    from pipeline.instruments.instrument_router import LEVERAGED_ETF_CATALOG, InstrumentRouter  # noqa: F401
    from pipeline.orchestrator import BotOrchestrator  # noqa: F401
    from pipeline.positions.exit_monitor import ExitMonitor  # noqa: F401
    from pipeline.positions.lifecycle import LifecycleManager  # noqa: F401
    from pipeline.positions.reconciler import PositionReconciler, ReconciliationReport  # noqa: F401
    from pipeline.record.feedback import FeedbackTracker  # noqa: F401
    from pipeline.record.journal import Journal  # noqa: F401
    from pipeline.record.recorder import SignalRecorder  # noqa: F401
    from pipeline.safety.kill_switch import KillSwitch  # noqa: F401
    from pipeline.safety.state_manager import PersistentStateManager  # noqa: F401
    from pipeline.trade_executor import TradeExecutor  # noqa: F401
    from pipeline.trading_service import TradingConfig, TradingService  # noqa: F401
