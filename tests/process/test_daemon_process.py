"""The real daemon as a subprocess receiving real OS signals (issue: the daemon as a service)."""

from __future__ import annotations

import json
import signal
import socket
import time
from pathlib import Path

import pytest

from tests.daemon_proc import DaemonProcess, base_env, cli, status

pytestmark = pytest.mark.timeout(180)


def _wait_status(state_dir: Path, predicate, timeout: float = 5.0) -> dict:
    deadline = time.monotonic() + timeout
    last: dict = {}
    while time.monotonic() < deadline:
        last = status(state_dir)
        if predicate(last):
            return last
        time.sleep(0.05)
    raise AssertionError(f"status never matched: {last}")


def test_bars_flow_within_five_seconds_then_sigterm_exits_zero(tmp_path: Path) -> None:
    daemon = DaemonProcess(tmp_path / "state").start()
    try:
        line = daemon.wait_for("bars_flowing", timeout=5.0)
        assert line["level"] == "info" and "timestamp" in line and "bar_time" in line
        daemon.wait_for("daemon_ready", timeout=1.0)
        st = status(daemon.state_dir)
        assert st["running"] is True and st["pid"] == daemon.proc.pid
        assert st["kill_switch"]["active"] is False
        started = time.monotonic()
        daemon.signal(signal.SIGTERM)
        assert daemon.wait(10) == 0
        assert time.monotonic() - started < 10
        assert any(line.get("event") == "daemon_stopped" for line in daemon.lines())
    finally:
        daemon.stop()


def test_sigusr1_trips_kill_switch_and_it_survives_restart_until_resume(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    daemon = DaemonProcess(state_dir).start()
    try:
        daemon.wait_for("daemon_ready")
        sent = time.monotonic()
        daemon.signal(signal.SIGUSR1)
        st = _wait_status(state_dir, lambda s: s["kill_switch"]["active"], timeout=2.0)
        assert time.monotonic() - sent < 2.0
        assert "SIGUSR1" in st["kill_switch"]["reason"]
        assert st["kill_switch"]["since"]
        daemon.signal(signal.SIGTERM)
        assert daemon.wait(10) == 0
    finally:
        daemon.stop()

    # down: status reads the state file
    down = status(state_dir)
    assert down["running"] is False and down["kill_switch"]["active"] is True

    again = DaemonProcess(state_dir).start()
    try:
        again.wait_for("daemon_ready")
        assert status(state_dir)["kill_switch"]["active"] is True
        out = cli(state_dir, "resume", "--json")
        assert out.returncode == 0, out.stderr
        assert status(state_dir)["kill_switch"]["active"] is False
    finally:
        code = again.stop()
        assert code == 0, again.text()[-3000:]


def test_kill_and_resume_with_daemon_down(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    out = cli(state_dir, "kill", "--reason", "maintenance", "--json")
    assert out.returncode == 0, out.stderr
    st = status(state_dir)
    assert st["running"] is False and st["kill_switch"]["active"] and st["kill_switch"]["reason"] == "maintenance"
    assert cli(state_dir, "resume").returncode == 0
    assert status(state_dir)["kill_switch"]["active"] is False


def test_corrupt_state_file_starts_with_kill_switch_active(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    (state_dir / "state.json").write_bytes(b'{"version": 1, "kill_switch": {"act')
    daemon = DaemonProcess(state_dir).start()
    try:
        daemon.wait_for("daemon_ready")
        err = daemon.wait_for("state_file_unreadable", timeout=1.0)
        assert err["level"] == "error" and "state.json" in err["path"]
        st = status(state_dir)
        assert st["kill_switch"]["active"] is True
        assert "corrupt" in st["kill_switch"]["reason"]
    finally:
        daemon.stop()


def test_systemd_notify_ready_and_watchdog(tmp_path: Path) -> None:
    sock_path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    sock.settimeout(0.5)
    env = base_env(tmp_path / "state", NOTIFY_SOCKET=str(sock_path), WATCHDOG_USEC="400000")
    daemon = DaemonProcess(tmp_path / "state", env=env).start()
    seen: list[str] = []
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not ({"READY=1", "WATCHDOG=1"} <= set(seen)):
            try:
                seen.extend(sock.recv(4096).decode().splitlines())
            except TimeoutError:
                continue
        assert "READY=1" in seen, seen
        assert "WATCHDOG=1" in seen, seen
        assert seen.index("READY=1") < seen.index("WATCHDOG=1") or "WATCHDOG=1" in seen
        daemon.signal(signal.SIGTERM)
        assert daemon.wait(10) == 0
        try:
            while True:
                seen.extend(sock.recv(4096).decode().splitlines())
        except TimeoutError:
            pass
        assert "STOPPING=1" in seen
    finally:
        daemon.stop()
        sock.close()


@pytest.mark.parametrize(
    ("env_extra", "toml", "needle"),
    [
        ({"ORDERGATE_EXECUTOR__DAILY_LOSS_LIMIT": "-0.1"}, None, "executor.daily_loss_limit"),
        ({"ORDERGATE_BROKER__PRIMARY": "schwab"}, None, "broker.primary"),
        ({}, "[executor\nmax_risk = ", "malformed TOML"),
        ({"ORDERGATE_BROKER__PRIMARY": "alpaca"}, None, "alpaca.api_key"),
    ],
)
def test_bad_config_is_one_line_and_exit_2(tmp_path: Path, env_extra: dict, toml: str | None, needle: str) -> None:
    env = base_env(tmp_path / "state", **env_extra)
    args = []
    if toml is not None:
        cfg = tmp_path / "bad.toml"
        cfg.write_text(toml)
        args = ["--config", str(cfg)]
    out = cli(tmp_path / "state", *args, "run", env=env, timeout=30)
    assert out.returncode == 2, (out.stdout, out.stderr)
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, out.stderr
    assert needle in lines[0]
    assert "Traceback" not in out.stderr


def test_config_show_masks_secrets(tmp_path: Path) -> None:
    env = base_env(tmp_path / "state", ORDERGATE_ALPACA__API_KEY="AKSECRETVALUE123",
                   ORDERGATE_WEBHOOK__TOKEN="tok-very-secret-value")
    out = cli(tmp_path / "state", "config", "show", env=env)
    assert out.returncode == 0, out.stderr
    assert "AKSECRETVALUE123" not in out.stdout and "tok-very-secret-value" not in out.stdout
    shown = json.loads(out.stdout)
    assert shown["alpaca"]["api_key"] == "**********"
    assert shown["broker"]["primary"] == "paper"
