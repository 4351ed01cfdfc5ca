"""The `ordergate` command: run the daemon, talk to it over the control socket, replay a file.

Exit status: 0 ok, 1 a command failed, 2 bad configuration or usage.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
from collections.abc import Callable, Sequence
from datetime import date
from pathlib import Path
from typing import Any, NoReturn

from config.settings import MAX_DOLLARS, ConfigError, Settings, load_settings
from config.symbols import normalize_symbol
from daemon.instances import instance_name, resolve_instance
from daemon.whole_writes import finish_writes

EXIT_OK, EXIT_FAIL, EXIT_CONFIG = 0, 1, 2
PRIVATE_UMASK = 0o077
MAX_PRICE = 1_000_000.0  # pipeline.core.models.MAX_SIGNAL_PRICE
MAX_SHARES = 1_000_000_000.0
MAX_REASON_LEN = 500


class _Parser(argparse.ArgumentParser):
    """argparse, with a usage error said in one line (exit status 2); `--help` still shows the usage."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_CONFIG, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _ticker(value: str) -> str:
    """A CLI ticker argument: an ASCII broker symbol, upper-cased."""
    try:
        return normalize_symbol(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _number(low: float, high: float, *, low_open: bool = True) -> Callable[[str], float]:
    """An argparse type: a finite number in (low, high] (or [low, high] when not `low_open`)."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text[:40]!r} is not a number") from None
        above = value > low if low_open else value >= low
        if not (math.isfinite(value) and above and value <= high):
            bracket = "(" if low_open else "["
            raise argparse.ArgumentTypeError(f"{text[:40]!r} must be a finite number in {bracket}{low:g}, {high:g}]")
        return value

    return parse


def _day(text: str) -> str:
    try:
        return date.fromisoformat(text).isoformat()
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text[:40]!r} is not a date YYYY-MM-DD") from None


def _reason(text: str) -> str:
    if len(text) > MAX_REASON_LEN or not text.isprintable():
        raise argparse.ArgumentTypeError(f"must be at most {MAX_REASON_LEN} printable characters")
    return text


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="ordergate", description="Trading daemon: signals -> risk -> orders.")
    parser.add_argument("--config", help="TOML config file (default: $ORDERGATE_CONFIG)")
    parser.add_argument("--state-dir", help="state directory (default: $ORDERGATE_STATE_DIR or ./.ordergate)")
    parser.add_argument("--instance", type=instance_name, help="a named instance: config /etc/ordergate/NAME.toml, "
                        "state /var/lib/ordergate/NAME (systemd's ordergate@NAME); not with --config/--state-dir")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the daemon")
    run.add_argument("--broker", choices=["paper", "alpaca", "ibkr"], help="primary broker")
    run.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    run.add_argument("--log-format", choices=["auto", "json", "console"])

    status = sub.add_parser("status", help="daemon status (reads the state file when it is down)")
    status.add_argument("--json", action="store_true")
    kill = sub.add_parser("kill", help="trip the kill switch")
    kill.add_argument("--reason", default="ordergate kill", type=_reason)
    kill.add_argument("--json", action="store_true")
    resume = sub.add_parser("resume", help="clear the kill switch")
    resume.add_argument("--json", action="store_true")
    for name, text in (("positions", "open positions"), ("orders", "recent orders"),
                       ("reconcile", "reconcile with the broker now")):
        p = sub.add_parser(name, help=text)
        p.add_argument("--json", action="store_true")
    flatten = sub.add_parser("flatten", help="cancel open orders and close every position")
    flatten.add_argument("--yes", action="store_true", help="do not ask")
    flatten.add_argument("--json", action="store_true")
    journal = sub.add_parser("journal", help="daily trade summary")
    journal.add_argument("--day", help="YYYY-MM-DD (default: today)", type=_day)
    journal.add_argument("--json", action="store_true")
    signal = sub.add_parser("signal", help="send a manual signal through the pipeline")
    signal.add_argument("--ticker", required=True, type=_ticker)
    signal.add_argument("--direction", required=True, choices=["long", "short"])
    signal.add_argument("--entry", type=_number(0, MAX_PRICE), required=True, dest="entry_price")
    signal.add_argument("--stop", type=_number(0, MAX_PRICE), required=True, dest="stop_loss")
    signal.add_argument("--target", type=_number(0, MAX_PRICE), dest="target_price")
    signal.add_argument("--conviction", type=_number(0, 100, low_open=False), default=75.0)
    signal.add_argument("--timeframe", default="5m")
    signal.add_argument("--signal-type", default="manual")
    signal.add_argument("--strategy", default="", help="the configured strategy the signal is for (default: none)")
    signal.add_argument("--json", action="store_true")

    for name in ("buy", "sell"):
        trade = sub.add_parser(name, help=f"{name} through the kill switch and the risk limits")
        trade.add_argument("ticker", type=_ticker)
        size = trade.add_mutually_exclusive_group(required=True)
        size.add_argument("--dollars", type=_number(0, MAX_DOLLARS))
        size.add_argument("--shares", type=_number(0, MAX_SHARES))
        if name == "sell":
            trade.add_argument("--short", action="store_true", help="allow opening a short")
        trade.add_argument("--json", action="store_true")
    rebalance = sub.add_parser("rebalance", help="rebalance to target weights (preview unless --execute)")
    rebalance.add_argument("targets", type=Path, help="TOML file: ticker = weight, e.g. AAPL = 0.3")
    rebalance.add_argument("--execute", action="store_true")
    rebalance.add_argument("--json", action="store_true")

    replay = sub.add_parser("replay", help="run the whole pipeline over a CSV of bars, print the summaries")
    replay.add_argument("file", type=Path, nargs="+", help="CSV files of timestamp,symbol,open,high,low,close,"
                        "volume or one symbol's Yahoo/Stooq Date,Open,High,Low,Close[,Adj Close],Volume; or "
                        "'embedded' for the built-in synthetic data")
    replay.add_argument("--timeframe", help="bar interval of the files (inferred when omitted)")
    replay.add_argument("--symbol", action="append", help="the symbol of a one-symbol file (Yahoo, Stooq); once per "
                        "file, in the files' order (default: the file name when it is a ticker)")
    replay.add_argument("--report", type=Path, help="write a self-contained HTML report (equity, drawdown, trades)")
    replay.add_argument("--json", action="store_true")

    desk = sub.add_parser("desk", help="every instance's positions and P&L, from the shared PostgreSQL journal")
    desk.add_argument("--day", help="YYYY-MM-DD (default: today in New York)", type=_day)
    desk.add_argument("--json", action="store_true")

    watch = sub.add_parser("watch", help="live terminal view: positions, working orders, decisions")
    watch.add_argument("--interval", type=_number(0.2, 60, low_open=False), default=1.0, help="seconds (1)")
    watch.add_argument("--once", action="store_true", help="print one frame and exit (also when piped)")

    config = sub.add_parser("config", help="configuration")
    config_sub = config.add_subparsers(dest="config_command", required=True)
    config_sub.add_parser("show", help="print the effective settings (secrets masked)")
    return parser


def _cli_overrides(args: argparse.Namespace, **overrides: Any) -> dict[str, Any]:
    """The settings the command line sets over the file and the environment (a SIGHUP reload keeps them)."""
    if args.instance:  # its own state directory, whatever ORDERGATE_STATE_DIR says (an env file shared by all)
        overrides["state_dir"] = str(resolve_instance(args.instance).state_dir)
        overrides["instance"] = {"name": args.instance}
    elif args.state_dir:
        overrides["state_dir"] = args.state_dir
    elif os.environ.get("ORDERGATE_STATE_DIR"):
        overrides["state_dir"] = os.environ["ORDERGATE_STATE_DIR"]
    return overrides


def _config_file(args: argparse.Namespace) -> str | None:
    """The config file: the instance's own, --config, or $ORDERGATE_CONFIG."""
    if args.instance:
        return str(resolve_instance(args.instance).config)
    return args.config or os.environ.get("ORDERGATE_CONFIG")


def _load(args: argparse.Namespace, **overrides: Any) -> Settings:
    return load_settings(_config_file(args), **_cli_overrides(args, **overrides))


def main(argv: Sequence[str] | None = None) -> int:
    os.umask(PRIVATE_UMASK)  # every file ordergate creates is 0600, every directory 0700, whatever the shell's umask
    if argv is None:  # the command line itself (not a caller's own streams): whole writes, even unbuffered
        finish_writes()
    parser = _parser()
    args = parser.parse_args(argv)
    if args.instance and (args.config or args.state_dir):
        parser.error("--instance NAME sets the config file and the state directory; do not give --config or "
                     "--state-dir with it")
    try:
        return _dispatch(args)
    except ConfigError as exc:
        print(f"ordergate: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return EXIT_FAIL
    except BrokenPipeError:  # `ordergate orders | head`: the reader left; no traceback
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "run":
        return _run(args)
    if args.command == "config":
        settings = _load(args)
        print(json.dumps(settings.masked(), indent=2, default=str))
        return EXIT_OK
    if args.command == "replay":
        from daemon.replay import run_replay

        return run_replay(args, _load(args))
    if args.command == "desk":
        from daemon.desk import run_desk

        return run_desk(args, _load(args))
    if args.command == "watch":
        from daemon.watch import run_watch

        return run_watch(args, Path(_load(args).state_dir))
    from daemon.commands import run_command
    from daemon.preflight import state_dir_problem

    settings = _load(args)
    problem = state_dir_problem(Path(settings.state_dir), create=False)
    if problem:
        raise ConfigError(problem)
    return run_command(args, settings)


def _run(args: argparse.Namespace) -> int:
    overrides: dict[str, Any] = {}
    if args.broker:
        overrides["broker"] = {"primary": args.broker}
    logging_overrides = {k: v for k, v in (("level", args.log_level), ("format", args.log_format)) if v}
    if logging_overrides:
        overrides["logging"] = logging_overrides
    settings = _load(args, **overrides)
    problems = _preflight(settings)
    if not problems:
        from daemon.preflight import host_problems

        problems = host_problems(settings)
    if problems:
        print(f"ordergate: {'; '.join(problems)}", file=sys.stderr)
        return EXIT_CONFIG
    from daemon.resources import fd_budget_problem, raise_fd_limit

    fd_limit = raise_fd_limit()
    fd_problem = fd_budget_problem(settings, fd_limit)
    if fd_problem:
        print(f"ordergate: {fd_problem}", file=sys.stderr)
        return EXIT_CONFIG
    from daemon.lock import DaemonLock, DaemonLockHeld

    try:  # before anything opens the journal, the state file or the paper book; held until the process ends
        lock = DaemonLock.acquire(settings.state_dir)
    except DaemonLockHeld as exc:
        print(f"ordergate: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except OSError as exc:
        print(f"ordergate: state dir {settings.state_dir}: cannot take the daemon lock: {exc.strerror}",
              file=sys.stderr)
        return EXIT_CONFIG
    from daemon.logging import configure_logging

    configure_logging(settings.logging.level, settings.logging.format)
    _log_fd_limit(fd_limit)
    _tighten_state_dir(Path(settings.state_dir))
    from daemon.process import Daemon

    try:
        import uvloop

        runner = uvloop.run
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        import asyncio

        runner = asyncio.run
    daemon: Any = None
    try:
        daemon = Daemon(settings, _config_file(args),
                        overrides=_cli_overrides(args, **overrides))
        return runner(daemon.run())
    except Exception as exc:  # a start that failed (journal locked, broker unreachable, ...): one line, no traceback
        return _start_failed(exc, ready=daemon is not None and daemon.ready)
    finally:
        lock.release()


def _start_failed(exc: Exception, *, ready: bool) -> int:
    """Say in one line why the daemon stopped (the traceback goes to the log at debug level): exit 2 when it
    never became ready, 1 when it failed while running."""
    import structlog

    reason = describe_start_failure(exc)
    log = structlog.get_logger("ordergate.daemon")
    log.debug("daemon_failed_traceback", exc_info=exc)
    log.error("daemon_failed", error=reason, ready=ready)
    print(f"ordergate: {'daemon failed' if ready else 'cannot start'}: {reason}", file=sys.stderr)
    return EXIT_FAIL if ready else EXIT_CONFIG


def describe_start_failure(exc: BaseException) -> str:
    """One line for an exception that ended a start: the known kinds said plainly, others by type and text."""
    import sqlite3

    text = " ".join(str(exc).split())[:300]
    if isinstance(exc, sqlite3.OperationalError) and "locked" in text:
        return f"the journal is locked by another process ({text}); is another ordergate or a sqlite3 shell open?"
    if isinstance(exc, sqlite3.Error):
        return f"the journal cannot be used: {type(exc).__name__}: {text}"
    if isinstance(exc, OSError) and exc.strerror:
        where = f" {exc.filename}" if exc.filename else ""
        return f"{exc.strerror}{where} ({text})" if text and exc.strerror not in text else f"{text or exc.strerror}"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _tighten_state_dir(state_dir: Path) -> None:
    import structlog

    from daemon.preflight import tighten_modes

    tightened = tighten_modes(state_dir)
    if tightened:
        structlog.get_logger("ordergate.daemon").warning(
            "state_dir_permissions_tightened", state_dir=str(state_dir), files=tightened[:50], count=len(tightened))


def _log_fd_limit(limit: Any) -> None:
    import structlog

    log = structlog.get_logger("ordergate.daemon")
    if limit.error:
        log.warning("fd_limit", soft=limit.soft, hard=limit.hard, error=limit.error)
    else:
        log.info("fd_limit", soft=limit.soft, hard=limit.hard, raised_from=limit.was)


def _preflight(settings: Settings) -> list[str]:
    """Configuration that validates field by field but cannot run (missing credentials and the like)."""
    from daemon.live_rule import live_rule_problem

    problems: list[str] = []
    live = live_rule_problem(settings)  # first: a real broker on simulated data is refused whatever else is set
    if live:
        problems.append(live)
    uses_alpaca = "alpaca" in (settings.broker.primary, settings.broker.fallback) or settings.data.source == "alpaca"
    if uses_alpaca:  # keys and endpoint URLs, each problem naming its field (imports alpaca-py only when used)
        from adapters.alpaca import validate_alpaca_settings

        problems.extend(f"invalid setting {problem}" for problem in validate_alpaca_settings(settings))
    if settings.data.source == "replay" and settings.data.replay_file is None:
        problems.append("invalid setting data.replay_file: required when data.source = 'replay'")
    return problems


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
