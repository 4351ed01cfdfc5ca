"""UnifiedRisk: correlation and VaR pass just inside and reject just outside their limits."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from config.settings import PipelineConfig
from pipeline.core.models import AccountState, Position, TradeSignal
from pipeline.entry.unified_risk import Z_95, PriceHistory, UnifiedRisk, correlation, parametric_var

LOOKBACK = 60
RNG = np.random.default_rng(42)
BASE = RNG.normal(0.0, 0.004, LOOKBACK)
NOISE = RNG.normal(0.0, 0.004, LOOKBACK)
OTHER = RNG.normal(0.0, 0.004, LOOKBACK)


def closes_from(returns: np.ndarray, start: float = 100.0) -> list[float]:
    return [start, *(start * np.cumprod(1.0 + returns)).tolist()]


def history(series: dict[str, np.ndarray], timeframe: str = "5m") -> PriceHistory:
    h = PriceHistory(LOOKBACK + 1, timeframe)
    for symbol, returns in series.items():
        for close in closes_from(returns):
            h.update(symbol, close)
    return h


def signal(ticker: str = "NVDA", direction: str = "long") -> TradeSignal:
    stop = 95.0 if direction == "long" else 105.0
    return TradeSignal("trend_aligned_long", direction, ticker, "5m", 80, 100.0, stop)


def position(ticker: str, direction: str = "long", value: float = 10_000.0) -> Position:
    stop = 90.0 if direction == "long" else 110.0
    return Position(ticker=ticker, direction=direction, entry_price=100.0, current_price=100.0,
                    shares=value / 100.0, stop_loss=stop)


def account(*positions: Position, equity: float = 100_000.0) -> AccountState:
    return AccountState(equity=equity, cash=equity, buying_power=equity, open_positions=list(positions))


def risk(h: PriceHistory, **config: Any) -> UnifiedRisk:
    values: dict[str, Any] = {"correlation_lookback_bars": LOOKBACK, "var_limit": 1.0}
    values.update(config)
    return UnifiedRisk(PipelineConfig(**values), h)


PEERS = {"0.95": BASE + 0.3 * NOISE, "0.7": BASE + NOISE, "-0.95": -BASE - 0.3 * NOISE}


@pytest.mark.parametrize("peer", list(PEERS))
@pytest.mark.parametrize(("margin", "approved"), [(+0.01, True), (-0.01, False)])
def test_correlation_threshold(peer: str, margin: float, approved: bool) -> None:
    h = history({"NVDA": BASE, "AMD": PEERS[peer]})
    corr = correlation(h.returns("NVDA", LOOKBACK), h.returns("AMD", LOOKBACK))
    assert corr is not None
    limit = abs(corr) + margin
    decision = risk(h, max_correlation=limit).assess(signal(), account(position("AMD")), 1_000.0)
    assert decision.approved is approved, decision.reason
    if not approved:
        assert decision.check == "correlation"
        assert decision.reason.startswith("correlation:") and "AMD" in decision.reason


def test_correlation_matches_numpy() -> None:
    h = history({"NVDA": BASE, "AMD": PEERS["0.7"]})
    expected = float(np.corrcoef(BASE, PEERS["0.7"])[0, 1])
    assert correlation(h.returns("NVDA", LOOKBACK), h.returns("AMD", LOOKBACK)) == pytest.approx(expected, abs=1e-9)


def test_opposite_direction_positions_are_not_correlated_against() -> None:
    h = history({"NVDA": BASE, "AMD": PEERS["0.95"]})
    decision = risk(h, max_correlation=0.5).assess(signal(), account(position("AMD", "short")), 1_000.0)
    assert decision.approved, decision.reason


def test_same_ticker_is_not_correlated_against_itself() -> None:
    h = history({"NVDA": BASE})
    assert risk(h, max_correlation=0.5).assess(signal(), account(position("NVDA")), 1_000.0).approved


def test_insufficient_history_passes_with_a_note() -> None:
    h = history({"NVDA": BASE[:5], "AMD": PEERS["0.95"][:5]})
    decision = risk(h, max_correlation=0.5, var_limit=1e-6).assess(signal(), account(position("AMD")), 10_000.0)
    assert decision.approved
    assert "insufficient history" in decision.adjustments["correlation"]
    assert "insufficient history" in decision.adjustments["var"]


def expected_single_var(notional: float) -> float:
    bars_per_day = 6.5 * 3600 / 300
    return Z_95 * notional * float(np.std(BASE, ddof=1)) * math.sqrt(bars_per_day)


@pytest.mark.parametrize(("factor", "approved"), [(1.01, True), (0.99, False)])
def test_var_threshold_single_position(factor: float, approved: bool) -> None:
    h = history({"NVDA": BASE})
    notional, equity = 50_000.0, 100_000.0
    limit = expected_single_var(notional) / equity * factor
    decision = risk(h, var_limit=limit).assess(signal(), account(equity=equity), notional)
    assert decision.approved is approved, decision.reason
    assert decision.adjustments["var_95_1d"] == pytest.approx(expected_single_var(notional), abs=0.01)
    if not approved:
        assert decision.check == "var" and decision.reason.startswith("var:")


def portfolio_var(weights: list[float], columns: list[np.ndarray]) -> float:
    cov = np.cov(np.column_stack(columns), rowvar=False) * (6.5 * 3600 / 300)
    w = np.array(weights)
    return Z_95 * math.sqrt(float(w @ cov @ w))


@pytest.mark.parametrize(("factor", "approved"), [(1.001, True), (0.999, False)])
def test_var_threshold_portfolio(factor: float, approved: bool) -> None:
    h = history({"NVDA": BASE, "AAPL": OTHER, "XOM": NOISE})
    acct = account(position("AAPL", value=30_000.0), position("XOM", "short", value=20_000.0))
    expected = portfolio_var([40_000.0, 30_000.0, -20_000.0], [BASE, OTHER, NOISE])
    decision = risk(h, var_limit=expected / 100_000.0 * factor).assess(signal(), acct, 40_000.0)
    assert decision.approved is approved, decision.reason
    assert decision.adjustments["var_95_1d"] == pytest.approx(expected, abs=0.01)


def test_hedge_lowers_var() -> None:
    h = history({"NVDA": BASE, "AMD": PEERS["0.95"]})
    alone = risk(h).assess(signal(), account(), 50_000.0).adjustments["var_95_1d"]
    hedged = risk(h).assess(signal(), account(position("AMD", "short", 50_000.0)), 50_000.0).adjustments["var_95_1d"]
    assert hedged < alone / 2


def test_parametric_var_scales_linearly() -> None:
    returns = np.column_stack([BASE])
    one = parametric_var(np.array([1_000.0]), returns, 78.0)
    assert parametric_var(np.array([2_000.0]), returns, 78.0) == pytest.approx(2 * one)


def test_price_history_is_bounded_and_ignores_bad_closes() -> None:
    h = PriceHistory(maxlen=10)
    for i in range(100):
        h.update("X", 100.0 + i)
    h.update("X", math.nan)
    h.update("X", -1.0)
    assert h.closes("X").size == 10
    assert h.closes("X")[-1] == 199.0
    assert h.returns("X", 5).size == 5
    assert h.returns("missing", 5).size == 0
    assert PriceHistory(10, "1d").bars_per_day == 1.0


def test_vectorised_correlations_equal_the_pairwise_ones() -> None:
    import numpy as np

    from pipeline.entry.unified_risk import correlation, correlations

    rng = np.random.default_rng(7)
    base = rng.normal(size=60)
    peers = [rng.normal(size=60) + k * base for k in (0.0, 0.3, 1.0, -2.0)] + [np.full(60, 0.01)]
    fast = correlations(base, peers)
    slow = [correlation(base, p) for p in peers]
    assert fast[-1] is None  # a constant series: no correlation (the pairwise helper sees float noise there)
    assert fast[:-1] == pytest.approx(slow[:-1], abs=1e-12)
