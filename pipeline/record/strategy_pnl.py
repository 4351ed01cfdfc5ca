"""Each strategy's closed P&L per New York day: fed by the lifecycle's closed trades, rebuilt from the journal's
trades at start (every day it holds, not only the clock's at start: a simulated run resumes later in its data).
The strategy budgets read it (pipeline.entry.strategy_budget: a strategy's daily loss limit)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date, datetime
from typing import Any

from pipeline.core.calendar import trading_day
from pipeline.record.journal import Journal


class StrategyPnL:
    """Closed P&L per (day, strategy)."""

    def __init__(self) -> None:
        self._pnl: dict[tuple[date, str], float] = {}

    def record(self, strategy: str, pnl: float, exit_time: datetime) -> None:
        """A closed trade of `strategy`, counted on the New York day of its exit; older days are forgotten."""
        day = trading_day(exit_time)
        key = (day, strategy)
        self._pnl[key] = self._pnl.get(key, 0.0) + pnl
        for old in [k for k in self._pnl if k[0] < day]:
            del self._pnl[old]

    def daily_pnl(self, strategy: str, day: date) -> float:
        return self._pnl.get((day, strategy), 0.0)

    def restore(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Add journal rows (`day`, `strategy`, `pnl`)."""
        for row in rows:
            if row.get("day") and row.get("strategy"):
                key = (date.fromisoformat(str(row["day"])), str(row["strategy"]))
                self._pnl[key] = self._pnl.get(key, 0.0) + float(row["pnl"] or 0.0)

    async def restore_from(self, journal: Journal) -> None:
        """Each strategy's closed P&L per day from the journal's trades (a restart keeps each one's daily loss)."""
        self.restore(await journal.query("SELECT day, strategy, SUM(pnl) AS pnl FROM trades GROUP BY day, strategy"))
