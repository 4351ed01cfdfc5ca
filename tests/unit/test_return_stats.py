"""The rolling return statistics against numpy on the same returns: sums, correlations, VaR, after long runs."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from config.settings import PipelineConfig
from pipeline.core.models import AccountState, Position, TradeSignal
from pipeline.entry.return_stats import RollingWindow, correlations, portfolio_variance
from pipeline.entry.unified_risk import Z_95, PriceHistory, UnifiedRisk, parametric_var
from pipeline.entry.unified_risk import correlations as numpy_correlations


def _window(values: np.ndarray, size: int) -> RollingWindow:
    window = RollingWindow(size)
    for v in values:
        window.push(float(v))
    return window


def test_running_sums_stay_exact_over_a_long_run() -> None:
    rng = np.random.default_rng(7)
    values = rng.normal(0.0005, 0.02, 25_013)
    window = _window(values, 60)
    tail = values[-60:]
    assert window.total == pytest.approx(tail.sum(), abs=1e-15)
    assert window.squares == pytest.approx((tail * tail).sum(), rel=1e-13)
    assert list(window.tail(5)) == pytest.approx(list(tail[-5:]))
    assert window.sums(10) == pytest.approx((tail[-10:].sum(), (tail[-10:] ** 2).sum()))


@pytest.mark.parametrize("seed", range(5))
def test_correlations_match_numpy_on_the_same_returns(seed: int) -> None:
    rng = np.random.default_rng(seed)
    base = rng.normal(0, 0.01, 400)
    series = [base + rng.normal(0, s, 400) for s in (0.001, 0.01, 0.05)] + [rng.normal(0, 0.01, 400)]
    lengths = [400, 45, 400, 400]  # one peer with a shorter history: the common tail is its length
    candidate = _window(base, 60)
    peers = [_window(s[-n:], 60) for s, n in zip(series, lengths, strict=True)]
    got = correlations(candidate, peers, 60)
    expected = numpy_correlations(base[-60:], [s[-min(n, 60):] for s, n in zip(series, lengths, strict=True)])
    assert got == pytest.approx(expected, abs=1e-9)


def test_a_flat_series_has_no_correlation() -> None:
    flat = _window(np.zeros(80), 60)
    constant = _window(np.full(80, 0.01), 60)
    moving = _window(np.random.default_rng(1).normal(0, 0.01, 80), 60)
    assert correlations(moving, [flat, constant], 60) == [None, None]
    assert correlations(flat, [moving], 60) == [None]


@pytest.mark.parametrize("assets", [1, 2, 5])
def test_portfolio_variance_is_w_s_w_of_numpys_covariance(assets: int) -> None:
    rng = np.random.default_rng(assets)
    returns = rng.normal(0, 0.015, (300, assets)) + rng.normal(0, 0.01, (300, 1))
    weights = rng.uniform(-20_000, 50_000, assets)
    windows = [_window(returns[:, i], 60) for i in range(assets)]
    variance, n = portfolio_variance(list(weights), windows, 60)
    tail = returns[-60:]
    cov = np.atleast_2d(np.cov(tail, rowvar=False))
    assert n == 60
    assert variance == pytest.approx(float(weights @ cov @ weights), rel=1e-10)
    assert Z_95 * math.sqrt(variance * 390) == pytest.approx(parametric_var(weights, tail, 390), rel=1e-10)


def test_unified_risk_gives_numpys_figures_for_the_same_history() -> None:
    """The check's VaR and worst correlation equal the numpy functions run on the history's own arrays."""
    rng = np.random.default_rng(3)
    history = PriceHistory(61, "1m")
    prices = {"AAA": 100.0, "BBB": 50.0, "CCC": 20.0}
    common = rng.normal(0, 0.004, 500)
    for t in range(500):
        for i, symbol in enumerate(prices):
            prices[symbol] *= 1 + common[t] * (i + 1) / 2 + rng.normal(0, 0.003)
            history.update(symbol, prices[symbol])
    positions = [Position("BBB", "long", 50.0, prices["BBB"], 200, 45.0),
                 Position("CCC", "long", 20.0, prices["CCC"], 500, 18.0)]
    account = AccountState(equity=1_000_000.0, cash=1_000_000.0, buying_power=1_000_000.0, open_positions=positions)
    signal = TradeSignal("cloud_cross_bullish", "long", "AAA", "1m", 80, prices["AAA"], prices["AAA"] * 0.98)
    config = PipelineConfig(max_correlation=1.0, var_limit=1.0)
    decision = UnifiedRisk(config, history).assess(signal, account, 30_000.0)
    assert decision.approved

    arrays = {s: history.returns(s, 60) for s in prices}
    corr = numpy_correlations(arrays["AAA"], [arrays["BBB"], arrays["CCC"]])
    worst = max(zip(["BBB", "CCC"], corr, strict=True), key=lambda p: abs(p[1]))
    assert decision.adjustments["max_correlation"] == {"ticker": worst[0], "corr": round(worst[1], 4)}
    weights = np.array([p.market_value for p in positions] + [30_000.0])
    matrix = np.column_stack([arrays["BBB"], arrays["CCC"], arrays["AAA"]])
    expected = parametric_var(weights, matrix, history.bars_per_day)
    assert decision.adjustments["var_95_1d"] == pytest.approx(round(expected, 2), abs=0.011)


def _asset_by_asset(weights: list[float], windows: list[RollingWindow], n: int) -> list[float]:
    """The reference: w_0 r_0 + w_1 r_1 + ... per bar, one asset after the other, in Python floats."""
    series = [weights[0] * r for r in windows[0].tail(n)]
    for weight, window in zip(weights[1:], windows[1:], strict=True):
        series = [s + weight * r for s, r in zip(series, window.tail(n), strict=True)]
    return series


@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 100_000), assets=st.integers(1, 40), lengths=st.integers(0, 70))
def test_portfolio_series_by_columns_is_the_asset_by_asset_sum_to_the_bit(seed: int, assets: int, lengths: int) -> None:
    """From NUMPY_ASSETS assets the series is one array; every value, hence the variance, is the reference's."""
    from pipeline.entry import return_stats

    rng = np.random.default_rng(seed)
    windows = [_window(rng.normal(0, 0.01, 60 + lengths) * 10.0 ** rng.uniform(-6, 6), 60) for _ in range(assets)]
    weights = [float(w) for w in rng.uniform(-1e5, 1e5, assets) * 10.0 ** rng.uniform(-5, 5, assets)]
    n = min(60, *(len(w) for w in windows))
    reference = _asset_by_asset(weights, windows, n)
    if assets >= return_stats.NUMPY_ASSETS:
        assert return_stats._series_by_columns(weights, windows, n) == reference
    mean = math.fsum(reference) / n
    expected = math.fsum((s - mean) * (s - mean) for s in reference) / (n - 1)
    assert portfolio_variance(weights, windows, 60) == (expected, n)
