"""The `ordergate` command: run the daemon, talk to it over the control socket, replay a file.

Exit status: 0 ok, 1 a command failed, 2 bad configuration or usage.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from config.settings import ConfigError, Settings, load_settings

EXIT_OK, EXIT_FAIL, EXIT_CONFIG = 0, 1, 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ordergate", description="Trading daemon: signals -> risk -> orders.")
    parser.add_argument("--config", help="TOML config file (default: $ORDERGATE_CONFIG)")
    parser.add_argument("--state-dir", help="state directory (default: $ORDERGATE_STATE_DIR or ./.ordergate)")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the daemon")
    run.add_argument("--broker", choices=["paper", "alpaca", "ibkr"], help="primary broker")
    run.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    run.add_argument("--log-format", choices=["auto", "json", "console"])

    status = sub.add_parser("status", help="daemon status (reads the state file when it is down)")
    status.add_argument("--json", action="store_true")
    kill = sub.add_parser("kill", help="trip the kill switch")
    kill.add_argument("--reason", default="ordergate kill")
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
    journal.add_argument("--day", help="YYYY-MM-DD (default: today)")
    journal.add_argument("--json", action="store_true")
    signal = sub.add_parser("signal", help="send a manual signal through the pipeline")
    signal.add_argument("--ticker", required=True)
    signal.add_argument("--direction", required=True, choices=["long", "short"])
    signal.add_argument("--entry", type=float, required=True, dest="entry_price")
    signal.add_argument("--stop", type=float, required=True, dest="stop_loss")
    signal.add_argument("--target", type=float, dest="target_price")
    signal.add_argument("--conviction", type=float, default=75.0)
    signal.add_argument("--timeframe", default="5m")
    signal.add_argument("--signal-type", default="manual")
    signal.add_argument("--json", action="store_true")

    for name in ("buy", "sell"):
        trade = sub.add_parser(name, help=f"{name} through the kill switch and the risk limits")
        trade.add_argument("ticker")
        size = trade.add_mutually_exclusive_group(required=True)
        size.add_argument("--dollars", type=float)
        size.add_argument("--shares", type=float)
        if name == "sell":
            trade.add_argument("--short", action="store_true", help="allow opening a short")
        trade.add_argument("--json", action="store_true")
    rebalance = sub.add_parser("rebalance", help="rebalance to target weights (preview unless --execute)")
    rebalance.add_argument("targets", type=Path, help="TOML file: ticker = weight, e.g. AAPL = 0.3")
    rebalance.add_argument("--execute", action="store_true")
    rebalance.add_argument("--json", action="store_true")

    replay = sub.add_parser("replay", help="run the whole pipeline over a CSV of bars, print the summaries")
    replay.add_argument("file", type=Path, help="CSV of timestamp,symbol,open,high,low,close,volume, "
                        "or 'embedded' for the built-in synthetic data")
    replay.add_argument("--timeframe", help="bar interval of the file (inferred when omitted)")
    replay.add_argument("--json", action="store_true")

    config = sub.add_parser("config", help="configuration")
    config_sub = config.add_subparsers(dest="config_command", required=True)
    config_sub.add_parser("show", help="print the effective settings (secrets masked)")
    return parser


def _load(args: argparse.Namespace, **overrides: Any) -> Settings:
    if args.state_dir:
        overrides["state_dir"] = args.state_dir
    elif os.environ.get("ORDERGATE_STATE_DIR"):
        overrides["state_dir"] = os.environ["ORDERGATE_STATE_DIR"]
    return load_settings(args.config, **overrides)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return _dispatch(args)
    except ConfigError as exc:
        print(f"ordergate: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return EXIT_FAIL


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
    from daemon.commands import run_command

    return run_command(args, _load(args))


def _run(args: argparse.Namespace) -> int:
    overrides: dict[str, Any] = {}
    if args.broker:
        overrides["broker"] = {"primary": args.broker}
    logging_overrides = {k: v for k, v in (("level", args.log_level), ("format", args.log_format)) if v}
    if logging_overrides:
        overrides["logging"] = logging_overrides
    settings = _load(args, **overrides)
    problems = _preflight(settings)
    if problems:
        print(f"ordergate: {'; '.join(problems)}", file=sys.stderr)
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
    from daemon.app import Daemon

    try:
        import uvloop

        runner = uvloop.run
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        runner = asyncio.run
    try:
        return runner(Daemon(settings, args.config or os.environ.get("ORDERGATE_CONFIG")).run())
    finally:
        lock.release()


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
