"""SIGKILL the moment an order is sent: its intent is on disk. Bursts of entries share group commits (fewer
commits than intents), and every intent the broker was handed is in the journal after the kill.

The child is a real Core (paper broker, journal FULL, durable state). Its paper broker's submit_order is the send
hook: it prints the client order id and then blocks the whole process, and the parent kills it right there,
at a different send each time.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
KILLS = 6

CHILD = r"""
import asyncio, sys, time
from datetime import UTC, datetime
from config.settings import load_settings
from daemon.core import Core
from pipeline.core.clock import SimulatedClock
from pipeline.core.models import TradeSignal

SESSION = datetime(2026, 11, 24, 16, 0, tzinfo=UTC)
state_dir, kill_at, burst = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])

async def main():
    settings = load_settings(state_dir=state_dir, broker={"primary": "paper", "fallback": None},
                             paper={"persistent": False, "initial_cash": 1e9}, exits={"broker_stop": False},
                             journal={"enabled": True, "synchronous": "FULL"},
                             pipeline={"enable_unified_risk": False},
                             executor={"max_concurrent_positions": 10_000, "max_single_stock_exposure": 0.01})
    core = Core(settings, SimulatedClock(SESSION))
    core.state.deactivate_kill_switch()
    await core.start()
    paper = core.brokers["paper"]
    original = paper.submit_order
    sent = [0]

    async def send_hook(intent):
        sent[0] += 1
        print("sent", intent.client_order_id, flush=True)
        if sent[0] == kill_at:
            print("commits", core.journal.commits, flush=True)
            time.sleep(60)  # frozen in the send: the parent kills the process here
        return await original(intent)

    paper.submit_order = send_hook
    tickers = [f"K{i:03d}" for i in range(burst)]
    for t in tickers:
        paper.set_price(t, 100.0)
    results = [await core.orchestrator.process_signal(TradeSignal(
        signal_type="cloud_cross_bullish", direction="long", ticker=t, timeframe="5m", conviction=80,
        entry_price=100.0, stop_loss=98.0, timestamp=SESSION, source="crash")) for t in tickers]
    print("decided", sum(r.success for r in results), flush=True)
    await asyncio.gather(*(r.order_task for r in results if r.order_task is not None))
    print("all sent", flush=True)
    time.sleep(60)

asyncio.run(main())
"""


def _run_until_killed(state_dir: Path, kill_at: int, burst: int) -> tuple[list[str], int, int]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "ORDERGATE_LOGGING__LEVEL": "ERROR"}
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(state_dir), str(kill_at), str(burst)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=REPO, text=True)
    assert proc.stdout is not None
    sent: list[str] = []
    commits = decided = -1
    deadline = time.monotonic() + 60
    try:
        for line in proc.stdout:
            words = line.split()
            if words[:1] == ["sent"]:
                sent.append(words[1])
            elif words[:1] == ["decided"]:
                decided = int(words[1])
            elif words[:1] == ["commits"]:
                commits = int(words[1])
                proc.send_signal(signal.SIGKILL)  # right after the send hook was entered
                break
            if time.monotonic() > deadline:
                break
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read() if proc.stderr else ""
    return sent, commits, decided


def test_every_intent_handed_to_the_broker_is_on_disk_after_sigkill(tmp_path: Path) -> None:
    rng = random.Random(17)
    grouped = False
    for run in range(KILLS):
        burst = 12
        kill_at = rng.randint(1, burst)
        state_dir = tmp_path / f"run{run}"
        sent, commits, decided = _run_until_killed(state_dir, kill_at, burst)
        assert len(sent) == kill_at, (sent, kill_at)
        with sqlite3.connect(state_dir / "journal.db") as conn:
            journaled = {r[0] for r in conn.execute("SELECT client_order_id FROM orders")}
            records = {r[0] for r in conn.execute("SELECT client_order_id FROM decisions WHERE stages IS NOT NULL")}
        missing = [coid for coid in sent if coid not in journaled]
        assert not missing, f"run {run}: sent but not journaled: {missing}"
        assert set(sent) <= records  # each intent's decision record went down with it (the same commit)
        # the burst's intents arrived together: they shared commits (start-up commits counted in `commits` too)
        grouped = grouped or (decided == burst and 0 < commits < kill_at)
    assert grouped, "no run showed intents sharing a group commit"
