"""The chaos suite: `python -m tests.chaos --crashes N` (`make chaos CRASHES=200`).

- crash points: the real daemon (`ordergate run` as a subprocess: persistent paper broker, journal FULL, durable
  state, strategy signals and webhook signals at once) is ended at a random moment (SIGKILL, now and then SIGTERM)
  and restarted, N times, with the kill switch flipped by the CLI between some runs; the broker's book and the
  journal are compared both ways after restarts and at the end (tests/chaos_daemon.py; every counter is shown
  able to move by tests/chaos_breaks.py).
- broker faults: in-process mixes of `PaperFaults` (reply lost after accept, 5xx, 429 with retry-after, a
  dropped update stream during fills, fills delivered twice, updates out of order), each ending with exactly
  one broker order per intent and each fill applied once.
- bad input fuzz (hypothesis): signals, config values, replay CSV rows, a state file of random bytes.

It prints a scoreboard; any loss makes the exit status 1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SESSION = datetime(2026, 11, 24, 16, 0, tzinfo=UTC)  # 11:00 New York, a regular session

# ---------------------------------------------------------------------------------------------- scoreboard
@dataclass
class Scoreboard:
    """What the suite did and what it lost."""

    crash_points: int = 0
    fault_mixes: int = 0
    fuzz_cases: int = 0
    losses: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)

    def lose(self, what: str) -> None:
        self.losses.append(what)

    def render(self) -> str:
        lines = [
            "chaos scoreboard",
            f"  crash points survived : {self.crash_points}",
            f"  fault mixes passed    : {self.fault_mixes}",
            f"  fuzz cases tried      : {self.fuzz_cases}",
            f"  losses found          : {len(self.losses)}",
        ]
        if self.counters:
            run = self.details.get("crash_run", {})
            final = self.details.get("crash_verify", {})
            lines.append(f"  crash run             : {run.get('kills', 0)} SIGKILL, {run.get('sigterms', 0)} SIGTERM, "
                         f"{run.get('webhook_signals', 0)} webhook signals, {final.get('orders', 0)} broker orders, "
                         f"{final.get('fills', 0)} fills, {final.get('trades', 0)} trades, {run.get('seconds', 0)} s")
            lines += [f"    {name:<34}: {value}" for name, value in self.counters.items()]
        lines += [f"    - {loss}" for loss in self.losses]
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- crash points
def crash_points(n: int, state_dir: Path, board: Scoreboard, seed: int = 8, max_delay: float = 1.5) -> None:
    """The real daemon killed at n random moments and restarted (tests/chaos_daemon.py), then verified."""
    from tests.chaos_daemon import COUNTERS
    from tests.chaos_daemon import crash_points as run_crash_points

    run = run_crash_points(n, state_dir, seed=seed, max_delay=max_delay)
    board.crash_points += run.crash_points
    board.details["crash_verify"] = run.final
    board.details["crash_run"] = {"kills": run.kills, "sigterms": run.terms, "webhook_signals": run.webhook_signals,
                                  "seconds": round(run.seconds, 1)}
    board.counters = {k: run.final.get(k, 0) for k in COUNTERS}
    for loss in run.losses:
        board.lose(loss)


def _loop_runner() -> Any:
    try:
        import uvloop

        return uvloop.run
    except ImportError:  # pragma: no cover
        return asyncio.run


# ---------------------------------------------------------------------------------------------- broker faults
FAULT_MIXES: dict[str, dict[str, Any]] = {
    "reply_lost_after_accept": {"timeout_after_accept": 3},
    "5xx_transient": {"transient_failures": 3},
    "429_retry_after": {"rate_limited": 3},
    "dropped_update_stream": {"drop_updates": True},
    "fill_delivered_twice": {"duplicate_fill_delivery": 4},
    "updates_out_of_order": {"reorder_updates": 4},
    "everything_at_once": {"timeout_after_accept": 2, "transient_failures": 2, "rate_limited": 2,
                           "drop_updates": True, "duplicate_fill_delivery": 3, "reorder_updates": 3},
}
FAULT_STATS: dict[str, dict[str, int]] = {}
FAULT_TICKERS = ["CHA", "CHB", "CHC", "CHD", "CHE", "CHF"]


def _fault_settings(state_dir: Path) -> Any:
    from config.settings import load_settings

    return load_settings(
        state_dir=state_dir, broker={"primary": "paper", "fallback": None},
        paper={"persistent": True, "initial_cash": 1_000_000.0},
        journal={"enabled": True, "synchronous": "NORMAL"},
        pipeline={"retry_backoff_base": 0.001, "retry_backoff_max": 0.01, "enable_unified_risk": False},
        executor={"max_single_stock_exposure": 0.05},
    )


def _apply_faults(paper: Any, mix: dict[str, Any]) -> None:
    from pipeline.core.ports import RetryableBrokerError

    for name, value in mix.items():
        if name != "rate_limited":
            setattr(paper.faults, name, value)
    limited = int(mix.get("rate_limited", 0))
    if limited:
        original = paper.submit_order
        left = [limited]

        async def rate_limited(intent: Any) -> Any:
            if left[0] > 0:
                left[0] -= 1
                raise RetryableBrokerError("429 Too Many Requests", retry_after=0.005)
            return await original(intent)

        paper.submit_order = rate_limited


async def _settle_all(core: Any) -> None:
    paper = core.brokers["paper"]
    for _ in range(3):
        await core.settle()
        paper.redeliver()
        await paper.flush_events(30)
        await core.settle()


async def run_fault_mix(name: str, mix: dict[str, Any], state_dir: Path) -> list[str]:
    """Entries under the faults, then a flatten under them again; returns the losses (empty = passed)."""
    from daemon.core import Core
    from pipeline.core.clock import SimulatedClock
    from pipeline.core.models import TradeSignal

    core = Core(_fault_settings(state_dir), SimulatedClock(SESSION), replay=True)  # a throwaway state dir
    core.state.deactivate_kill_switch()
    await core.start()
    paper = core.brokers["paper"]
    losses: list[str] = []
    try:
        for ticker in FAULT_TICKERS:
            paper.set_price(ticker, 100.0)
        _apply_faults(paper, mix)
        approved = []
        for ticker in FAULT_TICKERS:
            signal = TradeSignal(signal_type="cloud_cross_bullish", direction="long", ticker=ticker, timeframe="5m",
                                 conviction=80, entry_price=100.0, stop_loss=98.0, timestamp=SESSION, source="chaos")
            result = await core.orchestrator.process_signal(signal)
            if result.success and result.intent is not None:
                approved.append(result.intent.client_order_id)
            elif not result.rejection_reason:
                losses.append(f"{name}: signal {ticker} rejected without a reason")
        await _settle_all(core)
        _apply_faults(paper, {k: v for k, v in mix.items() if k != "rate_limited"})
        await core.lifecycle.emergency_close_all("chaos flatten")
        await _settle_all(core)
        losses += await _fault_checks(name, core, approved)
        FAULT_STATS[name] = {"submissions": paper.submissions(), "orders": len(paper.all_orders()),
                             "fills": len(paper.all_fills()), "entries": len(approved)}
    finally:
        await core.stop()
    return losses


async def _fault_checks(name: str, core: Any, approved: list[str]) -> list[str]:
    paper = core.brokers["paper"]
    losses: list[str] = []
    orders = paper.all_orders()
    by_coid = Counter(o.client_order_id for o in orders)
    entries = [o for o in orders if o.client_order_id in set(approved)]
    if len(approved) != len(FAULT_TICKERS):
        losses.append(f"{name}: only {len(approved)} of {len(FAULT_TICKERS)} signals approved")
    if len(entries) != len(approved):
        losses.append(f"{name}: {len(entries)} broker orders for {len(approved)} entry intents")
    losses += [f"{name}: client order id {c} booked {n} times" for c, n in by_coid.items() if n > 1]
    unknown = [o.client_order_id for o in orders if o.client_order_id not in core.lifecycle.intents]
    if unknown:
        losses.append(f"{name}: broker orders no intent of the daemon explains: {unknown}")
    per_symbol_entries = Counter(o.symbol for o in entries)
    losses += [f"{name}: {s} has {n} entry orders" for s, n in per_symbol_entries.items() if n > 1]
    journal_fills = Counter(r["fill_id"] for r in await core.journal.query("SELECT fill_id FROM fills"))
    broker_fills = {f.fill_id for f in paper.all_fills()}
    if set(journal_fills) != broker_fills:
        losses.append(f"{name}: journal fills {sorted(journal_fills)} != broker fills {sorted(broker_fills)}")
    losses += [f"{name}: fill {f} journaled {n} times" for f, n in journal_fills.items() if n > 1]
    broker_pos = {p.symbol: round(p.quantity, 6) for p in paper.positions()}
    ledger_pos = {s: round(q, 6) for s, q in core.ledger.signed_quantities().items() if abs(q) > 1e-9}
    if broker_pos != ledger_pos:
        losses.append(f"{name}: positions differ: broker {broker_pos} ledger {ledger_pos}")
    if broker_pos:
        losses.append(f"{name}: flatten left positions at the broker: {broker_pos}")
    return losses


def fault_mixes(board: Scoreboard, names: list[str] | None = None) -> None:
    for name in names or list(FAULT_MIXES):
        with tempfile.TemporaryDirectory(prefix="ordergate-chaos-") as tmp:
            try:
                losses = _loop_runner()(run_fault_mix(name, FAULT_MIXES[name], Path(tmp) / "state"))
            except Exception as exc:  # the daemon's code raised: that is a finding, not a harness error
                losses = [f"{name}: crashed with {type(exc).__name__}: {exc}"]
        if losses:
            for loss in losses:
                board.lose(loss)
        else:
            board.fault_mixes += 1


# ---------------------------------------------------------------------------------------------- fuzz
def fuzz_signals(examples: int, board: Scoreboard) -> None:
    """Random signals through the orchestrator: never an exception, a reason for every rejection."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from daemon.core import Core
    from pipeline.core.clock import SimulatedClock
    from pipeline.core.models import TradeSignal

    loop = asyncio.new_event_loop()
    tmp = tempfile.TemporaryDirectory(prefix="ordergate-fuzz-")
    from config.settings import load_settings

    cfg = load_settings(state_dir=Path(tmp.name), broker={"primary": "paper", "fallback": None},
                        paper={"persistent": False}, journal={"enabled": False},
                        pipeline={"retry_backoff_base": 0.001, "retry_backoff_max": 0.01})
    core = Core(cfg, SimulatedClock(SESSION))
    core.state.deactivate_kill_switch()
    loop.run_until_complete(core.start())
    anything = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=12))
    number = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**6, 10**6), anything)
    stamp = st.one_of(st.none(), st.just(SESSION), st.datetimes(timezones=st.just(UTC)), st.datetimes(), anything)

    @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(st.one_of(st.sampled_from(["cloud_cross_bullish", "pullback", "manual"]), anything),
           st.one_of(st.sampled_from(["long", "short"]), anything),
           st.one_of(st.sampled_from(["AAPL", "FUZZ", "BRK.B"]), st.text(max_size=15), anything),
           st.one_of(st.sampled_from(["1m", "5m", "1d"]), anything), number, number, number,
           st.one_of(st.none(), number), stamp)
    def case(kind: Any, direction: Any, ticker: Any, timeframe: Any, conviction: Any, entry: Any, stop: Any,
             target: Any, ts: Any) -> None:
        board.fuzz_cases += 1
        signal = TradeSignal(signal_type=kind, direction=direction, ticker=ticker, timeframe=timeframe,
                             conviction=conviction, entry_price=entry, stop_loss=stop, target_price=target,
                             timestamp=ts, source="fuzz")
        try:
            result = loop.run_until_complete(core.orchestrator.process_signal(signal))
            loop.run_until_complete(core.settle())
        except Exception as exc:
            board.lose(f"fuzz signal crashed the orchestrator: {type(exc).__name__}: {exc} ({signal!r:.300})")
            return
        if not result.success and not (isinstance(result.rejection_reason, str) and result.rejection_reason.strip()):
            board.lose(f"fuzz signal rejected at {result.pipeline_stage} without a reason ({signal!r:.300})")

    try:
        case()
    finally:
        loop.run_until_complete(core.stop())
        loop.close()
        tmp.cleanup()


