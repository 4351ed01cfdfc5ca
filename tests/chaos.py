"""The chaos suite: `python -m tests.chaos --crashes N` (`make chaos CRASHES=200`).

- crash points: a subprocess (this module with `--driver STATE run`) runs the Core with the PERSISTENT paper
  broker and the journal on one state directory over synthetic bars; it is SIGKILLed at a random moment and
  restarted, N times, with the kill switch toggled between some runs. A last `--driver STATE verify` rebuilds
  the Core and compares the broker's book with the journal and the ledger rebuilt from it.
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
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SESSION = datetime(2026, 11, 24, 16, 0, tzinfo=UTC)  # 11:00 New York, a regular session

# ---------------------------------------------------------------------------------------------- the driver
TICKERS = ["AAPL", "MSFT", "NVDA", "AMD", "JPM", "XOM", "GOOGL", "TSLA"]
DAYS = 5
PACE_S = 0.002  # per batch: a fast replay, so the kills spread over trading and the calendar lasts
PROGRESS = "chaos_progress.txt"
LEAKS = "chaos_leaks.txt"
WARMUP_BATCHES = 300


def settings_for(state_dir: Path) -> Any:
    from config.settings import load_settings

    return load_settings(
        state_dir=state_dir, broker={"primary": "paper", "fallback": None}, paper={"persistent": True},
        journal={"enabled": True, "synchronous": "NORMAL"},
        pipeline={"retry_backoff_base": 0.001, "retry_backoff_max": 0.01, "auto_kill_on_daily_loss": False},
        executor={"max_concurrent_positions": 8},
    )


def _read_progress(path: Path) -> tuple[int, int]:
    try:
        epoch, done = path.read_text().split()
        return int(epoch), int(done)
    except (OSError, ValueError):
        return 0, 0


async def drive(state_dir: Path) -> None:
    """Trade synthetic bars from the last progress mark until killed (the data loops in new epochs)."""
    from adapters.synthetic import DEFAULT_START, SyntheticFeed
    from daemon.app import Core
    from pipeline.clock import SimulatedClock

    progress = state_dir / PROGRESS
    epoch, done = _read_progress(progress)
    clock = SimulatedClock()
    core = Core(settings_for(state_dir), clock)
    await core.start()
    print("ready", flush=True)
    step = timedelta(minutes=1)
    timeframe = core.strategy.timeframes[-1]
    while True:
        feed = SyntheticFeed(TICKERS, None, core.calendar, seed=7 + epoch, days=DAYS,
                             start=DEFAULT_START + timedelta(weeks=epoch), pace_bars_per_s=0)
        for index, batch in enumerate(feed.bar_batches()):
            clock.advance_to(batch[0].timestamp + step)
            if index < done:  # already traded before the last crash: warm the strategy only (its slowest
                if index < done - WARMUP_BATCHES:  # cloud needs 50 five-minute bars), so kills land in trading
                    continue
                for bar in batch:
                    core.strategy.on_bar(bar)
                continue
            await core.engine.on_batch(batch)
            if core.strategy.is_warm(TICKERS[0], timeframe):  # no pacing while nothing can trade yet: the kills
                await asyncio.sleep(PACE_S)  # land in trading, also on a loaded machine
            if index % 25 == 0:
                progress.write_text(f"{epoch} {index}")
                _note_leaks(await _leaked(core), state_dir)
        await core.settle()
        epoch, done = epoch + 1, 0
        progress.write_text(f"{epoch} 0")


async def verify(state_dir: Path) -> dict[str, Any]:
    """Rebuild the Core on the state directory, let redelivered events settle, compare book, journal, ledger."""
    from daemon.app import Core
    from pipeline.clock import SimulatedClock

    clock = SimulatedClock()
    core = Core(settings_for(state_dir), clock)
    await core.start()
    paper = core.brokers["paper"]
    await paper.drain(30)
    await core.settle()
    journal = core.journal
    assert journal is not None
    book_orders = paper.all_orders()
    book_fills = paper.all_fills()
    rows = await journal.query("SELECT client_order_id, kind, signal_id FROM orders")
    j_orders = {r["client_order_id"]: r for r in rows}
    j_fill_rows = await journal.query("SELECT fill_id FROM fills")
    j_fills = Counter(r["fill_id"] for r in j_fill_rows)
    per_intent = Counter((j_orders[o.client_order_id]["signal_id"], j_orders[o.client_order_id]["kind"])
                         for o in book_orders if o.client_order_id in j_orders and
                         j_orders[o.client_order_id]["kind"] == "entry")
    broker_pos = {p.symbol: round(p.quantity, 6) for p in paper.positions()}
    ledger_pos = {s: round(q, 6) for s, q in core.ledger.signed_quantities().items() if abs(q) > 1e-9}
    result = {
        "broker_orders": len(book_orders),
        "broker_fills": len(book_fills),
        "duplicate_client_order_ids": len(book_orders) - len({o.client_order_id for o in book_orders}),
        "entries_with_two_orders": sum(1 for c in per_intent.values() if c > 1),
        "orders_unknown_to_journal": sum(1 for o in book_orders if o.client_order_id not in j_orders),
        "fills_missing_from_journal": sum(1 for f in book_fills if f.fill_id not in j_fills),
        "fills_applied_twice": sum(c - 1 for c in j_fills.values() if c > 1),
        "journal_fills_unknown_to_broker": len(set(j_fills) - {f.fill_id for f in book_fills}),
        "positions_equal": broker_pos == ledger_pos,
        "broker_positions": broker_pos,
        "ledger_positions": ledger_pos,
        "kill_switch_active": core.state.is_kill_switch_active(),
        "state_load_error": core.state.load_error,
        # in-flight holds whose order is final at the broker and whose fills are all in (a leak blocks entries):
        # in this process, and as the killed drivers noted them along the way
        "reservations_of_finished_orders": len(await _leaked(core)) + _count_noted_leaks(state_dir),
    }
    await core.stop()
    return result


async def _leaked(core: Any) -> list[str]:
    """After settling: reservations whose order is final at the (paper) broker with every one of its fills in the
    journal, so nothing can ever release them."""
    await core.settle()
    paper = core.brokers["paper"]
    final = {o.client_order_id: o for o in paper.all_orders() if o.status.is_final}
    held = [r.client_order_id for r in core.orchestrator.reservations.items() if r.client_order_id in final]
    if not held:
        return []
    rows = await core.journal.query(
        f"SELECT client_order_id, SUM(quantity) AS qty FROM fills WHERE client_order_id IN "
        f"({','.join('?' * len(held))}) GROUP BY client_order_id", tuple(held))
    journaled = {r["client_order_id"]: r["qty"] for r in rows}
    return [c for c in held if journaled.get(c, 0.0) >= final[c].filled_qty - 1e-9]


def _note_leaks(leaked: list[str], state_dir: Path) -> None:
    """Append leaked reservations seen mid-run (the driver is killed: the verify step reads the file)."""
    if leaked:
        with open(state_dir / LEAKS, "a", encoding="ascii") as fh:
            fh.write(" ".join(leaked) + "\n")


def _count_noted_leaks(state_dir: Path) -> int:
    try:
        return sum(len(line.split()) for line in (state_dir / LEAKS).read_text(encoding="ascii").splitlines())
    except FileNotFoundError:
        return 0


def _loop_runner() -> Any:
    try:
        import uvloop

        return uvloop.run
    except ImportError:  # pragma: no cover
        return asyncio.run


def driver_main(state_dir: Path, mode: str) -> int:
    import logging

    from daemon.logging import configure_logging

    configure_logging("ERROR", "json", stream=sys.stderr)
    logging.getLogger().setLevel(logging.ERROR)
    runner = _loop_runner()
    if mode == "run":
        runner(drive(state_dir))
        return 0
    print(json.dumps(runner(verify(state_dir))), flush=True)
    return 0


# ---------------------------------------------------------------------------------------------- scoreboard
@dataclass
class Scoreboard:
    """What the suite did and what it lost."""

    crash_points: int = 0
    fault_mixes: int = 0
    fuzz_cases: int = 0
    losses: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

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
        lines += [f"    - {loss}" for loss in self.losses]
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- crash points
def _spawn(state_dir: Path, mode: str) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORDERGATE_")}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.Popen([sys.executable, "-m", "tests.chaos", "--driver", str(state_dir), mode], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _wait_line(proc: subprocess.Popen[bytes], timeout: float) -> bytes:
    import select

    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    if not ready:
        return b""
    return proc.stdout.readline()


def _set_kill_switch(state_dir: Path, active: bool) -> None:
    from pipeline.clock import SimulatedClock
    from pipeline.state_manager import PersistentStateManager

    manager = PersistentStateManager(state_dir, SimulatedClock(SESSION))
    if active:
        manager.activate_kill_switch("chaos: left active", source="chaos")
    else:
        manager.deactivate_kill_switch()


def crash_points(n: int, state_dir: Path, board: Scoreboard, seed: int = 8, max_delay: float = 1.2) -> None:
    """SIGKILL the driver at n random moments, restarting on the same state dir; then verify."""
    rng = random.Random(seed)
    expected_kill = False
    _set_kill_switch(state_dir, False)
    for i in range(n):
        if i and rng.random() < 0.1:  # now and then the operator flips the kill switch while the daemon is down
            expected_kill = not expected_kill
            _set_kill_switch(state_dir, expected_kill)
        proc = _spawn(state_dir, "run")
        try:
            line = _wait_line(proc, 60)
            if line.strip() != b"ready":
                err = proc.stderr.read().decode(errors="replace")[-2000:] if proc.poll() is not None else ""
                board.lose(f"crash {i}: driver did not start (exit {proc.poll()}): {line!r} {err}")
                return
            time.sleep(rng.uniform(0.0, max_delay))
            if proc.poll() is not None:
                err = proc.stderr.read().decode(errors="replace")[-2000:] if proc.stderr else ""
                board.lose(f"crash {i}: the driver died by itself (exit {proc.returncode}) before the kill: {err}")
                return
        finally:
            proc.kill()
            proc.wait(30)
            for stream in (proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()
        board.crash_points += 1
    result = verify_subprocess(state_dir)
    board.details["crash_verify"] = result
    _judge_crash(result, expected_kill, board)


def verify_subprocess(state_dir: Path) -> dict[str, Any]:
    proc = _spawn(state_dir, "verify")
    out, err = proc.communicate(timeout=120)
    if proc.returncode != 0:
        return {"error": f"verify exited {proc.returncode}: {err.decode(errors='replace')[-3000:]}"}
    return json.loads(out.decode().strip().splitlines()[-1])


def _judge_crash(result: dict[str, Any], expected_kill: bool, board: Scoreboard) -> None:
    if "error" in result:
        board.lose(result["error"])
        return
    for key in ("duplicate_client_order_ids", "entries_with_two_orders", "orders_unknown_to_journal",
                "fills_missing_from_journal", "fills_applied_twice", "journal_fills_unknown_to_broker"):
        if result[key]:
            board.lose(f"crash points: {key} = {result[key]}")
    if not result["positions_equal"]:
        board.lose(f"crash points: positions differ: broker {result['broker_positions']} "
                   f"ledger {result['ledger_positions']}")
    if result["kill_switch_active"] != expected_kill:
        board.lose(f"crash points: kill switch active={result['kill_switch_active']}, left as {expected_kill}")
    if result["state_load_error"]:
        board.lose(f"crash points: state file unreadable after crashes: {result['state_load_error']}")
    if result.get("reservations_of_finished_orders"):
        board.lose(f"crash points: reservations held for finished orders, seen "
                   f"{result['reservations_of_finished_orders']} times")
    if result["broker_fills"] == 0:
        board.lose("crash points: no fill ever happened (the run exercised nothing)")


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
    from pipeline.ports import RetryableBrokerError

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
        await paper.drain(30)
        await core.settle()


async def run_fault_mix(name: str, mix: dict[str, Any], state_dir: Path) -> list[str]:
    """Entries under the faults, then a flatten under them again; returns the losses (empty = passed)."""
    from daemon.app import Core
    from pipeline.clock import SimulatedClock
    from pipeline.models import TradeSignal

    core = Core(_fault_settings(state_dir), SimulatedClock(SESSION))
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

    from daemon.app import Core
    from pipeline.clock import SimulatedClock
    from pipeline.models import TradeSignal

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
    from pipeline.clock import SimulatedClock

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

    from pipeline.clock import SimulatedClock
    from pipeline.state_manager import PersistentStateManager, encode_state, validate_state

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
    parser.add_argument("--driver", nargs=2, metavar=("STATE_DIR", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.driver:
        return driver_main(Path(args.driver[0]), args.driver[1])
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
            print(f"  .. crash points done ({time.monotonic() - started:.0f} s): "
                  f"{json.dumps(board.details.get('crash_verify', {}))[:400]}", file=sys.stderr)
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
