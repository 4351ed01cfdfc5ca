"""A trip stops what is queued: after a kill switch trip is acknowledged no entry order reaches the broker.

The daemon runs as a subprocess against the Alpaca fake (live data from the fake's data socket, the live clock),
with a low REST rate so that a burst of webhook signals leaves many decided entries waiting to be sent. The trip
comes in the middle of the burst, by SIGUSR1 (acknowledged by its log line) or by `ordergate kill` (acknowledged
when the command returns). Every entry not sent by then must end `canceled` with the kill switch as its reason.

Both scenarios start with the session and overlap the rest of the suite (tests/background.py); the tests run last.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest

from tests.background import result
from tests.conftest import until as _until
from tests.daemon_proc import DaemonProcess, base_env, cli
from tests.fakes.alpaca_server import FakeAlpaca

pytestmark = pytest.mark.timeout(150)

TOKEN = "burst-test-token-0123456789"
TICKERS = ["AAPL", "MSFT", "NVDA", "AMD", "JPM", "XOM", "UNH", "WMT", "CAT", "PLD", "BABA", "GS", "CVX", "LLY",
           "HD", "BA", "AMGN", "KO", "ORCL", "INTC"]
PRICE = 100.0
HOWS = ("sigusr1", "cli")  # the trip: by SIGUSR1 (acknowledged by its log line), by `ordergate kill`


def _env(state_dir: Path, fake: FakeAlpaca) -> dict[str, str]:
    return base_env(
        state_dir, **fake.env(tickers=TICKERS),
        ORDERGATE_WEBHOOK__TOKEN=TOKEN, ORDERGATE_WEBHOOK__PORT="0", ORDERGATE_WEBHOOK__RATE_PER_MINUTE="100000",
        # 5 at once, then one REST call per 4 s: a burst of entries waits in the rate limiter, decided but not sent
        ORDERGATE_ALPACA__REQUESTS_PER_MINUTE="20",
        ORDERGATE_EXECUTOR__INSTRUMENT_MODE="stock",
        ORDERGATE_EXECUTOR__MAX_CONCURRENT_POSITIONS="100",
        ORDERGATE_EXECUTOR__MAX_SINGLE_STOCK_EXPOSURE="0.02",
        ORDERGATE_EXECUTOR__MAX_SECTOR_EXPOSURE="1.0",
        ORDERGATE_PIPELINE__ENABLE_UNIFIED_RISK="false",
        ORDERGATE_RECONCILE__INTERVAL_SECONDS="60",
    )


def _signal(ticker: str, n: int) -> dict[str, object]:
    return {"ticker": ticker, "direction": "long", "signal_type": "cloud_cross_bullish", "timeframe": "1d",
            "conviction": 80, "entry_price": PRICE, "stop_loss": PRICE * 0.97, "target_price": PRICE * 1.06,
            "timestamp": datetime.now(UTC).isoformat(), "source": f"burst-{n}"}


async def _burst(port: int, count: int) -> list[int]:
    url = f"http://127.0.0.1:{port}/v1/signals"
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with aiohttp.ClientSession() as session:
        async def post(n: int) -> int:
            async with session.post(url, json=_signal(TICKERS[n % len(TICKERS)], n), headers=headers) as resp:
                return resp.status

        return list(await asyncio.gather(*(post(n) for n in range(count))))


def _journal_entries(state_dir: Path) -> dict[str, tuple[str, str | None]]:
    with sqlite3.connect(state_dir / "journal.db") as conn:
        rows = conn.execute("SELECT client_order_id, status, reason FROM orders WHERE kind='entry'").fetchall()
    return {coid: (status, reason) for coid, status, reason in rows}


async def _trip_in_the_middle_of_a_burst(root: Path, how: str) -> None:
    """The scenario, on a FakeAlpaca of its own; an AssertionError names what failed."""
    async with FakeAlpaca() as fake:
        await _burst_then_trip(root / "state", fake, how)


async def _burst_then_trip(state_dir: Path, fake: FakeAlpaca, how: str) -> None:
    env = _env(state_dir, fake)
    daemon = DaemonProcess(state_dir, env=env).start()
    try:
        await asyncio.to_thread(daemon.wait_for, "daemon_ready", 45.0)
        port = (await asyncio.to_thread(daemon.wait_for, "webhook_listening", 15.0))["port"]
        await fake.wait_for(lambda: set(TICKERS) <= fake.data_subscriptions, timeout=15)
        now = datetime.now(UTC).replace(second=0, microsecond=0)
        # a market for every ticker (the daemon sizes entries on the market price)
        await fake.push_bars([{"S": t, "t": now, "o": PRICE, "h": PRICE, "l": PRICE, "c": PRICE, "v": 1000}
                              for t in TICKERS])
        await asyncio.sleep(0.5)
        statuses = await _burst(port, 100)
        assert statuses.count(202) == 100, statuses
        # let the first entries out and the rest be decided, then trip while they wait to be sent
        await fake.wait_for(lambda: len(fake.submits()) >= 1, timeout=20)
        await _until(lambda: len(_journal_entries(state_dir)) >= 15, 30.0, "the burst's entries to be decided")
        loop = asyncio.get_running_loop()
        if how == "sigusr1":
            daemon.signal(signal.SIGUSR1)
            await asyncio.to_thread(daemon.wait_for, "kill_switch_tripped", 10.0)
        else:
            out = await asyncio.to_thread(cli, state_dir, "kill", "--reason", "burst test", "--json", env=env)
            assert out.returncode == 0, (out.stdout, out.stderr)
            assert json.loads(out.stdout)["active"] is True
        acknowledged = loop.time()
        sent_before = len([r for r in fake.submits() if r.at <= acknowledged])
        entries = _journal_entries(state_dir)
        assert len(entries) > sent_before + 5, "the burst must leave entries waiting to be sent at the trip"
        await asyncio.sleep(8.0)  # long enough for 2 more sends at the adapter's rate if they were let out
        late = [r.body.get("client_order_id") for r in fake.submits() if r.at > acknowledged]
        assert late == [], f"{len(late)} entries reached the broker after the trip was acknowledged"
        # every entry that was not sent ends canceled by the kill switch; none stays pending
        sent = {r.body.get("client_order_id") for r in fake.submits()}

        def settled() -> bool:
            rows = _journal_entries(state_dir)
            return all(status != "pending" for coid, (status, _) in rows.items() if coid not in sent)

        await _until(settled, 20.0, f"unsent entries to leave 'pending': {_journal_entries(state_dir)} {sent}")
        for coid, (status, reason) in _journal_entries(state_dir).items():
            if coid not in sent:
                assert status == "canceled" and "kill switch" in (reason or ""), (coid, status, reason)
    finally:
        code = await asyncio.to_thread(daemon.stop)
    assert code == 0, daemon.text()[-3000:]


@contextmanager
def campaigns(mktemp: Callable[[str], Path]) -> Iterator[dict[str, Future[None]]]:
    """Both trips' scenarios (each waits on the rate limiter most of its half minute), started when the session
    starts, side by side on their own event loops (tests/background.py); each test waits for its own."""
    pool = ThreadPoolExecutor(max_workers=len(HOWS), thread_name_prefix="burst")
    runs = {how: pool.submit(lambda how=how, root=mktemp(f"burst_{how}"):
                             asyncio.run(_trip_in_the_middle_of_a_burst(root, how))) for how in HOWS}
    try:
        yield runs
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


@pytest.mark.parametrize("how", HOWS)
def test_no_entry_reaches_the_broker_after_a_trip_in_the_middle_of_a_burst(
    background: dict[str, dict[str, Future[None]]], how: str,
) -> None:
    result(background[__name__.rpartition(".")[2]], how, timeout=150)
