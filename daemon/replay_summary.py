"""The human summary of `ordergate replay`: what was read, where the signals went, the trades, the
performance against buy-and-hold; and the progress line shown on a TTY during long replays."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, TextIO


def percent(value: float | None) -> str:
    """A ratio as a percentage with two decimals; 'n/a' when there is none (a run too short to annualise)."""
    return "n/a" if value is None else f"{value:.2%}"

MAX_PROBLEMS_SHOWN = 20


def tty_progress(stream: TextIO) -> Callable[[datetime, int, int, int], None]:
    """A progress callback that rewrites one line on `stream` (a terminal)."""

    def show(now: datetime, bars: int, signals: int, entries: int) -> None:
        stream.write(f"\rreplay at {now:%Y-%m-%d %H:%M}Z: {bars:,} bars, {signals:,} signals, {entries:,} entries ")
        stream.flush()

    return show


def print_human(result: dict[str, Any]) -> None:
    """Print the replay's result for a reader."""
    print(f"replay {result['file']}: {result['bars']} bars ({result['timeframe']}), {result['signals']} signals, "
          f"{result['entries']} entries, {result['exits']} exits, {result['open_positions']} still open")
    for f in result.get("files", []):
        symbol = f"symbol {f['symbol']} from {f['symbol_origin']}" if f["symbol"] else "symbols from its column"
        print(f"  read {f['file']}: {f['layout']}, {symbol}, {f['timeframe']} bars")
    problems = result["problems"]
    for problem in problems[:MAX_PROBLEMS_SHOWN]:
        where = f"{problem['file']} line" if problem.get("file") else "line"
        print(f"  {where} {problem['line']}: {problem['reason']}")
    if len(problems) > MAX_PROBLEMS_SHOWN:
        print(f"  ... {len(problems) - MAX_PROBLEMS_SHOWN} more bad rows")
    _print_stages(result)
    _print_trades(result)
    _print_strategies(result)
    _print_performance(result)


def _print_stages(result: dict[str, Any]) -> None:
    stages = result.get("stages") or {}
    if stages:
        print("signals by stage: " + ", ".join(
            f"{stage} {n}" if stage == outcome else f"{stage} {outcome} {n}"
            for stage, outcomes in stages.items() for outcome, n in outcomes.items()))
    top = result.get("top_rejections") or []
    if top:
        print("top rejection reasons:")
        for r in top:
            print(f"  {r['count']:>5}  {r['stage']}/{r['kind']}: e.g. {r['example'][:150]}")


def _print_trades(result: dict[str, Any]) -> None:
    header = f"{result['period']:<10} {'trades':>6} {'wins':>5} {'losses':>6} {'win%':>6} {'gross P&L':>12} " \
             f"{'avg R':>6} {'max DD':>10}"
    print(header)
    rows = [*result["periods"].items(), ("total", result["total"])]
    for label, s in rows:
        print(f"{label:<10} {s['trades']:>6} {s['wins']:>5} {s['losses']:>6} {s['win_rate'] * 100:>5.1f}% "
              f"{s['gross_pnl']:>12,.2f} {s['avg_r']:>6.2f} {s['max_drawdown']:>10,.2f}")
    by_exit = result["total"].get("by_exit_type") or {}
    if by_exit:
        print("trades by exit type: " + ", ".join(
            f"{k} {v['trades']} ({v['gross_pnl']:+,.2f})" for k, v in sorted(by_exit.items())))


def _print_strategies(result: dict[str, Any]) -> None:
    """One line per strategy and the account's: they add up (trades, P&L, return)."""
    strategies = result.get("strategies") or {}
    account = result.get("account")
    if not strategies or account is None:
        return
    print(f"{'strategy':<16} {'trades':>6} {'wins':>5} {'realized':>12} {'unrealized':>11} {'P&L':>12} {'return':>8}")
    for label, s in [*strategies.items(), ("account", account)]:
        print(f"{label[:16]:<16} {s['trades']:>6} {s['wins']:>5} {s['realized_pnl']:>12,.2f} "
              f"{s['unrealized_pnl']:>11,.2f} {s['pnl']:>12,.2f} {s['return']:>8.2%}")


def _print_performance(result: dict[str, Any]) -> None:
    perf, hold = result.get("performance"), result.get("buy_and_hold")
    if not perf or not hold:
        return
    print(f"{'':<14} {'total':>9} {'annual':>8} {'Sharpe':>7} {'max DD':>8} {'exposure':>9} {'final equity':>14}")
    for label, p in (("strategy", perf), ("buy & hold", hold)):
        print(f"{label:<14} {p['total_return']:>9.2%} {percent(p['annualised_return']):>8} {p['sharpe']:>7.2f} "
              f"{p['max_drawdown']:>8.2%} {p.get('exposure', 0.0):>9.1%} {p['final_equity']:>14,.2f}")
    symbols = hold.get("symbols") or {}
    if symbols:
        print("buy & hold by symbol: " + ", ".join(f"{s} {r:+.1%}" for s, r in symbols.items()))
