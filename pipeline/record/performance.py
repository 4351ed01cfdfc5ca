"""Performance of a run from its equity curve: the figures a trader reads in a replay report.

`EquityRecorder` samples the account's equity at the close of each New York day (the last mark of the day)
and whether a position was open at each step, and the closes of every symbol for buy-and-hold. `performance()`
is pure: total and annualised return, Sharpe (daily returns, 252 a year, no risk-free rate), max drawdown
(fraction and dollars), exposure time, from the curve; `buy_and_hold()` the same for an equal-weight book of
the replayed symbols bought at their first close and held.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from itertools import pairwise
from typing import Any

from pipeline.core.calendar import NEW_YORK

TRADING_DAYS = 252
_NEVER_LO, _NEVER_HI = datetime.max.replace(tzinfo=UTC), datetime.min.replace(tzinfo=UTC)  # an empty day


@dataclass(slots=True)
class EquityRecorder:
    """Day-close equity, exposure and symbol closes, fed once per replayed time step."""

    days: dict[date, float] = field(default_factory=dict)
    steps: int = 0
    steps_exposed: int = 0
    first_close: dict[str, float] = field(default_factory=dict)
    last_close: dict[str, float] = field(default_factory=dict)
    hold_days: dict[date, float] = field(default_factory=dict)
    keep_closes: bool = False   # also keep each symbol's day closes (the report's price charts)
    closes: dict[str, dict[date, float]] = field(default_factory=dict)
    _day: date | None = None    # the New York day of the latest step, and its bounds in UTC
    _lo: datetime = _NEVER_LO
    _hi: datetime = _NEVER_HI

    def record(self, ts: datetime, equity: float, exposed: bool, closes: dict[str, float]) -> None:
        """One step at `ts`: the equity after it, whether any position is open, the bars' closes."""
        self.record_step(ts, equity, exposed, list(closes), list(closes.values()))

    def record_step(self, ts: datetime, equity: float, exposed: bool, symbols: Sequence[str],
                    closes: Sequence[float]) -> None:
        """`record` with the step's symbols and closes side by side (a replay's BarBatch: no dict per step)."""
        if not self._lo <= ts < self._hi:
            day = ts.astimezone(NEW_YORK).date()
            if day != self._day:
                self._settle_day()
                self._day = day
            self._lo = datetime.combine(day, time(0), NEW_YORK).astimezone(UTC)
            self._hi = datetime.combine(day + timedelta(days=1), time(0), NEW_YORK).astimezone(UTC)
        day = self._day
        self.days[day] = equity
        self.steps += 1
        self.steps_exposed += exposed
        last = self.last_close
        last.update(zip(symbols, closes, strict=True))
        if len(last) != len(self.first_close):
            for symbol, close in zip(symbols, closes, strict=True):
                self.first_close.setdefault(symbol, close)
        if self.keep_closes:
            for symbol, close in zip(symbols, closes, strict=True):
                self.closes.setdefault(symbol, {})[day] = close

    def _settle_day(self) -> None:
        """The buy-and-hold value of the current day: its last step's closes (the day's close) decide it, so it
        is computed once, when the day is over (or the curve is read), not at every step."""
        if self._day is not None and self.first_close:
            self.hold_days[self._day] = sum(self.last_close[s] / c for s, c in self.first_close.items()) / len(
                self.first_close)

    def curve(self) -> list[tuple[date, float]]:
        return sorted(self.days.items())

    def hold_curve(self, initial: float) -> list[tuple[date, float]]:
        """Equal-weight buy-and-hold of the symbols seen, worth `initial` at the start (symbols seen later join
        at their own first close)."""
        self._settle_day()
        return [(d, initial * g) for d, g in sorted(self.hold_days.items())]

    @property
    def exposure(self) -> float:
        """Fraction of the replayed time steps that ended with a position open."""
        return self.steps_exposed / self.steps if self.steps else 0.0


MIN_ANNUALISED_DAYS = 90  # a shorter run's return is not annualised: a good week would read as 1 000 %/year


def performance(curve: list[tuple[date, float]], initial: float, exposure: float | None = None) -> dict[str, Any]:
    """The figures of a day-close equity curve starting from `initial`."""
    values = [initial, *(v for _, v in curve)]
    final = values[-1]
    total = final / initial - 1.0 if initial > 0 else 0.0
    days = (curve[-1][0] - curve[0][0]).days if len(curve) > 1 else 0
    annual: float | None = None
    if days >= MIN_ANNUALISED_DAYS:
        annual = (1.0 + total) ** (365.25 / days) - 1.0 if total > -1.0 else -1.0
    returns = [b / a - 1.0 for a, b in pairwise(values) if a > 0]
    sharpe = 0.0
    if len(returns) > 1:
        mean = sum(returns) / len(returns)
        sd = math.sqrt(sum((r - mean) ** 2 for r in returns) / (len(returns) - 1))
        sharpe = mean / sd * math.sqrt(TRADING_DAYS) if sd > 0 else 0.0
    peak, worst, worst_dollars = values[0], 0.0, 0.0
    for v in values:
        peak = max(peak, v)
        if peak > 0 and 1.0 - v / peak > worst:
            worst, worst_dollars = 1.0 - v / peak, peak - v
    result: dict[str, Any] = {
        "initial_equity": round(initial, 2), "final_equity": round(final, 2),
        "total_return": round(total, 6), "annualised_return": round(annual, 6) if annual is not None else None,
        "sharpe": round(sharpe, 4),
        "max_drawdown": round(worst, 6), "max_drawdown_dollars": round(worst_dollars, 2), "days": len(curve),
    }
    if exposure is not None:
        result["exposure"] = round(exposure, 6)
    return result


def buy_and_hold(recorder: EquityRecorder, initial: float) -> dict[str, Any]:
    """The figures of holding the replayed symbols (equal weight) for the whole run."""
    result = performance(recorder.hold_curve(initial), initial, exposure=1.0 if recorder.steps else 0.0)
    result["symbols"] = {s: round(recorder.last_close[s] / c - 1.0, 6) for s, c in sorted(recorder.first_close.items())}
    return result
