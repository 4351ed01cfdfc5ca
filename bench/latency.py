"""Figure 1: signal -> order submitted, in process, and its floor (one idle asyncio.Queue hop).

A Core with the paper broker (not persistent), the journal on and a SimulatedClock inside a session. Each
signal has its own ticker (no dedup, no exposure overlap) and is fed alone: the time runs from the call of
`orchestrator.process_signal` to the moment the router enters the paper broker's `submit_order`. The
broker has no price for these tickers, so it rejects the order right after the timestamp: nothing piles
up in the book and every decision sees the same empty account. The next signal starts once the previous
order and its events have settled.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.common import SESSION_ISO, bench_settings, median, percentile

PERF = time.perf_counter_ns


async def queue_hop_floor(n: int) -> list[float]:
    """n idle Queue hops (put, wake the waiting consumer, get) in µs."""
    queue: asyncio.Queue[int] = asyncio.Queue()
    samples: list[float] = []
    done = asyncio.Event()

    async def consumer() -> None:
        for _ in range(n):
            sent = await queue.get()
            samples.append((PERF() - sent) / 1000.0)
            done.set()

    task = asyncio.create_task(consumer())
    for _ in range(n):
        done.clear()
        await asyncio.sleep(0)  # the consumer is parked in get(): the hop is idle
        queue.put_nowait(PERF())
        await done.wait()
    await task
    return samples


def _ticker(i: int) -> str:
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    out = ""
    for _ in range(4):
        i, r = divmod(i, 26)
        out = letters[r] + out
    return "Z" + out


async def signal_to_order(n: int, fsync: bool = True) -> dict[str, Any]:
    """Latencies (µs) of n signals through the orchestrator to the paper broker's submit_order.

    Also `decide`: the part spent inside `process_signal` (the rest is the router's task: journal the
    intent with its fsync, then call the broker). `fsync=False` (a diagnostic only) keeps everything else, the
    journal's thread included, and turns the commits' fsync off (PRAGMA synchronous=OFF).
    """
    from daemon.core import Core
    from pipeline.core.clock import SimulatedClock
    from pipeline.core.models import TradeSignal

    start = datetime.fromisoformat(SESSION_ISO)
    with tempfile.TemporaryDirectory(prefix="ordergate-bench-") as tmp:
        settings = bench_settings(
            Path(tmp), paper={"initial_cash": 1e9}, journal={"enabled": True, "synchronous": "FULL"},
            executor={"max_concurrent_positions": 10_000, "max_single_stock_exposure": 0.01},
            pipeline={"retry_backoff_base": 0.0},
        )
        core = Core(settings, SimulatedClock(start))
        core.state.deactivate_kill_switch()
        await core.start()
        if not fsync and core.journal is not None:
            await core.journal.run(lambda conn: conn.execute("PRAGMA synchronous=OFF"))
        paper = core.brokers["paper"]
        entered: list[int] = []
        original = paper.submit_order

        async def timed_submit(intent: Any) -> Any:
            entered.append(PERF())
            return await original(intent)

        paper.submit_order = timed_submit  # type: ignore[method-assign]
        samples: list[float] = []
        decide: list[float] = []
        rejected: dict[str, int] = {}
        for i in range(n):  # the market the entries are sized on (issue 11.3): the paper broker's own price
            paper.set_price(_ticker(i), 100.0)
        try:
            for i in range(n):
                signal = TradeSignal(signal_type="cloud_cross_bullish", direction="long", ticker=_ticker(i),
                                     timeframe="5m", conviction=80, entry_price=100.0, stop_loss=98.0,
                                     timestamp=start, source="bench")
                entered.clear()
                t0 = PERF()
                result = await core.orchestrator.process_signal(signal)
                decided = PERF()
                if not result.success:
                    rejected[result.pipeline_stage] = rejected.get(result.pipeline_stage, 0) + 1
                    continue
                if result.order_task is not None:
                    await result.order_task
                await core.settle()
                if entered:
                    samples.append((entered[0] - t0) / 1000.0)
                    decide.append((decided - t0) / 1000.0)
        finally:
            await core.stop()
    return {"samples": samples, "decide": decide, "rejected": rejected}


def summarize(samples: list[float], floor: list[float]) -> dict[str, float]:
    """p50/p99/p99.9 in µs and in floor hops (the floor's median)."""
    ordered = sorted(samples)
    hop = median(floor)
    out = {"floor_hop_us": hop, "count": float(len(samples))}
    for name, q in (("p50", 0.5), ("p99", 0.99), ("p999", 0.999)):
        value = percentile(ordered, q)
        out[f"{name}_us"] = value
        out[f"{name}_hops"] = value / hop if hop else float("nan")
    return out
