"""Issue 17's replay figures on a real CSV file, each beside its floor measured in the same run.

- whole pipeline: `daemon.replay.replay` (what `ordergate replay FILE` runs: feed, strategy, decisions, paper
  broker, exits, journal) on 50 tickers x 20 000 one-minute bars, vs backtesting.py 0.6.6's EMA cross on the
  same file (installed by the bench into .bench-venv from the package index; skipped with a note if not);
- strategy off: the same replay with `strategy.enabled=false` (feed, clouds, marks, exits, journal) vs a
  pure-Python loop of the same 6 EMAs over the file's closes;
- the CSV read alone (the feed's batches, nothing else);
- RSS growth in the second half of a replay, on 1 ticker x 1 000 000 bars and on 50 x 20 000;
- journal on / off in replay (alternating pairs on a smaller file).

Each replay runs in a child process (`python -m bench.replay_file MODE FILE ...`, one JSON line), so its RSS
samples are its own; the files are written (seeded synthetic bars) into a temporary directory, untimed.
`python -m bench.replay_file figures` runs these figures alone (BENCH_QUICK=1 and BENCH_JSON=path as for the
whole bench); the whole-pipeline row carries the run's trade count and a digest of its trades.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import holds, median, quick, rss_mb

ROOT = Path(__file__).resolve().parents[1]
PEER_VENV = ROOT / ".bench-venv"
PEER_PACKAGE = "backtesting==0.6.6"
SPANS = (5, 12, 8, 9, 34, 50)
RSS_LIMIT_MB = 2.0


def write_file(path: Path, n_tickers: int, n_bars: int) -> Path:
    """Seeded synthetic one-minute bars as a replay CSV; a long file starts early enough for the calendar (a
    million bars of one ticker are ten years of sessions)."""
    from datetime import date

    from adapters.synthetic import write_csv

    start = date(2012, 1, 3) if n_bars > 150_000 else None
    write_csv(path, [f"B{i:03d}" for i in range(n_tickers)], seed=11, n_bars=n_bars, start=start)
    return path


# ------------------------------------------------------------------ child modes
def replay_child(path: Path, journal: bool, strategy: bool) -> dict[str, Any]:
    """`ordergate replay`'s own function on the file; RSS sampled every progress step (200 time steps)."""
    import logging

    import adapters.replay_columns  # noqa: F401  (imports are not the replay's time)
    import daemon.core  # noqa: F401
    from config.settings import load_settings
    from daemon.logging import configure_logging
    from daemon.replay import replay, run_on_loop

    configure_logging("ERROR", "json", stream=open(os.devnull, "w"))
    logging.getLogger().setLevel(logging.ERROR)
    samples: list[float] = []

    def progress(*_: Any) -> None:
        samples.append(rss_mb())

    with tempfile.TemporaryDirectory(prefix="ordergate-bench-") as tmp:
        settings = load_settings(state_dir=Path(tmp), journal={"enabled": journal},
                                 strategy={"enabled": strategy})
        samples.append(rss_mb())
        started, cpu = time.perf_counter(), time.process_time()
        result = run_on_loop(replay(settings, path, progress=progress))
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    # samples are taken while bars flow (every 200 steps), not after: the result (every trade, the curves) is
    # built at the end and is not the hot path's memory
    half = len(samples) // 2
    return {"bars": result["bars"], "seconds": seconds, "bars_per_s": result["bars"] / seconds,
            "cpu_bars_per_s": result["bars"] / cpu, "signals": result["signals"], "entries": result["entries"],
            "exits": result["exits"],
            "orders": result["entries"] + result["exits"], "trades": len(result["trades"]),
            "trades_hash": trades_hash(result["trades"]),
            "rss_first_half_mb": max(samples[:half] or samples), "rss_peak_mb": max(samples),
            "rss_second_half_growth_mb": max(samples[half:]) - max(samples[:half] or samples)}


