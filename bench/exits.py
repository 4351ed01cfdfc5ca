"""Figure 3: the exit loop's cost per bar with 10 and with 10 000 open positions in other tickers.

A Core (paper, no journal) whose ledger holds N positions in tickers that never appear in the bars; each
step is one 50-ticker batch through `lifecycle.update_positions` + `lifecycle.check_exits`. The clock stays
mid-session, so no time stop or EOD fires: what is measured is what a bar costs, not what an exit costs.
"""

from __future__ import annotations

import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.common import SESSION_ISO, bench_settings, median


def _position(i: int, now: datetime) -> Any:
    from pipeline.core.models import Position

    return Position(ticker=f"H{i:05d}", direction="long", entry_price=100.0, current_price=100.0, shares=10,
                    stop_loss=90.0, target_price=120.0, entry_time=now, signal_type="cloud_cross_bullish",
                    timeframe="5m", broker="paper", signal_id=f"sig-h{i}")


async def exit_cost(open_positions: int, batches: list[list[Any]], repeats: int) -> float:
    """Median µs per batch of update_positions + check_exits with `open_positions` held elsewhere."""
    from daemon.core import Core
    from pipeline.core.clock import SimulatedClock

    now = datetime.fromisoformat(SESSION_ISO)
    with tempfile.TemporaryDirectory(prefix="ordergate-bench-") as tmp:
        settings = bench_settings(Path(tmp), journal={"enabled": False}, strategy={"enabled": False})
        core = Core(settings, SimulatedClock(now))
        for i in range(open_positions):
            core.ledger.adopt(_position(i, now), 10)
        core.lifecycle.rebuild_index()
        lifecycle = core.lifecycle
        rounds: list[float] = []
        for _ in range(repeats):
            started = time.perf_counter()
            for batch in batches:
                lifecycle.update_positions(batch)
                if lifecycle.check_exits(batch):
                    raise AssertionError("an exit fired: the bench must measure the idle per-bar cost")
            rounds.append((time.perf_counter() - started) / len(batches) * 1e6)
        assert len(core.ledger.holdings) == open_positions
    return median(rounds)


def bar_batches(n_tickers: int, n_batches: int) -> list[list[Any]]:
    """Batches stamped at the same session minute (the clock never moves), prices from the generator."""
    from adapters.synthetic import generate_bars
    from pipeline.core.models import Bar

    now = datetime.fromisoformat(SESSION_ISO)
    out = []
    for batch in generate_bars([f"E{i:02d}" for i in range(n_tickers)], n_batches, seed=5):
        out.append([Bar(b.symbol, now, b.open, b.high, b.low, b.close, b.volume, "1m") for b in batch])
    return out


async def exit_scaling(n_batches: int, repeats: int) -> dict[str, float]:
    batches = bar_batches(50, n_batches)
    small: list[float] = []
    large: list[float] = []
    for _ in range(5):  # alternate, so drift on a noisy machine hits both sides
        small.append(await exit_cost(10, batches, repeats))
        large.append(await exit_cost(10_000, batches, repeats))
    s, big = median(small), median(large)
    return {"exit_us_per_bar_10": s / 50, "exit_us_per_bar_10000": big / 50, "exit_us_per_batch_10": s,
            "exit_us_per_batch_10000": big, "exit_scaling_ratio": big / s}
