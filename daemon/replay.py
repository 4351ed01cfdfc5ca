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
from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any

from config.settings import Settings
from daemon import heap
from pipeline.core.batch import BarBatch
from pipeline.core.clock import SimulatedClock
from pipeline.record.rejections import RejectionKinds

EXIT_OK, EXIT_FAIL, EXIT_CONFIG = 0, 1, 2
EMBEDDED = "embedded"  # `ordergate replay embedded`: the synthetic data `make run` trades
PROGRESS_EVERY = 200   # time steps between progress lines on a TTY
TOP_REASONS = 8


def replay_settings(settings: Settings, timeframe: str, state_dir: Path) -> Settings:
    """The settings of a replay: paper broker only, fresh state, strategy on the file's timeframe. The backtest
    judges the daemon's own exits: no protective stops at the (simulated) broker unless the replay's own
    settings ask for them (`ordergate replay` with ORDERGATE_EXITS__BROKER_STOP=true)."""
    strategy_tf = settings.strategy.timeframes if timeframe in ("1m",) else [timeframe]
    strategies = settings.strategies if timeframe in ("1m",) else tuple(
        spec.model_copy(update={"timeframes": [timeframe]}) for spec in settings.strategies)
    exits = settings.exits if "broker_stop" in settings.exits.model_fields_set else \
        settings.exits.model_copy(update={"broker_stop": False})
    return settings.model_copy(update={
        "exits": exits,
        "state_dir": state_dir,
        "broker": settings.broker.model_copy(update={"primary": "paper", "fallback": None}),
        "paper": settings.paper.model_copy(update={"persistent": False}),
        "strategy": settings.strategy.model_copy(update={"timeframes": strategy_tf}),
        "strategies": strategies,
        "journal": settings.journal.model_copy(update={"synchronous": "NORMAL", "durability": "batched"}),
    })


async def replay(settings: Settings, path: Path | list[Path], timeframe: str | None = None,
                 state_dir: Path | None = None, symbols: list[str] | None = None,
                 progress: Callable[[datetime, int, int, int], None] | None = None,
                 keep_closes: bool = False) -> dict[str, Any]:
    """Run the files through a fresh Core; returns the summaries, where the signals went, the performance
    against buy-and-hold, and the problems found in the files."""
    from adapters.replay import ReplayFeed
    from daemon.core import Core
    from pipeline.record.performance import EquityRecorder, buy_and_hold, performance
    from pipeline.record.strategy_summary import strategy_summaries
    from pipeline.record.trade_journal import summarize, summarize_by

    paths = path if isinstance(path, list) else [path]
    clock = SimulatedClock()
    feed = ReplayFeed(paths, clock, timeframe=timeframe, pace_bars_per_s=0, symbols=symbols)
    tf = feed.timeframe
    recorder = EquityRecorder(keep_closes=keep_closes)
    with tempfile.TemporaryDirectory(prefix="ordergate-replay-") as tmp:
        run_settings = replay_settings(settings, tf, Path(state_dir or tmp))
        run_settings = Settings.model_validate(run_settings.model_dump())
        core = Core(run_settings, clock, replay=True)
        # the kill switch of a replay starts clean: it is not the live daemon's
        core.kill_switch.deactivate(source="replay")
        await core.start()
        engine = core.engine
        initial = core.ledger.equity()
        try:
            with heap.start_up_frozen():  # the daemon's collector settings for the run (daemon.heap)
                async for batch in feed.batches():
                    await engine.on_batch(batch)
                    now = clock.now()
                    if isinstance(batch, BarBatch):
                        recorder.record_step(now, core.ledger.equity(), bool(core.ledger.holdings), batch.symbols,
                                             batch.closes())
                    else:
                        recorder.record(now, core.ledger.equity(), bool(core.ledger.holdings),
                                        {b.symbol: b.close for b in batch})
                    if progress is not None and engine.batches % PROGRESS_EVERY == 0:
                        progress(now, engine.bars, engine.signals, engine.entries)
                await core.settle()
                trades = await core.trades.all_trades() if core.trades is not None else []
                open_positions = core.positions()
                by_strategy = strategy_summaries(trades, core.ledger.positions(), initial,
                                                 [spec.name for spec in run_settings.effective_strategies()])
                rejections = await _top_rejections(core)
                stages = await core.journal.decision_counts() if core.orchestrator.recorder.journal is not None \
                    else stage_counts(core.orchestrator.counts)
        finally:
            await core.stop()
    period = "month" if tf == "1d" else "day"
    closes = {s: [(d.isoformat(), c) for d, c in sorted(days.items())] for s, days in recorder.closes.items()}
    return {
        **({"closes": closes} if keep_closes else {}),
        "file": ", ".join(str(p) for p in paths),
        "files": [asdict(f) for f in feed.formats()],
        "timeframe": tf,
        "bars": engine.bars,
        "signals": engine.signals,
        "entries": engine.entries,
        "exits": engine.exits,
        "open_positions": len(open_positions),
        "problems": [{"file": p.file, "line": p.line, "reason": p.reason} for p in feed.problems],
        "stages": stages,  # where each signal's decision record ended (the journal's, else the counters)
        "top_rejections": rejections,
        "performance": performance(recorder.curve(), initial, recorder.exposure),
        "buy_and_hold": buy_and_hold(recorder, initial),
        "equity_curve": [(d.isoformat(), round(v, 2)) for d, v in recorder.curve()],
        "buy_and_hold_curve": [(d.isoformat(), round(v, 2)) for d, v in recorder.hold_curve(initial)],
        "period": period,
        "periods": summarize_by(trades, period),
        "total": summarize(trades),
        "strategies": by_strategy["strategies"],
        "account": by_strategy["account"],
        "trades": [_trade(t) for t in trades],
    }


