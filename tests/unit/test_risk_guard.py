"""SignalGuard: malformed signals rejected naming the field; freshness; dedup; bounded memory."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from config.settings import PipelineConfig
from pipeline.core.models import TradeSignal
from pipeline.entry.signal_guard import SignalGuard

NOW = datetime(2024, 6, 12, 15, 0, tzinfo=UTC)


def sig(**overrides: Any) -> TradeSignal:
    values: dict[str, Any] = dict(signal_type="cloud_cross_bullish", direction="long", ticker="NVDA", timeframe="5m",
                                  conviction=70, entry_price=100.0, stop_loss=95.0, timestamp=NOW)
    values.update(overrides)
    return TradeSignal(**values)


def guard(**config: Any) -> SignalGuard:
    return SignalGuard(PipelineConfig(**config))


BAD_SIGNALS = [
    ("nan entry", {"entry_price": math.nan}, "entry_price"),
    ("inf stop", {"stop_loss": math.inf}, "stop_loss"),
    ("negative entry", {"entry_price": -100.0, "stop_loss": -105.0}, "entry_price"),
    ("negative stop", {"stop_loss": -1.0}, "stop_loss"),
    ("zero entry", {"entry_price": 0.0}, "entry_price"),
    ("long stop above entry", {"stop_loss": 101.0}, "stop_loss"),
    ("long stop at entry", {"stop_loss": 100.0}, "stop_loss"),
    ("short stop below entry", {"direction": "short", "stop_loss": 99.0}, "stop_loss"),
    ("unknown timeframe", {"timeframe": "7m"}, "timeframe"),
    ("conviction 150", {"conviction": 150}, "conviction"),
    ("conviction nan", {"conviction": math.nan}, "conviction"),
    ("empty ticker", {"ticker": ""}, "ticker"),
    ("blank ticker", {"ticker": "   "}, "ticker"),
    ("bad direction", {"direction": "sideways"}, "direction"),
    ("unknown type", {"signal_type": "moon_phase"}, "signal_type"),
    ("naive timestamp", {"timestamp": datetime(2024, 6, 12, 15, 0)}, "timestamp"),
    ("target wrong side", {"target_price": 90.0}, "target_price"),
    ("unhashable timeframe", {"timeframe": ["5m"]}, "timeframe"),
]


@pytest.mark.parametrize(("label", "overrides", "field"), BAD_SIGNALS, ids=[b[0] for b in BAD_SIGNALS])
def test_bad_signal_rejected_naming_field(label: str, overrides: dict[str, Any], field: str) -> None:
    decision = guard().check(sig(**overrides), NOW)
    assert not decision.approved
    assert decision.check == "validation"
    assert f"{field}" in decision.reason, decision.reason


def test_all_problems_are_reported() -> None:
    decision = guard().check(sig(ticker="", conviction=150, timeframe="7m"), NOW)
    assert not decision.approved
    for field in ("ticker", "conviction", "timeframe"):
        assert field in decision.reason


def test_rejected_signal_is_not_remembered() -> None:
    g = guard()
    assert not g.check(sig(conviction=150), NOW).approved
    assert not g.check(sig(timestamp=NOW - timedelta(hours=1)), NOW).approved
    assert len(g) == 0
    assert g.check(sig(), NOW).approved


@pytest.mark.parametrize(("age", "approved"), [
    (119.9, True), (120.0, True), (120.1, False), (3600.0, False), (-4.9, True), (-5.1, False), (-600.0, False),
])
def test_freshness(age: float, approved: bool) -> None:
    decision = guard(max_signal_age_seconds=120.0).check(sig(timestamp=NOW - timedelta(seconds=age)), NOW)
    assert decision.approved is approved, decision.reason
    if not approved:
        assert decision.check == "freshness"
        assert decision.reason.startswith("freshness:") and "timestamp" in decision.reason


def test_missing_timestamp_counts_as_now() -> None:
    assert guard().check(sig(timestamp=None), NOW).approved


@pytest.mark.parametrize(("gap", "approved"), [(0.0, False), (299.9, False), (300.0, True), (900.0, True)])
def test_dedup_window(gap: float, approved: bool) -> None:
    g = guard(dedup_window_seconds=300.0)
    assert g.check(sig(), NOW).approved
    later = NOW + timedelta(seconds=gap)
    decision = g.check(sig(timestamp=later), later)
    assert decision.approved is approved
    if not approved:
        assert decision.check == "dedup"
        assert decision.reason.startswith("dedup:") and "NVDA" in decision.reason


@pytest.mark.parametrize("change", [
    {"direction": "short", "stop_loss": 105.0}, {"ticker": "AMD"}, {"signal_type": "cloud_flip_bullish"},
    {"timeframe": "15m"}, {"strategy": "breakout"},
])
def test_dedup_key_fields_distinguish(change: dict[str, Any]) -> None:
    g = guard()
    assert g.check(sig(), NOW).approved
    assert g.check(sig(**change), NOW).approved
    assert not g.check(sig(**change), NOW).approved


def test_dedup_memory_is_bounded_by_window() -> None:
    g = guard(dedup_window_seconds=60.0)
    for i in range(1000):
        now = NOW + timedelta(seconds=i)
        assert g.check(sig(ticker=f"T{i}", timestamp=now), now).approved
    assert len(g) <= 61


def test_dedup_memory_has_a_hard_cap() -> None:
    g = SignalGuard(PipelineConfig(dedup_window_seconds=3600.0), max_entries=50)
    for i in range(500):
        assert g.check(sig(ticker=f"T{i}"), NOW).approved
    assert len(g) == 50


def test_forget_allows_resend() -> None:
    g = guard()
    s = sig()
    assert g.check(s, NOW).approved
    g.forget(s)
    assert g.check(s, NOW).approved
