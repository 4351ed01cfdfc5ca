"""SIGHUP on the real daemon (a subprocess with `--config FILE`), judged on what it does afterwards.

- positions open, `time_stop_minutes` lowered: they are closed by the time stop at the new value;
- the webhook's rate limit changed: the next requests get 429 at the new rate;
- an invalid file: one line naming the field, and the old rate still holds;
- a restart-only field (the webhook port, the journal mode): named, and the daemon keeps its running value.
"""

from __future__ import annotations

import signal
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from tests.daemon_proc import DaemonProcess, base_env, free_port, post_signal

pytestmark = pytest.mark.timeout(180)
TOKEN = "reload-webhook-token-0123456789"
OLD_TIME_STOP = 300  # longer than any position lives before the EOD close here: it never fires unless reloaded
NEW_TIME_STOP = 2
# the other exits far away, so the positions open at the reload live until a time stop or a stop loss
EXITS = 'trailing_stop_cloud = "trend"\nreward_to_risk_target = 100\nmomentum_exhaustion_candles = 1000\n'


def _open_positions(daemon: DaemonProcess) -> set[str]:
    """Signal ids with an entry fill and no close in the log so far."""
    opened, closed = set(), set()
    for line in daemon.lines():
        if line.get("event") == "fill_applied" and str(line.get("client_order_id", "")).startswith("og-entry-"):
            opened.add(line["signal_id"])
        elif line.get("event") == "position_closed":
            closed.add(line["signal_id"])
    return opened - closed


def _trades(state_dir: Path) -> list[tuple[str, str, float]]:
    with sqlite3.connect(state_dir / "journal.db") as conn:
        return conn.execute("SELECT signal_id, exit_type, holding_minutes FROM trades").fetchall()


def _reloaded(daemon: DaemonProcess, config: Path, text: str, event: str = "config_reloaded") -> dict[str, Any]:
    """Write the config, send SIGHUP, and return the first `event` line logged after it."""
    before = len(daemon.lines())
    config.write_text(text)
    daemon.signal(signal.SIGHUP)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        for line in daemon.lines()[before:]:
            if line.get("event") == event:
                return line
        time.sleep(0.05)
    raise AssertionError(f"no {event!r} after SIGHUP:\n{daemon.text()[-3000:]}")


def test_a_lowered_time_stop_closes_positions_already_open_at_the_new_value(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    config = tmp_path / "ordergate.toml"
    config.write_text(f"[executor]\ntime_stop_minutes = {OLD_TIME_STOP}\n{EXITS}")
    env = base_env(state_dir, ORDERGATE_DATA__BARS_PER_SECOND="100")
    daemon = DaemonProcess(state_dir, "--config", str(config), env=env).start()
    try:
        daemon.wait_for("fill_applied", timeout=90)
        open_at_reload = _open_positions(daemon)
        assert open_at_reload
        line = _reloaded(daemon, config, f"[executor]\ntime_stop_minutes = {NEW_TIME_STOP}\n{EXITS}")
        assert line["applied"] == {"executor.time_stop_minutes": NEW_TIME_STOP}
        deadline = time.monotonic() + 60
        stopped: list[tuple[str, str, float]] = []
        while time.monotonic() < deadline:
            trades = _trades(state_dir)
            stopped = [t for t in trades if t[1] == "time_stop"]
            if any(t[0] in open_at_reload for t in stopped):
                break
            time.sleep(0.2)
        assert any(t[0] in open_at_reload for t in stopped), (open_at_reload, _trades(state_dir))
        for _signal_id, _exit, held in stopped:  # stopped at the new value, never held to the old one
            assert NEW_TIME_STOP <= held < OLD_TIME_STOP
    finally:
        assert daemon.stop() == 0


def _post(port: int, source: str) -> int:
    body = {"ticker": "AAPL", "direction": "long", "signal_type": "cloud_cross_bullish", "timeframe": "1d",
            "conviction": 70, "entry_price": 50.0, "stop_loss": 48.0, "source": source}
    return post_signal(port, body, TOKEN)[0]


def test_webhook_rate_invalid_file_and_restart_only_fields_on_sighup(tmp_path: Path) -> None:
    port, other_port = free_port(), free_port()
    state_dir = tmp_path / "state"
    config = tmp_path / "ordergate.toml"
    config.write_text(f"[webhook]\nport = {port}\nrate_per_minute = 1000\n")
    env = base_env(state_dir, ORDERGATE_WEBHOOK__TOKEN=TOKEN, ORDERGATE_DATA__BARS_PER_SECOND="5")
    daemon = DaemonProcess(state_dir, "--config", str(config), env=env).start()
    try:
        daemon.wait_for("webhook_listening")
        assert [_post(port, "a") for _ in range(4)] == [202] * 4

        # invalid: one line naming the field; the valid rate beside it is not applied either
        failed = _reloaded(daemon, config, f"[webhook]\nport = {port}\nrate_per_minute = 2\n"
                                           "[executor]\ntime_stop_minutes = 0\n", "config_reload_failed")
        assert "executor.time_stop_minutes" in failed["error"]
        time.sleep(0.5)
        reload_lines = [x for x in daemon.lines() if str(x.get("event", "")).startswith("config_reload")]
        assert [x["event"] for x in reload_lines] == ["config_reload_failed"]
        assert [_post(port, "b") for _ in range(4)] == [202] * 4

        # valid: the new rate answers 429 on the third request; restart-only changes are named and not applied
        restart = _reloaded(daemon, config, f"[webhook]\nport = {other_port}\nrate_per_minute = 2\n"
                                            '[journal]\nsynchronous = "NORMAL"\n', "config_reload_needs_restart")
        assert restart["fields"] == ["journal.synchronous", "webhook.port"]
        done = daemon.wait_for("config_reloaded")
        assert done["applied"] == {"webhook.rate_per_minute": 2}
        assert [_post(port, "c") for _ in range(3)] == [202, 202, 429]  # still on the running port
        assert [_post(port, "b") for _ in range(3)] == [202, 202, 429]  # a bucket that had more is capped too
    finally:
        assert daemon.stop() == 0
