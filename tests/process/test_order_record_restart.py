"""A restart rebuilds the order book from the journal: `ordergate run` against the Alpaca fake, two entries left
working (one accepted, one partly filled), SIGKILL, and the rebuilt book's open orders equal the pre-crash ones
(state, fills by id, reserved rest, venue)."""

from __future__ import annotations

import asyncio
import json
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from pipeline.core.models import client_order_id_for
from tests.daemon_proc import DaemonProcess, base_env, cli
from tests.fakes.alpaca_server import FakeAlpaca

pytestmark = pytest.mark.timeout(120)


async def _cli(state_dir: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return await asyncio.to_thread(cli, state_dir, *args, env=env, timeout=60)


async def _book(state_dir: Path, env: dict[str, str]) -> list[dict[str, Any]]:
    out = await _cli(state_dir, "status", "--json", env=env)
    assert out.returncode == 0, out.stderr
    return sorted(json.loads(out.stdout)["order_book"], key=lambda r: r["client_order_id"])


async def _until_book(state_dir: Path, env: dict[str, str], ok: Any, timeout: float = 20.0) -> list[dict[str, Any]]:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        book = await _book(state_dir, env)
        if ok(book) or asyncio.get_running_loop().time() > deadline:
            return book
        await asyncio.sleep(0.2)


async def _signal(state_dir: Path, env: dict[str, str], ticker: str, price: float) -> str:
    out = await _cli(state_dir, "signal", "--ticker", ticker, "--direction", "long", "--entry", f"{price}",
                     "--stop", f"{price * 0.98:.2f}", "--timeframe", "1d", "--json", env=env)
    assert out.returncode == 0, (out.stdout, out.stderr)
    reply = json.loads(out.stdout)
    assert reply["accepted"] is True, reply
    return client_order_id_for(reply["signal_id"])


async def test_sigkill_then_restart_rebuilds_the_same_open_orders(tmp_path: Path, fake: FakeAlpaca) -> None:
    state_dir = tmp_path / "state"
    # the entries' records are the subject: no protective stop joins them when the partial fill lands
    env = base_env(state_dir, **fake.env(tickers=["AAPL", "MSFT"]), ORDERGATE_ALPACA__REQUEST_TIMEOUT_SECONDS="5",
                   ORDERGATE_EXITS__BROKER_STOP="false")
    daemon = DaemonProcess(state_dir, env=env).start()
    try:
        await asyncio.to_thread(daemon.wait_for, "daemon_ready", 45.0)
        await fake.wait_for(lambda: {"AAPL", "MSFT"} <= set(fake.data_subscriptions), timeout=15)
        minute = datetime.now(UTC).replace(second=0, microsecond=0)
        for ticker, price in (("AAPL", 187.5), ("MSFT", 410.0)):
            await fake.push_bar(ticker, minute, price, price, price, price, 1_000)
        await asyncio.to_thread(daemon.wait_for, "bars_flowing", 15.0)
        resting = await _signal(state_dir, env, "AAPL", 187.5)    # unscripted: accepted, stays open
        partial = await _signal(state_dir, env, "MSFT", 410.0)
        await fake.wait_for(lambda: len(fake.submits()) == 2, timeout=15)
        await fake.fill(partial, 2, 410.0)                        # part of it fills, the rest stays open
        before = await _until_book(state_dir, env, lambda b: len(b) == 2 and any(
            r["client_order_id"] == partial and r["fills"] for r in b))
    except BaseException:
        await asyncio.to_thread(daemon.stop)
        raise
    await asyncio.to_thread(daemon.kill9)
    by_id = {r["client_order_id"]: r for r in before}
    assert set(by_id) == {resting, partial}, before
    assert by_id[resting]["status"] == "new" and by_id[resting]["fills"] == []
    assert by_id[partial]["status"] == "partially_filled" and by_id[partial]["filled_qty"] == 2
    quantity = float(next(r.body["qty"] for r in fake.submits() if r.body["client_order_id"] == partial))
    assert by_id[partial]["reserved"] == pytest.approx(quantity - 2)
    assert all(r["venue"] == "alpaca" and r["kind"] == "entry" for r in before)

    again = DaemonProcess(state_dir, env=env).start()
    try:
        await asyncio.to_thread(again.wait_for, "daemon_ready", 45.0)
        after = await _book(state_dir, env)
        assert after == before, (before, after)
        assert len(fake.submits()) == 2  # nothing sent again
    finally:
        code = await asyncio.to_thread(again.stop)
    assert code == 0, again.text()[-3000:]
