"""`ordergate run` with two strategies on one account (a real daemon subprocess, the embedded synthetic feed,
the paper broker): both trade, every journal row and log line names its strategy, `status` lists each one and
their daily P&L adds up to the account's; a SIGKILL and a restart keep each position's strategy."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

from tests.daemon_proc import DaemonProcess, base_env
from tests.daemon_proc import status as daemon_status

STRATEGIES = [
    {"name": "clouds", "kind": "ema_cloud", "timeframes": ["5m"], "max_positions": 4, "equity_share": 0.6},
    {"name": "breakout", "kind": "daily_breakout", "timeframes": ["15m"], "params": {"channel": 10, "atr_period": 5},
     "equity_share": 0.4},
]


def _env(state_dir: Path, pace: str = "600") -> dict[str, str]:
    # no adding to a winner: each open position is one entry signal's (the journal check below counts on it)
    return base_env(state_dir, ORDERGATE_STRATEGIES=json.dumps(STRATEGIES), ORDERGATE_DATA__BARS_PER_SECOND=pace,
                    ORDERGATE_EXECUTOR__ALLOW_ADD_TO_WINNER="false")


def _status(state_dir: Path) -> dict[str, Any]:
    return daemon_status(state_dir, _env(state_dir))


def _open_in_journal(state_dir: Path) -> dict[str, str]:
    """signal id -> strategy of every entry that filled and has no closed trade yet (what a restart rebuilds)."""
    filled = dict(_rows(state_dir, "SELECT DISTINCT o.signal_id, o.strategy FROM fills f JOIN orders o "
                                   "USING (client_order_id) WHERE o.kind = 'entry'"))
    closed = {r[0] for r in _rows(state_dir, "SELECT signal_id FROM trades")}
    return {sid: strategy for sid, strategy in filled.items() if sid not in closed}


def _rows(state_dir: Path, sql: str) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(state_dir / "journal.db")
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def test_two_strategies_trade_one_account_through_the_daemon(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    daemon = DaemonProcess(state_dir, env=_env(state_dir)).start()
    try:
        daemon.wait_for("daemon_ready", 60.0)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            lines = daemon.lines()
            closed = {e.get("strategy") for e in lines if e.get("event") == "position_closed"}
            exited = any(e.get("event") == "exit_signal" for e in lines)  # not only stops filled at the broker
            if {"clouds", "breakout"} <= closed and exited:
                break
            time.sleep(0.2)
        assert {"clouds", "breakout"} <= closed, daemon.text()[-3000:]
        status = _status(state_dir)
        for _ in range(20):  # kill it while it holds something
            if status["positions"]:
                break
            time.sleep(0.3)
            status = _status(state_dir)
        assert status["positions"], "no open position to carry over a restart"
        assert set(status["strategies"]) == {"clouds", "breakout"}
        # today's closed P&L of the strategies adds up to the account's
        assert abs(sum(s["daily_pnl"] for s in status["strategies"].values()) - status["daily_pnl"]) < 0.05, status
        assert {p["strategy"] for p in status["positions"]} <= {"clouds", "breakout"}
        for event in ("signal_approved", "fill_applied", "exit_signal", "position_closed"):
            lines = [e for e in daemon.lines() if e.get("event") == event]
            assert lines and all(e.get("strategy") in ("clouds", "breakout") for e in lines), event
        daemon.kill9()  # no shutdown: what is open must come back with its strategy
    finally:
        daemon.stop()
    of_signal = dict(_rows(state_dir, "SELECT signal_id, strategy FROM signals"))
    for table in ("signals", "orders", "fills", "trades"):
        names = {r[0] for r in _rows(state_dir, f"SELECT DISTINCT strategy FROM {table}")}
        assert names <= {"clouds", "breakout"} and names, (table, names)
    pnl = dict(_rows(state_dir, "SELECT strategy, SUM(pnl) FROM trades GROUP BY strategy"))
    assert set(pnl) == {"clouds", "breakout"}
    for _attempt in range(4):
        # restarted with its feed all but stopped (a bar every 20 s): what status says is what the restart rebuilt
        open_at_kill = _open_in_journal(state_dir)
        again = DaemonProcess(state_dir, env=_env(state_dir, pace="0.05")).start()
        if again.wait_for("book_rebuilt", 60.0)["positions"] >= 1:
            again.wait_for("daemon_ready", 60.0)
            resumed_on = _status(state_dir)["clock"][:10]
            if _rows(state_dir, f"SELECT 1 FROM trades WHERE day = '{resumed_on}'"):
                break
            # the kill landed just after the day rolled over: no trade of that day for the restart to restore
        # what was open when status answered closed before the kill landed: trade on, and kill it again
        again.stop()
        daemon = DaemonProcess(state_dir, env=_env(state_dir)).start()
        try:
            daemon.wait_for("daemon_ready", 60.0)
            for _ in range(40):
                if _status(state_dir)["positions"]:
                    break
                time.sleep(0.2)
            daemon.kill9()
        finally:
            daemon.stop()
    else:
        raise AssertionError("no restart found a position to rebuild")
    of_signal = dict(_rows(state_dir, "SELECT signal_id, strategy FROM signals"))
    try:
        again.wait_for("daemon_ready", 60.0)
        status = _status(state_dir)
        for position in status["positions"]:
            assert position["strategy"] == of_signal[position["signal_id"]], position
        # each position open at the kill is still held by its strategy, or was closed since (the restart's clock
        # can end it: a time stop, the end of the day) in a trade of that strategy
        still = {p["signal_id"]: p["strategy"] for p in status["positions"]}
        closed = dict(_rows(state_dir, "SELECT signal_id, strategy FROM trades"))
        for signal_id, strategy in open_at_kill.items():
            assert still.get(signal_id, closed.get(signal_id)) == strategy, (signal_id, strategy, still, closed)
        # each strategy's daily P&L came back from the journal's trades of the day the run resumed on
        day = status["clock"][:10]

        def restored() -> tuple[dict[str, Any], dict[str, float]]:
            journal = dict(_rows(state_dir, f"SELECT strategy, SUM(pnl) FROM trades WHERE day = '{day}' "
                                            "GROUP BY strategy"))
            return _status(state_dir)["strategies"], journal

        for _ in range(20):  # the restart's clock may close a position meanwhile: compare a moment of no change
            first, journal = restored()
            if (first, journal) == restored():
                break
            time.sleep(0.2)
        assert journal, f"no trade on {day} to restore"
        for name, line in first.items():
            assert abs(line["daily_pnl"] - journal.get(name, 0.0)) < 0.005, (name, line, journal)
    finally:
        code = again.stop()
    assert code == 0, again.text()[-3000:]