CONFIG_FIELDS: dict[str, list[str]] = {
    "executor": ["max_risk_per_trade", "max_concurrent_positions", "daily_loss_limit", "eod_close_time",
                 "instrument_mode", "trailing_stop_cloud", "market_hours_bypass_timeframes", "primary_broker"],
    "pipeline": ["max_order_retries", "retry_backoff_max", "max_signal_age_seconds", "var_limit", "state_dir"],
    "broker": ["primary", "fallback", "down_after_failures"],
    "paper": ["initial_cash", "slippage_bps", "persistent"],
    "data": ["source", "tickers", "replay_file", "synthetic_days", "bars_per_second"],
    "strategy": ["timeframes", "fast_cloud", "min_conviction"],
    "webhook": ["port", "host", "token"],
    "journal": ["synchronous", "batch_interval_ms", "enabled"],
    "logging": ["level", "format"],
}


def fuzz_config(examples: int, board: Scoreboard) -> None:
    """Random values for settings fields: a Settings or a ConfigError with a message, never another exception."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from config.settings import ConfigError, load_settings

    leaf = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=20),
                     st.binary(max_size=8))
    value = st.recursive(leaf, lambda kids: st.one_of(st.lists(kids, max_size=3),
                                                      st.dictionaries(st.text(max_size=5), kids, max_size=3)),
                         max_leaves=6)
    sections = sorted(CONFIG_FIELDS)

    @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(st.sampled_from(sections), st.data(), value)
    def case(section: str, data: Any, val: Any) -> None:
        board.fuzz_cases += 1
        name = data.draw(st.sampled_from(CONFIG_FIELDS[section] + ["no_such_field"]))
        with tempfile.TemporaryDirectory(prefix="ordergate-fuzz-") as tmp:
            overrides = {"state_dir": Path(tmp), section: {name: val}}
            try:
                load_settings(**overrides)
            except ConfigError as exc:
                if not str(exc).strip():
                    board.lose(f"fuzz config: ConfigError without a message for {section}.{name}={val!r:.100}")
            except Exception as exc:
                board.lose(f"fuzz config: {section}.{name}={val!r:.100} raised {type(exc).__name__}: {exc}")

    case()


def fuzz_replay_rows(examples: int, board: Scoreboard) -> None:
    """Random replay CSV rows: bad rows are reported with their line numbers, never a crash."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from adapters.replay import ReplayError, ReplayFeed
    from pipeline.core.clock import SimulatedClock

    good = "2026-11-24T15:31:00+00:00,AAPL,100,101,99,100.5,1000"
    cell = st.one_of(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12),
                     st.sampled_from(["", "nan", "inf", "-1", "0", "1e308", "2026-11-24T15:31:00Z", "1700000000",
                                      "AAPL", "\"", ",", "100"]))
    row = st.one_of(st.just(good), st.lists(cell, min_size=0, max_size=9).map(",".join))

    @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(st.lists(row, min_size=1, max_size=8))
    def case(rows: list[str]) -> None:
        board.fuzz_cases += 1
        with tempfile.TemporaryDirectory(prefix="ordergate-fuzz-") as tmp:
            path = Path(tmp) / "bars.csv"
            text = "timestamp,symbol,open,high,low,close,volume\n" + "\n".join(rows) + "\n"
            path.write_text(text, encoding="utf-8", errors="surrogatepass")
            last_line = len(text.splitlines()) + 1

            async def read() -> Any:
                feed = ReplayFeed(path, SimulatedClock(), pace_bars_per_s=0)
                bars = [b async for batch in feed.batches() for b in batch]
                return feed, bars

            try:
                feed, bars = asyncio.run(read())
            except ReplayError as exc:
                if not str(exc).strip():
                    board.lose("fuzz replay: ReplayError without a message")
                return
            except Exception as exc:
                board.lose(f"fuzz replay: {type(exc).__name__}: {exc} on rows {rows!r:.300}")
                return
            for problem in feed.problems:
                # line 0 is a note about the whole file (e.g. the inferred interval); rows are lines 2..
                if not (isinstance(problem.line, int) and problem.line in (0, *range(2, last_line + 1))
                        and problem.reason):
                    board.lose(f"fuzz replay: problem without a usable line number: {problem}")
            quoted = any('"' in r for r in rows)  # a quote may legally join lines into one CSV record
            row_problems = [p for p in feed.problems if p.line]
            if not quoted and len(bars) + len(row_problems) < sum(1 for r in rows if r.strip()):
                board.lose(f"fuzz replay: rows vanished without a problem report: {rows!r:.300}")

    case()


