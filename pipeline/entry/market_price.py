"""MarketPrice: the orchestrator stage that puts an entry signal on the current market price, before the gate.

A signal's `entry_price` is what its sender believed; the order fills at the market. So every entry is decided,
sized and reserved on the market price (the last bar or quote of the data feed; the paper broker's own price):

- no market price at all -> rejected (never a guess from the signal);
- `entry_price` more than `max_entry_deviation` (a fraction of the market) away -> rejected, naming both prices;
- otherwise the signal is moved to the market: entry = market, stop and target shifted by the same offset, so
  the risk per share (and the reward) is the one the signal gave.
"""

from __future__ import annotations

import dataclasses
import math
import operator
from typing import Any

from pipeline.core.models import TradeSignal

SIGNAL_ENTRY_KEY = "signal_entry_price"  # metadata of a moved signal: the entry price it came with


class MarketPricing:
    """The stage's outcome: the signal on the market price (approved), or why not. An approval keeps the figures
    it found and makes its reason and detail from them when first read."""

    __slots__ = ("_detail", "_figures", "_reason", "approved", "signal")

    def __init__(self, approved: bool, reason: str, signal: TradeSignal | None = None,
                 detail: dict[str, Any] | None = None, figures: tuple[float, float, float] | None = None) -> None:
        """`figures` (market, entry, deviation) of an approval: its reason and detail, made when first read."""
        self.approved = approved
        self.signal = signal
        self._reason = reason
        self._detail: dict[str, Any] = {} if detail is None else detail
        self._figures = figures  # not described yet

    @property
    def reason(self) -> str:
        if self._figures is not None:
            self._describe()
        return self._reason

    @property
    def detail(self) -> dict[str, Any]:
        if self._figures is not None:
            self._describe()
        return self._detail

    def describe(self) -> tuple[str, dict[str, Any]]:
        """(reason, detail): what the decision record notes of this stage."""
        return self.reason, self.detail

    def _describe(self) -> None:
        if self._figures is None:
            return
        market, entry, deviation = self._figures
        self._figures = None
        self._reason = f"entry on the market price {market:,.2f} (signal {entry:,.2f}, {deviation:.2%} away)"
        self._detail = _detail(market, entry, deviation)


def _detail(market: float, entry: float, deviation: float) -> dict[str, Any]:
    return {"market_price": round(market, 6), "signal_entry_price": entry, "deviation": round(deviation, 6)}


def usable_price(price: Any) -> float | None:
    """A price that can be traded on (finite and > 0) as a float, else None."""
    if isinstance(price, bool) or not isinstance(price, (int, float)) or not math.isfinite(price) or price <= 0:
        return None
    return float(price)


def price_on_market(signal: TradeSignal, market: float | None, max_deviation: float) -> MarketPricing:
    """Check the signal's entry against the market price and move it there (see the module docstring)."""
    entry = signal.entry_price
    if market.__class__ is not float or not 0.0 < market < math.inf:  # a float price passes as it is
        market = usable_price(market)
    if market is None:
        return MarketPricing(False, f"market_price: no market price for {_ticker(signal)} (no bar or quote yet); "
                             f"the signal's entry_price {entry:,.2f} is not traded on")
    deviation = abs(entry - market) / market
    if deviation > max_deviation:
        return MarketPricing(False, f"market_price: entry_price {entry:,.2f} is {deviation:.2%} from the market "
                             f"price {market:,.2f} of {_ticker(signal)} (max_entry_deviation {max_deviation:.2%})",
                             detail=_detail(market, entry, deviation))
    offset = market - entry
    stop = signal.stop_loss + offset
    target = signal.target_price + offset if signal.target_price is not None else None
    if stop <= 0 or (target is not None and target <= 0):
        return MarketPricing(False, f"market_price: stop_loss {signal.stop_loss:,.2f} moved with the entry to the "
                             f"market price {market:,.2f} is not a positive price",
                             detail=_detail(market, entry, deviation))
    metadata = {**signal.metadata, SIGNAL_ENTRY_KEY: entry} if isinstance(signal.metadata, dict) else \
        {SIGNAL_ENTRY_KEY: entry}
    return MarketPricing(True, "", _moved(signal, market, stop, target, metadata), None, (market, entry, deviation))


def _ticker(signal: TradeSignal) -> str:
    return str(signal.ticker).strip().upper()


def _moved(signal: TradeSignal, entry: float, stop: float, target: float | None,
           metadata: dict[str, Any]) -> TradeSignal:
    """A copy of `signal` at new prices: every field copied (positionally, in the dataclass's field order),
    without dataclasses.replace's keyword rebuild."""
    moved = TradeSignal(*_signal_values(signal))
    moved.entry_price, moved.stop_loss, moved.target_price, moved.metadata = entry, stop, target, metadata
    return moved


_signal_values = operator.attrgetter(*(f.name for f in dataclasses.fields(TradeSignal)))
