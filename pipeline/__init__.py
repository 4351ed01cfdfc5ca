"""ordergate pipeline package: the domain (models, stages, orchestrator) and its public API.

Every public name of the spec (`order-execution.md`) is importable from here, e.g.
``from pipeline import RiskGate, ExitMonitor, BotOrchestrator``. Names are resolved lazily (PEP 562
`__getattr__`), so ``import pipeline`` stays cheap for the CLI and no import cycle is created.
Brokers (`PaperBroker`, `AlpacaBroker`) are adapters: ``from adapters import PaperBroker``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# public name -> the module that holds it
_EXPORTS: dict[str, str] = {
    # config (re-exported: the spec imports them beside the stages)
    "ExecutorConfig": "config.settings",
    "PipelineConfig": "config.settings",
    "InstrumentMode": "config.settings",
    # models
    "AccountState": "pipeline.models",
    "Bar": "pipeline.models",
    "ExitSignal": "pipeline.models",
    "Fill": "pipeline.models",
    "InstrumentDecision": "pipeline.models",
    "OrderIntent": "pipeline.models",
    "OrderResult": "pipeline.models",
    "OrderUpdate": "pipeline.models",
    "PipelineResult": "pipeline.models",
    "Position": "pipeline.models",
    "RiskDecision": "pipeline.models",
    "SignalType": "pipeline.models",
    "TradeSignal": "pipeline.models",
    # time
    "Clock": "pipeline.clock",
    "LiveClock": "pipeline.clock",
    "SimulatedClock": "pipeline.clock",
    "MarketCalendar": "pipeline.calendar",
    "default_calendar": "pipeline.calendar",
    # entry stages
    "SignalGuard": "pipeline.signal_guard",
    "RiskGate": "pipeline.risk_gate",
    "UnifiedRisk": "pipeline.unified_risk",
    "PositionSizer": "pipeline.sizing",
    "LeveragedETFSizer": "pipeline.sizing",
    "InstrumentRouter": "pipeline.instrument_router",
    "LEVERAGED_ETF_CATALOG": "pipeline.instrument_router",
    # execution
    "OrderRouter": "pipeline.order_router",
    "SmartRouter": "pipeline.smart_router",
    "RouteScorer": "pipeline.smart_router",
    "CostOptimizer": "pipeline.smart_router",
    "OrderManager": "pipeline.order_manager",
    "SmartOrderRouter": "pipeline.order_manager",
    "OrderValidator": "pipeline.fill_validator",
    "TradeExecutor": "pipeline.trade_executor",
    # positions and safety
    "ExitMonitor": "pipeline.exit_monitor",
    "LifecycleManager": "pipeline.lifecycle",
    "PositionReconciler": "pipeline.reconciler",
    "ReconciliationReport": "pipeline.reconciler",
    "KillSwitch": "pipeline.kill_switch",
    "PersistentStateManager": "pipeline.state_manager",
    # record and the pipeline
    "Journal": "pipeline.journal",
    "TradeJournalWriter": "pipeline.trade_journal",
    "SignalRecorder": "pipeline.recorder",
    "FeedbackTracker": "pipeline.feedback",
    "BotOrchestrator": "pipeline.orchestrator",
    "TradingService": "pipeline.trading_service",
    "TradingConfig": "pipeline.trading_service",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    """Import a public name's module on first use (PEP 562)."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'pipeline' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


if TYPE_CHECKING:  # for type checkers and IDEs; at run time the names resolve lazily above
    from config.settings import ExecutorConfig, InstrumentMode, PipelineConfig  # noqa: F401
    from pipeline.calendar import MarketCalendar, default_calendar  # noqa: F401
    from pipeline.clock import Clock, LiveClock, SimulatedClock  # noqa: F401
    from pipeline.exit_monitor import ExitMonitor  # noqa: F401
    from pipeline.feedback import FeedbackTracker  # noqa: F401
    from pipeline.fill_validator import OrderValidator  # noqa: F401
    from pipeline.instrument_router import LEVERAGED_ETF_CATALOG, InstrumentRouter  # noqa: F401
    from pipeline.journal import Journal  # noqa: F401
    from pipeline.kill_switch import KillSwitch  # noqa: F401
    from pipeline.lifecycle import LifecycleManager  # noqa: F401
    from pipeline.models import (  # noqa: F401
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
    from pipeline.orchestrator import BotOrchestrator  # noqa: F401
    from pipeline.order_manager import OrderManager, SmartOrderRouter  # noqa: F401
    from pipeline.order_router import OrderRouter  # noqa: F401
    from pipeline.reconciler import PositionReconciler, ReconciliationReport  # noqa: F401
    from pipeline.recorder import SignalRecorder  # noqa: F401
    from pipeline.risk_gate import RiskGate  # noqa: F401
    from pipeline.signal_guard import SignalGuard  # noqa: F401
    from pipeline.sizing import LeveragedETFSizer, PositionSizer  # noqa: F401
    from pipeline.smart_router import CostOptimizer, RouteScorer, SmartRouter  # noqa: F401
    from pipeline.state_manager import PersistentStateManager  # noqa: F401
    from pipeline.trade_executor import TradeExecutor  # noqa: F401
    from pipeline.trading_service import TradingConfig, TradingService  # noqa: F401
    from pipeline.unified_risk import UnifiedRisk  # noqa: F401