def trades_hash(trades: list[dict[str, Any]]) -> str:
    """A short digest of every trade of a run (ticker, times, prices, quantity, P&L, exit type, strategy): two
    runs that made the same trades have the same digest, so a speed change that changes a trade shows."""
    import hashlib

    return hashlib.sha256(json.dumps(trades, sort_keys=True).encode()).hexdigest()[:16]


def read_child(path: Path) -> dict[str, Any]:
    """The feed alone: every batch of the file, nothing done with it."""
    import adapters.replay_columns  # noqa: F401  (imports are not the read's time)
    from adapters.replay import ReplayFeed

    started, cpu = time.perf_counter(), time.process_time()
    feed = ReplayFeed(path, None)
    bars = 0
    for batch in feed._get_reader().batches():
        bars += len(batch)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    return {"bars": bars, "seconds": seconds, "bars_per_s": bars / seconds, "cpu_bars_per_s": bars / cpu}


def ema_floor_child(path: Path) -> dict[str, Any]:
    """A pure-Python loop updating the strategy's 6 EMAs (its own EMA class) per bar of the file's closes."""
    import csv

    from pipeline.strategy.indicators import EMA

    with path.open(newline="", encoding="utf-8") as fh:
        rows = [(r[1], float(r[5])) for r in csv.reader(fh) if r and r[0] != "timestamp"]
    emas: dict[str, list[EMA]] = {}
    started, cpu = time.perf_counter(), time.process_time()
    for symbol, close in rows:
        row = emas.get(symbol)
        if row is None:
            row = emas[symbol] = [EMA(s) for s in SPANS]
        for ema in row:
            ema.update(close)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    return {"bars": len(rows), "seconds": seconds, "bars_per_s": len(rows) / seconds,
            "cpu_bars_per_s": len(rows) / cpu}


# ------------------------------------------------------------------ the parent
def _child(*args: str) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-m", "bench.replay_file", *args], cwd=ROOT, capture_output=True,
                         text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"bench.replay_file {' '.join(args)} failed ({out.returncode}): {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def peer_python() -> tuple[Path | None, str]:
    """backtesting.py's venv, created and installed from the package index if missing; (None, why) if not."""
    python = PEER_VENV / "bin" / "python"
    check = [str(python), "-c", "import backtesting, sys; sys.exit(backtesting.__version__ != '0.6.6')"]
    if python.exists() and subprocess.run(check, capture_output=True, check=False).returncode == 0:
        return python, "installed"
    try:
        subprocess.run([sys.executable, "-m", "venv", str(PEER_VENV)], check=True, capture_output=True, timeout=300)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", PEER_PACKAGE],
                       check=True, capture_output=True, timeout=900)
    except (OSError, subprocess.SubprocessError) as exc:
        detail = getattr(exc, "stderr", b"") or b""
        return None, f"{PEER_PACKAGE} could not be installed into {PEER_VENV.name}: {exc} {detail[-300:]!r}"
    if subprocess.run(check, capture_output=True, check=False).returncode != 0:
        return None, f"{PEER_PACKAGE} installed but does not import"
    return python, "installed now"


