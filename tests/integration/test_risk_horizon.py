"""Issue 14.2: correlation and VaR on the bars' own horizon, scaled to one day correctly.

The price history learns its timeframe from the bars that feed it (daily bars: one bar a day, no scaling);
the figures are checked against numpy on the same real returns.
"""

from __future__ import annotations

import asyncio
import csv
import json
import sqlite3
from pathlib import Path

import numpy as np

from config.settings import PipelineConfig
from pipeline.core.models import AccountState, Position, TradeSignal
from pipeline.entry.unified_risk import Z_95, PriceHistory, UnifiedRisk
from tests.daily_bars import canonical_daily

DATA = Path(__file__).resolve().parents[1] / "data" / "daily"


def _closes(name: str, column: str = "Close") -> dict[str, float]:
    with (DATA / f"{name}.csv").open() as fh:
        reader = csv.reader(fh)
        header = next(reader)
        i = header.index(column)
        return {row[0]: float(row[i]) for row in reader}


def _signal(ticker: str, price: float) -> TradeSignal:
    return TradeSignal(signal_type="cloud_cross_bullish", direction="long", ticker=ticker, timeframe="1d",
                       conviction=80, entry_price=price, stop_loss=price * 0.97, target_price=price * 1.06)


def _fed(days: int = 61) -> tuple[PriceHistory, dict[str, np.ndarray]]:
    """The orchestrator's history (built for 1m bars) fed real daily bars, as the engine feeds it."""
    history = PriceHistory(61, "1m")
    series = {}
    for name in ("MSFT", "GOOG"):
        closes = np.array(list(_closes(name).values())[:days])
        for c in closes:
            history.update(name, float(c), "1d")
        series[name] = closes[1:] / closes[:-1] - 1.0
    return history, series


def test_daily_bars_make_a_daily_history_and_a_large_cap_within_the_caps_passes() -> None:
    history, returns = _fed()
    assert history.timeframe == "1d" and history.bars_per_day == 1.0
    risk = UnifiedRisk(PipelineConfig(), history)
    equity = 100_000.0
    notional = 0.15 * equity  # max_single_stock_exposure
    decision = risk.assess(_signal("MSFT", 24.0), AccountState(equity=equity, cash=equity, buying_power=equity),
                           notional)
    expected = Z_95 * np.std(returns["MSFT"], ddof=1) * notional
    assert decision.approved, decision.reason
    assert abs(decision.adjustments["var_95_1d"] - expected) < 0.01
    assert expected / equity < 0.01  # a 15 % position in MSFT: well under 1 % of equity a day


def test_a_concentrated_book_is_still_rejected_with_numpys_figure() -> None:
    history, returns = _fed()
    equity = 100_000.0
    # 315 % of equity in one name (leveraged), plus the candidate: the book is one bet
    positions = [Position(ticker="GOOG", direction="long", shares=700, entry_price=450.0, current_price=450.0,
                          stop_loss=430.0)]
    account = AccountState(equity=equity, cash=equity, buying_power=equity, open_positions=positions)
    notional = 15_000.0
    decision = UnifiedRisk(PipelineConfig(max_correlation=1.0), history).assess(_signal("MSFT", 24.0), account,
                                                                                 notional)
    w = np.array([positions[0].market_value, notional])
    cov = np.cov(np.column_stack([returns["GOOG"], returns["MSFT"]]), rowvar=False)
    expected = Z_95 * float(np.sqrt(w @ cov @ w))
    assert not decision.approved and decision.check == "var"
    assert abs(decision.adjustments["var_95_1d"] - expected) < 0.01
    assert expected / equity > PipelineConfig().var_limit


def test_replay_of_real_daily_bars_measures_var_on_daily_returns(tmp_path: Path) -> None:
    """Through the whole replay: the first entry's VaR is numpy's one-day VaR of its daily returns."""
    from config.settings import load_settings
    from daemon.replay import replay

    closes = _closes("MSFT")
    path = canonical_daily("MSFT", tmp_path / "msft.csv")
    state = tmp_path / "state"
    asyncio.run(replay(load_settings(None), path, state_dir=state))
    with sqlite3.connect(state / "journal.db") as conn:
        rows = conn.execute(
            "SELECT d.detail, s.ts, s.entry_price, z.detail FROM decision_stages d JOIN signals s USING(signal_id) "
            "JOIN decision_stages z ON z.decision_id = d.decision_id AND z.stage = 'sizing' "
            "WHERE d.stage = 'unified_risk' ORDER BY d.decision_id").fetchall()
        var_rejections = conn.execute("SELECT count(*) FROM decision_stages WHERE stage='unified_risk' AND "
                                      "outcome='rejected'").fetchone()[0]
    assert rows, "no signal reached the VaR check"
    assert var_rejections == 0
    detail, ts, entry, sizing = json.loads(rows[0][0]), rows[0][1], rows[0][2], json.loads(rows[0][3])
    day = ts[:10]
    dates = list(closes)
    upto = np.array([closes[d] for d in dates[: dates.index(day) + 1]])[-61:]
    returns = upto[1:] / upto[:-1] - 1.0
    expected = Z_95 * np.std(returns, ddof=1) * sizing["quantity"] * entry
    assert abs(detail["var_95_1d"] - expected) <= 0.01 * expected


def test_replay_of_real_daily_bars_with_stamps_rejects_nothing_for_var(tmp_path: Path) -> None:
    """Issue 14.2 as a user met it: MSFT's real daily bars with a time stamp (16:00 ET) go through the replay's
    whole pipeline; signals reach the VaR check and a 15 % large-cap position is never refused for VaR (the
    5-minute scaling put its one-day VaR near 10 % of equity and refused every one)."""
    from config.settings import load_settings
    from daemon.replay import replay

    path = canonical_daily("MSFT", tmp_path / "msft-stamped.csv", "T16:00:00-05:00")
    state = tmp_path / "state"
    asyncio.run(replay(load_settings(None), path, state_dir=state))
    with sqlite3.connect(state / "journal.db") as conn:
        reached = conn.execute("SELECT count(*) FROM decision_stages WHERE stage='unified_risk'").fetchone()[0]
        var_reasons = [r for (r,) in conn.execute("SELECT reason FROM decision_stages WHERE stage='unified_risk' AND "
                                                  "outcome='rejected'")]
    assert reached >= 5, "too few signals reached the VaR check"
    assert var_reasons == [], var_reasons[:3]
