"""`python -m bench` (`make bench`): every figure of issues 8 and 17 beside its floor, as a table and optional JSON.

Sizes: the full run is the issue's (20 000 signals, 50 x 20 000 bars); BENCH_QUICK=1 shrinks them. Replays
run in child processes so each one's RSS is its own. BENCH_JSON=path writes every figure as JSON. Figures 8-12
(issue 17: replay of a real CSV file vs backtesting.py, strategy off vs a 6-EMA loop, CSV read, RSS of both
shapes, journal on/off) come from bench/replay_file.py; BENCH_SKIP_FILE=1 leaves them out.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import holds, median, quick, quiet_logging, render_table, run
from bench.latency import LATENCY_TARGETS, latency_rows
from bench.replay import rss_verdict

ROOT = Path(__file__).resolve().parents[1]
TARGETS = {
    # issue 17: the decision alone; signal -> order against the bare fsync'd commit measured in the same run
    **LATENCY_TARGETS,
    "replay_floor_ratio": (">=", 0.15),
    "exit_scaling_ratio": ("<=", 1.2),
    "journal_on_off_ratio": (">=", 0.8),
    "peak_rss_mb": ("<=", 200.0),
    "ready_s": ("<=", 1.5),
    "status_s": ("<=", 0.3),
}


def sizes() -> dict[str, int]:
    if quick():
        return {"signals": 1500, "rounds": 3, "tickers": 50, "bars": 2000, "onoff_bars": 1000, "onoff_pairs": 3,
                "exit_batches": 1000, "ready": 3}
    return {"signals": 20_000, "rounds": 3, "tickers": 50, "bars": 20_000, "onoff_bars": 4000, "onoff_pairs": 5,
            "exit_batches": 2000, "ready": 5}


def _child_replay(n_tickers: int, n_bars: int, journal: bool) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-m", "bench.replay", str(n_tickers), str(n_bars), "1" if journal else "0"],
                         cwd=ROOT, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"bench.replay failed ({out.returncode}): {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure() -> dict[str, Any]:
    size = sizes()
    figures: dict[str, Any] = {"quick": quick(), "sizes": size}
    started = time.perf_counter()

    from bench.latency import latency_figures

    # signal -> order with the journal FULL beside the bare commit (same directory, interleaved), the decision
    # alone without a journal, journal off; each configuration size["signals"] // 4 signals
    lat = run(lambda: latency_figures(max(200, size["signals"] // 4)))
    figures.update(lat)
    figures["signals_measured"] = lat["signals"]
    _progress("signal -> order", started)

    big = _child_replay(size["tickers"], size["bars"], journal=True)
    figures.update({
        "replay_bars": big["bars"], "replay_bars_per_s": big["bars_per_s"],
        "replay_median_chunk_bars_per_s": big["median_chunk_bars_per_s"],
        "replay_floor_bars_per_s": big["median_floor_bars_per_s"],
        "replay_floor_ratio": big["median_chunk_bars_per_s"] / big["median_floor_bars_per_s"],
        "replay_entries": big["entries"], "replay_exits": big["exits"], "rss_samples_mb": big["rss_mb"],
        **rss_verdict(big["rss_mb"]),
    })
    _progress("replay + RSS", started)

    on: list[float] = []
    off: list[float] = []
    for pair in range(size["onoff_pairs"]):
        for journal in (True, False) if pair % 2 == 0 else (False, True):  # alternate: no order bias
            (on if journal else off).append(
                _child_replay(size["tickers"], size["onoff_bars"], journal=journal)["bars_per_s"])
    figures.update({"replay_journal_on_bars_per_s": median(on), "replay_journal_off_bars_per_s": median(off),
                    "journal_on_off_ratio": median(on) / median(off)})
    _progress("journal on/off", started)

    from bench.exits import exit_scaling

    figures.update(run(lambda: exit_scaling(size["exit_batches"], 3)))
    _progress("exit loop", started)

    from bench.ready import ready_figures

    figures.update(ready_figures(size["ready"]))
    _progress("READY=1", started)

    from bench.status import status_figures

    figures.update(status_figures(size["ready"] + 2))
    _progress("ordergate status", started)
    if os.environ.get("BENCH_SKIP_FILE", "") in ("", "0"):
        from bench.replay_file import replay_figures

        figures.update(replay_figures(lambda step: _progress(step, started)))
    figures["bench_seconds"] = time.perf_counter() - started
    figures["targets"] = {k: holds(figures[k], op, limit) for k, (op, limit) in TARGETS.items()}
    figures["targets"]["rss_flat_second_half"] = not figures["rss_grows_in_second_half"]
    if "peer_backtesting" in figures:
        from bench.replay_file import TARGETS as FILE_TARGETS

        for key, (op, limit) in FILE_TARGETS.items():
            value = figures.get(key)
            figures["targets"][key] = None if value is None else holds(value, op, limit)
    return figures


def _progress(step: str, started: float) -> None:
    print(f"  .. {step} done ({time.perf_counter() - started:.0f} s)", file=sys.stderr, flush=True)


def table(f: dict[str, Any]) -> str:
    t = f["targets"]

    def ok(key: str) -> str:
        return "holds" if t[key] else "MISSED"

    rows = [
        *latency_rows(f, ok, first="1 ", rest="  "),
        ("2 replay throughput", f"{f['replay_median_chunk_bars_per_s']:,.0f} bars/s",
         f"{f['replay_floor_bars_per_s']:,.0f} bars/s EMA loop", f"{f['replay_floor_ratio']:.4f}x", ">= 0.15x",
         ok("replay_floor_ratio")),
        ("3 exit loop per bar", f"{f['exit_us_per_bar_10000']:.3f} µs @10k", f"{f['exit_us_per_bar_10']:.3f} µs @10",
         f"{f['exit_scaling_ratio']:.2f}x", "<= 1.2x", ok("exit_scaling_ratio")),
        ("4 replay journal on/off", f"{f['replay_journal_on_bars_per_s']:,.0f} bars/s",
         f"{f['replay_journal_off_bars_per_s']:,.0f} bars/s off", f"{f['journal_on_off_ratio']:.2f}x", ">= 0.8x",
         ok("journal_on_off_ratio")),
        ("5 peak RSS", f"{f['peak_rss_mb']:.0f} MB", f"{f['rss_mid_mb']:.0f} MB 1st half",
         f"{f['rss_second_half_growth_mb']:+.1f} MB 2nd half", "<= 200 MB, flat",
         "holds" if t["peak_rss_mb"] and t["rss_flat_second_half"] else "MISSED"),
        ("6 start to READY=1", f"{f['ready_s']:.2f} s", f"{f['python_startup_s']:.3f} s bare python", "",
         "<= 1.5 s", ok("ready_s")),
        ("7 ordergate status", f"{f['status_s']:.3f} s", f"{f['status_python_startup_s']:.3f} s bare python",
         f"{f.get('import_daemon_cli_s', 0):.3f} s imports", "<= 0.3 s", ok("status_s")),
    ]
    if "peer_backtesting" in f:
        from bench.replay_file import rows as file_rows

        rows.extend(file_rows(f))
    lines = render_table(rows)
    mode = "quick sizes" if f["quick"] else "full sizes"
    lines.append(f"({mode}: {f['signals_measured']:.0f} signals, {f['replay_bars']:,} bars replayed with "
                 f"{f['replay_entries']} entries / {f['replay_exits']} exits; {f['bench_seconds']:.0f} s)")
    return "\n".join(lines)


def main() -> int:
    quiet_logging()
    figures = measure()
    print(table(figures))
    path = os.environ.get("BENCH_JSON")
    if path:
        Path(path).write_text(json.dumps(figures, indent=2, sort_keys=True, default=str) + "\n")
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
