"""Secrets stay secret and files stay private: under umask 022 every file ordergate creates is 0600 and
every directory 0700 (a pre-existing 0755 state dir is tightened at start); the alerts webhook URL is a
secret `config show` masks; a token pasted into a signal field never reaches the journal."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.daemon_proc import DaemonProcess, base_env, cli, post_signal, webhook_env

pytestmark = pytest.mark.timeout(120)
TOKEN = "modes-test-token-0123456789abcdef"
SLACK = "https://hooks.slack.com/services/T0000/B0000/XXXXSECRETPARTXXXX"


@contextmanager
def umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def _loose(state_dir: Path) -> list[str]:
    """Everything in the state dir (and the dir itself) that its group or others could read."""
    found = []
    for path in [state_dir, *state_dir.rglob("*")]:
        mode = os.lstat(path).st_mode
        if stat.S_ISLNK(mode):
            continue
        if stat.S_IMODE(mode) & 0o077:
            found.append(f"{path.name or path}: {stat.S_IMODE(mode):04o}")
    return found


def test_running_daemon_files_are_private_under_umask_022(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    with umask(0o022):
        state_dir.mkdir(mode=0o755)  # made by hand, before the first start
        daemon = DaemonProcess(state_dir, env=base_env(state_dir, ORDERGATE_DATA__BARS_PER_SECOND="400")).start()
    try:
        daemon.wait_for("daemon_ready", timeout=60)
        daemon.wait_for("fill_applied", timeout=60)
        with umask(0o022):
            assert cli(state_dir, "kill", "--reason", "modes").returncode == 0
        names = {p.name for p in state_dir.iterdir()}
        assert {"journal.db", "journal.db-wal", "journal.db-shm", "state.json", "control.sock"} <= names, names
        assert _loose(state_dir) == []
    finally:
        assert daemon.stop() == 0, daemon.text()[-3000:]
    assert _loose(state_dir) == []


def test_cli_with_the_daemon_down_creates_private_files(tmp_path: Path) -> None:
    state_dir = tmp_path / "fresh" / "state"
    with umask(0o022):
        assert cli(state_dir, "kill", "--reason", "offline").returncode == 0
    assert (state_dir / "state.json").exists()
    assert _loose(state_dir) == []


def test_alerts_webhook_url_is_masked(tmp_path: Path) -> None:
    env = base_env(tmp_path / "state", ORDERGATE_ALERTS__WEBHOOK_URL=SLACK, ORDERGATE_ALERTS__WEBHOOK_FORMAT="slack")
    out = cli(tmp_path / "state", "config", "show", env=env)
    assert out.returncode == 0, out.stderr
    assert "SECRETPART" not in out.stdout
    assert json.loads(out.stdout)["alerts"]["webhook_url"] == "**********"
    bad = cli(tmp_path / "state", "config", "show",
              env=base_env(tmp_path / "state", ORDERGATE_ALERTS__WEBHOOK_URL="ftp://SECRETPART"))
    assert bad.returncode == 2 and "SECRETPART" not in bad.stderr and "alerts.webhook_url" in bad.stderr


def test_a_token_pasted_into_a_signal_is_not_journaled(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    port, env = webhook_env(state_dir, TOKEN)
    daemon = DaemonProcess(state_dir, env=env).start()
    try:
        daemon.wait_for("webhook_listening", timeout=60)
        body = {"ticker": "AAPL", "direction": "long", "signal_type": "manual", "timeframe": "1d",
                "conviction": 70, "entry_price": 50.0, "stop_loss": 48.0, "source": f"desk {TOKEN}"}
        code, answer = post_signal(port, body, TOKEN)
        assert code == 202, answer
        signal_id = answer["signal_id"]
        deadline = time.monotonic() + 10
        rows: list = []
        while time.monotonic() < deadline and not rows:
            with sqlite3.connect(state_dir / "journal.db") as conn:
                rows = conn.execute("SELECT * FROM signals WHERE signal_id=?", (signal_id,)).fetchall()
            time.sleep(0.1)
        assert rows, "the signal was not journaled"
        assert TOKEN not in json.dumps(rows, default=str)
        assert "[REDACTED]" in json.dumps(rows, default=str)
    finally:
        assert daemon.stop() == 0, daemon.text()[-3000:]
    raw = b"".join(p.read_bytes() for p in state_dir.iterdir() if p.is_file())
    assert TOKEN.encode() not in raw
    assert TOKEN not in daemon.text()


def test_a_logged_webhook_url_is_masked() -> None:
    import io

    import structlog

    from daemon.logging import configure_logging

    out = io.StringIO()
    configure_logging("INFO", "json", stream=out)
    structlog.get_logger().info("alerts_configured", webhook_url=SLACK, alerts={"webhook_url": SLACK})
    assert "SECRETPART" not in out.getvalue()
