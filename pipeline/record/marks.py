"""The last marks of the open positions, kept in the journal so a reader without the daemon can value them.

The daemon writes one kv row, `marks`: `{"at": <its clock, ISO>, "prices": {symbol: [price, multiplier]}}`, on
each housekeeping pass and at shutdown; `ordergate desk` reads it beside the fills to show unrealised P&L as of
that time (a position whose symbol has no mark shows none, rather than a guess).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from pipeline.core.models import Position

MARKS_KEY = "marks"


def snapshot(positions: Iterable[Position], at: datetime) -> dict[str, Any]:
    """The marks row for these open positions (the latest price each was marked at, and its multiplier)."""
    return {"at": at.isoformat(),
            "prices": {p.symbol: [float(p.current_price), float(p.multiplier)] for p in positions}}


def unrealized(direction: str, shares: float, avg_price: float, mark: Any) -> float | None:
    """Unrealised P&L of a position at a mark from `snapshot` (`[price, multiplier]`); None without a usable mark."""
    if not isinstance(mark, list | tuple) or len(mark) != 2:
        return None
    try:
        price, multiplier = float(mark[0]), float(mark[1])
    except (TypeError, ValueError):
        return None
    if not (price > 0 and multiplier > 0):
        return None
    sign = 1.0 if direction == "long" else -1.0
    return round(sign * (price - avg_price) * shares * multiplier, 2)
