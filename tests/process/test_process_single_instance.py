"""Issue 11.7: one daemon per state dir, by an flock on `daemon.lock`, not by the control socket."""

from __future__ import annotations

import json
import stat
import subprocess
from pathlib import Path

import pytest

from tests.daemon_proc import BIN, ROOT, DaemonProcess, base_env, cli

pytestmark = pytest.mark.timeout(120)


def test_second_daemon_on_the_same_dir_exits_2_even_without_the_control_socket(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    env = base_env(state_dir, ORDERGATE_DATA__BARS_PER_SECOND="5")
    first = DaemonProcess(state_dir, env=env).start()
    try:
        first.wait_for("daemon_ready")
        assert first.proc is not None
        lock = state_dir / "daemon.lock"
        assert stat.S_IMODE(lock.stat().st_mode) == 0o600
        assert lock.read_text().strip() == str(first.proc.pid)
        # the read-only commands work beside the running daemon
        for command in ("status", "positions", "orders", "journal"):
            out = cli(state_dir, command, "--json", env=env)
            assert out.returncode == 0, (command, out.stdout, out.stderr)
        assert json.loads(cli(state_dir, "status", "--json", env=env).stdout)["pid"] == first.proc.pid

        (state_dir / "control.sock").unlink()
        second = subprocess.run([str(BIN), "run"], env=env, capture_output=True, text=True, timeout=60, cwd=ROOT)
        assert second.returncode == 2, (second.stdout, second.stderr)
        lines = [line for line in second.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and "Traceback" not in second.stderr, second.stderr
        assert f"pid {first.proc.pid}" in lines[0] and "daemon.lock" in lines[0], lines[0]
        assert not second.stdout.strip()  # it logged nothing: it never started
        assert not (state_dir / "control.sock").exists()  # it did not put up a socket of its own
        assert first.proc.poll() is None  # the first daemon runs on
    finally:
        assert first.stop() == 0, first.text()[-3000:]


def test_a_stale_lock_file_does_not_block_a_start(tmp_path: Path) -> None:
    """The kernel drops the lock with its holder: a SIGKILLed daemon's file (with its dead pid) is no obstacle."""
    state_dir = tmp_path / "state"
    first = DaemonProcess(state_dir).start()
    try:
        first.wait_for("daemon_ready")
        first.kill9()
    finally:
        first.stop()
    assert (state_dir / "daemon.lock").exists()
    again = DaemonProcess(state_dir).start()
    try:
        again.wait_for("daemon_ready")
        assert again.proc is not None
        assert (state_dir / "daemon.lock").read_text().strip() == str(again.proc.pid)
    finally:
        assert again.stop() == 0, again.text()[-3000:]


def test_kill_with_the_control_socket_gone_still_reaches_the_running_daemon(tmp_path: Path) -> None:
    """Writing the state file is not enough while a daemon runs (it never rereads it, and its next write would
    put its own state back): `kill` signals the lock's holder, `status` names it, `resume` refuses."""
    state_dir = tmp_path / "state"
    env = base_env(state_dir, ORDERGATE_DATA__BARS_PER_SECOND="5")
    daemon = DaemonProcess(state_dir, env=env).start()
    try:
        daemon.wait_for("daemon_ready")
        assert daemon.proc is not None
        (state_dir / "control.sock").unlink()
        st = json.loads(cli(state_dir, "status", "--json", env=env).stdout)
        assert st["running"] is True and st["pid"] == daemon.proc.pid and st["control_socket"] == "missing", st
        out = cli(state_dir, "kill", "--reason", "socket gone", "--json", env=env)
        assert out.returncode == 0, (out.stdout, out.stderr)
        tripped = daemon.wait_for("kill_switch_tripped", timeout=10.0)
        assert tripped["source"] == "signal"
        st = json.loads(cli(state_dir, "status", "--json", env=env).stdout)
        assert st["kill_switch"]["active"] is True
        out = cli(state_dir, "resume", env=env)
        assert out.returncode == 1 and f"pid {daemon.proc.pid}" in out.stdout + out.stderr, out
        assert daemon.proc.poll() is None
    finally:
        assert daemon.stop() == 0, daemon.text()[-3000:]
    # after the stop the kill is on disk, and resume works again with the daemon down
    st = json.loads(cli(state_dir, "status", "--json", env=env).stdout)
    assert st["running"] is False and st["kill_switch"]["active"] is True
    assert cli(state_dir, "resume", env=env).returncode == 0
