"""A restarted simulated run (paper broker, synthetic or replay bars) continues where it left off.

The journal remembers the last bar time it traded; a restart skips the bars up to there (they warm the strategy
again, without pacing, signals or exits) instead of trading the same sessions a second time with the clock
going backwards under positions opened "later".
"""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime
from pathlib import Path

import pytest

from tests.daemon_proc import DaemonProcess, base_env

pytestmark = pytest.mark.timeout(120)


def _resume_point(state_dir: Path) -> datetime | None:
    with sqlite3.connect(state_dir / "journal.db") as conn:
        row = conn.execute("SELECT value FROM kv WHERE key='simulated_feed_position'").fetchone()
    return datetime.fromisoformat(json.loads(row[0])) if row else None


def test_a_restart_after_sigkill_continues_the_simulated_sessions(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    env = base_env(state_dir, ORDERGATE_DATA__BARS_PER_SECOND="400", ORDERGATE_DATA__SYNTHETIC_DAYS="20")
    first = DaemonProcess(state_dir, env=env).start()
    try:
        first.wait_for("daemon_ready", 45.0)
        first.wait_for("bars", 45.0)  # 200 batches traded: the position was saved at least 4 times
    finally:
        first.kill9()
    saved = _resume_point(state_dir)
    assert saved is not None
    second = DaemonProcess(state_dir, env=env).start()
    try:
        second.wait_for("daemon_ready", 45.0)
        resumed = second.wait_for("simulated_feed_resumed", 30.0)
        flowing = second.wait_for("bars_flowing", 30.0)
    finally:
        assert second.stop() == 0
    assert datetime.fromisoformat(resumed["after"]) == saved and resumed["warmed_batches"] > 0
    assert datetime.fromisoformat(flowing["bar_time"]) > saved  # nothing before the resume point is traded again
    # and a clean stop saves where it stopped (on failure: the second life's feed and shutdown lines, for the cause
    # of a rare miss seen in full-suite runs only)
    story = [{k: line.get(k) for k in ("event", "after", "bar_time", "batches", "last", "error", "value")}
             for line in second.lines() if "feed" in str(line.get("event")) or "stop" in str(line.get("event"))
             or line.get("event") in ("bars", "bars_flowing", "simulated_feed_position_not_saved")]
    assert _resume_point(state_dir) > saved, story
