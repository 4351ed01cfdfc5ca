"""SIGKILL a process while it rewrites the state file in a tight loop: the file is never torn or empty."""

from __future__ import annotations

import json
import os
import random
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

from pipeline.safety.state_manager import read_state_file, validate_state

REPO = Path(__file__).resolve().parents[2]
KILLS = 120
BIG_REASON = "B" * 200_000

WRITER = """
import sys
from datetime import UTC, datetime, timedelta
from pipeline.safety.state_manager import PersistentStateManager

class Clock:
    simulated = True
    def __init__(self):
        self.t = datetime(2026, 1, 5, 15, 0, tzinfo=UTC)
    def now(self):
        self.t += timedelta(microseconds=1)
        return self.t
    async def sleep(self, seconds):
        pass

big = "B" * 200_000
mgr = PersistentStateManager(sys.argv[1], Clock())
i = 0
while True:
    i += 1
    mgr.activate_kill_switch(big if i % 2 else f"small {i}", source="crash-test")
    if i == 1:
        sys.stdout.write("ready\\n")
        sys.stdout.flush()
    mgr.record_pnl(1.0)
    mgr.deactivate_kill_switch()
"""


def _start_writer(state_dir: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    # -S: no site import, so each of the many children starts fast (the state manager needs only the stdlib)
    return subprocess.Popen(
        [sys.executable, "-S", "-c", WRITER, str(state_dir)], stdout=subprocess.PIPE, env=env, cwd=REPO
    )


def _wait_ready(proc: subprocess.Popen[bytes]) -> None:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], 30)
    assert ready, "writer did not start"
    assert proc.stdout.readline() == b"ready\n", f"writer failed (exit {proc.poll()})"


def _check_file(path: Path) -> None:
    raw = path.read_bytes()
    assert raw, "state file is empty"
    state = validate_state(json.loads(raw))  # raises on a torn or partial document
    reason = state["kill_switch"]["reason"]
    assert reason is None or reason == BIG_REASON or reason.startswith("small "), "mixed content"
    assert state["kill_switch"]["active"] == (reason is not None)
    assert read_state_file(path)["load_error"] is None


def test_sigkill_during_writes_never_leaves_a_torn_file(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    rng = random.Random(1234)
    killed_mid_write = 0
    started = time.monotonic()
    for _ in range(KILLS):
        proc = _start_writer(tmp_path)
        try:
            _wait_ready(proc)
            time.sleep(rng.uniform(0.0, 0.012))
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
            assert proc.stdout is not None
            proc.stdout.close()
        assert proc.returncode == -signal.SIGKILL
        _check_file(path)
        killed_mid_write += any(tmp_path.glob(".state.json.*.tmp"))
    # evidence that the kills really landed inside writes (a leftover temp file), and that a new manager cleans
    # them up; with ~120 kills into a loop that is mostly writing, zero would mean the test exercised nothing
    assert killed_mid_write > 0
    assert time.monotonic() - started < 120
