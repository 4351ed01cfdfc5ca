"""Every public name of the spec (order-execution.md: its tables and its code examples) imports from a package top."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

# the spec's tables, then the names its seven examples import
SPEC_PIPELINE_NAMES = [
    "TradeExecutor", "RiskGate", "ExitMonitor", "InstrumentRouter", "OrderRouter", "PositionSizer",
    "LeveragedETFSizer", "TradeJournalWriter", "KillSwitch",
    "BotOrchestrator", "PersistentStateManager", "SignalGuard", "OrderValidator", "PositionReconciler",
    "LifecycleManager",
    "TradingService", "SmartOrderRouter", "OrderManager",
    "SmartRouter", "RouteScorer", "CostOptimizer",
    "RiskDecision", "ExecutorConfig", "AccountState", "Position", "TradeSignal", "SignalType", "ExitSignal",
    "InstrumentDecision", "InstrumentMode", "LEVERAGED_ETF_CATALOG", "PipelineConfig", "PipelineResult",
    "ReconciliationReport", "TradingConfig",
]
SPEC_ADAPTER_NAMES = ["PaperBroker", "AlpacaBroker"]
SPEC_DAEMON_NAMES = ["TradingService", "TradingConfig"]
SPEC_CONFIG_NAMES = ["ExecutorConfig", "PipelineConfig", "InstrumentMode"]
ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("package", "names"), [
    ("pipeline", SPEC_PIPELINE_NAMES), ("adapters", SPEC_ADAPTER_NAMES), ("daemon", SPEC_DAEMON_NAMES),
    ("config", SPEC_CONFIG_NAMES),
])
def test_every_spec_name_imports_from_its_package(package: str, names: list[str]) -> None:
    namespace: dict[str, object] = {}
    exec(f"from {package} import {', '.join(names)}", namespace)  # the statement a user writes
    module = importlib.import_module(package)
    for name in names:
        assert namespace[name] is not None
        assert name in module.__all__, f"{package}.__all__ lacks {name}"


def test_every_exported_name_resolves() -> None:
    for package in ("pipeline", "adapters", "config", "daemon"):
        module = importlib.import_module(package)
        for name in module.__all__:
            assert getattr(module, name) is not None, f"{package}.{name}"


def test_unknown_name_is_an_attribute_error() -> None:
    import pipeline

    with pytest.raises(AttributeError, match="NoSuchThing"):
        pipeline.NoSuchThing  # noqa: B018


def test_importing_the_package_is_lazy() -> None:
    """`import pipeline` must not pull in the stages (the CLI's start-up) nor, ever, an adapter or the daemon."""
    code = (
        "import sys, pipeline, adapters, config\n"
        "heavy = [m for m in ('pipeline.orchestrator', 'adapters.alpaca', 'adapters.ibkr', 'daemon.core',"
        " 'daemon.process') "
        "if m in sys.modules]\n"
        "print(heavy)\n"
        "from pipeline import BotOrchestrator, TradeExecutor, TradingService\n"
        "print(sorted(m for m in sys.modules if m.startswith(('adapters.', 'daemon'))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.splitlines() == ["[]", "[]"]


def test_constructors_default_what_the_daemon_uses(tmp_path: Path) -> None:
    from pipeline import ExecutorConfig, ExitMonitor, LiveClock, PersistentStateManager, RiskGate, SignalGuard
    from pipeline.core.calendar import MarketCalendar
    from pipeline.instruments.catalog import load_sectors

    gate = RiskGate(ExecutorConfig())
    assert isinstance(gate.calendar, MarketCalendar) and gate.sectors == load_sectors()
    assert isinstance(gate.clock, LiveClock)
    monitor = ExitMonitor(ExecutorConfig())
    assert isinstance(monitor.calendar, MarketCalendar) and isinstance(monitor.clock, LiveClock)
    from pipeline import PipelineConfig

    assert isinstance(SignalGuard(PipelineConfig()).clock, LiveClock)
    state = PersistentStateManager(state_dir=tmp_path / "state")
    state.record_pnl(10.0)
    assert state.get_daily_pnl() == 10.0
