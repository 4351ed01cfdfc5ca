"""The state manager's per-trade work (a P&L, a loss counted or the breaker reset) made cheaper changes nothing:
the same file bytes after every step, a write exactly when the state changes, drafts that never leak into the
live state, and a relaxing change that fails to write leaves the state as it was."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pipeline.core.clock import SimulatedClock
from pipeline.safety import state_manager
from pipeline.safety.state_manager import PersistentStateManager, _copy_json

START = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)


def _script(mgr: PersistentStateManager, clock: SimulatedClock, now: list[str]) -> list[tuple[str, bytes | None]]:
    """A day of trades, a kill, a breaker, a rollover: (step, file bytes) after each step; `now` names the step
    running (for the write counter)."""
    path = mgr.path
    seen: list[tuple[str, bytes | None]] = []

    def mark(step: str) -> None:
        seen.append((step, path.read_bytes() if path.exists() else None))

    steps = [
        ("win", lambda: (mgr.record_pnl(120.0), mgr.reset_circuit_breaker())),
        ("win_again", lambda: (mgr.record_pnl(30.0), mgr.reset_circuit_breaker())),
        ("loss", lambda: (mgr.record_pnl(-40.0), mgr.increment_circuit_breaker())),
        ("loss2", lambda: (mgr.record_pnl(-60.0), mgr.increment_circuit_breaker())),
        ("open", lambda: mgr.open_circuit_breaker(clock.now() + timedelta(minutes=30))),
        ("reset", mgr.reset_circuit_breaker),
        ("reset_again", mgr.reset_circuit_breaker),
        ("zero", lambda: mgr.record_pnl(0.0)),
        ("kill", lambda: mgr.activate_kill_switch("halt", "daily_loss")),
        ("kill_again", lambda: mgr.activate_kill_switch("other", "manual")),
        ("loss_killed", lambda: (mgr.record_pnl(-5.0), mgr.increment_circuit_breaker())),
        ("resume", mgr.deactivate_kill_switch),
        ("resume_again", mgr.deactivate_kill_switch),
        ("next_day", lambda: (clock.advance(86_400), mgr.check_day_rollover())),
        ("next_day_win", lambda: (mgr.record_pnl(10.0), mgr.reset_circuit_breaker())),
    ]
    for name, step in steps:
        now[:] = [name]
        clock.advance(60)
        step()
        mark(name)
    return seen


def _drafted_reset(self: PersistentStateManager) -> None:
    with self._lock:
        draft = self._draft()
        draft["circuit_breaker"] = {"consecutive_losses": 0, "open": False, "open_until": None}
        self._commit(draft, tighten=False)


@pytest.mark.parametrize("durable", [True, False])
def test_same_bytes_and_writes_as_a_deep_copied_draft(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      durable: bool) -> None:
    now: list[str] = []
    writes: list[str] = []
    write_state = state_manager._write_state

    def counted(path: Path, state: dict, durable: bool = True) -> None:
        writes.append(now[0] if now else "start")
        write_state(path, state, durable)

    monkeypatch.setattr(state_manager, "_write_state", counted)
    lean_clock = SimulatedClock(START)
    lean = _script(PersistentStateManager(tmp_path / "lean", lean_clock, durable=durable), lean_clock, now)
    lean_writes, writes[:] = list(writes), []

    # the reference: every draft a full deep copy, every reset drafted and compared (the code before)
    monkeypatch.setattr(PersistentStateManager, "_draft", lambda self: _copy_json(self._state))
    monkeypatch.setattr(PersistentStateManager, "reset_circuit_breaker", _drafted_reset)
    now[:] = []
    ref_clock = SimulatedClock(START)
    ref = _script(PersistentStateManager(tmp_path / "ref", ref_clock, durable=durable), ref_clock, now)

    assert lean == ref
    assert lean_writes == writes  # a write exactly where the reference wrote
    if durable:
        assert "reset_again" not in lean_writes and "kill_again" not in lean_writes
        assert "resume_again" not in lean_writes and "win_again" in lean_writes
    else:
        assert lean_writes == ["kill", "resume"]  # a throwaway run writes the kill switch's changes at once


def test_a_reset_with_nothing_to_reset_writes_nothing(tmp_path: Path) -> None:
    clock = SimulatedClock(START)
    mgr = PersistentStateManager(tmp_path, clock)
    mgr.record_pnl(5.0)
    before = (mgr.path.read_bytes(), mgr.path.stat().st_mtime_ns, mgr.snapshot()["updated_at"])
    clock.advance(60)
    mgr.reset_circuit_breaker()
    assert (mgr.path.read_bytes(), mgr.path.stat().st_mtime_ns, mgr.snapshot()["updated_at"]) == before


def test_a_draft_never_reaches_the_live_state(tmp_path: Path) -> None:
    mgr = PersistentStateManager(tmp_path, SimulatedClock(START))
    live = mgr._state
    draft = mgr._draft()
    draft["kill_switch"]["active"] = True
    draft["circuit_breaker"]["consecutive_losses"] = 9
    draft["daily_pnl"] = -1.0
    assert live["kill_switch"]["active"] is False
    assert live["circuit_breaker"]["consecutive_losses"] == 0 and live["daily_pnl"] == 0.0


def test_a_reset_that_cannot_be_written_keeps_the_losses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mgr = PersistentStateManager(tmp_path, SimulatedClock(START))
    mgr.increment_circuit_breaker()
    mgr.increment_circuit_breaker()

    def full_disk(state: dict) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(mgr, "_persist", full_disk)
    with pytest.raises(OSError):
        mgr.reset_circuit_breaker()
    assert mgr.get_circuit_breaker_status()["consecutive_losses"] == 2  # relaxing: only once written
