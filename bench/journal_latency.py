"""Signal -> order latency on each journal backend: SQLite (the state directory's file) and PostgreSQL.

`python -m bench.journal_latency [N]` (BENCH_JSON=path writes the figures). The harness is bench.latency's: a
Core on the paper broker in a session, one signal at a time, timed from `process_signal` to the paper broker's
`submit_order`; the order router commits the intent (fsync'd: SQLite synchronous=FULL, PostgreSQL
synchronous_commit=on) before that call, so the figure is dominated by that commit. The PostgreSQL server is
started for the run from the `pgserver` wheel on this host, over a unix socket: the best case; a desk database on
another host adds its round trips (about four per intent: begin, the buffered decisions, the intent, commit).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.common import SESSION_ISO, bench_settings, quiet_logging, run
from bench.latency import _ticker, queue_hop_floor, summarize

PERF = time.perf_counter_ns


async def signal_to_order(n: int, journal: dict[str, Any], instance: str = "bench") -> list[float]:
    """Latencies (µs) of n signals to the broker's submit_order with the journal configured by `journal`."""
    from daemon.core import Core
    from pipeline.core.clock import SimulatedClock
    from pipeline.core.models import TradeSignal

    start = datetime.fromisoformat(SESSION_ISO)
    with tempfile.TemporaryDirectory(prefix="ordergate-bench-") as tmp:
        settings = bench_settings(
            Path(tmp), paper={"initial_cash": 1e9}, journal={"enabled": True, "synchronous": "FULL", **journal},
            executor={"max_concurrent_positions": 10_000, "max_single_stock_exposure": 0.01},
            pipeline={"retry_backoff_base": 0.0}, instance={"name": instance},
        )
        core = Core(settings, SimulatedClock(start))
        core.state.deactivate_kill_switch()
        await core.start()
        paper = core.brokers["paper"]
        entered: list[int] = []
        original = paper.submit_order

        async def timed_submit(intent: Any) -> Any:
            entered.append(PERF())
            return await original(intent)

        paper.submit_order = timed_submit  # type: ignore[method-assign]
        samples: list[float] = []
        for i in range(n):
            paper.set_price(_ticker(i), 100.0)
        try:
            for i in range(n):
                signal = TradeSignal(signal_type="cloud_cross_bullish", direction="long", ticker=_ticker(i),
                                     timeframe="5m", conviction=80, entry_price=100.0, stop_loss=98.0,
                                     timestamp=start, source="bench")
                entered.clear()
                t0 = PERF()
                result = await core.orchestrator.process_signal(signal)
                if not result.success:
                    continue
                if result.order_task is not None:
                    await result.order_task
                await core.settle()
                if entered:
                    samples.append((entered[0] - t0) / 1000.0)
        finally:
            await core.stop()
    return samples


def main(n: int) -> dict[str, Any]:
    import pgserver

    quiet_logging()
    figures: dict[str, Any] = {}
    samples = run(lambda: signal_to_order(n, {"backend": "sqlite"}))
    figures["sqlite"] = summarize(samples, run(lambda: queue_hop_floor(5000)))
    root = Path(tempfile.mkdtemp(prefix="ordergate-bench-pg-"))
    os.chmod(root, 0o755)
    server = pgserver.get_server(root / "data", cleanup_mode="stop")
    try:
        dsn = server.get_uri()
        samples = run(lambda: signal_to_order(n, {"backend": "postgresql", "dsn": dsn}, f"bench{os.getpid()}"))
        figures["postgresql"] = summarize(samples, run(lambda: queue_hop_floor(5000)))
    finally:
        server.cleanup()
        shutil.rmtree(root, ignore_errors=True)
    return figures


if __name__ == "__main__":
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    result = main(count)
    print(f"signal -> order, {count} signals, journal fsync'd before the send (µs)")
    print(f"{'backend':<12}{'p50':>10}{'p99':>10}{'p99.9':>10}{'p50 hops':>10}")
    for backend, f in result.items():
        print(f"{backend:<12}{f['p50_us']:>10.0f}{f['p99_us']:>10.0f}{f['p999_us']:>10.0f}{f['p50_hops']:>10.1f}")
    if os.environ.get("BENCH_JSON"):
        Path(os.environ["BENCH_JSON"]).write_text(json.dumps(result, indent=2))
