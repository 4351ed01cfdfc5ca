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
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.common import SESSION_ISO, quiet_logging, run
from bench.latency import _ticker, bench_core, queue_hop_floor, summarize, time_submits, timed_signal


async def signal_to_order(n: int, journal: dict[str, Any], instance: str = "bench") -> list[float]:
    """Latencies (µs) of n signals to the broker's submit_order with the journal configured by `journal`."""
    start = datetime.fromisoformat(SESSION_ISO)
    with tempfile.TemporaryDirectory(prefix="ordergate-bench-") as tmp:
        core = await bench_core(Path(tmp), start, {"enabled": True, **journal}, instance={"name": instance})
        paper = core.brokers["paper"]
        entered = time_submits(paper)
        samples: list[float] = []
        for i in range(n):
            paper.set_price(_ticker(i), 100.0)
        try:
            for i in range(n):
                result, sample, _ = await timed_signal(core, i, start, entered)
                if result.success and sample is not None:
                    samples.append(sample)
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
