"""A decision record noted with functions that describe a stage (`passed_by`, `approve_by`) and the risk gate's
checks as one tuple reads and encodes exactly as the same record noted with its texts and figures at once."""

from __future__ import annotations

from typing import Any

from pipeline.core.models import TradeSignal
from pipeline.entry.market_price import price_on_market
from pipeline.record.decision import DecisionRecord, encode_detail, encode_stages

CHECKS = (("daily_loss", "approved", ""), ("exposure", "rejected", "exposure: too much"),
          ("buying_power", "not_run", "after exposure rejected"))


def _signal() -> TradeSignal:
    return TradeSignal(signal_type="cloud_cross_bullish", direction="long", ticker="AAPL", timeframe="5m",
                       conviction=80, entry_price=100.0, stop_loss=98.0)


def test_described_stages_read_as_the_eager_ones() -> None:
    priced = price_on_market(_signal(), 100.5, 0.02)
    calls: list[str] = []

    def intent() -> tuple[str, dict[str, Any]]:
        calls.append("intent")
        return "buy 10 AAPL", {"symbol": "AAPL", "quantity": 10.0}

    lazy, eager = DecisionRecord("sig-1", None), DecisionRecord("sig-1", None)
    lazy.passed("kill_switch")
    eager.passed("kill_switch")
    lazy.passed_by("market_price", priced.describe)
    reason, detail = price_on_market(_signal(), 100.5, 0.02).describe()
    eager.passed("market_price", reason, detail)
    lazy.checks("risk_gate", CHECKS)
    for name, outcome, why in CHECKS:
        eager.add(f"risk_gate.{name}", outcome, why)
    lazy.passed_by("sizing", lambda: ("", {}))  # an empty detail is none, as with passed()
    eager.passed("sizing", "", {})
    lazy.approve_by("og-entry-1", intent)
    eager.approve("og-entry-1", "buy 10 AAPL", {"symbol": "AAPL", "quantity": 10.0})

    assert reason == "entry on the market price 100.50 (signal 100.00, 0.50% away)"
    assert detail == {"market_price": 100.5, "signal_entry_price": 100.0, "deviation": 0.004975}
    assert encode_stages(lazy.stages) == encode_stages(eager.stages)
    assert lazy.stages_json() == encode_stages(eager.stages)  # the journal's encoding: the same text
    assert [s.stage for s in lazy.stages][2:5] == ["risk_gate.daily_loss", "risk_gate.exposure",
                                                    "risk_gate.buying_power"]
    assert (lazy.stage, lazy.outcome, lazy.reason, encode_detail(lazy.detail), lazy.client_order_id) == \
        (eager.stage, eager.outcome, eager.reason, encode_detail(eager.detail), eager.client_order_id)
    assert calls == ["intent"]  # the end and its stage share one description


def test_a_rejection_after_a_described_stage_ends_with_its_own_reason() -> None:
    record = DecisionRecord("sig-2", None)
    record.passed_by("market_price", price_on_market(_signal(), 100.0, 0.02).describe)
    record.reject("risk_gate", "min_equity: too little", {"check": "min_equity"})
    assert (record.stage, record.outcome, record.reason, record.detail) == \
        ("risk_gate", "rejected", "min_equity: too little", {"check": "min_equity"})
    assert [s.outcome for s in record.stages] == ["approved", "rejected"]


def test_the_journals_encoding_is_the_stages_encoded_for_every_kind_of_check() -> None:
    """stages_json() takes a fixed fragment for a check without a reason (encoded once) and the full outcome
    otherwise: the text is exactly encode_stages(stages), the first time and from the fragments after."""
    checks = (("daily_loss", "approved", ""), ("max_positions", "not_run", ""), ("exposure", "rejected", "too much"),
              ("market_hours", "not_run", "after exposure rejected"), ("min_equity", "approved", "room: 5"),
              ("buying_power", "rejected", ""))
    for _ in range(2):
        for prefix in ("risk_gate", "other_gate"):
            record = DecisionRecord("sig-3", None)
            record.passed("kill_switch")
            record.checks(prefix, checks)
            record.checks(prefix, ())
            record.reject(prefix, "exposure: too much", {"check": "exposure", "figures": [1.5, None]})
            assert record.stages_json() == encode_stages(record.stages)