def peer(path: Path) -> dict[str, Any]:
    python, note = peer_python()
    if python is None:
        return {"skipped": note}
    out = subprocess.run([str(python), str(ROOT / "bench" / "peer_backtesting.py"), str(path)], capture_output=True,
                         text=True, check=False)
    if out.returncode != 0:
        return {"skipped": f"backtesting.py failed ({out.returncode}): {out.stderr[-300:]}"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def sizes() -> dict[str, int]:
    if quick():
        return {"tickers": 50, "bars": 2000, "one_bars": 50_000, "onoff_bars": 1000, "onoff_pairs": 1}
    return {"tickers": 50, "bars": 20_000, "one_bars": 1_000_000, "onoff_bars": 4000, "onoff_pairs": 3}


def replay_figures(progress: Any = None) -> dict[str, Any]:
    """Every replay figure of issue 17 with its floor (see the module docstring)."""
    size = sizes()
    note = progress or (lambda step: None)
    out: dict[str, Any] = {"replay_file_sizes": size}
    with tempfile.TemporaryDirectory(prefix="ordergate-bench-files-") as tmp:
        big = write_file(Path(tmp) / "b50.csv", size["tickers"], size["bars"])
        whole = _child("replay", str(big), "1", "1")
        bt = peer(big)
        out.update({
            "file_whole_bars": whole["bars"], "file_whole_bars_per_s": whole["bars_per_s"],
            "file_whole_orders": whole["orders"], "file_whole_trades": whole["trades"],
            "file_whole_signals": whole["signals"], "file_whole_trades_hash": whole["trades_hash"],
            "rss_50_second_half_growth_mb": whole["rss_second_half_growth_mb"],
            "rss_50_peak_mb": whole["rss_peak_mb"],
            "peer_backtesting": bt,
            "file_whole_vs_backtesting": (whole["bars_per_s"] / bt["bars_per_s"]) if "bars_per_s" in bt else None,
            # per CPU second (all threads of the process): what the code costs, whatever else shares the machine
            "file_whole_cpu_bars_per_s": whole["cpu_bars_per_s"],
            "file_whole_vs_backtesting_cpu": (whole["cpu_bars_per_s"] / bt["cpu_bars_per_s"])
            if "cpu_bars_per_s" in bt else None,
        })
        note("replay file, whole pipeline + backtesting.py")
        off = _child("replay", str(big), "1", "0")
        floor = _child("emafloor", str(big))
        out.update({"file_strategy_off_bars_per_s": off["bars_per_s"], "file_ema_loop_bars_per_s": floor["bars_per_s"],
                    "file_strategy_off_vs_ema_loop": off["bars_per_s"] / floor["bars_per_s"],
                    "file_strategy_off_cpu_bars_per_s": off["cpu_bars_per_s"],
                    "file_ema_loop_cpu_bars_per_s": floor["cpu_bars_per_s"]})
        read = _child("read", str(big))
        out["file_read_bars_per_s"] = read["bars_per_s"]
        out["file_read_cpu_bars_per_s"] = read["cpu_bars_per_s"]
        note("replay file, strategy off + EMA loop + CSV read")
        big.unlink()
        one = write_file(Path(tmp) / "b1.csv", 1, size["one_bars"])
        single = _child("replay", str(one), "1", "1")
        out.update({"rss_1_second_half_growth_mb": single["rss_second_half_growth_mb"],
                    "rss_1_peak_mb": single["rss_peak_mb"], "file_one_bars_per_s": single["bars_per_s"],
                    "file_one_orders": single["orders"], "file_one_bars": single["bars"]})
        note("replay file, 1 ticker RSS")
        one.unlink()
        small = write_file(Path(tmp) / "onoff.csv", size["tickers"], size["onoff_bars"])
        on: list[float] = []
        off_j: list[float] = []
        hashes: set[str] = set()  # the journal off keeps its trades in memory: both must report the same trades
        for pair in range(size["onoff_pairs"]):
            for journal in (True, False) if pair % 2 == 0 else (False, True):
                result = _child("replay", str(small), "1" if journal else "0", "1")
                (on if journal else off_j).append(result["bars_per_s"])
                hashes.add(result["trades_hash"])
        out.update({"file_journal_on_bars_per_s": median(on), "file_journal_off_bars_per_s": median(off_j),
                    "file_journal_on_off_ratio": median(on) / median(off_j),
                    "file_journal_on_off_same_trades": len(hashes) == 1})
        note("replay file, journal on/off")
    return out


TARGETS = {
    "file_whole_vs_backtesting": (">=", 1.5),
    "file_strategy_off_bars_per_s": (">=", 400_000.0),
    "rss_1_second_half_growth_mb": ("<=", RSS_LIMIT_MB),
    "rss_50_second_half_growth_mb": ("<=", RSS_LIMIT_MB),
    "file_journal_on_off_ratio": (">=", 0.8),
}


def rows(f: dict[str, Any]) -> list[tuple[str, str, str, str, str, str]]:
    """The table rows of these figures: (figure, measured, floor, ratio, target, verdict)."""
    def verdict(key: str) -> str:
        op, limit = TARGETS[key]
        value = f.get(key)
        if value is None:
            return "skipped"
        return "holds" if holds(value, op, limit) else "MISSED"

    bt = f["peer_backtesting"]
    peer_text = (f"{bt['bars_per_s']:,.0f} bars/s backtesting.py, {bt['orders']} orders" if "bars_per_s" in bt
                 else f"skipped: {bt['skipped'][:80]}")
    ratio = f"{f['file_whole_vs_backtesting']:.2f}x" if f["file_whole_vs_backtesting"] is not None else ""
    return [
        ("8 replay file 50x20k whole", f"{f['file_whole_bars_per_s']:,.0f} bars/s, {f['file_whole_orders']} orders"
         f" ({f['file_whole_trades']} trades, hash {f['file_whole_trades_hash']})",
         peer_text, ratio, ">= 1.5x", verdict("file_whole_vs_backtesting")),
        ("9 replay file, strategy off", f"{f['file_strategy_off_bars_per_s']:,.0f} bars/s",
         f"{f['file_ema_loop_bars_per_s']:,.0f} bars/s 6-EMA loop", f"{f['file_strategy_off_vs_ema_loop']:.2f}x",
         ">= 400k bars/s", verdict("file_strategy_off_bars_per_s")),
        ("   the same per CPU second", f"{f['file_whole_cpu_bars_per_s']:,.0f} bars/s",
         f"{bt['cpu_bars_per_s']:,.0f} bars/s" if "cpu_bars_per_s" in bt else "",
         f"{f['file_whole_vs_backtesting_cpu']:.2f}x" if f.get("file_whole_vs_backtesting_cpu") else "", "", ""),
        ("   strategy off per CPU second", f"{f['file_strategy_off_cpu_bars_per_s']:,.0f} bars/s",
         f"{f['file_ema_loop_cpu_bars_per_s']:,.0f} bars/s 6-EMA loop", "", "", ""),
        ("10 CSV read alone", f"{f['file_read_bars_per_s']:,.0f} bars/s",
         f"{f['file_read_cpu_bars_per_s']:,.0f} bars/s per CPU second", "", "", ""),
        ("11 RSS 2nd half, 1x1M", f"{f['rss_1_second_half_growth_mb']:+.1f} MB",
         f"{f['rss_1_peak_mb']:.0f} MB peak", f"{f['file_one_bars_per_s']:,.0f} bars/s, {f['file_one_orders']} orders",
         "<= 2 MB", verdict("rss_1_second_half_growth_mb")),
        ("   RSS 2nd half, 50x20k", f"{f['rss_50_second_half_growth_mb']:+.1f} MB",
         f"{f['rss_50_peak_mb']:.0f} MB peak", "", "<= 2 MB", verdict("rss_50_second_half_growth_mb")),
        ("12 replay file journal on/off", f"{f['file_journal_on_bars_per_s']:,.0f} bars/s",
         f"{f['file_journal_off_bars_per_s']:,.0f} bars/s off, "
         f"{'same trades' if f.get('file_journal_on_off_same_trades') else 'TRADES DIFFER'}",
         f"{f['file_journal_on_off_ratio']:.2f}x", ">= 0.8x",
         verdict("file_journal_on_off_ratio")),
    ]


def main(argv: list[str]) -> None:
    if argv == ["figures"]:  # `python -m bench.replay_file figures`: these figures alone, as a table
        from bench.common import render_table

        figures = replay_figures(lambda step: print(f"  .. {step}", file=sys.stderr, flush=True))
        print("\n".join(render_table(rows(figures))))
        path = os.environ.get("BENCH_JSON")
        if path:
            Path(path).write_text(json.dumps(figures, indent=2, sort_keys=True, default=str) + "\n")
        return
    mode, path = argv[0], Path(argv[1])
    if mode == "replay":
        result = replay_child(path, argv[2] != "0", argv[3] != "0")
    elif mode == "read":
        result = read_child(path)
    elif mode == "emafloor":
        result = ema_floor_child(path)
    else:
        raise SystemExit(f"bench.replay_file: unknown mode {mode!r} (replay, read, emafloor)")
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1:])
