"""How the Core's parts talk (issue 16): the pipeline never calls back into the daemon, the lifecycle never calls
the orchestrator, each decision's outcome reaches the metrics over the bus, and replay mode is an explicit
argument, not inferred from the journal's synchronous setting."""

from __future__ import annotations

import asyncio
import functools
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from config.settings import load_settings
from daemon.core import Core
from daemon.services import Services
from pipeline.core.clock import LiveClock, SimulatedClock
from pipeline.core.models import StageOutcome
from tests.conftest import SESSION, make_signal

# the one daemon callable left in the pipeline, and why: in simulated time the engine waits after each step
# that sent an order until the daemon has applied the broker events it caused (a replay is deterministic)
DAEMON_CALLBACKS_ALLOWED = {("TradingEngine", "_settle")}


def _owner_module(value: Any) -> str | None:
    """The module a callable held as an attribute belongs to (a bound method: its object's class)."""
    if isinstance(value, functools.partial):
        return _owner_module(value.func)
    owner = getattr(value, "__self__", None)
    if owner is not None and not isinstance(owner, type):
        return type(owner).__module__
    return getattr(value, "__module__", None)


def _callables(obj: Any) -> list[tuple[str, Any]]:
    names = list(vars(obj)) if hasattr(obj, "__dict__") else []
    names += [n for cls in type(obj).__mro__ for n in getattr(cls, "__slots__", ())]
    out = []
    for name in names:
        value = getattr(obj, name, None)
        if callable(value) and not isinstance(value, type):
            out.append((name, value))
    return out


def _settings(tmp_path: Path, **values: Any) -> Any:
    return load_settings(state_dir=tmp_path / "state", broker={"primary": "paper"}, paper={"persistent": False},
                         **values)


async def test_the_pipeline_holds_no_callable_of_the_daemon(tmp_path: Path) -> None:
    settings = _settings(tmp_path, smart_router={"enabled": True})
    core = Core(settings, SimulatedClock(SESSION))
    services = Services(SimpleNamespace(settings=settings, core=core))  # type: ignore[arg-type]
    await services.start_before_core()  # attaches the alert dispatcher and the metrics
    try:
        parts = [core.orchestrator, core.lifecycle, core.router, core.stops, core.kill_switch, core.alerts,
                 core.engine, core.orchestrator.instruments]
        held = [(type(part).__name__, name, _owner_module(value)) for part in parts
                for name, value in _callables(part)]
        assert len(held) > 5  # the walk sees the injected callables (account, prices, alerts, results...)
        into_daemon = [(cls, name, module) for cls, name, module in held
                       if (module or "").startswith("daemon") and (cls, name) not in DAEMON_CALLBACKS_ALLOWED]
        assert into_daemon == []
    finally:
        await services.alerts.stop(0.5)


async def test_the_lifecycle_never_calls_the_orchestrator(tmp_path: Path) -> None:
    core = Core(_settings(tmp_path), SimulatedClock(SESSION))
    from pipeline.orchestrator import BotOrchestrator

    bound_to = [name for name, value in _callables(core.lifecycle)
                if isinstance(getattr(value, "__self__", None), BotOrchestrator)]
    assert bound_to == []


async def test_each_decision_is_published_on_the_bus(tmp_path: Path) -> None:
    core = Core(_settings(tmp_path, pipeline={"enable_unified_risk": False}), SimulatedClock(SESSION))
    decisions = core.bus.decisions.subscribe()
    await core.start()
    try:
        core.brokers["paper"].set_price("AAPL", 100.0)
        approved = await core.orchestrator.process_signal(make_signal("AAPL", entry=100.0, at=SESSION))
        stale = await core.orchestrator.process_signal(make_signal("MSFT", entry=100.0, at=SESSION.replace(year=2020)))
        await core.settle()
        seen = [decisions.get_nowait() for _ in range(decisions.qsize())]
    finally:
        await core.stop()
    assert approved.success and not stale.success
    assert [(d.signal_id, d.stage, d.outcome) for d in seen] == [
        (approved.signal_id, "approved", "approved"), (stale.signal_id, stale.pipeline_stage, "rejected")]
    assert all(isinstance(d, StageOutcome) and d.seconds >= 0 for d in seen)


def test_a_simulated_run_with_a_normal_journal_is_not_taken_for_a_replay(tmp_path: Path) -> None:
    """`make run` on synthetic data with [journal] synchronous = "NORMAL" keeps its state durable."""
    core = Core(_settings(tmp_path, journal={"synchronous": "NORMAL"}), SimulatedClock(SESSION))
    assert core.state.durable and core.journal is not None and not core.journal.inline


def test_replay_mode_is_an_explicit_argument(tmp_path: Path) -> None:
    core = Core(_settings(tmp_path), SimulatedClock(SESSION), replay=True)
    assert not core.state.durable and core.journal is not None and core.journal.inline
    with pytest.raises(ValueError, match="simulated clock"):
        Core(_settings(tmp_path), LiveClock(), replay=True)


def test_ordergate_replay_runs_as_a_replay(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from daemon import replay as replay_module

    built: list[bool] = []
    real_init = Core.__init__

    def spy(self: Core, *args: Any, **kwargs: Any) -> None:
        built.append(bool(kwargs.get("replay")))
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(Core, "__init__", spy)
    data = Path(__file__).resolve().parents[1] / "data"
    path = sorted((data / "daily").glob("*.csv"))[0]
    asyncio.run(replay_module.replay(load_settings(state_dir=tmp_path / "live"), path, state_dir=tmp_path / "r"))
    assert built == [True]
