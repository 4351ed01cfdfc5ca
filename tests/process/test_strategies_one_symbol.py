"""Two strategies long one symbol through a real daemon subprocess on alpaca-py against FakeAlpaca (which, like
Alpaca, refuses a sale beyond the quantity its open orders leave available): each strategy holds its own position
with its own resting stop sized to its own quantity, the broker holds the net and reconciliation agrees; the
second strategy's short is refused naming the first; a SIGKILL and a restart rebuild both positions and keep both
stops (none placed twice); one strategy's exit sells only its quantity and the other's stop stays resting."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.alpaca_core import cli_async, daemon_status, until
from tests.daemon_proc import DaemonProcess, base_env
from tests.fakes.alpaca_server import FINAL, FakeAlpaca

pytestmark = pytest.mark.timeout(180)

QUIET = {"enabled": False}  # the strategies emit nothing by themselves: the test sends each one's signal
STRATEGIES = [{"name": "alpha", "kind": "ema_cloud", "params": QUIET},
              {"name": "beta", "kind": "ema_cloud", "params": QUIET}]
PRICE = 187.5
STOPS = {"alpha": 183.0, "beta": 180.0}  # alpha's stop is hit first


def _env(state_dir: Path, fake: FakeAlpaca) -> dict[str, str]:
    return base_env(state_dir, **fake.env(tickers=["AAPL"]), ORDERGATE_STRATEGIES=json.dumps(STRATEGIES),
                    ORDERGATE_EXECUTOR__MAX_SINGLE_STOCK_EXPOSURE="0.9", ORDERGATE_EXECUTOR__MAX_SECTOR_EXPOSURE="0.9",
                    ORDERGATE_EXECUTOR__MAX_RISK_PER_TRADE="0.002", ORDERGATE_ALPACA__REQUEST_TIMEOUT_SECONDS="5")


def _stops(fake: FakeAlpaca) -> list[dict[str, Any]]:
    return [o for o in fake.orders.values() if o["symbol"] == "AAPL" and o["type"] == "stop"
            and o["status"] not in FINAL]


def _stop_submits(fake: FakeAlpaca) -> list[str]:
    return [r.body["client_order_id"] for r in fake.submits() if r.body.get("type") == "stop"]


def _trades(state_dir: Path) -> list[tuple[str, str, str, float]]:
    with sqlite3.connect(state_dir / "journal.db") as conn:
        return list(conn.execute("SELECT strategy, symbol, exit_type, quantity FROM trades"))


async def _signal(state_dir: Path, env: dict[str, str], strategy: str, direction: str = "long") -> dict[str, Any]:
    stop = STOPS[strategy] if direction == "long" else PRICE + 5
    out = await cli_async(state_dir, "signal", "--ticker", "AAPL", "--direction", direction, "--entry", str(PRICE),
                          "--stop", str(stop), "--timeframe", "1d", "--strategy", strategy, "--json", env=env)
    reply = json.loads(out.stdout)
    assert out.returncode == (0 if reply["accepted"] else 1), out.stderr
    return reply


def _by_strategy(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    rows = status["positions"]
    assert len({p["strategy"] for p in rows}) == len(rows), rows  # one row per (strategy, symbol)
    return {p["strategy"]: p for p in rows if p["symbol"] == "AAPL"}


async def _reconciled(state_dir: Path, env: dict[str, str]) -> dict[str, Any]:
    out = await cli_async(state_dir, "reconcile", "--json", env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    return json.loads(out.stdout)


async def test_two_strategies_hold_one_symbol_each_with_its_own_stop_and_exit(tmp_path: Path,
                                                                            fake: FakeAlpaca) -> None:
    state_dir = tmp_path / "state"
    env = _env(state_dir, fake)
    daemon = DaemonProcess(state_dir, env=env).start()
    bar_time = datetime.now(UTC).replace(second=0, microsecond=0)
    try:
        await asyncio.to_thread(daemon.wait_for, "daemon_ready", 45.0)
        await fake.wait_for(lambda: "AAPL" in fake.data_subscriptions, timeout=15)
        await fake.push_bar("AAPL", bar_time, PRICE, PRICE, PRICE, PRICE, 1_000)
        await asyncio.to_thread(daemon.wait_for, "bars_flowing", 15.0)
        quantities: dict[str, float] = {}
        for strategy in ("alpha", "beta"):
            fake.next_submit_fills(PRICE)
            reply = await _signal(state_dir, env, strategy)
            assert reply["accepted"] is True, reply
            await fake.wait_for(lambda n=len(quantities) + 1: len(_stops(fake)) == n, timeout=15)
            (stop,) = [s for s in _stops(fake) if float(s["stop_price"]) == STOPS[strategy]]
            quantities[strategy] = float(stop["qty"])
        assert quantities["alpha"] != quantities["beta"]  # each sized on its own stop
        # the broker holds the net of the two positions; each strategy has its own row and resting stop
        assert float(fake.positions["AAPL"]["qty"]) == quantities["alpha"] + quantities["beta"]

        async def both_shown() -> bool:
            rows = _by_strategy(await daemon_status(state_dir, env))
            return set(rows) == {"alpha", "beta"} and all((r.get("resting_stop") or {}).get("broker_order_id")
                                                          for r in rows.values())

        await until(both_shown, timeout=20, what="both positions with their resting stops in status")
        rows = _by_strategy(await daemon_status(state_dir, env))
        for strategy, row in rows.items():
            assert row["shares"] == quantities[strategy] and row["stop_loss"] == STOPS[strategy]
            assert row["resting_stop"]["quantity"] == quantities[strategy]
            assert row["resting_stop"]["stop_price"] == STOPS[strategy]
        resting = {row["resting_stop"]["client_order_id"] for row in rows.values()}
        assert resting == {s["client_order_id"] for s in _stops(fake)} and len(resting) == 2
        report = await _reconciled(state_dir, env)
        assert report["ok"] and report["mismatches"] == [], report
        # a short from the second strategy is refused by the conflict check, naming the first
        refused = await _signal(state_dir, env, "beta", "short")
        assert refused["accepted"] is False
        assert refused["reason"].startswith("conflicting_signal: short signal of strategy beta")
        assert "held long by strategy alpha" in refused["reason"]
    finally:
        await asyncio.to_thread(daemon.kill9)  # down hard with both positions and both stops at the broker
    placed = _stop_submits(fake)
    assert len(placed) == 2
    again = DaemonProcess(state_dir, env=env).start()
    try:
        await asyncio.to_thread(again.wait_for, "daemon_ready", 45.0)
        rows = _by_strategy(await daemon_status(state_dir, env))
        assert {s: r["shares"] for s, r in rows.items()} == quantities  # both rebuilt from the journal's fills
        assert {r["resting_stop"]["client_order_id"] for r in rows.values()} == resting  # both kept
        assert _stop_submits(fake) == placed and len(_stops(fake)) == 2  # none placed again, none duplicated
        report = await _reconciled(state_dir, env)
        assert report["ok"] and report["mismatches"] == [], report
        # the price falls through alpha's stop level only: alpha's exit sells alpha's shares, beta's stop stays
        await fake.wait_for(lambda: "AAPL" in fake.data_subscriptions, timeout=15)
        low = 182.5
        fake.next_submit_fills(low)
        await fake.push_bar("AAPL", bar_time + timedelta(minutes=1), low, low, low, low, 1_000)
        await until(lambda: float(fake.positions.get("AAPL", {}).get("qty", 0)) == quantities["beta"],
                    timeout=20, what="alpha's exit filled at the broker")

        async def only_beta() -> bool:
            return set(_by_strategy(await daemon_status(state_dir, env))) == {"beta"}

        await until(only_beta, timeout=20, what="alpha's position closed in the book")
        sells = [o for o in fake.orders.values() if o["side"] == "sell" and o["type"] == "market"]
        assert [float(o["filled_qty"]) for o in sells] == [quantities["alpha"]]
        (left,) = _stops(fake)
        assert float(left["qty"]) == quantities["beta"] and float(left["stop_price"]) == STOPS["beta"]
        assert left["client_order_id"] in resting  # beta's stop never moved
        assert 403 not in fake.submit_answers  # no order refused for want of available shares
        # the ledger drops the position as the exit's fill is applied; its trade row commits right after (a crash
        # in between is booked at the next start: record_missing_trades), so status can show it gone first
        await until(lambda: _trades(state_dir), timeout=10, what="alpha's trade row in the journal")
        assert _trades(state_dir) == [("alpha", "AAPL", "stop_loss", quantities["alpha"])]
        report = await _reconciled(state_dir, env)
        assert report["ok"] and report["mismatches"] == [], report
    finally:
        code = await asyncio.to_thread(again.stop)
    assert code == 0, again.text()[-3000:]
