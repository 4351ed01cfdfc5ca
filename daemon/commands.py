"""CLI commands that talk to the running daemon, or work on its files when it is down.

`status`, `kill` and `resume` work either way: with the daemon up through the control socket, with it down
on the state file (same fail-closed reading). A daemon that holds the state dir's lock but lost its socket
is named by `status`, sent SIGUSR1 by `kill`, and `resume` refuses. `journal` reads the journal file when the
daemon is down. Everything else needs the daemon.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import sys
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from config.files import TomlFileError, load_toml
from config.settings import Settings
from daemon.control import ControlError, DaemonNotRunning, control_request_sync, socket_path
from daemon.lock import running_pid
from pipeline.safety.state_manager import apply_kill, apply_resume, read_state_file, update_state_file

EXIT_OK, EXIT_FAIL = 0, 1
STATE_FILE = "state.json"


def run_command(args: argparse.Namespace, settings: Settings) -> int:
    state_dir = Path(settings.state_dir)
    sock = socket_path(state_dir)
    cmd = args.command
    if cmd == "flatten" and not args.yes:
        try:
            answer = input("Close every position and cancel every open order? [y/N] ")
        except EOFError:  # no terminal to ask (a script, a pipe): not confirmed
            answer = ""
        if answer.strip().lower() not in ("y", "yes"):
            print("flatten: not confirmed")
            return EXIT_FAIL
    try:
        request_args = _request_args(args)
    except ValueError as exc:
        print(f"ordergate {cmd}: {exc}", file=sys.stderr)
        return 2
    try:
        result = control_request_sync(sock, cmd, request_args, timeout=30.0 if cmd == "reconcile" else 10.0)
    except DaemonNotRunning:
        try:
            return _offline(args, state_dir, settings)
        except OSError as exc:  # the state dir or file cannot be written (read-only, full, not ours)
            print(f"ordergate {cmd}: {state_dir}: {exc.strerror or exc}", file=sys.stderr)
            return 2
        except sqlite3.Error as exc:  # a journal that is not ordergate's, damaged, or locked
            print(f"ordergate {cmd}: the journal in {state_dir} cannot be read: {exc}", file=sys.stderr)
            return EXIT_FAIL
    except ControlError as exc:
        print(f"ordergate {cmd}: {exc}")
        return EXIT_FAIL
    _print(args, cmd, result)
    refused = isinstance(result, dict) and (result.get("ok") is False or result.get("accepted") is False)
    return EXIT_FAIL if refused else EXIT_OK


def _request_args(args: argparse.Namespace) -> dict[str, Any]:
    if args.command == "kill":
        return {"reason": args.reason}
    if args.command == "journal":
        return {"day": args.day}
    if args.command in ("buy", "sell"):
        return {"ticker": args.ticker, "dollars": args.dollars, "shares": args.shares,
                "short": getattr(args, "short", False)}
    if args.command == "rebalance":
        return {"targets": _read_targets(args.targets), "execute": args.execute}
    if args.command == "signal":
        return {k: getattr(args, k) for k in ("ticker", "direction", "entry_price", "stop_loss", "target_price",
                                              "conviction", "timeframe", "signal_type", "strategy")}
    return {}


def _read_targets(path: Path) -> dict[str, float]:
    """Target weights from a TOML file: either top-level `TICKER = weight` or a [targets] table."""
    try:
        data = load_toml(path)
    except TomlFileError as exc:
        raise ValueError(f"{path}: {exc}") from None
    table = data.get("targets", data)
    if not isinstance(table, dict) or not table:
        raise ValueError(f"{path}: expected ticker = weight entries")
    for ticker, weight in table.items():
        if isinstance(weight, bool) or not isinstance(weight, (int, float)):
            raise ValueError(f"{path}: weight of {ticker} must be a number, got {weight!r}")
    return {str(k).upper(): float(v) for k, v in table.items()}


def _offline(args: argparse.Namespace, state_dir: Path, settings: Settings | None = None) -> int:
    path = state_dir / STATE_FILE
    now = datetime.now(UTC)
    pid = running_pid(state_dir)  # a daemon runs but its control socket is gone (deleted)
    if pid is not None and args.command in ("kill", "resume"):
        return _socketless(args, state_dir, pid, now)
    if args.command == "status":
        state = read_state_file(path, now)
        result = {
            "running": pid is not None, "pid": pid,
            **({"control_socket": "missing"} if pid is not None else {}),
            "kill_switch": {k: state["kill_switch"].get(k) for k in ("active", "reason", "since")},
            "daily_pnl": state.get("daily_pnl", 0.0), "open_positions": _journal_positions(state_dir, settings),
            "circuit_breaker": state.get("circuit_breaker"), "state_error": state.get("load_error"),
        }
        _print(args, "status", result)
        return EXIT_OK
    if args.command == "kill":
        state = update_state_file(path, lambda s: apply_kill(s, args.reason, "cli", now), now)
        _print(args, "kill", {"running": False, **state["kill_switch"]})
        return EXIT_OK
    if args.command == "resume":
        state = update_state_file(path, apply_resume, now)
        _print(args, "resume", {"running": False, **state["kill_switch"]})
        return EXIT_OK
    if args.command == "journal":
        _print(args, "journal", offline_journal(state_dir, args.day, settings=settings))
        return EXIT_OK
    print(f"ordergate {args.command}: the daemon is not running (no control socket in {state_dir})")
    return EXIT_FAIL


def _socketless(args: argparse.Namespace, state_dir: Path, pid: int, now: datetime) -> int:
    """`kill` / `resume` while a daemon holds the state dir without a control socket.

    The running daemon never rereads the state file (and its next write puts its own state back), so a kill
    goes to it as SIGUSR1 (and to the file, for the next start); a resume is refused.
    """
    sock = socket_path(state_dir)
    if args.command == "resume":
        print(f"ordergate resume: the daemon (pid {pid}) is running without its control socket {sock}; "
              "restart it (systemctl restart ordergate), then resume")
        return EXIT_FAIL
    try:
        os.kill(pid, signal.SIGUSR1)
    except OSError as exc:
        print(f"ordergate kill: the daemon (pid {pid}) has no control socket {sock} and cannot be signalled: "
              f"{exc.strerror}; send it SIGUSR1 as its user (systemctl kill -s SIGUSR1 ordergate)")
        return EXIT_FAIL
    state = update_state_file(state_dir / STATE_FILE, lambda s: apply_kill(s, args.reason, "cli", now), now)
    _print(args, "kill", {"running": True, "pid": pid, "control_socket": "missing", "signalled": "SIGUSR1",
                          **state["kill_switch"]})
    return EXIT_OK


def _pg_instance(settings: Settings | None, day: date) -> dict[str, Any] | None:
    """The instance's positions and the day's trades from the PostgreSQL journal (None: the journal is SQLite)."""
    if settings is None or settings.journal.backend != "postgresql" or settings.journal.dsn is None:
        return None
    import asyncio

    from adapters.journal_pg_desk import read_instance

    return asyncio.run(read_instance(settings.journal.dsn.get_secret_value().strip(), settings.instance.name, day,
                                     timeout=settings.journal.connect_timeout_seconds))


def _journal_positions(state_dir: Path, settings: Settings | None = None) -> int:
    """Open positions by the journal's fills (net quantity per symbol), for status with the daemon down."""
    from_pg = _pg_instance(settings, date.today())
    if from_pg is not None:
        return int(from_pg["open_positions"])
    db = state_dir / "journal.db"
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            rows = conn.execute(
                "SELECT symbol, SUM(CASE side WHEN 'buy' THEN quantity ELSE -quantity END) FROM fills GROUP BY symbol"
            ).fetchall()
    except sqlite3.Error:
        return 0
    return sum(1 for _, qty in rows if qty and abs(qty) > 1e-9)


