"""Bad input given to the CLI or at start-up is one line on stderr and exit status 2, never a traceback:
deep or directory target files, unusable or overlong state dirs, out-of-range replay timestamps, environment
values that are not JSON, ports in use, a short webhook token, a read-only state dir, a locked journal, an
unreachable broker. Each case runs the real `ordergate` as a subprocess."""

from __future__ import annotations

import json
import os
import shutil
import socket
import sqlite3
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.daemon_proc import BIN, ROOT, base_env, cli

pytestmark = pytest.mark.timeout(120)
TOKEN = "bad-input-token-0123456789abcdef"


def _one_line(out: subprocess.CompletedProcess) -> str:
    assert "Traceback" not in out.stdout + out.stderr, (out.stdout[-3000:], out.stderr[-3000:])
    assert out.returncode == 2, (out.returncode, out.stdout[-2000:], out.stderr)
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("ordergate"), lines[0]
    return lines[0]


@pytest.fixture
def listening_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- CLI commands -------------------------------------------------------------------------------------------
def _deep_targets(tmp: Path) -> list[str]:
    (tmp / "deep.toml").write_text("x = " + "[" * 5000 + "]" * 5000)
    return ["rebalance", str(tmp / "deep.toml")]


def _dir_targets(tmp: Path) -> list[str]:
    (tmp / "targets").mkdir()
    return ["rebalance", str(tmp / "targets")]


def _year_9999(tmp: Path) -> list[str]:
    (tmp / "bars.csv").write_text("timestamp,symbol,open,high,low,close,volume\n"
                                  "9999-12-31T23:59:00Z,AAPL,1,1,1,1,100\n"
                                  "9999-12-31T23:59:00-05:00,AAPL,1,1,1,1,100\n")
    return ["replay", str(tmp / "bars.csv")]


CLI_CASES: dict[str, tuple[Callable[[Path], list[str]], dict[str, str], tuple[str, ...]]] = {
    "rebalance-deep-toml": (_deep_targets, {}, ("deep.toml", "nested")),
    "rebalance-directory": (_dir_targets, {}, ("targets", "directory")),
    "state-dir-dev-null-kill": (lambda t: ["--state-dir", "/dev/null", "kill"], {}, ("state_dir", "/dev/null")),
    "state-dir-dev-null-resume": (lambda t: ["--state-dir", "/dev/null", "resume"], {}, ("state_dir",)),
    "state-dir-long-kill": (lambda t: ["--state-dir", str(t / ("d" * 300)), "kill"], {}, ("state_dir",)),
    "state-dir-long-status": (lambda t: ["--state-dir", str(t / ("d/" * 60)), "status"], {}, ("state_dir",)),
    "journal-day-not-a-date": (lambda t: ["journal", "--day", "9999-99-99"], {}, ("--day", "9999-99-99")),
    "buy-dollars-nan": (lambda t: ["buy", "AAPL", "--dollars", "nan"], {}, ("--dollars",)),
    "buy-dollars-negative": (lambda t: ["buy", "AAPL", "--dollars", "-5"], {}, ("--dollars",)),
    "sell-shares-huge": (lambda t: ["sell", "AAPL", "--shares", "1e400"], {}, ("--shares",)),
    "signal-entry-inf": (lambda t: ["signal", "--ticker", "AAPL", "--direction", "long", "--entry", "inf",
                                    "--stop", "1"], {}, ("--entry",)),
    "signal-conviction-out-of-range": (lambda t: ["signal", "--ticker", "AAPL", "--direction", "long", "--entry",
                                                  "10", "--stop", "9", "--conviction", "101"], {}, ("--conviction",)),
    "kill-reason-too-long": (lambda t: ["kill", "--reason", "r" * 100_000], {}, ("--reason",)),
    "env-tickers-not-json": (lambda t: ["config", "show"], {"ORDERGATE_DATA__TICKERS": "notjson"},
                             ("ORDERGATE_DATA__TICKERS", "JSON")),
    "env-section-not-json": (lambda t: ["config", "show"], {"ORDERGATE_EXECUTOR": "{bad"},
                             ("ORDERGATE_EXECUTOR", "JSON")),
}


@pytest.mark.parametrize("case", sorted(CLI_CASES))
def test_cli_bad_input_is_one_line_and_exit_2(tmp_path: Path, case: str) -> None:
    build, extra, needles = CLI_CASES[case]
    args = build(tmp_path)
    out = cli(tmp_path / "state", *args, env=base_env(tmp_path / "state", **extra), timeout=60)
    line = _one_line(out)
    for needle in needles:
        assert needle in line, line


def test_flatten_without_a_terminal_is_not_confirmed(tmp_path: Path) -> None:
    out = subprocess.run([str(BIN), "flatten"], env=base_env(tmp_path / "state"), capture_output=True, text=True,
                         timeout=30, cwd=ROOT, stdin=subprocess.DEVNULL)
    assert "Traceback" not in out.stdout + out.stderr, out.stderr
    assert out.returncode == 1 and "not confirmed" in out.stdout + out.stderr


