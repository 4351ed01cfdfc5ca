"""The daemon's once-a-second loop (heartbeat for /healthz, the kill switch's write retry, gauges) keeps its beat
while the order checks run long: a fill held because the journal cannot take it makes `check_overdue` wait its
whole settle (10 s), and that must not stall the heartbeat or a kill-switch trip's retried write."""

from __future__ import annotations

import asyncio

import pytest

from daemon.process import Daemon


async def test_a_long_order_check_does_not_stall_the_heartbeat_or_the_kill_switch_retry(
    paper_daemon: Daemon, monkeypatch: pytest.MonkeyPatch,
) -> None:
    daemon = paper_daemon
    core = daemon.core
    stuck = asyncio.Event()
    retries: list[float] = []

    async def check_overdue() -> list[str]:  # as while a held fill never settles
        await stuck.wait()
        return []

    monkeypatch.setattr(core, "check_overdue", check_overdue)
    monkeypatch.setattr(core.kill_switch, "retry", lambda: retries.append(asyncio.get_running_loop().time()))
    tasks = daemon.start_periodic_checks()
    try:
        await asyncio.sleep(7.5)  # the order checks first run at ~5 s, and then never return
        assert len(retries) >= 7, retries  # beat on through the stuck check
        assert daemon.healthy()[0]
    finally:
        stuck.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