def offline_journal(state_dir: Path, day: str | None, now: datetime | None = None, *,
                    settings: Settings | None = None) -> dict[str, Any]:
    """`ordergate journal` with the daemon down: the day's summary read from the journal file.

    The default day is the New York trading day of `now` (the wall clock), as the running daemon answers — never
    the UTC date, which after 19:00/20:00 ET is already tomorrow."""
    from pipeline.core.calendar import trading_day
    from pipeline.record.journal import decision_counts
    from pipeline.record.trade_journal import ClosedTrade, summarize

    db = state_dir / "journal.db"
    target = date.fromisoformat(day) if day else trading_day(now or datetime.now(UTC))
    from_pg = _pg_instance(settings, target)
    if from_pg is not None:
        summary = summarize([ClosedTrade.from_row(r) for r in from_pg["trades"]])
        summary["day"] = target.isoformat()
        summary["decisions"] = decision_counts(from_pg["decisions"])
        return summary
    if not db.exists():
        return summarize([])
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        conn.row_factory = sqlite3.Row
        rows = conn.execute("SELECT * FROM trades WHERE day=? ORDER BY exit_time", (target.isoformat(),)).fetchall()
        decided = _decision_rows(conn, target.isoformat())
    summary = summarize([ClosedTrade.from_row(dict(r)) for r in rows])
    summary["day"] = target.isoformat()
    summary["decisions"] = decision_counts(decided)
    return summary