def test_replay_reports_year_9999_rows_by_line(tmp_path: Path) -> None:
    out = cli(tmp_path / "state", *_year_9999(tmp_path), "--json", timeout=60)
    assert out.returncode == 0 and "Traceback" not in out.stdout + out.stderr, out.stderr
    problems = {p["line"]: p["reason"] for p in json.loads(out.stdout)["problems"]}
    assert problems[2].startswith("timestamp: ") and "out of range" in problems[2]
    assert problems[3].startswith("timestamp: ") and "out of range" in problems[3]


# -- start-up -----------------------------------------------------------------------------------------------
def _run(tmp_path: Path, state_dir: Path, **extra: str) -> subprocess.CompletedProcess:
    return cli(state_dir, "run", env=base_env(state_dir, **extra), timeout=60)


@pytest.mark.parametrize("where", ["file", "under-a-file"])
def test_state_dir_that_is_not_a_directory(tmp_path: Path, where: str) -> None:
    (tmp_path / "afile").write_text("")
    state_dir = tmp_path / "afile" if where == "file" else tmp_path / "afile" / "state"
    line = _one_line(_run(tmp_path, state_dir))
    assert "state_dir" in line and str(state_dir) in line


def test_read_only_state_dir(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        state_dir = tmp_path / "ro"
        state_dir.mkdir(mode=0o555)
        out = _run(tmp_path, state_dir)
    else:  # root writes anywhere: run the daemon as nobody, on a directory nobody can reach but not write
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("needs setpriv to drop root")
        parent = Path(tempfile.mkdtemp(prefix="ordergate-ro-"))
        try:
            parent.chmod(0o755)
            state_dir = parent / "state"
            state_dir.mkdir(mode=0o555)
            out = subprocess.run([setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", str(BIN), "run"],
                                 env=base_env(state_dir), capture_output=True, text=True, timeout=60, cwd=ROOT)
        finally:
            shutil.rmtree(parent)
        if out.returncode != 2 and "ordergate" not in out.stderr:
            pytest.skip(f"nobody cannot run the virtualenv here: {out.stderr[-200:]}")
    line = _one_line(out)
    assert "state_dir" in line and "not writable" in line


def test_metrics_port_in_use(tmp_path: Path, listening_port: int) -> None:
    line = _one_line(_run(tmp_path, tmp_path / "state", ORDERGATE_METRICS__PORT=str(listening_port)))
    assert "metrics.port" in line and str(listening_port) in line and "in use" in line


def test_webhook_port_in_use(tmp_path: Path, listening_port: int) -> None:
    line = _one_line(_run(tmp_path, tmp_path / "state", ORDERGATE_WEBHOOK__TOKEN=TOKEN,
                          ORDERGATE_WEBHOOK__PORT=str(listening_port)))
    assert "webhook.port" in line and str(listening_port) in line and "in use" in line


def test_short_webhook_token_stops_before_anything_starts(tmp_path: Path) -> None:
    out = _run(tmp_path, tmp_path / "state", ORDERGATE_WEBHOOK__TOKEN="short")
    line = _one_line(out)
    assert "webhook.token" in line and "short" not in line  # the secret is not echoed
    assert "daemon_starting" not in out.stdout


def test_locked_journal(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    holder = sqlite3.connect(state_dir / "journal.db", isolation_level=None)
    try:
        holder.execute("CREATE TABLE IF NOT EXISTS hold (x)")
        holder.execute("BEGIN EXCLUSIVE")
        line = _one_line(_run(tmp_path, state_dir, ORDERGATE_JOURNAL__ENABLED="true"))
    finally:
        holder.close()
    assert "journal" in line and "locked" in line
    assert not list(state_dir.glob("journal.db.damaged*"))  # in use by someone else is not damaged: left alone


def test_unreachable_alpaca_at_start(tmp_path: Path) -> None:
    port = _closed_port()
    out = _run(tmp_path, tmp_path / "state",
               ORDERGATE_BROKER__PRIMARY="alpaca", ORDERGATE_DATA__SOURCE="alpaca",
               ORDERGATE_ALPACA__API_KEY="AKTESTKEY1234567890", ORDERGATE_ALPACA__SECRET_KEY="s" * 40,
               ORDERGATE_ALPACA__BASE_URL=f"http://127.0.0.1:{port}",
               ORDERGATE_ALPACA__TRADING_STREAM_URL=f"ws://127.0.0.1:{port}/stream",
               ORDERGATE_ALPACA__DATA_STREAM_URL=f"ws://127.0.0.1:{port}",
               ORDERGATE_ALPACA__DATA_URL=f"http://127.0.0.1:{port}")
    line = _one_line(out)
    assert "alpaca" in line and "connect" in line


def test_offline_journal_of_a_foreign_database_is_one_line(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    with sqlite3.connect(state_dir / "journal.db") as conn:
        conn.execute("CREATE TABLE other (x)")
    out = cli(state_dir, "journal", "--json")
    assert "Traceback" not in out.stdout + out.stderr, out.stderr
    assert out.returncode == 1 and "journal" in out.stderr and len(out.stderr.strip().splitlines()) == 1
