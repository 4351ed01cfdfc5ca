"""Shared helpers for the benchmarks: quiet logging, uvloop, percentiles, RSS, a bench Core's settings, tables."""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from config.settings import Settings, load_settings

T = TypeVar("T")
SESSION_ISO = "2026-11-24T16:00:00+00:00"  # 11:00 New York on a regular session


def quick() -> bool:
    """True when BENCH_QUICK asks for small sizes."""
    return os.environ.get("BENCH_QUICK", "") not in ("", "0")


def quiet_logging() -> None:
    """Warnings and errors only, written to /dev/null (as `ordergate replay` runs, minus the terminal)."""
    import logging

    from daemon.logging import configure_logging

    configure_logging("WARNING", "json", stream=open(os.devnull, "w"))
    logging.getLogger().setLevel(logging.WARNING)


def run(main: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine function on uvloop (the daemon's loop), plain asyncio if uvloop is missing."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        return asyncio.run(main())
    return uvloop.run(main())


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The q-quantile (0..1) of already sorted values, nearest rank."""
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return float(sorted_values[index])


def holds(value: float, op: str, limit: float) -> bool:
    """Whether a figure meets its target `(op, limit)`, op being "<=" or ">="."""
    return value <= limit if op == "<=" else value >= limit


def render_table(rows: Sequence[tuple[str, ...]]) -> list[str]:
    """The lines of a figures table: the header, a rule, then one aligned line per row of six cells."""
    head = ("figure", "measured", "floor (same run)", "ratio", "target", "")
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(6)]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in [head, *rows]]
    lines.insert(1, "-" * len(lines[0]))
    return lines


def rss_mb() -> float:
    """This process's resident set size in MB (VmRSS of /proc/self/status)."""
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def bench_settings(state_dir: Path, **overrides: Any) -> Settings:
    """Settings of an in-process bench Core: paper broker (not persistent), no fallback, no metrics port."""
    paper = {"persistent": False, **overrides.pop("paper", {})}
    broker = {"primary": "paper", "fallback": None, **overrides.pop("broker", {})}
    return load_settings(state_dir=state_dir, broker=broker, paper=paper, **overrides)


def stop_process(proc: subprocess.Popen[Any], how: Callable[[], None]) -> None:
    """Stop a daemon the bench started: `how()` (SIGTERM), then SIGKILL if it is not gone in 20 s."""
    how()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
