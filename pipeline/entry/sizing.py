"""Position sizing: risk-based shares for stocks, matched dollar risk for leveraged ETFs, contracts for options.

Stock: equity x max_risk_per_trade x conviction factor (conviction/100, floor 0.25) x feedback weight, divided by
the stop distance |entry - stop|, floored to whole shares, then capped by the room left under the single-stock
limit, the sector limit and buying power (each cap recorded in `adjustments`). Fewer than one share, or a
notional below min_position_value, gives shares=0 with a reason: the orchestrator rejects it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import msgspec

from config.settings import ExecutorConfig
from pipeline.core.models import OPTION_MULTIPLIER, AccountState, TradeSignal
from pipeline.entry.risk_gate import sector_exposure, ticker_exposure
from pipeline.instruments.options import OptionQuote, option_stop_price

MIN_CONVICTION_FACTOR = 0.25
BUYING_POWER_SLIPPAGE_BUFFER = 0.005  # default slippage: 50 bps of adverse fill allowed for before the broker refuses


class SizingResult(msgspec.Struct):
    """How many shares (or contracts) to trade, what they cost, and which caps applied."""

    shares: int
    notional: float
    adjustments: dict[str, Any] = msgspec.field(default_factory=dict)
    reason: str = ""
    risk_amount: float = 0.0          # dollars lost if the stop is hit (premium for options)
    stop_price: float | None = None   # the instrument's stop (the ETF stop for leveraged ETFs)

    @property
    def ok(self) -> bool:
        return self.shares >= 1


def conviction_factor(conviction: float) -> float:
    """conviction / 100, floored at 0.25 and capped at 1."""
    return min(1.0, max(MIN_CONVICTION_FACTOR, conviction / 100.0))


def risk_budget(config: ExecutorConfig, account: AccountState, conviction: float, weight: float) -> float:
    """Dollars this trade may lose: equity x max_risk_per_trade x conviction factor x feedback weight."""
    return max(0.0, account.equity) * config.max_risk_per_trade * conviction_factor(conviction) * max(0.0, weight)


def _floor_units(amount: float, unit_cost: float) -> int:
    if unit_cost <= 0 or not math.isfinite(unit_cost) or amount <= 0:
        return 0
    ratio = amount / unit_cost
    return math.floor(ratio * (1.0 + 1e-9)) if math.isfinite(ratio) else 0  # 299.99999999996 -> 300


def apply_caps(
    units: int, unit_cost: float, adjustments: dict[str, Any], config: ExecutorConfig, account: AccountState,
    ticker: str, sector: str | None, sectors: Mapping[str, str], slippage: float = BUYING_POWER_SLIPPAGE_BUFFER,
) -> int:
    """Cap `units` by the room left under each limit, in turn: the single stock, its sector (when it has one),
    buying power; each cap that bites is recorded in `adjustments` as `<name>_cap`."""
    equity = account.equity
    held = account.open_positions
    room = config.max_single_stock_exposure * equity - (ticker_exposure(account, ticker) if held else 0)
    units = _cap(units, unit_cost, "single_stock", room, adjustments)
    if sector is not None:
        room = config.max_sector_exposure * equity - (sector_exposure(account, sector, sectors) if held else 0)
        units = _cap(units, unit_cost, "sector", room, adjustments)
    # a market order fills `slippage` away from the market price: it must fit in buying power at that price
    return _cap(units, unit_cost, "buying_power", account.buying_power / (1.0 + slippage), adjustments)


def _cap(units: int, unit_cost: float, name: str, room: float, adjustments: dict[str, Any]) -> int:
    if 0.0 < unit_cost < math.inf and units * unit_cost <= room < math.inf:
        return units  # they fit: _floor_units(room, unit_cost) >= units (its 1e-9 margin covers the rounding)
    allowed = _floor_units(room, unit_cost)
    if units > allowed:
        adjustments[f"{name}_cap"] = {"from": units, "to": allowed, "room": round(max(room, 0.0), 2)}
        return allowed
    return units


def _finish(
    units: int, unit_cost: float, unit_risk: float, config: ExecutorConfig, adjustments: dict[str, Any],
    what: str, stop_price: float | None = None,
) -> SizingResult:
    notional = units * unit_cost
    if units < 1:
        return SizingResult(0, 0.0, adjustments, f"sizing: below one {what} after caps {sorted(adjustments)}",
                            stop_price=stop_price)
    if notional < config.min_position_value:
        return SizingResult(
            0, 0.0, adjustments,
            f"sizing: notional {notional:,.2f} < min_position_value {config.min_position_value:,.2f}",
            stop_price=stop_price,
        )
    return SizingResult(units, round(notional, 2), adjustments, f"{units} {what}(s)",
                        round(units * unit_risk, 2), stop_price)


class _Sizer:
    """What every sizer holds: the limits, the ticker -> sector map and the buying-power slippage buffer."""

    def __init__(
        self, config: ExecutorConfig, sectors: Mapping[str, str] | None = None,
        slippage: float = BUYING_POWER_SLIPPAGE_BUFFER,
    ) -> None:
        self.config = config
        self.sectors: Mapping[str, str] = sectors or {}
        self.slippage = slippage

    def reconfigure(self, config: ExecutorConfig) -> None:
        """Size with new limits from now on (a SIGHUP reload)."""
        self.config = config

    def _capped(self, units: int, unit_cost: float, adjustments: dict[str, Any], signal: TradeSignal,
                account: AccountState, sector: str | None) -> int:
        ticker = signal.ticker.strip().upper()
        return apply_caps(units, unit_cost, adjustments, self.config, account, ticker,
                          sector or self.sectors.get(ticker), self.sectors, self.slippage)


class PositionSizer(_Sizer):
    """Risk-based position sizing with exposure and buying-power caps (the spec's PositionSizer)."""

    def size(
        self,
        signal: TradeSignal,
        account: AccountState,
        weight: float = 1.0,
        sector: str | None = None,
        price: float | None = None,
    ) -> SizingResult:
        """Whole shares of the signal's ticker; `price` (default entry) prices the notional and the caps."""
        price = price or signal.entry_price
        stop_distance = signal.risk_per_share
        factor = conviction_factor(signal.conviction)
        # risk_budget(), with the factor found once
        budget = max(0.0, account.equity) * self.config.max_risk_per_trade * factor * max(0.0, weight)
        if stop_distance <= 0 or price <= 0:
            return SizingResult(0, 0.0, {"risk_budget": round(budget, 2), "conviction_factor": factor,
                                         "weight": weight},
                                f"sizing: stop distance {stop_distance} / price {price} not > 0")
        shares = _floor_units(budget, stop_distance)
        adjustments: dict[str, Any] = {"risk_budget": round(budget, 2), "conviction_factor": factor, "weight": weight,
                                       "risk_shares": shares}
        ticker = signal.ticker.strip().upper()
        shares = apply_caps(shares, price, adjustments, self.config, account, ticker,
                            sector or self.sectors.get(ticker), self.sectors, self.slippage)
        return _finish(shares, price, stop_distance, self.config, adjustments, "share")

    def size_option(
        self,
        signal: TradeSignal,
        account: AccountState,
        quote: OptionQuote,
        weight: float = 1.0,
        sector: str | None = None,
    ) -> SizingResult:
        """Whole contracts of a long option: the premium at the ask is the most it can lose."""
        premium = quote.ask * OPTION_MULTIPLIER
        budget = risk_budget(self.config, account, signal.conviction, weight)
        adjustments: dict[str, Any] = {"risk_budget": round(budget, 2), "premium_per_contract": round(premium, 2)}
        if premium <= 0:
            return SizingResult(0, 0.0, adjustments, f"sizing: option {quote.occ_symbol} has no ask")
        contracts = _floor_units(budget, premium)
        adjustments["risk_contracts"] = contracts
        contracts = self._capped(contracts, premium, adjustments, signal, account, sector)
        # the position's stop: where the premium stands when the underlying reaches the signal's stop (never the
        # entry premium itself, which every mark at or under the ask would hit at once)
        stop = option_stop_price(quote, signal.risk_per_share)
        adjustments["option_stop"] = stop
        return _finish(contracts, premium, premium, self.config, adjustments, "contract", stop_price=stop)


def etf_stop_price(signal: TradeSignal, etf_price: float, leverage: float) -> float:
    """The ETF stop: the underlying's stop distance as a fraction of entry, times leverage, below the ETF price.

    The ETF position is always long (bull fund for long signals, bear fund for short), so the stop is below.
    """
    return etf_price * (1.0 - leverage * signal.risk_per_share / signal.entry_price)


class LeveragedETFSizer(_Sizer):
    """Sizes a leveraged ETF so its dollar risk to the stop matches the underlying trade's."""

    def compute_shares(
        self,
        signal: TradeSignal,
        account: AccountState,
        etf_price: float,
        leverage: float = 3.0,
        weight: float = 1.0,
        sector: str | None = None,
    ) -> SizingResult:
        """ETF shares and the ETF stop: stop fraction = underlying stop fraction x leverage, same dollar risk."""
        budget = risk_budget(self.config, account, signal.conviction, weight)
        stop_fraction = leverage * signal.risk_per_share / signal.entry_price if signal.entry_price > 0 else math.inf
        adjustments: dict[str, Any] = {"risk_budget": round(budget, 2), "leverage": leverage,
                                       "etf_stop_fraction": round(stop_fraction, 6)}
        if not (math.isfinite(etf_price) and etf_price > 0) or leverage <= 0:
            return SizingResult(0, 0.0, adjustments, f"sizing: etf_price {etf_price} / leverage {leverage} not > 0")
        if not 0 < stop_fraction < 1:
            return SizingResult(0, 0.0, adjustments,
                                f"sizing: stop distance x leverage = {stop_fraction:.1%} of the ETF price, not < 100%")
        stop = round(etf_stop_price(signal, etf_price, leverage), 4)
        risk_per_etf_share = etf_price * stop_fraction
        shares = _floor_units(budget, risk_per_etf_share)
        adjustments["risk_shares"] = shares
        shares = self._capped(shares, etf_price, adjustments, signal, account, sector)
        return _finish(shares, etf_price, risk_per_etf_share, self.config, adjustments, "share", stop)
