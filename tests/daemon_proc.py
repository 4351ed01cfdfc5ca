"""Run the real daemon as a subprocess for tests: start, wait for READY, send OS signals, read its logs."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from daemon.control import DaemonNotRunning, control_request, control_request_sync, socket_path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).with_name("ordergate")


def base_env(state_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORDERGATE_") and k not in ("NOTIFY_SOCKET",
                                                                                              "WATCHDOG_USEC")}
    env.update({
        "ORDERGATE_STATE_DIR": str(state_dir),
        "ORDERGATE_METRICS__PORT": "0",
        "ORDERGATE_LOGGING__FORMAT": "json",
        "ORDERGATE_RECONCILE__INTERVAL_SECONDS": "2",
        "PYTHONUNBUFFERED": "1",
    })
    env.update(extra)
    return env


def free_port() -> int:
    """A loopback TCP port free right now (for a daemon's webhook, dashboard or metrics)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def webhook_env(state_dir: Path, token: str, **extra: str) -> tuple[int, dict[str, str]]:
    """(port, env) of a daemon whose webhook listens on a free port with `token`, bars at 5 a second."""
    port = free_port()
    return port, base_env(state_dir, ORDERGATE_WEBHOOK__TOKEN=token, ORDERGATE_WEBHOOK__PORT=str(port),
                          **{"ORDERGATE_DATA__BARS_PER_SECOND": "5", **extra})


def post_signal(port: int, body: object, token: str | None) -> tuple[int, dict[str, Any]]:
    """POST `body` to a daemon's webhook (with `Authorization: Bearer token` unless None): status, JSON answer."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/signals", data=json.dumps(body).encode(),
                                     method="POST", headers={"Content-Type": "application/json"})
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


def wait_until(predicate: Callable[[], object], timeout: float, what: str) -> None:
    """Poll `predicate` every 0.1 s (blocking: for tests outside an event loop) until it is true; fail naming `what`
    after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout}s: {what}")


def cli(
    state_dir: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 30
) -> subprocess.CompletedProcess:
    """Run `ordergate ARGS` to completion."""
    return subprocess.run([str(BIN), *args], env=env or base_env(state_dir), capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


def status(state_dir: Path, env: dict[str, str] | None = None) -> dict[str, Any]:
    """What `ordergate status --json` prints, for tests that look at a daemon (often many times while they wait).

    A daemon that answers on its control socket is asked there from this process: the very request the command
    sends, and its answer as the command prints it, without a fresh interpreter's ~0.35 s of imports per look.
    When none answers (the daemon is down, or lost its socket) the command itself runs: the offline status reads
    the state file and the journal. Tests of the command's own output call `cli(..., "status")`.
    """
    try:
        answer = control_request_sync(socket_path(state_dir), "status", {}, timeout=10.0)
    except DaemonNotRunning:
        out = cli(state_dir, "status", "--json", env=env)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)
    return json.loads(json.dumps(answer, default=str))


async def status_async(state_dir: Path, env: dict[str, str] | None = None) -> dict[str, Any]:
    """`status` for a test on an event loop (whose fakes keep serving while the daemon answers)."""
    try:
        answer = await control_request(socket_path(state_dir), "status", {}, timeout=10.0)
    except DaemonNotRunning:
        out = await asyncio.to_thread(cli, state_dir, "status", "--json", env=env, timeout=60)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)
    return json.loads(json.dumps(answer, default=str))


class DaemonProcess:
    """`ordergate run` in a subprocess, its stdout (JSON log lines) captured to a file of its own."""

    _count = 0

    def __init__(self, state_dir: Path, *args: str, env: dict[str, str] | None = None,
                 command: list[str] | None = None) -> None:
        self.state_dir = state_dir
        DaemonProcess._count += 1
        self.log_path = state_dir.parent / f"{state_dir.name}-daemon-{DaemonProcess._count}.log"
        self.env = env or base_env(state_dir)
        self.args = args
        self.command = command or [str(BIN)]  # the `ordergate` entry point (or a wrapper that runs it)
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0

    def start(self) -> DaemonProcess:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        self.started_at = time.monotonic()
        self.proc = subprocess.Popen([*self.command, *self.args, "run"], env=self.env, stdout=self._log,
                                     stderr=subprocess.STDOUT, cwd=ROOT)
        return self

    def lines(self) -> list[dict[str, Any]]:
        out = []
        for raw in self.log_path.read_text(errors="replace").splitlines():
            try:
                out.append(json.loads(raw))
            except json.JSONDecodeError:
                out.append({"event": "_raw", "text": raw})
        return out

    def text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for(self, event: str, timeout: float = 30.0, **match: Any) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.lines():
                if line.get("event") == event and all(line.get(k) == v for k, v in match.items()):
                    return line
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"daemon exited {self.proc.returncode} before {event!r}:\n{self.text()[-4000:]}")
            time.sleep(0.05)
        raise AssertionError(f"no {event!r} within {timeout}s:\n{self.text()[-4000:]}")

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 10.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stop(self) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(5)
        finally:
            self._log.close()

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(5)
