"""A stock split seen by a running daemon, then a restart, through the real process against FakeAlpaca.

The daemon holds AAPL with its protective stop resting at Alpaca; Alpaca splits it 2-for-1 (the position doubled
at half its average price, the stop's quantity doubled at its old stop price). Its reconcile loop finds the split
and logs it (`stock_split_applied`), `status` shows the position and its resting stop in the new shares, and a
trade at the new price sells nothing. Killed and started again, it rebuilds the same book from the journal.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.alpaca_core import cli_async, daemon_status, until
from tests.daemon_proc import DaemonProcess, base_env
from tests.fakes.alpaca_server import FINAL, FakeAlpaca

pytestmark = pytest.mark.timeout(120)


def _stops(fake: FakeAlpaca) -> list[tuple[float, float]]:
    return [(float(o["qty"]), float(o["stop_price"])) for o in fake.orders.values()
            if o["symbol"] == "AAPL" and o["type"] == "stop" and o["status"] not in FINAL]


async def _position(state_dir: Path, env: dict[str, str]) -> dict[str, Any]:
    (pos,) = (await daemon_status(state_dir, env))["positions"] or [{}]
    return pos


async def test_a_running_daemon_rebases_on_a_split_and_restarts_rebased(tmp_path: Path, fake: FakeAlpaca) -> None:
    state_dir = tmp_path / "state"
    env = base_env(state_dir, **fake.env(tickers=["AAPL"]), ORDERGATE_ALPACA__REQUEST_TIMEOUT_SECONDS="5",
                   ORDERGATE_RECONCILE__INTERVAL_SECONDS="0.5", ORDERGATE_RECONCILE__GRACE_SECONDS="0")
    daemon = DaemonProcess(state_dir, env=env).start()
    try:
        await asyncio.to_thread(daemon.wait_for, "daemon_ready", 45.0)
        await fake.wait_for(lambda: "AAPL" in fake.data_subscriptions, timeout=15)
        await fake.push_bar("AAPL", datetime.now(UTC).replace(second=0, microsecond=0), 100.0, 100.0, 100.0, 100.0,
                            1_000)
        await asyncio.to_thread(daemon.wait_for, "bars_flowing", 15.0)
        fake.next_submit_fills(100.0)
        out = await cli_async(state_dir, "signal", "--ticker", "AAPL", "--direction", "long", "--entry", "100",
                              "--stop", "96", "--timeframe", "1d", "--json", env=env)
        assert json.loads(out.stdout)["accepted"] is True, out.stdout
        await fake.wait_for(lambda: len(_stops(fake)) == 1, timeout=15)
        ((qty, level),) = _stops(fake)
        assert level == 96.0
        fake.split("AAPL", 2.0)
        await asyncio.to_thread(daemon.wait_for, "stock_split_applied", 20.0, symbol="AAPL")
        await fake.wait_for(lambda: _stops(fake) == [(2 * qty, 48.0)], timeout=15)
        pos = await _position(state_dir, env)
        assert (pos["shares"], pos["entry_price"], pos["stop_loss"]) == (2 * qty, 50.0, 48.0), pos
        assert await fake.trade("AAPL", 50.0) == []
    finally:
        await asyncio.to_thread(daemon.kill9)
    again = DaemonProcess(state_dir, env=env).start()
    try:
        await asyncio.to_thread(again.wait_for, "daemon_ready", 45.0)

        async def rebased() -> bool:
            pos = await _position(state_dir, env)
            return (pos.get("shares"), pos.get("stop_loss")) == (2 * qty, 48.0) and \
                (pos.get("resting_stop") or {}).get("stop_price") == 48.0

        await until(rebased, timeout=20, what="the rebuilt position and its stop in the new shares")
        assert "stock_split_applied" not in again.text(), "the split was applied twice"
        assert _stops(fake) == [(2 * qty, 48.0)]
    finally:
        code = await asyncio.to_thread(again.stop)
    assert code == 0, again.text()[-3000:]
