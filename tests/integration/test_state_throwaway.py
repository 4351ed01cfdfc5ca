"""Non-durable state (simulated replays in a throwaway dir): the kill switch is still written at once."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from pipeline.core.clock import SimulatedClock
from pipeline.safety.state_manager import PersistentStateManager


def _disk(path: Path) -> dict:
    return json.loads((path / "state.json").read_text())


def test_pnl_waits_for_flush_but_the_kill_switch_does_not(tmp_path: Path) -> None:
    clock = SimulatedClock(datetime(2026, 11, 24, 16, 0, tzinfo=UTC))
    mgr = PersistentStateManager(tmp_path, clock, durable=False)
    mgr.record_pnl(-250.0)
    assert mgr.get_daily_pnl() == -250.0
    assert not (tmp_path / "state.json").exists() or _disk(tmp_path)["daily_pnl"] != -250.0
    mgr.activate_kill_switch("halt")
    assert _disk(tmp_path)["kill_switch"]["active"] is True        # written before returning, fsync or not
    mgr.record_pnl(-50.0)
    mgr.flush()
    assert _disk(tmp_path)["daily_pnl"] == -300.0
    again = PersistentStateManager(tmp_path, clock)
    assert again.is_kill_switch_active() and again.get_daily_pnl() == -300.0
