"""/metrics and /healthz of a running daemon: counters move during a replay; 503 when the broker is down."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import aiohttp

from config.settings import load_settings
from daemon.process import Daemon
from tests.daemon_proc import free_port


def _value(text: str, name: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            total += float(line.rsplit(" ", 1)[1])
    return total


async def test_metrics_move_during_replay_and_healthz_follows_the_broker(tmp_path: Path) -> None:
    port = free_port()
    settings = load_settings(state_dir=tmp_path / "state", metrics={"port": port},
                             data={"bars_per_second": 200.0}, paper={"persistent": False})
    daemon = Daemon(settings)
    run = asyncio.create_task(daemon.run())
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(200):
                if daemon.ready and daemon.services.metrics_port:
                    break
                await asyncio.sleep(0.05)
            assert daemon.ready
            first = await (await http.get(f"{base}/metrics")).text()
            await asyncio.sleep(1.5)
            second = await (await http.get(f"{base}/metrics")).text()
            assert _value(second, "ordergate_bars_total") > _value(first, "ordergate_bars_total") > 0
            assert re.search(r'ordergate_signals_total\\{outcome="(approved|rejected)"', second) or \
                "ordergate_signals_total{" in second
            assert "ordergate_kill_switch_active 0.0" in second
            assert "ordergate_bus_queue_depth" in second
            ok = await http.get(f"{base}/healthz")
            assert ok.status == 200
            daemon.core.brokers["paper"].faults.unavailable = True
            down = await http.get(f"{base}/healthz")
            assert down.status == 503
            assert "paper" in (await down.json())["reason"]
            daemon.core.brokers["paper"].faults.unavailable = False
            assert (await http.get(f"{base}/healthz")).status == 200
    finally:
        daemon.request_stop()
        assert await asyncio.wait_for(run, 20) == 0
