"""/metrics and /healthz of a running daemon: counters move during a replay; 503 when the broker is down."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from pathlib import Path

import aiohttp

from config.settings import load_settings
from daemon.process import Daemon
from tests.conftest import until
from tests.daemon_proc import free_port

SIGNALS = re.compile(r'^ordergate_signals_total\{[^}]*outcome="(approved|rejected)"[^}]*\} [1-9]', re.M)


def _value(text: str, name: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            total += float(line.rsplit(" ", 1)[1])
    return total


async def _status(http: aiohttp.ClientSession, url: str, expected: int) -> bool:
    async with http.get(url) as response:
        return response.status == expected


async def test_metrics_move_during_replay_and_healthz_follows_the_broker(tmp_path: Path) -> None:
    port = free_port()
    settings = load_settings(state_dir=tmp_path / "state", metrics={"port": port},
                             data={"bars_per_second": 200.0}, paper={"persistent": False},
                             broker={"breaker_reset_seconds": 1.0})
    daemon = Daemon(settings)
    run = asyncio.create_task(daemon.run())
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as http:
            await until(lambda: daemon.ready and daemon.services.metrics_port, timeout=45, what="the daemon ready")
            scraped = [""]  # the latest /metrics text

            async def scrape(enough: Callable[[str], bool]) -> bool:
                scraped[-1] = await (await http.get(f"{base}/metrics")).text()
                return enough(scraped[-1])

            # polled on the counters themselves: how many bars a loaded machine gets through in a given time is
            # not for this test to say, only that they are counted and keep moving
            await until(lambda: scrape(lambda text: _value(text, "ordergate_bars_total") > 0), timeout=45,
                        what="bars counted")
            first = scraped[-1]
            await until(lambda: scrape(lambda text: _value(text, "ordergate_bars_total")
                                       > _value(first, "ordergate_bars_total") and SIGNALS.search(text) is not None),
                        timeout=45, what="more bars counted, and a signal's outcome")
            second = scraped[-1]
            assert "ordergate_kill_switch_active 0.0" in second
            assert "ordergate_bus_queue_depth" in second
            ok = await http.get(f"{base}/healthz")
            assert ok.status == 200
            daemon.core.brokers["paper"].faults.unavailable = True
            down = await http.get(f"{base}/healthz")
            assert down.status == 503
            assert "paper" in (await down.json())["reason"]
            daemon.core.brokers["paper"].faults.unavailable = False
            # an order sent while it was down opened the breaker: the next probe (5 s checks, 1 s cool-down here)
            # finds it back, with no order needed
            await until(lambda: _status(http, f"{base}/healthz", 200), timeout=30, what="/healthz 200 again")
    finally:
        daemon.request_stop()
        assert await asyncio.wait_for(run, 20) == 0
