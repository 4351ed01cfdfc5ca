"""Operating the running daemon: what `make run` logs, SIGHUP reload, webhook intake end to end."""

from __future__ import annotations

import signal
import sqlite3
import time
from pathlib import Path

import pytest

from tests.daemon_proc import DaemonProcess, base_env, post_signal, webhook_env

pytestmark = pytest.mark.timeout(180)
TOKEN = "test-webhook-token-0123456789"


def test_make_run_log_shows_approvals_rejections_fills_and_exits(tmp_path: Path) -> None:
    env = base_env(tmp_path / "state", ORDERGATE_DATA__BARS_PER_SECOND="400")
    daemon = DaemonProcess(tmp_path / "state", env=env).start()
    try:
        approved = daemon.wait_for("signal_approved", timeout=60)
        assert approved["signal_id"] and approved["client_order_id"].startswith("og-entry-")
        rejected = daemon.wait_for("signal_rejected", timeout=60)
        assert rejected["reason"] and rejected["stage"] and rejected["signal_id"]
        deadline = time.monotonic() + 3  # the writer task commits decisions within batch_interval_ms
        rows: list = []
        while time.monotonic() < deadline and not rows:
            with sqlite3.connect(daemon.state_dir / "journal.db") as conn:
                rows = conn.execute("SELECT outcome, reason FROM decisions WHERE signal_id=? AND stage=?",
                                    (rejected["signal_id"], rejected["stage"])).fetchall()
            time.sleep(0.05)
        assert rows and rows[0][0] == "rejected" and rows[0][1] == rejected["reason"]
        fill = daemon.wait_for("fill_applied", timeout=60)
        assert fill["client_order_id"] and fill["signal_id"]
        closed = daemon.wait_for("position_closed", timeout=60)
        assert closed["exit_type"] and "pnl" in closed
    finally:
        assert daemon.stop() == 0


def test_sighup_reloads_risk_limits_from_the_config_file(tmp_path: Path) -> None:
    config = tmp_path / "ordergate.toml"
    config.write_text("[executor]\nmax_concurrent_positions = 10\n")
    env = base_env(tmp_path / "state", ORDERGATE_DATA__BARS_PER_SECOND="5")
    daemon = DaemonProcess(tmp_path / "state", "--config", str(config), env=env).start()
    try:
        daemon.wait_for("daemon_ready")
        config.write_text("[executor]\nmax_concurrent_positions = 3\ndaily_loss_limit = 0.02\n")
        daemon.signal(signal.SIGHUP)
        line = daemon.wait_for("config_reloaded", timeout=10)
        assert line["applied"] == {"executor.max_concurrent_positions": 3, "executor.daily_loss_limit": 0.02}
        config.write_text("[executor]\nmax_concurrent_positions = -1\n")  # a bad file is refused, limits kept
        daemon.signal(signal.SIGHUP)
        bad = daemon.wait_for("config_reload_failed", timeout=10)
        assert "max_concurrent_positions" in bad["error"]
        assert daemon.proc.poll() is None
    finally:
        assert daemon.stop() == 0


def _post(port: int, body: object, token: str | None = TOKEN) -> tuple[int, dict]:
    return post_signal(port, body, token)


def test_webhook_signal_reaches_the_pipeline_and_the_journal(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    port, env = webhook_env(state_dir, TOKEN)
    daemon = DaemonProcess(state_dir, env=env).start()
    try:
        daemon.wait_for("webhook_listening")
        body = {"ticker": "WEBH", "direction": "long", "signal_type": "cloud_cross_bullish", "timeframe": "1d",
                "conviction": 70, "entry_price": 50.0, "stop_loss": 48.0, "source": "test"}
        status, answer = _post(port, body)
        assert status == 202 and answer["signal_id"].startswith("sig-")
        assert _post(port, {**body, "stop_loss": 55.0})[0] == 400
        assert _post(port, body, token="wrong-token-wrong-token")[0] == 401
        deadline = time.monotonic() + 10
        stages: list[str] = []
        while time.monotonic() < deadline:
            with sqlite3.connect(state_dir / "journal.db") as conn:
                stages = [r[0] for r in conn.execute("SELECT stage FROM decisions WHERE signal_id=?",
                                                      (answer["signal_id"],))]
            if len(stages) > 2:
                break
            time.sleep(0.1)
        assert stages[0] == "intake" and "kill_switch" in stages
        assert TOKEN not in daemon.text()
    finally:
        assert daemon.stop() == 0
