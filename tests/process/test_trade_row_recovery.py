"""A crash between a position's closing fill and its trade row loses nothing: a restart books the trade.

Found by the chaos crash points on the real daemon (42 trade rows for 43 round trips in the fills after 25
kills). The crash window is reproduced exactly: the closing fill is journaled, its trade row is not.
"""

from __future__ import annotations

import sqlite3
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.daemon_proc import DaemonProcess, base_env

pytestmark = pytest.mark.timeout(120)


def _trades(state_dir: Path) -> list[tuple[int, str, float]]:
    with sqlite3.connect(state_dir / "journal.db") as conn:
        return conn.execute("SELECT id, exit_fill_id, pnl FROM trades ORDER BY id").fetchall()


def test_a_trade_row_cut_off_by_a_crash_is_booked_at_restart(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    env = base_env(state_dir, ORDERGATE_DATA__BARS_PER_SECOND="400")
    first = DaemonProcess(state_dir, env=env).start()
    try:
        first.wait_for("daemon_ready", 45.0)
        first.wait_for("position_closed", 60.0)
    finally:
        assert first.stop() == 0
    rows = _trades(state_dir)
    assert rows and all(fill_id for _, fill_id, _ in rows)
    last_id, last_fill, last_pnl = rows[-1]
    with sqlite3.connect(state_dir / "journal.db") as conn:  # the crash came after the fill, before the row
        conn.execute("DELETE FROM trades WHERE id = ?", (last_id,))
    slow = base_env(state_dir, ORDERGATE_DATA__BARS_PER_SECOND="1")
    second = DaemonProcess(state_dir, env=slow).start()
    try:
        recovered = second.wait_for("trade_row_recovered", 45.0)
        second.wait_for("daemon_ready", 45.0)
    finally:
        assert second.stop() == 0
    assert recovered["fill_id"] == last_fill
    again = _trades(state_dir)
    assert Counter(f for _, f, _ in again if f in {f for _, f, _ in rows}) == Counter(f for _, f, _ in rows)
    assert [round(p, 6) for _, f, p in again if f == last_fill] == [round(last_pnl, 6)]
    # a second restart finds nothing missing
    third = DaemonProcess(state_dir, env=slow).start()
    try:
        third.wait_for("daemon_ready", 45.0)
        time.sleep(0.2)
        assert not [line for line in third.lines() if line.get("event") == "trade_row_recovered"]
    finally:
        assert third.stop() == 0
    final = Counter(f for _, f, _ in _trades(state_dir))
    assert all(n == 1 for n in final.values())