def _decision_rows(conn: sqlite3.Connection, day: str) -> list[dict[str, Any]]:
    """The day's decision records by final stage and outcome (none in a journal from before the records)."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(decisions)")}
    if "stages" not in columns:
        return []
    return [dict(r) for r in conn.execute("SELECT stage, outcome, COUNT(*) AS n FROM decisions WHERE stages IS NOT"
                                          " NULL AND day = ? GROUP BY stage, outcome", (day,))]


def _print(args: argparse.Namespace, cmd: str, result: Any) -> None:
    if getattr(args, "json", False):
        print(json.dumps(result, default=str))
        return
    if cmd == "rebalance" and isinstance(result, dict):
        proposal = result.get("proposal", {})
        print("trades:" if proposal.get("trades") else "trades: none needed")
        for trade in proposal.get("trades", []):
            print(f"  {trade['side']:<4} {trade['shares']:>8g} {trade['ticker']:<6} ~{trade['est_price']:,.2f}"
                  f" = {trade['est_value']:,.2f}")
        print(f"estimated cost: {proposal.get('estimated_cost', 0):,.2f}")
        for ticker, weight in (proposal.get("resulting_weights") or {}).items():
            print(f"  {ticker:<6} -> {weight:.1%}")
        for warning in proposal.get("warnings", []):
            print(f"warning: {warning}")
        if result.get("executed"):
            outcome = result.get("result", {})
            print(f"executed: {outcome.get('ok', outcome.get('executed'))} {outcome.get('reason') or ''}")
        else:
            print("preview only: run again with --execute to trade")
        return
    if cmd == "kill" and isinstance(result, dict) and result.get("active"):
        print(f"kill switch ACTIVE: {result.get('reason')} (since {result.get('since')})")
        if result.get("durable") is False:
            print(f"warning: the trip is held in the daemon's memory only, the state file write failed "
                  f"({result.get('write_error')}); the daemon retries it. Do not restart it until this clears.")
        elif result.get("write_error"):
            print(f"warning: the state file write failed ({result.get('write_error')}); the trip is kept in the "
                  "trip record, and the daemon retries the state file")
        return
    if cmd in ("status", "positions", "orders", "journal"):
        from daemon import tables

        shape, render = {"status": (dict, tables.render_status), "positions": (list, tables.render_positions),
                         "orders": (list, tables.render_orders), "journal": (dict, tables.render_journal)}[cmd]
        if isinstance(result, shape):
            print(render(result, tables.use_colour(sys.stdout)))
            return
    if isinstance(result, list):
        if not result:
            print("(none)")
            return
        keys = list(result[0].keys())
        widths = {k: max(len(k), *(len(str(r.get(k, ""))) for r in result)) for k in keys}
        print("  ".join(k.ljust(widths[k]) for k in keys))
        for row in result:
            print("  ".join(str(row.get(k, "")).ljust(widths[k]) for k in keys))
        return
    if isinstance(result, dict):
        for key, value in result.items():
            print(f"{key}: {value}")
        return
    print(result)
