"""Figures 2, 4 and 5: replay throughput through the whole Core, journal on vs off, peak RSS.

Bars are generated (seeded) by `adapters.synthetic.generate_bars` a chunk at a time and handed over as columns
(`BarBatch`, what the replay's reader yields); only the Core's work is timed (`engine.on_batch` plus the clock
step), never the generation. The floor is a bare loop updating the strategy's 6 EMAs per bar over the same
chunk, measured in the same process. Run as a module (`python -m bench.replay N_TICKERS N_BARS JOURNAL`) it
prints one JSON line: a fresh process, so the RSS samples are the replay's own.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

from bench.common import bench_settings, median, quiet_logging, rss_mb, run

CHUNK_BATCHES = 1000
RSS_NOISE_MB = 2.0
SPANS = (5, 12, 8, 9, 34, 50)


def tickers(n: int) -> list[str]:
    return [f"B{i:03d}" for i in range(n)]


def chunks(n_tickers: int, n_bars: int, seed: int = 11) -> Iterator[list[Any]]:
    """Lists of up to CHUNK_BATCHES one-minute batches (all tickers per batch), as columns (BarBatch): what a
    replay's reader gives the engine."""
    from adapters.synthetic import generate_bars
    from pipeline.core.batch import BarBatch

    chunk: list[Any] = []
    for batch in generate_bars(tickers(n_tickers), n_bars, seed=seed):
        chunk.append(BarBatch.from_bars(batch))
        if len(chunk) >= CHUNK_BATCHES:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def ema_floor(chunk: list[Any], emas: dict[str, list[Any]]) -> float:
    """Seconds for a bare loop that updates the 6 EMAs of each bar's symbol."""
    from pipeline.strategy.indicators import EMA

    started = time.perf_counter()
    for batch in chunk:
        for symbol, close in zip(batch.symbols, batch.closes(), strict=True):
            row = emas.get(symbol)
            if row is None:
                row = emas[symbol] = [EMA(s) for s in SPANS]
            for ema in row:
                ema.update(close)
    return time.perf_counter() - started


async def replay_core(n_tickers: int, n_bars: int, journal: bool = True, sample_every: int = 1) -> dict[str, Any]:
    """Replay n_bars per ticker through a fresh Core (the `ordergate replay` settings) with its floor."""
    from config.settings import Settings
    from daemon import heap
    from daemon.core import Core
    from daemon.replay import replay_settings
    from pipeline.core.clock import SimulatedClock

    step = timedelta(minutes=1)
    with tempfile.TemporaryDirectory(prefix="ordergate-bench-") as tmp:
        settings = replay_settings(bench_settings(Path(tmp), journal={"enabled": journal}), "1m", Path(tmp))
        settings = Settings.model_validate(settings.model_dump())
        clock = SimulatedClock()
        core = Core(settings, clock, replay=True)
        core.state.deactivate_kill_switch()
        await core.start()
        engine = core.engine
        core_s = floor_s = 0.0
        chunk_rates: list[float] = []
        floor_rates: list[float] = []
        rss: list[float] = [rss_mb()]
        emas: dict[str, list[Any]] = {}
        bars = 0
        try:
            with heap.start_up_frozen():  # the collector as `ordergate replay` sets it (daemon.heap)
                for index, chunk in enumerate(chunks(n_tickers, n_bars)):
                    n = sum(len(b) for b in chunk)
                    floor = ema_floor(chunk, emas)
                    started = time.perf_counter()
                    for batch in chunk:
                        clock.advance_to(batch[0].timestamp + step)
                        await engine.on_batch(batch)
                    spent = time.perf_counter() - started
                    core_s += spent
                    floor_s += floor
                    bars += n
                    chunk_rates.append(n / spent)
                    floor_rates.append(n / floor)
                    if index % sample_every == 0:
                        rss.append(rss_mb())
                started = time.perf_counter()
                await core.settle()
                if core.journal is not None:  # the last rows buffered are the run's too (stop would commit them)
                    await core.journal.flush()
                core_s += time.perf_counter() - started
                rss.append(rss_mb())
        finally:
            await core.stop()
    return {
        "bars": bars, "journal": journal, "seconds": core_s, "bars_per_s": bars / core_s,
        "median_chunk_bars_per_s": median(chunk_rates), "floor_bars_per_s": bars / floor_s,
        "median_floor_bars_per_s": median(floor_rates), "signals": engine.signals, "entries": engine.entries,
        "exits": engine.exits, "rss_mb": rss,
    }


def rss_verdict(samples: list[float]) -> dict[str, Any]:
    """Peak RSS and whether it grows in the second half: the second half's peak over the first half's, more than
    RSS_NOISE_MB (allocator and SQLite page-cache jitter) counts as growth."""
    half = len(samples) // 2
    first, second = samples[:half] or samples, samples[half:] or samples
    growth = max(second) - max(first)
    return {"peak_rss_mb": max(samples), "rss_mid_mb": max(first), "rss_second_half_growth_mb": growth,
            "rss_grows_in_second_half": growth > RSS_NOISE_MB}


def main(argv: list[str]) -> None:
    n_tickers, n_bars = int(argv[0]), int(argv[1])
    journal = argv[2] not in ("0", "off", "false") if len(argv) > 2 else True
    quiet_logging()
    result = run(lambda: replay_core(n_tickers, n_bars, journal))
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1:])
