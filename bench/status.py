"""Figure 7: wall time of `ordergate status` (human and --json) against a running paper daemon.

Starts the real daemon (paper broker, synthetic bars flowing), waits for READY=1, then times `ordergate status`
end to end (process spawn, imports, settings, control socket round trip, printing) `repeats` times each way.
Also reports the CLI path's import time (`python -X importtime`) so a heavy import shows up as the cause.
`python -m bench.status [repeats]` prints the figures as JSON.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import median, stop_process
from bench.ready import BIN, ROOT, _env, python_startup_floor


def _wait_ready(sock: socket.socket, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"ordergate run exited {proc.returncode} before READY=1")
        try:
            if "READY=1" in sock.recv(4096).decode(errors="replace").splitlines():
                return
        except TimeoutError:
            continue
    raise TimeoutError(f"no READY=1 within {timeout}s")


def _time_cli(env: dict[str, str], *args: str) -> float:
    started = time.perf_counter()
    out = subprocess.run([str(BIN), *args], env=env, cwd=ROOT, capture_output=True, check=False)
    elapsed = time.perf_counter() - started
    if out.returncode != 0:
        raise RuntimeError(f"ordergate {' '.join(args)} exited {out.returncode}: {out.stderr[-500:]!r}")
    return elapsed


def cli_import_seconds(env: dict[str, str]) -> dict[str, float]:
    """Cumulative import time of the CLI path (`daemon.cli` + `daemon.commands`), and its largest parts."""
    code = "import daemon.cli, daemon.commands, daemon.tables"
    out = subprocess.run([sys.executable, "-X", "importtime", "-c", code], env=env, cwd=ROOT,
                         capture_output=True, text=True, check=True)
    cumulative: dict[str, float] = {}
    for line in out.stderr.splitlines():
        match = re.match(r"import time:\s+\d+ \|\s+(\d+) \|(\s*)(\S+)", line)
        if match and len(match.group(2)) <= 3:  # top-level imports and their direct children
            cumulative[match.group(3)] = int(match.group(1)) / 1e6
    top = {k: cumulative[k] for k in ("daemon.cli", "daemon.commands", "config.settings", "asyncio", "pydantic")
           if k in cumulative}
    return {f"import_{k.replace('.', '_')}_s": v for k, v in top.items()}


def status_figures(repeats: int = 7) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="ordergate-status-") as tmp:
        base = Path(tmp)
        notify = base / "notify.sock"
        env = _env(base / "state", notify)
        env["ORDERGATE_DATA__BARS_PER_SECOND"] = "20"
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(str(notify))
        sock.settimeout(0.2)
        proc = subprocess.Popen([str(BIN), "run"], env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:
            _wait_ready(sock, proc)
            cli_env = {k: v for k, v in env.items() if k != "NOTIFY_SOCKET"}
            time.sleep(1.0)  # bars flowing, positions opening
            _time_cli(cli_env, "status")  # warm the page cache
            human = [_time_cli(cli_env, "status") for _ in range(repeats)]
            as_json = [_time_cli(cli_env, "status", "--json") for _ in range(repeats)]
            imports = cli_import_seconds(cli_env)
        finally:
            stop_process(proc, proc.terminate)
            sock.close()
    return {"status_s": median(human), "status_max_s": max(human), "status_json_s": median(as_json),
            "status_python_startup_s": python_startup_floor(), **imports}


if __name__ == "__main__":
    print(json.dumps(status_figures(int(sys.argv[1]) if len(sys.argv) > 1 else 7)))
