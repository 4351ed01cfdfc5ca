"""A flooded webhook leaves the kill switch working: the daemon as a subprocess with a low file-descriptor
limit, 1 500 idle TCP connections and slowloris partial headers on its webhook port (and 500 idle ones on
its metrics port), then `ordergate kill`,
`ordergate resume` and SIGUSR1 over real sockets and a real signal, each checked in the state file."""

from __future__ import annotations

import contextlib
import json
import os
import resource
import select
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.daemon_proc import BIN, ROOT, DaemonProcess, base_env, cli, free_port, post_signal

pytestmark = pytest.mark.timeout(180)
TOKEN = "flood-test-token-0123456789abcdef"
IDLE_CONNECTIONS = 1500
SLOWLORIS_CONNECTIONS = 40
METRICS_CONNECTIONS = 500
# The daemon starts with this RLIMIT_NOFILE (soft, hard): 1 500 connections exceed both.
DAEMON_NOFILE = (512, 1024)


class LimitedDaemon(DaemonProcess):
    """`ordergate run` started with a given RLIMIT_NOFILE (as a unit's LimitNOFILE= would set it)."""

    def __init__(self, state_dir: Path, nofile: tuple[int, int], env: dict[str, str]) -> None:
        super().__init__(state_dir, env=env)
        self.nofile = nofile

    def start(self) -> LimitedDaemon:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        self.started_at = time.monotonic()
        nofile = self.nofile
        self.proc = subprocess.Popen([str(BIN), *self.args, "run"], env=self.env, stdout=self._log,
                                     stderr=subprocess.STDOUT, cwd=ROOT,
                                     preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, nofile))
        return self

    def open_fds(self) -> int:
        assert self.proc is not None
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def nofile_soft_limit(self) -> int:
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/limits").read_text().splitlines():
            if line.startswith("Max open files"):
                return int(line.split()[3])
        raise AssertionError("no 'Max open files' in /proc/PID/limits")


def _raise_own_fd_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            pytest.skip(f"this process may open only {hard} files; the test needs {needed}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


def _open_connections(port: int, count: int) -> list[socket.socket]:
    """`count` non-blocking connects (a full accept queue must not block the test)."""
    socks = []
    for _ in range(count):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", port))
        socks.append(s)
    return socks


def _wait_connected(socks: list[socket.socket], seconds: float) -> None:
    """Wait (bounded) until every socket's connect has completed (writable)."""
    poller = select.poll()
    pending = {s.fileno(): s for s in socks}
    for fd in pending:
        poller.register(fd, select.POLLOUT)
    deadline = time.monotonic() + seconds
    while pending and time.monotonic() < deadline:
        for fd, _ in poller.poll(100):
            poller.unregister(fd)
            pending.pop(fd, None)


def _send_quietly(sock: socket.socket, data: bytes) -> None:
    with contextlib.suppress(OSError):
        sock.send(data)


def _state(state_dir: Path) -> dict:
    return json.loads((state_dir / "state.json").read_text())


def _post_signal(port: int) -> int:
    body = {"ticker": "FLOOD", "direction": "long", "signal_type": "manual", "timeframe": "1d",
            "conviction": 70, "entry_price": 50.0, "stop_loss": 48.0, "source": "flood-test"}
    return post_signal(port, body, TOKEN)[0]


def _wait_fds_settle(daemon: LimitedDaemon, seconds: float) -> int:
    """Let the daemon accept what it will; the highest descriptor count seen meanwhile."""
    peak = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        peak = max(peak, daemon.open_fds())
        time.sleep(0.1)
    return peak


def test_flooded_webhook_leaves_kill_resume_and_sigusr1_working(tmp_path: Path) -> None:
    _raise_own_fd_limit(IDLE_CONNECTIONS + SLOWLORIS_CONNECTIONS + METRICS_CONNECTIONS + 512)
    port, metrics_port = free_port(), free_port()
    state_dir = tmp_path / "state"
    env = base_env(state_dir, ORDERGATE_WEBHOOK__TOKEN=TOKEN, ORDERGATE_WEBHOOK__PORT=str(port),
                   ORDERGATE_METRICS__PORT=str(metrics_port), ORDERGATE_DATA__BARS_PER_SECOND="5")
    daemon = LimitedDaemon(state_dir, DAEMON_NOFILE, env).start()
    socks: list[socket.socket] = []
    try:
        daemon.wait_for("daemon_ready", timeout=60)
        idle = _open_connections(port, IDLE_CONNECTIONS)
        slow = _open_connections(port, SLOWLORIS_CONNECTIONS)
        metrics_idle = _open_connections(metrics_port, METRICS_CONNECTIONS)  # the other listener, flooded too
        socks = idle + slow + metrics_idle
        _wait_connected(slow, 5.0)
        for s in slow:  # a request head that never ends
            _send_quietly(s, b"POST /v1/signals HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        peak = _wait_fds_settle(daemon, 3.0)
        for s in slow:
            _send_quietly(s, b"X-Slow: 1\r\n")

        killed = cli(state_dir, "kill", "--reason", "flood test", "--json")
        assert killed.returncode == 0, killed.stdout + killed.stderr
        assert _state(state_dir)["kill_switch"]["active"] is True

        resumed = cli(state_dir, "resume", "--json")
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        assert _state(state_dir)["kill_switch"]["active"] is False

        daemon.signal(signal.SIGUSR1)
        daemon.wait_for("kill_switch_tripped", source="signal", timeout=10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not _state(state_dir)["kill_switch"]["active"]:
            time.sleep(0.05)
        assert _state(state_dir)["kill_switch"] == {**_state(state_dir)["kill_switch"], "active": True,
                                                    "source": "signal"}

        # The daemon took the soft limit up to the hard one, and the webhook kept well inside it.
        assert daemon.nofile_soft_limit() == DAEMON_NOFILE[1]
        # the listeners' caps (webhook 256, metrics 64) plus what the daemon holds anyway (~20-40)
        assert peak <= 256 + 64 + 100, f"the daemon held {peak} descriptors under the flood"

        # The flood ends: the webhook serves again.
        for s in socks:
            s.close()
        socks = []
        deadline = time.monotonic() + 15
        status = 0
        while time.monotonic() < deadline and status != 202:
            with contextlib.suppress(OSError):
                status = _post_signal(port)
            if status != 202:
                time.sleep(0.2)
        assert status == 202
    finally:
        for s in socks:
            s.close()
        assert daemon.stop() == 0, daemon.text()[-3000:]


def test_a_webhook_cap_the_fd_limit_cannot_hold_stops_the_start(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    env = base_env(state_dir, ORDERGATE_WEBHOOK__TOKEN=TOKEN, ORDERGATE_WEBHOOK__PORT=str(free_port()),
                   ORDERGATE_WEBHOOK__MAX_CONNECTIONS="400")
    daemon = LimitedDaemon(state_dir, (512, 512), env).start()
    assert daemon.wait(30) == 2
    text = daemon.text()
    assert "Traceback" not in text
    [line] = [line for line in text.splitlines() if line.strip()]
    assert line.startswith("ordergate: invalid setting webhook.max_connections=400: must be at most 256")
    assert "LimitNOFILE" in line
