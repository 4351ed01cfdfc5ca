"""Reloaded settings: frozen objects, what a reload applies or leaves for a restart, and the components using them.

The daemon-level behaviour (SIGHUP on a subprocess) is in test_reload_daemon.py; here the same through `Core`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import BaseModel, ValidationError

from config.reload import plan_reload, reloadable
from config.settings import Settings, load_settings
from daemon.core import Core
from pipeline.core.clock import SimulatedClock
from pipeline.core.models import Bar, TradeSignal

OPEN = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)  # 10:00 ET


def test_every_settings_section_is_frozen(tmp_path: Path) -> None:
    settings = load_settings(state_dir=tmp_path)
    with pytest.raises(ValidationError, match="frozen"):
        settings.state_dir = tmp_path / "other"  # type: ignore[misc]
    with pytest.raises(ValidationError, match="frozen"):
        settings.strategies = ()  # type: ignore[misc]
    assert isinstance(settings.strategies, tuple)  # [[strategies]]: a tuple of frozen tables, nothing to append to
    sections = [getattr(settings, name) for name in Settings.model_fields]
    sections = [s for s in sections if isinstance(s, BaseModel)] + [settings.pipeline.executor_config]
    sections += list(settings.effective_strategies())
    # every field but state_dir and strategies, plus the nested executor and the (default) strategy table
    assert len(sections) == len(Settings.model_fields)
    for section in sections:
        name = next(iter(type(section).model_fields))
        with pytest.raises(ValidationError, match="frozen"):
            setattr(section, name, getattr(section, name))


def test_a_reload_applies_what_runs_and_names_what_needs_a_restart(tmp_path: Path) -> None:
    running = load_settings(state_dir=tmp_path)
    fresh = load_settings(state_dir=tmp_path / "moved", executor={"time_stop_minutes": 30},
                          webhook={"rate_per_minute": 5, "port": 9999}, broker={"primary": "alpaca"},
                          reconcile={"interval_seconds": 5}, journal={"synchronous": "NORMAL"})
    plan = plan_reload(running, fresh)
    assert plan.applied == {"executor.time_stop_minutes": 30, "webhook.rate_per_minute": 5,
                            "reconcile.interval_seconds": 5.0}
    assert plan.needs_restart == ["broker.primary", "journal.synchronous", "state_dir", "webhook.port"]
    effective = plan.settings
    assert effective.pipeline.executor_config.time_stop_minutes == 30  # what the pipeline components read
    assert (effective.broker.primary, effective.executor.primary_broker) == ("paper", "paper")
    assert (effective.state_dir, effective.pipeline.state_dir) == (tmp_path, str(tmp_path))
    assert (effective.webhook.port, effective.journal.synchronous) == (running.webhook.port, "FULL")


def test_nothing_that_builds_a_connection_or_a_file_is_reloadable() -> None:
    for field in ("broker.primary", "broker.fallback", "state_dir", "webhook.port", "webhook.token",
                  "metrics.port", "data.source", "data.tickers", "journal.synchronous", "alpaca.api_key",
                  "ibkr.port", "paper.initial_cash", "pipeline.expected_slippage", "strategy.timeframes"):
        assert not reloadable(field), field


async def _core(tmp_path: Path) -> Core:
    settings = load_settings(
        state_dir=tmp_path / "state", broker={"primary": "paper"}, paper={"persistent": False},
        pipeline={"enable_unified_risk": False, "retry_backoff_base": 0.01},
        executor={"max_single_stock_exposure": 0.2, "time_stop_minutes": 120},
    )
    core = Core(settings, SimulatedClock(OPEN))
    await core.start()
    return core


def _signal(core: Core, ticker: str) -> TradeSignal:
    return TradeSignal("cloud_cross_bullish", "long", ticker, "5m", 80, 100.0, 98.0, timestamp=core.clock.now(),
                       source="test")


async def _bar(core: Core, ticker: str, minutes: int) -> None:
    core.clock.advance(60 * minutes)
    ts = core.clock.now() - timedelta(minutes=1)
    await core.engine.on_batch([Bar(ticker, ts, 100.0, 100.0, 100.0, 100.0, 1000.0)])
    await core.settle()


async def test_core_reconfigure_reaches_the_open_positions_time_stop_and_the_risk_gate(tmp_path: Path) -> None:
    core = await _core(tmp_path)
    try:
        core.brokers["paper"].set_price("AAA", 100.0)
        assert await core.engine.submit_signal(_signal(core, "AAA"))
        await core.settle()
        assert core.ledger.position("AAA") is not None
        fresh = load_settings(
            state_dir=tmp_path / "state", broker={"primary": "paper"}, paper={"persistent": False},
            pipeline={"enable_unified_risk": False, "retry_backoff_base": 0.01},
            executor={"max_single_stock_exposure": 0.2, "time_stop_minutes": 30, "max_concurrent_positions": 1},
        )
        plan = plan_reload(core.settings, fresh)
        assert plan.needs_restart == []
        core.reconfigure(plan.settings)

        core.brokers["paper"].set_price("BBB", 100.0)
        result = await core.engine.submit_signal(_signal(core, "BBB"))  # one slot now, and AAA holds it
        await core.settle()
        assert not result and core.ledger.position("BBB") is None
        await _bar(core, "AAA", 29)
        assert core.ledger.position("AAA") is not None
        await _bar(core, "AAA", 2)  # 31 min held: the time stop at the new 30, long before the old 120
        assert core.ledger.position("AAA") is None
        assert core.lifecycle.round_trips == 1
    finally:
        await core.stop()
