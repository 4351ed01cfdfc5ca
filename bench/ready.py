"""Figure 6: start to READY=1 of the real `ordergate run` on the paper broker.

Spawns the daemon with NOTIFY_SOCKET pointing at a datagram socket bound here, times spawn -> READY=1,
then stops it with SIGTERM. A fresh state directory each time (the first start creates the journal).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import median, stop_process

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).with_name("ordergate")


def _env(state_dir: Path, notify: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("ORDERGATE_") and k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC")}
    env.update({"ORDERGATE_STATE_DIR": str(state_dir), "ORDERGATE_METRICS__PORT": "0",
                "ORDERGATE_BROKER__PRIMARY": "paper", "ORDERGATE_LOGGING__LEVEL": "WARNING",
                "NOTIFY_SOCKET": str(notify)})
    return env


def time_to_ready(timeout: float = 60.0) -> float:
    """Seconds from spawn to the READY=1 datagram."""
    with tempfile.TemporaryDirectory(prefix="ordergate-ready-") as tmp:
        base = Path(tmp)
        notify = base / "notify.sock"
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(str(notify))
        sock.settimeout(0.2)
        started = time.perf_counter()
        proc = subprocess.Popen([str(BIN), "run"], env=_env(base / "state", notify), cwd=ROOT,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            while True:
                if time.perf_counter() - started > timeout:
                    raise TimeoutError(f"no READY=1 within {timeout}s")
                if proc.poll() is not None:
                    raise RuntimeError(f"ordergate run exited {proc.returncode} before READY=1")
                try:
                    data = sock.recv(4096).decode(errors="replace")
                except TimeoutError:
                    continue
                if "READY=1" in data.splitlines():
                    return time.perf_counter() - started
        finally:
            stop_process(proc, lambda: proc.send_signal(signal.SIGTERM))
            sock.close()


def python_startup_floor() -> float:
    """Seconds for the same interpreter to start and exit (`python -c pass`): the floor of any start."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    return time.perf_counter() - started


def ready_figures(repeats: int) -> dict[str, float]:
    times = [time_to_ready() for _ in range(repeats)]
    floors = [python_startup_floor() for _ in range(repeats)]
    return {"ready_s": median(times), "ready_min_s": min(times), "ready_max_s": max(times),
            "python_startup_s": median(floors)}
