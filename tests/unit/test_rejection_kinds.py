"""RejectionKinds: the tally of rejection kinds a journal-off run reports as its top rejection reasons."""

from __future__ import annotations

from daemon.replay import top_rejections
from pipeline.record.rejections import KIND_CHARS, OTHER_KIND, RejectionKinds, rejection_kind


def test_a_kind_is_the_reasons_leading_name_or_the_reason_cut_short() -> None:
    assert rejection_kind("var: VaR 2.1% of equity > limit 2.0%") == "var"
    assert rejection_kind("  buying_power : 12.00 < 100.00") == "buying_power"
    assert rejection_kind("no instrument") == "no instrument"
    assert rejection_kind("x" * 200) == "x" * KIND_CHARS


def test_counts_by_stage_and_kind_with_the_first_reason_as_example_most_first() -> None:
    kinds = RejectionKinds()
    kinds.add("risk_gate", "buying_power: 10.00 < 100.00")
    kinds.add("unified_risk", "var: 3% > 2%")
    kinds.add("risk_gate", "buying_power: 20.00 < 100.00")
    kinds.add("signal_guard", "freshness: 400 s old")
    kinds.add("unified_risk", "var: 4% > 2%")
    kinds.add("risk_gate", "buying_power: 30.00 < 100.00")
    assert kinds.top(2) == [
        {"stage": "risk_gate", "kind": "buying_power", "count": 3, "example": "buying_power: 10.00 < 100.00"},
        {"stage": "unified_risk", "kind": "var", "count": 2, "example": "var: 3% > 2%"},
    ]
    assert [(k["stage"], k["count"]) for k in kinds.top(10)] == [("risk_gate", 3), ("unified_risk", 2),
                                                                 ("signal_guard", 1)]


def test_the_same_kind_at_two_stages_is_two_kinds_and_ties_go_by_stage_then_kind() -> None:
    kinds = RejectionKinds()
    for stage, reason in (("sizing", "b: x"), ("risk_gate", "b: y"), ("risk_gate", "a: z")):
        kinds.add(stage, reason)
    assert [(k["stage"], k["kind"]) for k in kinds.top(5)] == [("risk_gate", "a"), ("risk_gate", "b"), ("sizing", "b")]


def test_past_its_limit_a_new_kind_is_counted_as_other_kinds_of_its_stage() -> None:
    kinds = RejectionKinds(limit=3)
    for i in range(10):
        kinds.add("risk_gate", f"reason number {i} without a name")  # each its own kind
    kinds.add("risk_gate", "reason number 0 without a name")  # a kind it keeps is still counted as itself
    top = kinds.top(10)
    assert len(kinds) == 4  # three kinds, and the stage's other kinds
    assert {"stage": "risk_gate", "kind": OTHER_KIND, "count": 7, "example": "reason number 3 without a name"} in top
    assert next(k for k in top if k["example"] == "reason number 0 without a name")["count"] == 2
    assert sum(k["count"] for k in top) == 11


def test_the_journals_rows_give_the_same_top_as_the_tally_of_the_same_rejections() -> None:
    rejected = [("risk_gate", "exposure: no room"), ("sizing", "position below one share"),
                ("risk_gate", "exposure: none left"), ("sizing", "position below one share")]
    kinds = RejectionKinds()
    for stage, reason in rejected:
        kinds.add(stage, reason)
    rows = [{"stage": stage, "reason": reason, "detail": None} for stage, reason in rejected]
    assert top_rejections(rows) == kinds.top(8)
