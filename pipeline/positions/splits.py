"""Stock splits seen in what the broker holds: the quantity changed while the cost held.

On a split's ex-date the broker rebases the position overnight: r times the shares (less a fraction of a share
paid as cash in lieu), the average price over r. Nothing ordergate sent did that, and no trade can: a hand buy
adds its cost (the average would have to drop by the whole factor, which takes shares bought at a few percent of
the price), a hand sale keeps the average. So a difference whose broker side is the book's quantity
times r at the book's average price over r, r a simple fraction (2, 3/2, 1/10, 21/20 for a 5 % stock dividend),
is a split. The book is then rebased the same way (`Ledger.rescale`, `ExternalBook.rescale`): the entry, the
stop and the target over r, the shares times r. Left alone, the stop-loss exit and the resting stop at the
broker (Alpaca keeps a resting order's prices through a split and multiplies its quantity) would sell the
position on the first tick at the new price.

`SplitRecord` is what the journal keeps (kv `splits`), so a restart rebuilding the ledger from the fills applies
each split after the fills it followed: `fills_before` counts the symbol's journaled fills at the time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from fractions import Fraction
from typing import Any

MAX_DENOMINATOR = 1000     # a 1-for-1000 reverse split is still one, and a 1000-for-1 split
MAX_MIXED_DENOMINATOR = 20  # r = n/m with m > 1 beyond 1/m: 3-for-2, 5-for-4, 21-for-20 (a 5 % stock dividend)
MIN_CHANGE = 0.04          # |r - 1| at least this: a 4 % stock dividend and up (smaller ones look like a small add)
PRICE_TOLERANCE = 0.001    # the broker's average over r, rounded (4 decimals) or with IB's commission in it
AVG_ROUNDING = 0.00005     # half the 4th decimal a broker may round its average to: all the slack a sub-dime one has
JOURNAL_KEY = "splits"     # the journal's kv key of the SplitRecords, oldest first
_EPS = 1e-6


def split_ratio(before_qty: float, before_avg: float, after_qty: float, after_avg: float) -> Fraction | None:
    """The split r (new shares per old share) that turns `before_qty` held at `before_avg` into the broker's
    `after_qty` at `after_avg`, or None when that change is not a split (signed quantities, one side)."""
    values = (before_qty, before_avg, after_qty, after_avg)
    if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values):
        return None
    if before_avg <= 0 or after_avg <= 0 or abs(before_qty) < _EPS or abs(after_qty) < _EPS \
            or (before_qty > 0) != (after_qty > 0):
        return None
    by_price = before_avg / after_avg
    slack = PRICE_TOLERANCE + AVG_ROUNDING / after_avg  # 0.04375 shown as 0.0437 is 0.11 % off
    for candidate in (by_price, abs(after_qty) / abs(before_qty)):
        ratio = _simplest_near(candidate, slack)
        if ratio is None or not _split_like(ratio):
            continue
        if abs(float(ratio) - by_price) > slack * by_price:
            continue  # the average did not move by r: shares were bought or sold, not split
        if _shares_after(abs(before_qty), ratio, abs(after_qty)):
            return ratio
    return None


def _simplest_near(value: float, slack: float = PRICE_TOLERANCE) -> Fraction | None:
    """The fraction with the smallest denominator (at most MAX_MIXED_DENOMINATOR, or 1/n) within `slack` (relative)
    of `value`: 21/20 for 1.05007 (a 5 % stock dividend over an average rounded to 4 decimals), never 1049/999."""
    for den in range(1, MAX_MIXED_DENOMINATOR + 1):
        num = round(value * den)
        if num >= 1 and abs(num / den - value) <= slack * value:
            return Fraction(num, den)
    n = round(1 / value) if value > 0 else 0
    if 1 <= n <= MAX_DENOMINATOR and abs(1 / n - value) <= slack * value:
        return Fraction(1, n)
    return None


def _split_like(ratio: Fraction) -> bool:
    """A ratio a split or a stock dividend has: a move of MIN_CHANGE or more, n-for-1, 1-for-n or n-for-m with a
    small m."""
    if not 1 / MAX_DENOMINATOR <= ratio <= MAX_DENOMINATOR or abs(float(ratio) - 1.0) < MIN_CHANGE:
        return False
    return ratio.numerator == 1 or ratio.denominator <= MAX_MIXED_DENOMINATOR


def _shares_after(before: float, ratio: Fraction, after: float) -> bool:
    """Whether `after` is what `before` shares become in a split by `ratio`: exactly (fractional shares), or
    less than one share fewer (the fraction paid as cash in lieu); never more."""
    expected = before * float(ratio)
    return expected - 1.0 + _EPS < after <= expected + _EPS


def rescaled_quantity(quantity: float, ratio: Fraction, whole: bool) -> float:
    """A signed quantity after the split; `whole`: whole shares only (the fraction is paid out as cash)."""
    new = quantity * float(ratio)
    if not whole:
        return new
    return math.copysign(math.floor(abs(new) + _EPS), new)


def is_whole(quantity: float) -> bool:
    """Whether a quantity is a whole number of shares."""
    return abs(quantity - round(quantity)) < _EPS


@dataclass(frozen=True, slots=True)
class SplitRecord:
    """One split applied to the book: the symbol, r, how many of its fills the journal held before it, when."""

    symbol: str
    ratio: Fraction
    fills_before: int
    at: str            # ISO time it was applied (the injected clock), with its zone
    broker: str = ""
    whole: bool = True  # whole shares: each position's fraction of a share was paid out as cash

    def to_json(self) -> dict[str, Any]:
        return {"symbol": self.symbol, "ratio": f"{self.ratio.numerator}/{self.ratio.denominator}",
                "fills_before": self.fills_before, "at": self.at, "broker": self.broker, "whole": self.whole}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SplitRecord:
        """A record as `to_json` wrote it; raises ValueError naming the field that is wrong."""
        try:
            ratio = Fraction(str(data["ratio"]))
        except (KeyError, ValueError, ZeroDivisionError) as exc:
            raise ValueError(f"split record: bad ratio {data.get('ratio')!r}") from exc
        if ratio <= 0:
            raise ValueError(f"split record: ratio {ratio} is not positive")
        fills = data.get("fills_before")
        if not isinstance(fills, int) or isinstance(fills, bool) or fills < 0:
            raise ValueError(f"split record: bad fills_before {fills!r}")
        symbol = data.get("symbol")
        if not isinstance(symbol, str) or not symbol:
            raise ValueError(f"split record: bad symbol {symbol!r}")
        at = data.get("at")
        try:
            when = datetime.fromisoformat(str(at))
        except ValueError as exc:
            raise ValueError(f"split record: bad at {at!r} (an ISO time)") from exc
        if when.tzinfo is None:
            raise ValueError(f"split record: at {at!r} has no time zone")
        return cls(symbol, ratio, fills, str(at), str(data.get("broker", "")),
                   bool(data.get("whole", True)))


def describe(ratio: Fraction) -> str:
    """A split as people write it: 2-for-1, 3-for-2, 1-for-10."""
    return f"{ratio.numerator}-for-{ratio.denominator}"


class SplitsInOrder:
    """The journaled splits as a rebuild meets them: each is due once its symbol's fills before it are applied."""

    def __init__(self, records: list[SplitRecord]) -> None:
        self.records = list(records)
        self._due: dict[str, list[SplitRecord]] = {}
        for record in records:
            self._due.setdefault(record.symbol, []).append(record)
        self._seen: dict[str, int] = {}

    def before_fill(self, symbol: str) -> list[SplitRecord]:
        """The splits due before the next fill of `symbol` (that fill is counted as seen)."""
        seen = self._seen.get(symbol, 0)
        self._seen[symbol] = seen + 1
        return self._take(symbol, seen)

    def rest(self) -> list[SplitRecord]:
        """The splits due after every fill seen (oldest first per symbol)."""
        return [r for symbol in list(self._due) for r in self._take(symbol, self._seen.get(symbol, 0))]

    def _take(self, symbol: str, seen: int) -> list[SplitRecord]:
        due = self._due.get(symbol)
        if not due:
            return []
        ready = [r for r in due if r.fills_before <= seen]
        if ready:
            self._due[symbol] = [r for r in due if r.fills_before > seen]
        return ready
