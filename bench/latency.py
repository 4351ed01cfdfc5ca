"""Figure 1: signal -> order submitted, in process, beside its floors measured in the same run: one idle
asyncio.Queue hop, a bare fsync'd SQLite commit of one row in the journal's own directory, and an idle round
trip through a journal thread (the two hand-overs an intent's durable write pays for keeping the disk off the
loop, on top of its commit).

A Core with the paper broker (not persistent), the journal on and a SimulatedClock inside a session. Each
signal has its own ticker (no dedup, no exposure overlap) and is fed alone: the time runs from the call of
`orchestrator.process_signal` to the moment the router enters the paper broker's `submit_order`. The
broker has no price for these tickers, so it rejects the order right after the timestamp: nothing piles
up in the book and every decision sees the same empty account. The next signal starts once the previous
order and its events have settled.

`python -m bench.latency [N]` prints these figures alone (N signals per configuration; default 2000): signal ->
order with the journal FULL, its floors, the decision alone without a journal (in queue hops), journal on / off.
"""

from __future__ import annotations

import asyncio
import gc
import json
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.common import SESSION_ISO, bench_settings, holds, median, percentile, quiet_logging, render_table, run

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


async def thread_round_trip_floor(n: int) -> list[float]:
    """n idle round trips through a journal thread (journal_thread.JournalThread, the journal's own hand-over):
    the loop posts a job, the thread answers with `call_soon_threadsafe`, the loop wakes: µs from the post to
    the answer. What an intent's durable write pays on top of its commit for keeping the disk off the loop
    (two thread hand-overs), whatever the commit costs."""
    from pipeline.record.journal_thread import JournalThread

    loop = asyncio.get_running_loop()
    thread = JournalThread("bench-floor")
    samples: list[float] = []

    def answer(done: asyncio.Future[None]) -> None:
        loop.call_soon_threadsafe(done.set_result, None)

    try:
        for _ in range(n):
            done: asyncio.Future[None] = loop.create_future()
            await asyncio.sleep(0)
            t0 = PERF()
            thread.post(answer, done)
            await done
            samples.append((PERF() - t0) / 1000.0)
    finally:
        thread.shutdown(wait=True)
    return samples[min(100, n // 10):]  # the thread's start and first trips left out


def _ticker(i: int) -> str:
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    out = ""
    for _ in range(4):
        i, r = divmod(i, 26)
        out = letters[r] + out
    return "Z" + out


class BareCommit:
    """A bare SQLite file beside the journal (WAL, synchronous=FULL): each `sample()` commits one row — one fsync —
    and returns how long it took in µs: the floor of an order intent's durable write on this disk."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / "floor.db"
        self.conn = sqlite3.connect(self.path, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=FULL")
        self.conn.execute("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT)")
        self.rows = 0

    def sample(self) -> float:
        self.rows += 1
        t0 = PERF()
        self.conn.execute("BEGIN IMMEDIATE")
        self.conn.execute("INSERT INTO t(v) VALUES (?)", (f"row {self.rows}",))
        self.conn.execute("COMMIT")
        return (PERF() - t0) / 1000.0

    def close(self) -> None:
        self.conn.close()


async def bench_core(tmp: Path, start: datetime, journal: dict[str, Any], gc_policy: str = "daemon",
                     **sections: Any) -> Any:
    """A started Core for the signal -> order figures in `tmp` at `start`: the paper broker (1e9 cash), room for
    10 000 small positions, no retry backoff, the journal FULL updated by `journal`, the kill switch off.
    `gc_policy` "daemon": the collector as the daemon sets it once started (daemon.heap: start-up frozen, rarer
    young collections); "default": CPython's defaults (the comparison)."""
    from daemon import heap
    from daemon.core import Core
    from pipeline.core.clock import SimulatedClock

    settings = bench_settings(
        tmp, paper={"initial_cash": 1e9}, journal={"synchronous": "FULL", **journal},
        executor={"max_concurrent_positions": 10_000, "max_single_stock_exposure": 0.01},
        pipeline={"retry_backoff_base": 0.0}, **sections,
    )
    core = Core(settings, SimulatedClock(start))
    core.state.deactivate_kill_switch()
    await core.start()
    if gc_policy == "daemon":
        heap.freeze_start_up()
    else:
        heap.defaults()
    return core


def time_submits(broker: Any) -> list[int]:
    """Wraps `broker.submit_order` so that each call notes PERF() as it enters; the list it notes them in."""
    entered: list[int] = []
    original = broker.submit_order

    async def timed_submit(intent: Any) -> Any:
        entered.append(PERF())
        return await original(intent)

    broker.submit_order = timed_submit
    return entered


async def timed_signal(core: Any, i: int, start: datetime, entered: list[int]) -> tuple[Any, float | None, float]:
    """The i-th bench signal (a long entry on its own ticker at 100) through `process_signal`, its order task and
    a settle: (the result, µs from `process_signal` to the broker's submit_order or None, µs inside
    `process_signal`). A rejected signal returns at once."""
    from pipeline.core.models import TradeSignal

    signal = TradeSignal(signal_type="cloud_cross_bullish", direction="long", ticker=_ticker(i), timeframe="5m",
                         conviction=80, entry_price=100.0, stop_loss=98.0, timestamp=start, source="bench")
    entered.clear()
    t0 = PERF()
    result = await core.orchestrator.process_signal(signal)
    decided = (PERF() - t0) / 1000.0
    if not result.success:
        return result, None, decided
    if result.order_task is not None:
        await result.order_task
    await core.settle()
    return result, (entered[0] - t0) / 1000.0 if entered else None, decided


async def signal_to_order(n: int, fsync: bool = True, journal: bool = True, floor_every: int = 5,
                          gc_policy: str = "daemon") -> dict[str, Any]:
    """Latencies (µs) of n signals through the orchestrator to the paper broker's submit_order.

    Also `decide`: the part spent inside `process_signal` (the rest is the router's task: journal the
    intent with its fsync, then call the broker). `fsync=False` (a diagnostic only) keeps everything else, the
    journal's thread included, and turns the commits' fsync off (PRAGMA synchronous=OFF). `journal=False` runs
    without a journal. `floor`: a bare fsync'd one-row commit in the same directory, one every `floor_every`
    signals (interleaved, so both see the same disk and load). `gc_policy`: see `bench_core`; CPython's defaults
    are back once the run is over.
    """
    from daemon import heap

    start = datetime.fromisoformat(SESSION_ISO)
    with tempfile.TemporaryDirectory(prefix="ordergate-bench-") as tmp:
        try:
            return await _signal_to_order(Path(tmp), start, n, fsync, journal, floor_every, gc_policy)
        finally:
            heap.defaults()


async def _signal_to_order(tmp: Path, start: datetime, n: int, fsync: bool, journal: bool, floor_every: int,
                           gc_policy: str) -> dict[str, Any]:
    core = await bench_core(tmp, start, {"enabled": journal}, gc_policy)
    pauses = GcPauses()
    if not fsync and core.journal is not None:
        await core.journal.run(lambda conn: conn.execute("PRAGMA synchronous=OFF"))
    entered = time_submits(core.brokers["paper"])
    samples: list[float] = []
    decide: list[float] = []
    floor: list[float] = []
    rejected: dict[str, int] = {}
    commits_before = core.journal.commits if core.journal is not None else 0
    # the market the entries are sized on (issue 11.3): the feed's marks. The paper broker itself has no price
    # for them, so it rejects each order right after the timestamp and every decision sees the same empty book
    for i in range(n):
        core.ledger.last_prices[_ticker(i)] = 100.0
    bare = BareCommit(tmp)
    try:
        for i in range(n):
            result, sample, decided = await timed_signal(core, i, start, entered)
            if not result.success:
                rejected[result.pipeline_stage] = rejected.get(result.pipeline_stage, 0) + 1
                continue
            if sample is not None:
                samples.append(sample)
                decide.append(decided)
            if i % floor_every == 0:
                floor.append(bare.sample())
        commits = (core.journal.commits - commits_before) if core.journal is not None else 0
    finally:
        pauses.close()
        bare.close()
        await core.stop()
    return {"samples": samples, "decide": decide, "rejected": rejected, "floor_commit": floor, "commits": commits,
            "gc": pauses.summary(len(samples))}


class GcPauses:
    """The collector's pauses from construction to `close()` (gc.callbacks), by generation."""

    def __init__(self) -> None:
        self.pauses: list[tuple[int, float]] = []
        self._started = (0, 0)
        gc.callbacks.append(self._note)

    def _note(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = (info["generation"], PERF())
        else:
            self.pauses.append((self._started[0], (PERF() - self._started[1]) / 1000.0))

    def close(self) -> None:
        if self._note in gc.callbacks:
            gc.callbacks.remove(self._note)

    def summary(self, signals: int) -> dict[str, float]:
        """Per generation: how many pauses per 1000 signals and the longest (µs); all pauses' µs per signal."""
        out: dict[str, float] = {"us_per_signal": sum(p for _, p in self.pauses) / max(1, signals)}
        for gen in (0, 1, 2):
            mine = [p for g, p in self.pauses if g == gen]
            out[f"gen{gen}_per_1000"] = 1000.0 * len(mine) / max(1, signals)
            out[f"gen{gen}_max_us"] = max(mine, default=0.0)
        return out


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


def _p(values: list[float], q: float) -> float:
    return percentile(sorted(values), q)


WAIT_SECONDS = 0.0008  # about one fsync'd commit on this disk: the wait a decision follows in the FULL figure


async def decisions_after_waits(n: int) -> dict[str, float]:
    """The decision alone (no journal, as `decide` above), each after a wait of WAIT_SECONDS: `idle` sleeps (the
    thread blocks, as the loop does while the journal's fsync runs), `busy` spins on the clock for as long. Their
    medians in µs: what an idle wait costs the decision after it (on a VM, the vCPU's caches are cold again). The
    first block of each kind warms up and is left out."""
    from daemon import heap

    start = datetime.fromisoformat(SESSION_ISO)
    out: dict[str, list[float]] = {"idle": [], "busy": []}
    with tempfile.TemporaryDirectory(prefix="ordergate-bench-") as tmp:
        core = await bench_core(Path(tmp), start, {"enabled": False})
        try:
            entered = time_submits(core.brokers["paper"])
            for i in range(2 * n):
                core.ledger.last_prices[_ticker(i)] = 100.0
            for i in range(2 * n):
                # alternating blocks of 100 (both see the same machine): within a block, each decision follows the
                # previous one's wait of the same kind (one at a time interleaved, a spin does not warm what the
                # sleep before the previous decision cooled)
                kind = "idle" if (i // 100) % 2 else "busy"
                if kind == "idle":
                    time.sleep(WAIT_SECONDS)  # noqa: ASYNC251  (the point: the thread blocks, as in an fsync)
                else:
                    until = time.perf_counter() + WAIT_SECONDS
                    while time.perf_counter() < until:
                        pass
                result, sample, decided = await timed_signal(core, i, start, entered)
                if result.success and sample is not None and i >= 200:
                    out[kind].append(decided)
        finally:
            await core.stop()
            heap.defaults()
    return {f"decision_after_{kind}_wait_p50_us": median(values) for kind, values in out.items()}


async def latency_figures(n: int) -> dict[str, Any]:
    """Every latency figure of issue 17 from one run: the floors first and last, the configurations between."""
    hop_before = await queue_hop_floor(5000)
    full = await signal_to_order(n, fsync=True, journal=True)
    nojournal = await signal_to_order(n, fsync=True, journal=False)
    # the journal-off run again with CPython's collector settings (no disk in either: their p99s differ by the
    # collector alone): what the daemon's settings (daemon.heap) change
    gc_default = await signal_to_order(n, fsync=True, journal=False, gc_policy="default")
    waits = await decisions_after_waits(n)
    trips = await thread_round_trip_floor(n)
    hop = median(hop_before + await queue_hop_floor(5000))
    commit = median(full["floor_commit"])
    p50, p99 = _p(full["samples"], 0.5), _p(full["samples"], 0.99)
    decide_p50 = _p(nojournal["decide"], 0.5)
    off_p50 = _p(nojournal["samples"], 0.5)
    return {
        "signals": len(full["samples"]), "queue_hop_us": hop, "bare_commit_p50_us": commit,
        "bare_commit_p99_us": _p(full["floor_commit"], 0.99),
        "bare_commit_beside_no_journal_p50_us": median(nojournal["floor_commit"]),
        "signal_to_order_p50_us": p50, "signal_to_order_p99_us": p99,
        "signal_to_order_p999_us": _p(full["samples"], 0.999),
        "signal_to_order_over_commit_hops": (p50 - commit) / hop,
        "thread_round_trip_p50_us": median(trips), "thread_round_trip_hops": median(trips) / hop,
        "signal_to_order_p99_over_p50": p99 / p50,
        "bare_commit_p99_over_p50": _p(full["floor_commit"], 0.99) / commit,
        "journal_off_signal_to_order_p99_us": _p(nojournal["samples"], 0.99),
        "gc_default_journal_off_p50_us": _p(gc_default["samples"], 0.5),
        "gc_default_journal_off_p99_us": _p(gc_default["samples"], 0.99),
        "decision_p99_us": _p(nojournal["decide"], 0.99),
        "gc_daemon": nojournal["gc"], "gc_default": gc_default["gc"], "gc_journal_full": full["gc"],
        "gc_default_decision_p50_us": _p(gc_default["decide"], 0.5),
        "gc_default_decision_p99_us": _p(gc_default["decide"], 0.99),
        "decision_p50_us": decide_p50, "decision_p50_hops": decide_p50 / hop,
        "decision_with_journal_p50_us": _p(full["decide"], 0.5),
        "journal_off_signal_to_order_p50_us": off_p50, "journal_on_off_latency_ratio": p50 / off_p50,
        "commits_per_intent": full["commits"] / max(1, len(full["samples"])),
        **waits,
        "not_approved": {**full["rejected"], **{f"nojournal:{k}": v for k, v in nojournal["rejected"].items()}},
    }


LATENCY_TARGETS = {  # issue 17
    "decision_p50_hops": ("<=", 15.0),
    "signal_to_order_over_commit_hops": ("<=", 25.0),
    "signal_to_order_p99_over_p50": ("<=", 3.0),
}


def latency_rows(f: dict[str, Any], verdict: Callable[[str], str], first: str = "",
                 rest: str = "") -> list[tuple[str, str, str, str, str, str]]:
    """The latency rows of a figures table; `first` prefixes the first label and `rest` the others."""
    return [
        (f"{first}signal->order p50, journal FULL", f"{f['signal_to_order_p50_us']:.0f} µs",
         f"{f['bare_commit_p50_us']:.0f} µs bare commit", f"+{f['signal_to_order_over_commit_hops']:.1f} hops",
         "<= commit + 25 hops", verdict("signal_to_order_over_commit_hops")),
        (f"{rest}journal thread round trip, idle", f"{f['thread_round_trip_p50_us']:.0f} µs",
         "post -> thread -> loop: an intent pays it", f"{f['thread_round_trip_hops']:.1f} hops", "", ""),
        (f"{rest}signal->order p99", f"{f['signal_to_order_p99_us']:.0f} µs",
         f"{f['bare_commit_p99_us']:.0f} µs commit p99 ({f['bare_commit_p99_over_p50']:.1f}x its p50)",
         f"{f['signal_to_order_p99_over_p50']:.2f}x p50", "<= 3x p50", verdict("signal_to_order_p99_over_p50")),

        (f"{rest}decision alone p50 (no journal)", f"{f['decision_p50_us']:.1f} µs", f"{f['queue_hop_us']:.2f} µs hop",
         f"{f['decision_p50_hops']:.1f} hops", "<= 15 hops", verdict("decision_p50_hops")),
        (f"{rest}signal->order p50, journal off", f"{f['journal_off_signal_to_order_p50_us']:.0f} µs", "",
         f"on/off {f['journal_on_off_latency_ratio']:.1f}x", "", ""),
        (f"{rest}journal off p50 / p99: daemon's gc", f"{f['journal_off_signal_to_order_p50_us']:.0f} / "
         f"{f['journal_off_signal_to_order_p99_us']:.0f} µs", f"CPython's: {f['gc_default_journal_off_p50_us']:.0f} / "
         f"{f['gc_default_journal_off_p99_us']:.0f} µs",
         f"p99 {f['journal_off_signal_to_order_p99_us'] / f['gc_default_journal_off_p99_us']:.2f}x", "", ""),
        (f"{rest}decision alone p50 / p99: daemon's gc", f"{f['decision_p50_us']:.0f} / {f['decision_p99_us']:.0f} µs",
         f"CPython's: {f['gc_default_decision_p50_us']:.0f} / {f['gc_default_decision_p99_us']:.0f} µs",
         f"p99 {f['decision_p99_us'] / f['gc_default_decision_p99_us']:.2f}x", "", ""),
        (f"{rest}gc pauses, journal off: daemon's gc", _gc_cell(f["gc_daemon"]),
         f"CPython's: {_gc_cell(f['gc_default'])}", "", "", ""),
        (f"{rest}decision after a 0.8 ms idle wait", f"{f['decision_after_idle_wait_p50_us']:.0f} µs",
         f"{f['decision_after_busy_wait_p50_us']:.0f} µs after 0.8 ms busy",
         f"{f['decision_after_idle_wait_p50_us'] / f['decision_after_busy_wait_p50_us']:.2f}x", "", ""),
        (f"{rest}journal commits per intent", f"{f['commits_per_intent']:.2f}", "", "", "", ""),
    ]


def _gc_cell(g: dict[str, float]) -> str:
    """Collections per 1000 signals and the longest pause of each generation, then all pauses per signal."""
    return " ".join(f"g{n} {g[f'gen{n}_per_1000']:.1f}/1k≤{g[f'gen{n}_max_us'] / 1000:.1f}ms" for n in (0, 1, 2)) \
        + f" {g['us_per_signal']:.1f}µs/sig"


def latency_table(f: dict[str, Any]) -> str:
    def verdict(key: str) -> str:
        return "holds" if holds(f[key], *LATENCY_TARGETS[key]) else "MISSED"

    return "\n".join(render_table(latency_rows(f, verdict)))


def main() -> int:
    quiet_logging()
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    figures = run(lambda: latency_figures(n))
    print(latency_table(figures))
    print(json.dumps(figures, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
