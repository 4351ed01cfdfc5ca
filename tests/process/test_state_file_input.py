"""A state file that is not a small, shallow, regular JSON file fails closed without hanging or crashing:
the daemon starts with the kill switch active and says why, `status` answers, `resume` repairs it. Real
FIFOs, real files, the daemon and the CLI as subprocesses."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from pipeline.core.clock import SimulatedClock
from pipeline.safety.state_manager import PersistentStateManager, apply_resume, read_state_file, update_state_file
from tests.daemon_proc import DaemonProcess, cli

pytestmark = pytest.mark.timeout(90)
DEEP = b"[" * 100_000 + b"]" * 100_000
DEEP_INSIDE = (b'{"version": 1, "kill_switch": {"active": false, "reason": null, "since": null, "source": null}, '
               b'"daily_pnl": 0.0, "trading_day": null, "circuit_breaker": {"consecutive_losses": 0, '
               b'"open": false, "open_until": null}, "updated_at": null, "extra": ' + DEEP + b"}")


def _bad_state(state_dir: Path, kind: str) -> Path:
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / "state.json"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "deep":
        path.write_bytes(DEEP)
    elif kind == "deep_inside":
        path.write_bytes(DEEP_INSIDE)
    elif kind == "dev_zero":
        path.symlink_to("/dev/zero")
    return path


KINDS = {"fifo": "FIFO", "deep": "nested", "deep_inside": "nested", "dev_zero": "character device"}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_manager_fails_closed_on_a_file_it_must_not_read(tmp_path: Path, kind: str) -> None:
    path = _bad_state(tmp_path, kind)
    read = read_state_file(path)  # the CLI's reader (daemon down)
    assert read["kill_switch"]["active"] is True and KINDS[kind] in read["load_error"]
    mgr = PersistentStateManager(tmp_path, SimulatedClock())
    assert mgr.is_kill_switch_active()
    assert mgr.load_error is not None and str(path) in mgr.load_error and KINDS[kind] in mgr.load_error
    # the fail-closed state replaced the bad file, so the next start is closed too
    assert json.loads(path.read_text())["kill_switch"]["active"] is True
    assert PersistentStateManager(tmp_path, SimulatedClock()).is_kill_switch_active()


@pytest.mark.parametrize("kind", ["fifo", "deep"])
def test_resume_replaces_the_bad_file(tmp_path: Path, kind: str) -> None:
    path = _bad_state(tmp_path, kind)
    update_state_file(path, apply_resume)
    assert path.is_file() and not path.is_symlink()
    assert read_state_file(path)["load_error"] is None
    assert json.loads(path.read_text())["kill_switch"]["active"] is False


@pytest.mark.parametrize("kind", ["fifo", "deep"])
def test_status_and_resume_with_the_daemon_down(tmp_path: Path, kind: str) -> None:
    state_dir = tmp_path / "state"
    _bad_state(state_dir, kind)
    out = cli(state_dir, "status", "--json", timeout=20)
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr
    shown = json.loads(out.stdout)
    assert shown["kill_switch"]["active"] is True and KINDS[kind] in shown["state_error"]
    out = cli(state_dir, "resume", "--json", timeout=20)
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr
    shown = json.loads(cli(state_dir, "status", "--json", timeout=20).stdout)
    assert shown["kill_switch"]["active"] is False and shown["state_error"] is None


@pytest.mark.parametrize("kind", ["fifo", "deep"])
def test_daemon_starts_with_the_kill_switch_active_and_resume_repairs(tmp_path: Path, kind: str) -> None:
    state_dir = tmp_path / "state"
    _bad_state(state_dir, kind)
    daemon = DaemonProcess(state_dir).start()
    try:
        ready = daemon.wait_for("daemon_ready", timeout=60)
        assert ready["kill_switch"] is True
        err = daemon.wait_for("state_file_unreadable", timeout=1.0)
        assert KINDS[kind] in json.dumps(err)
        status = json.loads(cli(state_dir, "status", "--json", timeout=20).stdout)
        assert status["running"] is True and status["kill_switch"]["active"] is True
        out = cli(state_dir, "resume", "--json", timeout=20)
        assert out.returncode == 0, out.stdout + out.stderr
        assert json.loads((state_dir / "state.json").read_text())["kill_switch"]["active"] is False
    finally:
        assert daemon.stop() == 0, daemon.text()[-3000:]


@pytest.mark.parametrize("kind", ["fifo", "deep"])
def test_a_paper_book_that_is_not_a_regular_shallow_file_stops_the_start_in_one_line(tmp_path: Path,
                                                                                      kind: str) -> None:
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    book = state_dir / "paper_book.json"
    if kind == "fifo":
        os.mkfifo(book)
    else:
        book.write_bytes(DEEP)
    out = cli(state_dir, "run", timeout=60)
    assert out.returncode == 2 and "Traceback" not in out.stdout + out.stderr, (out.stdout[-2000:], out.stderr)
    [line] = [line for line in out.stderr.splitlines() if line.strip()]
    assert "paper_book.json" in line and ("FIFO" in line if kind == "fifo" else "nested" in line), line


@pytest.mark.parametrize("name", ["journal.db", "journal.db-wal"])
def test_a_journal_that_is_not_a_regular_file_stops_the_start_in_one_line(tmp_path: Path, name: str) -> None:
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    os.mkfifo(state_dir / name)
    out = cli(state_dir, "run", timeout=60)
    assert out.returncode == 2 and "Traceback" not in out.stdout + out.stderr, (out.stdout[-2000:], out.stderr)
    [line] = [line for line in out.stderr.splitlines() if line.strip()]
    assert name in line and "FIFO" in line, line
