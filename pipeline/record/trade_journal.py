"""Closed round trips in the journal's `trades` table, and the summaries printed by `ordergate journal`/`replay`.

`summarize()` is pure and is what every summary uses (a day, a range, replay per day / per month / total):
trades, wins, losses, win rate, gross P&L, average R, max drawdown (peak-to-trough of cumulative P&L in exit
order, starting from zero), broken down by signal type and by exit type.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from pipeline.core.calendar import NEW_YORK, TradingDayCache
from pipeline.core.clock import Clock
from pipeline.core.models import Position
from pipeline.record.journal import Journal, iso_of

_DIGITS = 6
_COLUMNS = (
    "signal_id", "ticker", "symbol", "direction", "signal_type", "timeframe", "entry_time", "exit_time",
    "entry_price", "exit_price", "quantity", "pnl", "r_multiple", "exit_type", "holding_minutes", "broker", "day",
    "exit_fill_id", "strategy",
)


@dataclass(slots=True)
class ClosedTrade:
    """One finished round trip. `day` is the New York date of the exit."""

    signal_id: str
    ticker: str
    symbol: str
    direction: str
    signal_type: str
    timeframe: str
    entry_time: datetime
    exit_time: datetime
    entry_price: float
    exit_price: float
    quantity: float
    pnl: float
    r_multiple: float
    exit_type: str
    holding_minutes: float
    broker: str = ""
    exit_fill_id: str | None = None  # the fill that closed it: a crash between that fill and this row is mended
    strategy: str = ""               # the configured strategy whose position it was

    @property
    def day(self) -> date:
        return self.exit_time.astimezone(NEW_YORK).date()

    @property
    def month(self) -> str:
        """'YYYY-MM' of the New York exit date (replay's per-month summaries of daily bars)."""
        return self.day.strftime("%Y-%m")

    @classmethod
    def from_position(
        cls, position: Position, *, exit_price: float, exit_time: datetime, exit_type: str,
        quantity: float | None = None, commission: float = 0.0,
    ) -> ClosedTrade:
        """Close `quantity` (default: all) of a position at `exit_price`; P&L net of `commission`."""
        qty = abs(position.shares) if quantity is None else abs(quantity)
        sign = 1.0 if position.is_long else -1.0
        pnl = sign * (exit_price - position.entry_price) * qty * position.multiplier - commission
        entry_time = position.entry_time or exit_time
        return cls(
            signal_id=position.signal_id, ticker=position.ticker, symbol=position.symbol,
            direction=position.direction, signal_type=str(position.signal_type), timeframe=position.timeframe,
            entry_time=entry_time, exit_time=exit_time, entry_price=position.entry_price, exit_price=exit_price,
            quantity=qty, pnl=pnl, r_multiple=position.r_multiple(exit_price), exit_type=exit_type,
            holding_minutes=(exit_time - entry_time).total_seconds() / 60.0, broker=position.broker,
            strategy=position.strategy,
        )

    def problems(self) -> list[str]:
        """Every reason this trade cannot be journaled, each naming the field."""
        found = []
        for name in ("entry_time", "exit_time"):
            value = getattr(self, name)
            if not isinstance(value, datetime) or value.tzinfo is None:
                found.append(f"{name}: must be a timezone-aware datetime, got {value!r}")
        for name in ("entry_price", "exit_price", "quantity", "pnl", "r_multiple", "holding_minutes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                found.append(f"{name}: must be a finite number, got {value!r}")
        if not self.ticker:
            found.append("ticker: must not be empty")
        if not self.exit_type:
            found.append("exit_type: must not be empty")
        return found

    def row(self) -> tuple[Any, ...]:
        return (
            self.signal_id, self.ticker, self.symbol or self.ticker, self.direction, self.signal_type,
            self.timeframe, _utc_iso(self.entry_time), _utc_iso(self.exit_time), self.entry_price, self.exit_price,
            self.quantity, self.pnl, self.r_multiple, self.exit_type, self.holding_minutes, self.broker,
            _exit_days(self.exit_time), self.exit_fill_id, self.strategy,
        )

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> ClosedTrade:
        return cls(
            signal_id=row["signal_id"] or "", ticker=row["ticker"], symbol=row["symbol"] or row["ticker"],
            direction=row["direction"] or "", signal_type=row["signal_type"] or "", timeframe=row["timeframe"] or "",
            entry_time=datetime.fromisoformat(row["entry_time"]), exit_time=datetime.fromisoformat(row["exit_time"]),
            entry_price=row["entry_price"], exit_price=row["exit_price"], quantity=row["quantity"], pnl=row["pnl"],
            r_multiple=row["r_multiple"] or 0.0, exit_type=row["exit_type"] or "",
            holding_minutes=row["holding_minutes"] or 0.0, broker=row["broker"] or "",
            exit_fill_id=row.get("exit_fill_id"), strategy=row.get("strategy") or "",
        )


_exit_days = TradingDayCache()  # the `day` column: self.day.isoformat(), without a timezone conversion per trade


def _utc_iso(ts: datetime) -> str:
    # a UTC stamp is its own astimezone(UTC): the journal's isoformat of the last stamps (by identity) serves it
    return iso_of(ts.astimezone(UTC))


# -- pure summaries ---------------------------------------------------------------------------------------
def max_drawdown(pnls: Iterable[float]) -> float:
    """Largest peak-to-trough fall of cumulative P&L (starting at 0), as a non-negative number."""
    equity = peak = worst = 0.0
    for pnl in pnls:
        equity += pnl
        peak = max(peak, equity)
        worst = max(worst, peak - equity)
    return worst


def _stats(trades: list[ClosedTrade]) -> dict[str, Any]:
    count = len(trades)
    wins = sum(1 for t in trades if t.pnl > 0)
    losses = sum(1 for t in trades if t.pnl < 0)
    return {
        "trades": count,
        "wins": wins,
        "losses": losses,
        "win_rate": round(wins / count, _DIGITS) if count else 0.0,
        "gross_pnl": round(math.fsum(t.pnl for t in trades), _DIGITS),
        "avg_r": round(math.fsum(t.r_multiple for t in trades) / count, _DIGITS) if count else 0.0,
        "max_drawdown": round(max_drawdown(t.pnl for t in trades), _DIGITS),
    }


def _grouped(trades: list[ClosedTrade], attr: str) -> dict[str, dict[str, Any]]:
    groups: dict[str, list[ClosedTrade]] = {}
    for trade in trades:
        groups.setdefault(str(getattr(trade, attr)), []).append(trade)
    return {key: _stats(group) for key, group in sorted(groups.items())}


def exit_order(trades: Iterable[ClosedTrade]) -> list[ClosedTrade]:
    """Trades sorted by exit time (stable: equal exit times keep their recorded order)."""
    return sorted(trades, key=lambda t: t.exit_time)


def summarize(trades: Iterable[ClosedTrade]) -> dict[str, Any]:
    """Summary of a set of closed trades (sorted into exit order first); an empty set gives zeros."""
    ordered = exit_order(trades)
    summary = _stats(ordered)
    summary["by_signal_type"] = _grouped(ordered, "signal_type")
    summary["by_exit_type"] = _grouped(ordered, "exit_type")
    return summary


def summarize_by(trades: Iterable[ClosedTrade], period: str = "day") -> dict[str, dict[str, Any]]:
    """One summary per New York exit 'day' (YYYY-MM-DD) or 'month' (YYYY-MM), in date order."""
    if period not in ("day", "month"):
        raise ValueError(f"period: must be 'day' or 'month', got {period!r}")
    groups: dict[str, list[ClosedTrade]] = {}
    for trade in trades:
        key = trade.day.isoformat() if period == "day" else trade.month
        groups.setdefault(key, []).append(trade)
    return {key: summarize(group) for key, group in sorted(groups.items())}


# -- where closed trades go ---------------------------------------------------------------------------------
_REAL_COLUMNS = frozenset(("entry_price", "exit_price", "quantity", "pnl", "r_multiple", "holding_minutes"))


class TradeList:
    """The closed trades of a replay run without a journal, kept in memory: a replay reports the same trades with
    the journal on or off. Each is kept as the journal would give it back (its row read back: UTC times, REAL
    numbers as floats) and `all_trades` orders them as the journal's read does (exit time, then arrival)."""

    def __init__(self) -> None:
        self._trades: list[tuple[str, int, ClosedTrade]] = []

    async def record(self, trade: ClosedTrade) -> int:
        """Keep one closed trade; its number in the run (from 1). A malformed trade raises ValueError naming the
        field, as the journal's writer does."""
        problems = trade.problems()
        if problems:
            raise ValueError("closed trade: " + "; ".join(problems))
        row = dict(zip(_COLUMNS, trade.row(), strict=True))
        for name in _REAL_COLUMNS:
            row[name] = float(row[name])
        number = len(self._trades) + 1
        self._trades.append((row["exit_time"], number, ClosedTrade.from_row(row)))
        return number

    async def unrecorded(self, exit_fill_ids: list[str]) -> list[str]:
        """Of these closing fills, those with no trade kept."""
        known = {t.exit_fill_id for _, _, t in self._trades}
        return [fill_id for fill_id in exit_fill_ids if fill_id not in known]

    async def all_trades(self) -> list[ClosedTrade]:
        return [t for _, _, t in sorted(self._trades, key=lambda entry: entry[:2])]


# -- the journal writer -----------------------------------------------------------------------------------
class TradeJournalWriter:
    """Writes closed trades into the journal's `trades` table and summarizes them."""

    def __init__(self, journal: Journal, clock: Clock | None = None) -> None:
        self.journal = journal
        self.clock = clock

    async def record(self, trade: ClosedTrade) -> int:
        """Commit one closed trade; returns its row id. A malformed trade raises ValueError naming the field."""
        problems = trade.problems()
        if problems:
            raise ValueError("closed trade: " + "; ".join(problems))
        return await self.journal.append_row("trades", _COLUMNS, trade.row())

    async def unrecorded(self, exit_fill_ids: list[str]) -> list[str]:
        """Of these closing fills (in fill order), those with no trade row: a crash came between the fill and its
        row. Rows of journals older than the column (no exit_fill_id) stand for the first trips in order."""
        rows = await self.journal.query("SELECT exit_fill_id FROM trades")
        known = {r["exit_fill_id"] for r in rows if r["exit_fill_id"]}
        legacy = sum(1 for r in rows if not r["exit_fill_id"])
        missing = []
        for fill_id in exit_fill_ids:
            if fill_id in known:
                continue
            if legacy:
                legacy -= 1
                continue
            missing.append(fill_id)
        return missing

    async def trades_between(self, start: date, end: date) -> list[ClosedTrade]:
        """Closed trades whose New York exit day is within [start, end], in exit order."""
        rows = await self.journal.query(
            "SELECT * FROM trades WHERE day >= ? AND day <= ? ORDER BY exit_time, id",
            (start.isoformat(), end.isoformat()),
        )
        return [ClosedTrade.from_row(r) for r in rows]

    async def all_trades(self) -> list[ClosedTrade]:
        rows = await self.journal.query("SELECT * FROM trades ORDER BY exit_time, id")
        return [ClosedTrade.from_row(r) for r in rows]

    async def summary_between(self, start: date, end: date) -> dict[str, Any]:
        """Summary of the trades that exited between two New York dates, inclusive."""
        if start > end:
            raise ValueError(f"start: {start} is after end {end}")
        summary = summarize(await self.trades_between(start, end))
        summary["start"] = start.isoformat()
        summary["end"] = end.isoformat()
        return summary

    async def daily_summary(self, day: date | None = None) -> dict[str, Any]:
        """Summary of one New York trading day.

        Without `day`: today by the clock if the writer has one, else the latest day with a closed trade (an
        empty summary with day None when there is none).
        """
        if day is None:
            day = await self._default_day()
        if day is None:
            summary = summarize([])
            summary["day"] = None
            return summary
        summary = summarize(await self.trades_between(day, day))
        summary["day"] = day.isoformat()
        return summary

    async def _default_day(self) -> date | None:
        if self.clock is not None:
            return self.clock.now().astimezone(NEW_YORK).date()
        rows = await self.journal.query("SELECT MAX(day) AS day FROM trades")
        latest = rows[0]["day"] if rows else None
        return date.fromisoformat(latest) if latest else None
