"""Per-strategy summaries of a run (replay) that add up to the account's.

For each strategy: its closed trades (count, wins, losses, realized P&L, average R), the unrealized P&L of
the positions it still holds, and its return = (realized + unrealized) / the account's starting equity (the
share of the account's return it earned; every strategy trades the same account). The account's line is
the same figures over every trade and position, so each column of the strategies sums to the account's
(`account` holds them; `check_sums` says where they would not).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from pipeline.core.models import Position
from pipeline.record.trade_journal import ClosedTrade

_DIGITS = 6
NO_STRATEGY = "(none)"  # trades and positions that carry no strategy (an older journal, an adopted position)
ADDITIVE = ("trades", "wins", "losses", "realized_pnl", "unrealized_pnl", "pnl", "return", "open_positions")


def _line(trades: list[ClosedTrade], positions: list[Position], initial: float) -> dict[str, Any]:
    realized = math.fsum(t.pnl for t in trades)
    unrealized = math.fsum(p.unrealized_pnl for p in positions)
    count = len(trades)
    return {
        "trades": count,
        "wins": sum(1 for t in trades if t.pnl > 0),
        "losses": sum(1 for t in trades if t.pnl < 0),
        "realized_pnl": realized,
        "unrealized_pnl": unrealized,
        "pnl": realized + unrealized,
        "return": (realized + unrealized) / initial if initial > 0 else 0.0,
        "avg_r": math.fsum(t.r_multiple for t in trades) / count if count else 0.0,
        "open_positions": len(positions),
    }


def _rounded(line: dict[str, Any]) -> dict[str, Any]:
    return {k: round(v, _DIGITS) if isinstance(v, float) else v for k, v in line.items()}


def strategy_summaries(trades: Iterable[ClosedTrade], positions: Iterable[Position], initial: float,
                       names: Iterable[str] = ()) -> dict[str, Any]:
    """{"strategies": {name: line}, "account": line}; `names` are listed even when they did not trade."""
    trades, positions = list(trades), list(positions)
    groups: dict[str, tuple[list[ClosedTrade], list[Position]]] = {n: ([], []) for n in names}
    for t in trades:
        groups.setdefault(t.strategy or NO_STRATEGY, ([], []))[0].append(t)
    for p in positions:
        groups.setdefault(p.strategy or NO_STRATEGY, ([], []))[1].append(p)
    lines = {name: _line(ts, ps, initial) for name, (ts, ps) in groups.items()}
    account = _line(trades, positions, initial)
    return {"strategies": {k: _rounded(v) for k, v in lines.items()}, "account": _rounded(account)}


def check_sums(summary: dict[str, Any], tolerance: float = 1e-4) -> list[str]:
    """Where the strategies' lines do not add up to the account's (empty when they do)."""
    problems = []
    for key in ADDITIVE:
        total = sum(line[key] for line in summary["strategies"].values())
        if abs(total - summary["account"][key]) > tolerance:
            problems.append(f"{key}: strategies sum to {total}, account has {summary['account'][key]}")
    return problems
