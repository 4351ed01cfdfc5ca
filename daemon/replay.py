"""`ordergate replay FILE.csv`: the whole pipeline (entries, exits, journal) on simulated time, at full speed.

Prints the trade summaries per day (intraday bars) or per month (daily bars) and a total. The same file gives
the same output every time: simulated clock, seeded nothing, a fresh paper broker and journal per run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from config.settings import Settings
from pipeline.clock import SimulatedClock

EXIT_OK, EXIT_FAIL, EXIT_CONFIG = 0, 1, 2
EMBEDDED = "embedded"  # `ordergate replay embedded`: the synthetic data `make run` trades


def replay_settings(settings: Settings, timeframe: str, state_dir: Path) -> Settings:
    """The settings of a replay: paper broker only, fresh state, strategy on the file's timeframe."""
    strategy_tf = settings.strategy.timeframes if timeframe in ("1m",) else [timeframe]
    return settings.model_copy(update={
        "state_dir": state_dir,
        "broker": settings.broker.model_copy(update={"primary": "paper", "fallback": None}),
        "paper": settings.paper.model_copy(update={"persistent": False}),
        "strategy": settings.strategy.model_copy(update={"timeframes": strategy_tf}),
        "journal": settings.journal.model_copy(update={"synchronous": "NORMAL"}),
    })


async def replay(settings: Settings, path: Path, timeframe: str | None = None,
                 state_dir: Path | None = None) -> dict[str, Any]:
    """Run the file through a fresh Core; returns the summaries (and problems found in the file)."""
    from adapters.replay import ReplayFeed
    from daemon.app import Core
    from pipeline.trade_journal import summarize, summarize_by

    clock = SimulatedClock()
    feed = ReplayFeed(path, clock, timeframe=timeframe, pace_bars_per_s=0)
    tf = feed.timeframe
    with tempfile.TemporaryDirectory(prefix="ordergate-replay-") as tmp:
        run_settings = replay_settings(settings, tf, Path(state_dir or tmp))
        run_settings = Settings.model_validate(run_settings.model_dump())
        core = Core(run_settings, clock)
        # the kill switch of a replay starts clean: it is not the live daemon's
        core.kill_switch.deactivate(source="replay")
        await core.start()
        engine = core.engine
        try:
            async for batch in feed.batches():
                await engine.on_batch(batch)
            await core.settle()
            trades = await core.trades.all_trades() if core.trades is not None else []
            open_positions = core.positions()
        finally:
            await core.stop()
    period = "month" if tf == "1d" else "day"
    return {
        "file": str(path),
        "timeframe": tf,
        "bars": engine.bars,
        "signals": engine.signals,
        "entries": engine.entries,
        "exits": engine.exits,
        "open_positions": len(open_positions),
        "problems": [{"line": p.line, "reason": p.reason} for p in feed.problems],
        "period": period,
        "periods": summarize_by(trades, period),
        "total": summarize(trades),
    }


def embedded_csv(settings: Settings, directory: Path) -> Path:
    """The embedded synthetic data (the tickers, seed and days of settings.data) as a replay CSV."""
    from adapters.synthetic import write_csv

    path = directory / "embedded.csv"
    write_csv(path, settings.data.tickers, seed=settings.data.synthetic_seed, days=settings.data.synthetic_days)
    return path


def run_replay(args: argparse.Namespace, settings: Settings) -> int:
    path: Path = args.file
    if str(path) == EMBEDDED and not path.exists():
        with tempfile.TemporaryDirectory(prefix="ordergate-embedded-") as tmp:
            args.file = embedded_csv(settings, Path(tmp))
            args.label = EMBEDDED
            return run_replay(args, settings)
    if not path.is_file():
        print(f"ordergate replay: {path}: no such file", file=sys.stderr)
        return EXIT_CONFIG
    import logging

    from daemon.logging import configure_logging

    configure_logging("ERROR", "json" if args.json else "auto", stream=sys.stderr)
    logging.getLogger().setLevel(logging.ERROR)
    try:
        result = asyncio.run(replay(settings, path, args.timeframe))
    except ValueError as exc:
        print(f"ordergate replay: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    result["file"] = getattr(args, "label", None) or str(path)
    if args.json:
        print(json.dumps(result, default=str, sort_keys=True))
        return EXIT_OK
    _print_human(result)
    return EXIT_OK


def _print_human(result: dict[str, Any]) -> None:
    print(f"replay {result['file']}: {result['bars']} bars ({result['timeframe']}), {result['signals']} signals, "
          f"{result['entries']} entries, {result['exits']} exits, {result['open_positions']} still open")
    for problem in result["problems"][:20]:
        print(f"  line {problem['line']}: {problem['reason']}")
    if len(result["problems"]) > 20:
        print(f"  ... {len(result['problems']) - 20} more bad rows")
    header = f"{result['period']:<10} {'trades':>6} {'wins':>5} {'losses':>6} {'win%':>6} {'gross P&L':>12} " \
             f"{'avg R':>6} {'max DD':>10}"
    print(header)
    rows = [*result["periods"].items(), ("total", result["total"])]
    for label, s in rows:
        print(f"{label:<10} {s['trades']:>6} {s['wins']:>5} {s['losses']:>6} {s['win_rate'] * 100:>5.1f}% "
              f"{s['gross_pnl']:>12,.2f} {s['avg_r']:>6.2f} {s['max_drawdown']:>10,.2f}")
    by_exit = result["total"].get("by_exit_type") or {}
    if by_exit:
        print("exits: " + ", ".join(f"{k} {v['trades']}" for k, v in sorted(by_exit.items())))