def _trade(t: Any) -> dict[str, Any]:
    return {"ticker": t.ticker, "symbol": t.symbol, "direction": t.direction, "entry_time": t.entry_time.isoformat(),
            "exit_time": t.exit_time.isoformat(), "entry_price": t.entry_price, "exit_price": t.exit_price,
            "quantity": t.quantity, "pnl": round(t.pnl, 2), "exit_type": t.exit_type, "strategy": t.strategy}


async def _top_rejections(core: Any) -> list[dict[str, Any]]:
    """The run's most frequent kinds of rejection: from the signal recorder's tally where it journals no decision
    records (no journal), else from every rejected decision in the journal (flushed first)."""
    tally = core.orchestrator.recorder.rejections
    if tally is not None:
        return tally.top(TOP_REASONS)
    rows = await core.journal.query("SELECT stage, reason, detail FROM decisions WHERE outcome = 'rejected' "
                                    "ORDER BY id")
    return top_rejections(rows)


def stage_counts(counts: dict[str, int]) -> dict[str, dict[str, int]]:
    """The orchestrator's 'stage:outcome' counters as {stage: {outcome: n}}: where each signal ended, named as
    the decision records name it (an approved signal ended at its intent)."""
    from pipeline.orchestrator import APPROVED_KEY
    from pipeline.record.decision import APPROVED, INTENT_STAGE

    stages: dict[str, dict[str, int]] = {}
    for key, n in sorted(counts.items()):
        stage, _, outcome = (INTENT_STAGE, "", APPROVED) if key == APPROVED_KEY else key.partition(":")
        stages.setdefault(stage, {})[outcome] = n
    return stages


def top_rejections(rows: list[dict[str, Any]], limit: int = TOP_REASONS) -> list[dict[str, Any]]:
    """The most frequent kinds of rejection: (stage, the reason's leading name such as 'var' or 'freshness'),
    with a count and the first full reason as an example."""
    kinds = RejectionKinds(limit=None)
    for row in rows:
        kinds.add(str(row.get("stage")), str(row.get("reason") or ""))
    return kinds.top(limit)


def embedded_csv(settings: Settings, directory: Path) -> Path:
    """The embedded synthetic data (the tickers, seed and days of settings.data) as a replay CSV."""
    from adapters.synthetic import write_csv

    path = directory / "embedded.csv"
    write_csv(path, settings.data.tickers, seed=settings.data.synthetic_seed, days=settings.data.synthetic_days)
    return path


def run_on_loop(main: Any) -> Any:
    """Run a coroutine on the daemon's own event loop (uvloop; plain asyncio where it is missing)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return asyncio.run(main)
    return uvloop.run(main)


def run_replay(args: argparse.Namespace, settings: Settings) -> int:
    paths: list[Path] = list(args.file) if isinstance(args.file, list) else [args.file]
    if len(paths) == 1 and str(paths[0]) == EMBEDDED and not paths[0].exists():
        with tempfile.TemporaryDirectory(prefix="ordergate-embedded-") as tmp:
            args.file = [embedded_csv(settings, Path(tmp))]
            args.label = EMBEDDED
            return run_replay(args, settings)
    for path in paths:
        if not path.is_file():
            print(f"ordergate replay: {path}: no such file", file=sys.stderr)
            return EXIT_CONFIG
    report: Path | None = getattr(args, "report", None)
    if report is not None and (report.suffix.lower() not in (".html", ".htm") or not report.parent.is_dir()):
        print(f"ordergate replay: --report {report}: must be an .html file in an existing directory", file=sys.stderr)
        return EXIT_CONFIG
    import logging

    from daemon.logging import configure_logging
    from daemon.replay_summary import print_human, tty_progress

    configure_logging("ERROR", "json" if args.json else "auto", stream=sys.stderr)
    logging.getLogger().setLevel(logging.ERROR)
    progress = tty_progress(sys.stderr) if sys.stderr.isatty() and not args.json else None
    try:
        result = run_on_loop(replay(settings, paths, args.timeframe, symbols=getattr(args, "symbol", None),
                                    progress=progress, keep_closes=report is not None))
    except ValueError as exc:
        print(f"ordergate replay: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    finally:
        if progress is not None:
            print(file=sys.stderr)
    result["file"] = getattr(args, "label", None) or ", ".join(str(p) for p in paths)
    if report is not None:
        from daemon.replay_report import write_report

        write_report(result, report)
        result.pop("closes", None)
        result["report"] = str(report)
    if args.json:
        print(json.dumps(result, default=str, sort_keys=True))
        return EXIT_OK
    print_human(result)
    return EXIT_OK
