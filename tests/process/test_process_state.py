"""PersistentStateManager: persistence, fail-closed loading, rollover, the CLI's file functions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import pipeline.safety.state_manager as sm
from pipeline.core.clock import SimulatedClock
from pipeline.safety.state_manager import (
    PersistentStateManager,
    apply_kill,
    apply_resume,
    default_state,
    read_state_file,
    update_state_file,
)

REPO = Path(__file__).resolve().parents[2]
# 10:00 New York on Monday 2026-01-05
MONDAY_10_NY = datetime(2026, 1, 5, 15, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> SimulatedClock:
    return SimulatedClock(MONDAY_10_NY)


def make(tmp_path: Path, clock: SimulatedClock) -> PersistentStateManager:
    return PersistentStateManager(tmp_path, clock)


def on_disk(tmp_path: Path) -> dict:
    return json.loads((tmp_path / "state.json").read_text())


def inode(tmp_path: Path) -> int:
    return (tmp_path / "state.json").stat().st_ino


# ------------------------------------------------------------------------------------------- clean start


def test_missing_file_is_a_clean_start_and_writes_nothing(tmp_path: Path, clock: SimulatedClock) -> None:
    mgr = make(tmp_path, clock)
    assert mgr.load_error is None
    assert not mgr.is_kill_switch_active()
    assert mgr.get_daily_pnl() == 0.0
    assert mgr.get_circuit_breaker_status() == {"consecutive_losses": 0, "open": False, "open_until": None}
    assert not (tmp_path / "state.json").exists()


def test_kill_switch_is_on_disk_before_activate_returns(tmp_path: Path, clock: SimulatedClock) -> None:
    mgr = make(tmp_path, clock)
    assert mgr.activate_kill_switch("daily loss limit", source="risk") is True
    data = on_disk(tmp_path)
    assert data["version"] == 1
    assert data["kill_switch"] == {
        "active": True,
        "reason": "daily loss limit",
        "since": MONDAY_10_NY.isoformat(),
        "source": "risk",
    }
    assert (tmp_path / "state.json").stat().st_mode & 0o777 == 0o600
    reloaded = make(tmp_path, clock)
    assert reloaded.is_kill_switch_active()
    assert reloaded.kill_switch_info()["reason"] == "daily loss limit"


def test_activate_is_idempotent_and_keeps_the_first_reason(tmp_path: Path, clock: SimulatedClock) -> None:
    mgr = make(tmp_path, clock)
    mgr.activate_kill_switch("first")
    before = inode(tmp_path)
    clock.advance(60)
    assert mgr.activate_kill_switch("second", source="signal") is False
    assert mgr.kill_switch_info()["reason"] == "first"
    assert mgr.kill_switch_info()["source"] == "manual"
    assert inode(tmp_path) == before, "an idempotent activate must not rewrite the file"


def test_deactivate_persists(tmp_path: Path, clock: SimulatedClock) -> None:
    mgr = make(tmp_path, clock)
    mgr.activate_kill_switch("x")
    assert mgr.deactivate_kill_switch() is True
    assert mgr.deactivate_kill_switch() is False
    assert on_disk(tmp_path)["kill_switch"]["active"] is False
    assert not make(tmp_path, clock).is_kill_switch_active()


def test_pnl_and_breaker_survive_restart(tmp_path: Path, clock: SimulatedClock) -> None:
    mgr = make(tmp_path, clock)
    assert mgr.record_pnl(-120.5) == -120.5
    assert mgr.record_pnl(20) == -100.5
    assert mgr.increment_circuit_breaker() == 1
    assert mgr.increment_circuit_breaker() == 2
    reloaded = make(tmp_path, clock)
    assert reloaded.get_daily_pnl() == -100.5
    assert reloaded.get_circuit_breaker_status()["consecutive_losses"] == 2
    reloaded.reset_circuit_breaker()
    assert make(tmp_path, clock).get_circuit_breaker_status()["consecutive_losses"] == 0


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), "abc"])
def test_record_pnl_rejects_non_finite(tmp_path: Path, clock: SimulatedClock, bad: object) -> None:
    mgr = make(tmp_path, clock)
    with pytest.raises(ValueError):
        mgr.record_pnl(bad)  # type: ignore[arg-type]
    assert mgr.get_daily_pnl() == 0.0


def test_writes_only_on_change(tmp_path: Path, clock: SimulatedClock) -> None:
    mgr = make(tmp_path, clock)
    mgr.record_pnl(5.0)
    before = inode(tmp_path)
    mgr.record_pnl(0.0)
    mgr.check_day_rollover()
    mgr.deactivate_kill_switch()
    mgr.reset_circuit_breaker()
    mgr.get_daily_pnl()
    mgr.snapshot()
    assert inode(tmp_path) == before
    mgr.record_pnl(1.0)
    assert inode(tmp_path) != before


# ----------------------------------------------------------------------------------------- fail closed

VALID = default_state()
CORRUPTIONS: dict[str, tuple[bytes, str]] = {
    "empty": (b"", "empty"),
    "whitespace": (b"  \n", "empty"),
    "truncated": (json.dumps(VALID).encode()[:40], "not valid JSON"),
    "garbage": (b"\x00\xff\xfe garbage \x01", "not valid JSON"),
    "array": (b"[1, 2]", "top level"),
    "unknown_version": (json.dumps({**VALID, "version": 2}).encode(), "version 2"),
    "no_version": (json.dumps({k: v for k, v in VALID.items() if k != "version"}).encode(), "version"),
    "pnl_string": (json.dumps({**VALID, "daily_pnl": "lots"}).encode(), "daily_pnl"),
    "active_string": (
        json.dumps({**VALID, "kill_switch": {**VALID["kill_switch"], "active": "no"}}).encode(),
        "kill_switch.active",
    ),
    "missing_breaker": (json.dumps({k: v for k, v in VALID.items() if k != "circuit_breaker"}).encode(), "circuit"),
    "losses_bool": (
        json.dumps({**VALID, "circuit_breaker": {**VALID["circuit_breaker"], "consecutive_losses": True}}).encode(),
        "consecutive_losses",
    ),
    "bad_since": (
        json.dumps({**VALID, "kill_switch": {**VALID["kill_switch"], "since": "yesterday"}}).encode(),
        "since",
    ),
}


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_corrupt_file_starts_with_kill_switch_active(tmp_path: Path, clock: SimulatedClock, name: str) -> None:
    content, why = CORRUPTIONS[name]
    path = tmp_path / "state.json"
    path.write_bytes(content)
    mgr = make(tmp_path, clock)
    assert mgr.is_kill_switch_active()
    info = mgr.kill_switch_info()
    assert str(path) in info["reason"] and why in info["reason"]
    assert info["source"] == "state_file"
    assert mgr.load_error is not None and str(path) in mgr.load_error and why in mgr.load_error
    # the fail-closed state is persisted (a restart stays closed) and the bad bytes are kept for forensics
    assert on_disk(tmp_path)["kill_switch"]["active"] is True
    assert make(tmp_path, clock).is_kill_switch_active()
    assert (tmp_path / "state.json.corrupt").read_bytes() == content
    # the CLI's reader applies the same rule
    fresh = tmp_path / "other"
    fresh.mkdir()
    (fresh / "state.json").write_bytes(content)
    read = read_state_file(fresh / "state.json")
    assert read["kill_switch"]["active"] is True and why in read["load_error"]


def test_unreadable_file_fails_closed(tmp_path: Path, clock: SimulatedClock) -> None:
    (tmp_path / "state.json").mkdir()  # reading it raises IsADirectoryError, even as root
    mgr = make(tmp_path, clock)
    assert mgr.is_kill_switch_active()
    assert "unreadable" in mgr.load_error and str(tmp_path / "state.json") in mgr.load_error


def test_failed_write_still_fails_closed(tmp_path: Path, clock: SimulatedClock, monkeypatch) -> None:
    mgr = make(tmp_path, clock)

    def disk_full(path: Path, state: dict, durable: bool = True) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(sm, "_write_state", disk_full)
    with pytest.raises(OSError):
        mgr.activate_kill_switch("x")
    assert mgr.is_kill_switch_active(), "the trip must hold in memory even if it could not be written"
    with pytest.raises(OSError):
        mgr.deactivate_kill_switch()
    assert mgr.is_kill_switch_active(), "a resume that could not be written must not take effect"


def test_read_state_file_missing_is_clean(tmp_path: Path) -> None:
    state = read_state_file(tmp_path / "state.json")
    assert state["kill_switch"]["active"] is False and state["load_error"] is None


# ------------------------------------------------------------------------------------------- rollover


def test_day_rollover_uses_new_york_day(tmp_path: Path, clock: SimulatedClock) -> None:
    mgr = make(tmp_path, clock)
    assert mgr.check_day_rollover() is False  # first call records the day
    mgr.record_pnl(-300.0)
    for _ in range(3):
        mgr.increment_circuit_breaker()
    mgr.open_circuit_breaker()
    mgr.activate_kill_switch("loss limit")
    assert mgr.is_circuit_breaker_open()
    clock.advance_to(datetime(2026, 1, 6, 0, 30, tzinfo=UTC))  # 19:30 New York, still Monday
    assert mgr.check_day_rollover() is False
    assert mgr.get_daily_pnl() == -300.0
    clock.advance_to(datetime(2026, 1, 6, 14, 0, tzinfo=UTC))  # Tuesday 09:00 New York
    assert mgr.get_daily_pnl() == 0.0, "a stale day's P&L is not today's"
    assert not mgr.is_circuit_breaker_open()
    assert mgr.check_day_rollover() is True
    assert mgr.check_day_rollover() is False
    assert mgr.get_circuit_breaker_status() == {"consecutive_losses": 0, "open": False, "open_until": None}
    assert mgr.is_kill_switch_active(), "rollover never clears the kill switch"
    data = on_disk(tmp_path)
    assert data["daily_pnl"] == 0.0 and data["trading_day"] == "2026-01-06"


def test_record_pnl_on_a_new_day_starts_from_zero(tmp_path: Path, clock: SimulatedClock) -> None:
    mgr = make(tmp_path, clock)
    mgr.record_pnl(-50.0)
    clock.advance(24 * 3600)
    assert mgr.record_pnl(10.0) == 10.0


def test_breaker_open_until(tmp_path: Path, clock: SimulatedClock) -> None:
    mgr = make(tmp_path, clock)
    until = clock.now() + timedelta(minutes=10)
    mgr.open_circuit_breaker(until)
    assert mgr.is_circuit_breaker_open()
    assert make(tmp_path, clock).get_circuit_breaker_status()["open_until"] == until.isoformat()
    clock.advance(11 * 60)
    assert not mgr.is_circuit_breaker_open()
    with pytest.raises(ValueError):
        mgr.open_circuit_breaker(datetime(2026, 1, 5, 16, 0))


def test_snapshot(tmp_path: Path, clock: SimulatedClock) -> None:
    mgr = make(tmp_path, clock)
    mgr.record_pnl(7.0)
    snap = mgr.snapshot()
    assert snap["daily_pnl"] == 7.0
    assert snap["kill_switch"]["active"] is False
    assert snap["path"] == str(tmp_path / "state.json") and snap["load_error"] is None
    json.dumps(snap)


# ---------------------------------------------------------------------------------- CLI (daemon down)


def test_update_state_file_kill_and_resume(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    now = datetime(2026, 1, 5, 15, 0, tzinfo=UTC)
    state = update_state_file(path, lambda s: apply_kill(s, "operator", "cli", now), now)
    assert state["kill_switch"]["active"] and on_disk(tmp_path)["kill_switch"]["reason"] == "operator"
    update_state_file(path, apply_resume)
    assert on_disk(tmp_path)["kill_switch"]["active"] is False


def test_resume_repairs_a_corrupt_file(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_bytes(b"{torn")
    update_state_file(path, apply_resume)
    state = read_state_file(path)
    assert state["load_error"] is None
    assert state["kill_switch"]["active"] is False


def test_update_state_file_rejects_a_bad_mutation(tmp_path: Path) -> None:
    path = tmp_path / "state.json"

    def bad(state: dict) -> None:
        state["daily_pnl"] = "lots"

    with pytest.raises(sm.StateFileError, match="daily_pnl"):
        update_state_file(path, bad)
    assert not path.exists()


WRITER = """
import sys
from pipeline.safety.state_manager import update_state_file
path = sys.argv[1]
def add(state):
    state["daily_pnl"] += 1.0
for _ in range(int(sys.argv[2])):
    update_state_file(path, add)
"""


def test_concurrent_writers_do_not_lose_updates(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(path), "40"], env=env, cwd=REPO) for _ in range(2)
    ]
    for proc in procs:
        assert proc.wait(timeout=60) == 0
    assert read_state_file(path)["daily_pnl"] == 80.0