def fuzz_state_file(examples: int, board: Scoreboard) -> None:
    """Random bytes as the state file: kill switch active (fail closed) unless the file is a valid state."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from pipeline.core.clock import SimulatedClock
    from pipeline.safety.state_manager import PersistentStateManager, encode_state, validate_state

    def valid_state_bytes(active: bool) -> bytes:
        with tempfile.TemporaryDirectory() as tmp:
            manager = PersistentStateManager(tmp, SimulatedClock(SESSION))
            manager.record_pnl(1.0)
            if active:
                manager.activate_kill_switch("fuzz", source="fuzz")
            return manager.path.read_bytes()

    valid = [valid_state_bytes(False), valid_state_bytes(True)]
    blobs = st.one_of(st.binary(max_size=300), st.sampled_from(valid),
                      st.tuples(st.sampled_from(valid), st.integers(0, 400)).map(lambda t: t[0][:t[1]]),
                      st.tuples(st.sampled_from(valid), st.integers(0, 400), st.binary(min_size=1, max_size=3))
                      .map(lambda t: t[0][:t[1]] + t[2] + t[0][t[1] + len(t[2]):]))

    @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(blobs)
    def case(blob: bytes) -> None:
        board.fuzz_cases += 1
        with tempfile.TemporaryDirectory(prefix="ordergate-fuzz-") as tmp:
            (Path(tmp) / "state.json").write_bytes(blob)
            try:
                manager = PersistentStateManager(tmp, SimulatedClock(SESSION))
            except Exception as exc:
                board.lose(f"fuzz state: {type(exc).__name__}: {exc} for {blob[:80]!r}")
                return
            try:
                encode_state(validate_state(json.loads(blob)))
                is_valid = True
            except Exception:
                is_valid = False
            if manager.load_error is None and not is_valid:
                board.lose(f"fuzz state: invalid file accepted as clean: {blob[:80]!r}")
            if manager.load_error is not None and not manager.is_kill_switch_active():
                board.lose(f"fuzz state: unreadable file did not fail closed: {blob[:80]!r}")

    case()


def fuzz_all(examples: int, board: Scoreboard) -> None:
    fuzz_signals(examples, board)
    fuzz_config(examples, board)
    fuzz_replay_rows(examples, board)
    fuzz_state_file(examples, board)


# ---------------------------------------------------------------------------------------------- CLI
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.chaos", description=__doc__.splitlines()[0])
    parser.add_argument("--crashes", type=int, default=20, help="SIGKILL crash points (default 20)")
    parser.add_argument("--fuzz-examples", type=int, default=300, help="hypothesis examples per fuzz target")
    parser.add_argument("--seed", type=int, default=8)
    parser.add_argument("--state-dir", type=Path, default=None, help="keep the crash run's state here")
    args = parser.parse_args(argv)
    import logging

    from daemon.logging import configure_logging

    configure_logging("CRITICAL", "json", stream=open(os.devnull, "w"))
    logging.getLogger().setLevel(logging.CRITICAL)
    board = Scoreboard()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="ordergate-chaos-") as tmp:
        state_dir = args.state_dir or Path(tmp) / "state"
        if args.crashes > 0:
            crash_points(args.crashes, state_dir, board, seed=args.seed)
            print(f"  .. crash points done ({time.monotonic() - started:.0f} s)", file=sys.stderr)
    for section, run_section in (("fault mixes", lambda: fault_mixes(board)),
                                 ("fuzz", lambda: fuzz_all(args.fuzz_examples, board))):
        try:
            run_section()
        except Exception as exc:  # an exception escaping the daemon's code is a finding: count it, go on
            board.lose(f"{section}: crashed with {type(exc).__name__}: {exc}")
    print(board.render())
    print(f"({time.monotonic() - started:.0f} s)")
    return 1 if board.losses else 0


if __name__ == "__main__":
    sys.exit(main())
