"""PositionSizer and LeveragedETFSizer: the risk formula, each cap, rejection below one share, ETF risk matching."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from config.settings import ExecutorConfig
from pipeline.core.models import AccountState, Position, TradeSignal
from pipeline.entry.sizing import LeveragedETFSizer, PositionSizer, conviction_factor
from pipeline.instruments.options import OptionQuote

SECTORS = {"NVDA": "semiconductors", "AMD": "semiconductors"}
ROOMY = {"max_single_stock_exposure": 1.0, "max_sector_exposure": 1.0}


def sig(conviction: float = 80, entry: float = 100.0, stop: float = 95.0, direction: str = "long",
        ticker: str = "NVDA") -> TradeSignal:
    return TradeSignal("trend_aligned_long", direction, ticker, "5m", conviction, entry, stop)


def acct(equity: float = 100_000.0, buying_power: float = 10_000_000.0, *positions: Position) -> AccountState:
    return AccountState(equity=equity, cash=equity, buying_power=buying_power, open_positions=list(positions))


def held(ticker: str, value: float) -> Position:
    return Position(ticker=ticker, direction="long", entry_price=100.0, current_price=100.0, shares=value / 100.0,
                    stop_loss=90.0)


@pytest.mark.parametrize(("conviction", "weight", "entry", "stop", "expected"), [
    (80, 1.0, 100.0, 95.0, 800),     # 100k x 5% x 0.8 / 5
    (100, 1.0, 100.0, 95.0, 1000),
    (100, 0.5, 100.0, 95.0, 500),    # feedback weight halves it
    (100, 1.5, 50.0, 45.0, 1500),    # 7500 / 5
    (10, 1.0, 100.0, 95.0, 250),     # conviction factor floored at 0.25
    (0, 1.0, 100.0, 95.0, 250),
    (50, 1.0, 100.0, 97.0, 833),     # 2500 / 3 floored
    (80, 1.0, 100.0, 105.0, 800),    # short: |entry - stop|
    (60, 0.1, 20.0, 19.9, 3000),     # 300 / 0.1 (float care: not 2999)
])
def test_risk_formula(conviction: float, weight: float, entry: float, stop: float, expected: int) -> None:
    direction = "long" if stop < entry else "short"
    result = PositionSizer(ExecutorConfig(**ROOMY)).size(sig(conviction, entry, stop, direction), acct(),
                                                         weight=weight)
    assert result.shares == expected
    assert result.notional == pytest.approx(expected * entry)
    assert result.risk_amount == pytest.approx(expected * abs(entry - stop))
    assert not any(k.endswith("_cap") for k in result.adjustments)


@pytest.mark.parametrize(("conviction", "factor"), [(0, 0.25), (25, 0.25), (40, 0.4), (100, 1.0)])
def test_conviction_factor(conviction: float, factor: float) -> None:
    assert conviction_factor(conviction) == factor


CAPS: list[tuple[str, dict[str, Any], AccountState, int]] = [
    ("single_stock_cap", {}, acct(), 150),                                         # 15k / 100
    ("single_stock_cap", {}, acct(100_000.0, 10_000_000.0, held("NVDA", 5_000.0)), 100),
    ("sector_cap", {"max_single_stock_exposure": 1.0}, acct(100_000.0, 10_000_000.0, held("AMD", 28_000.0)), 20),
    ("buying_power_cap", ROOMY, acct(100_000.0, 1_234.0), 12),
]


@pytest.mark.parametrize(("cap", "config", "account", "expected"), CAPS, ids=[f"{c[0]}-{c[3]}" for c in CAPS])
def test_each_cap(cap: str, config: dict[str, Any], account: AccountState, expected: int) -> None:
    result = PositionSizer(ExecutorConfig(**config), SECTORS).size(sig(), account)
    assert result.shares == expected
    assert result.adjustments[cap]["to"] == expected
    assert result.adjustments["risk_shares"] == 800


def test_buying_power_cap_keeps_room_for_slippage() -> None:
    # exactly 10 shares of buying power would be refused by the broker after any adverse fill
    result = PositionSizer(ExecutorConfig(**ROOMY), SECTORS).size(sig(), acct(100_000.0, 1_000.0))
    assert result.shares == 9
    assert result.notional * 1.005 <= 1_000.0


def test_caps_apply_in_turn_and_all_are_recorded() -> None:
    account = acct(100_000.0, 704.0, held("AMD", 29_000.0))  # 704 / 1.005 slippage buffer = 700.5 -> 7 shares
    result = PositionSizer(ExecutorConfig(), SECTORS).size(sig(), account)
    assert result.shares == 7
    assert {"single_stock_cap", "sector_cap", "buying_power_cap"} <= set(result.adjustments)


def test_sector_argument_overrides_the_map() -> None:
    account = acct(100_000.0, 10_000_000.0, Position(ticker="ZZZ", direction="long", entry_price=100.0,
                                                     current_price=100.0, shares=290, stop_loss=90.0,
                                                     sector="widgets"))
    result = PositionSizer(ExecutorConfig(max_single_stock_exposure=1.0)).size(sig(ticker="QQQQ"), account,
                                                                               sector="widgets")
    assert result.shares == 10


@pytest.mark.parametrize(("account", "why"), [
    (acct(100_000.0, 50.0), "below one share"),
    (acct(100_000.0, 10_000_000.0, held("NVDA", 14_950.0)), "below one share"),
])
def test_below_one_share_is_zero_with_reason(account: AccountState, why: str) -> None:
    result = PositionSizer(ExecutorConfig(), SECTORS).size(sig(), account)
    assert result.shares == 0 and not result.ok
    assert why in result.reason


def test_notional_below_min_position_value_is_zero() -> None:
    result = PositionSizer(ExecutorConfig(**ROOMY, min_position_value=500.0)).size(sig(entry=10.0, stop=9.0),
                                                                                   acct(100_000.0, 300.0))
    assert result.shares == 0 and "min_position_value" in result.reason


def test_price_argument_prices_the_caps() -> None:
    result = PositionSizer(ExecutorConfig(**ROOMY)).size(sig(), acct(100_000.0, 20_100.0), price=200.0)
    assert result.shares == 100 and result.notional == 20_000.0


@pytest.mark.parametrize(("direction", "stop", "etf_price", "leverage"), [
    ("long", 95.0, 40.0, 3.0), ("short", 105.0, 25.0, 3.0), ("long", 98.0, 80.0, 2.0), ("long", 90.0, 12.5, 3.0),
])
def test_etf_dollar_risk_matches_underlying(direction: str, stop: float, etf_price: float, leverage: float) -> None:
    config = ExecutorConfig(**ROOMY, max_risk_per_trade=0.01)  # budget 800: no cap bites
    signal = sig(direction=direction, stop=stop)
    stock = PositionSizer(config).size(signal, acct())
    etf = LeveragedETFSizer(config).compute_shares(signal, acct(), etf_price, leverage=leverage)
    stop_fraction = abs(100.0 - stop) / 100.0 * leverage
    assert etf.stop_price == pytest.approx(etf_price * (1 - stop_fraction))
    assert etf.stop_price < etf_price  # the ETF position is long: bull fund for long, bear fund for short
    etf_risk = etf.shares * (etf_price - etf.stop_price)
    assert etf_risk == pytest.approx(etf.risk_amount, abs=0.01)
    # Same dollars at risk, up to one share of flooring on either side.
    assert abs(etf_risk - stock.risk_amount) <= max(etf_price * stop_fraction, abs(100.0 - stop))
    assert etf_risk <= 800.0 + 1e-6
    assert not any(k.endswith("_cap") for k in etf.adjustments)


def test_etf_stop_beyond_100_percent_is_rejected() -> None:
    result = LeveragedETFSizer(ExecutorConfig(**ROOMY)).compute_shares(sig(stop=60.0), acct(), 40.0, leverage=3.0)
    assert result.shares == 0 and "leverage" in result.reason


def test_etf_sizer_caps_by_buying_power() -> None:
    result = LeveragedETFSizer(ExecutorConfig(**ROOMY)).compute_shares(sig(), acct(100_000.0, 4_020.0), 40.0)
    assert result.shares == 100 and "buying_power_cap" in result.adjustments


def test_option_sizing_by_premium() -> None:
    quote = OptionQuote("NVDA  240628C00100000", "NVDA", date(2024, 6, 28), 100.0, "C", 2.4, 2.5, 2.45, 0.45,
                        1_000, 0.3)
    result = PositionSizer(ExecutorConfig(**ROOMY)).size_option(sig(), acct(), quote)
    assert result.shares == 16  # 4000 / 250
    assert result.notional == pytest.approx(16 * 250.0)
    assert result.risk_amount == pytest.approx(16 * 250.0)


def test_an_options_stop_is_where_the_underlyings_stop_puts_its_premium() -> None:
    """Not the entry premium (the first mark under the ask would hit it): the ask less |delta| x the underlying's
    stop distance; without a delta the whole premium is the risk (one tick)."""
    quote = OptionQuote("NVDA  240628C00100000", "NVDA", date(2024, 6, 28), 100.0, "C", 2.4, 2.5, 2.45, 0.45,
                        1_000, 0.3)
    signal = sig()
    result = PositionSizer(ExecutorConfig(**ROOMY)).size_option(signal, acct(), quote)
    assert result.stop_price == pytest.approx(round(2.5 - 0.45 * signal.risk_per_share, 2))
    assert 0 < result.stop_price < quote.bid
    blind = OptionQuote("NVDA  240628C00100000", "NVDA", date(2024, 6, 28), 100.0, "C", 2.4, 2.5, 2.45, None,
                        1_000, 0.3)
    assert PositionSizer(ExecutorConfig(**ROOMY)).size_option(signal, acct(), blind).stop_price == 0.01
