"""CashDrift: the same cash difference on two quiet checks in a row, the ledger unchanged between, is taken."""

from __future__ import annotations

import pytest

from pipeline.positions.cash_drift import CashDrift, Drift


def test_a_difference_is_taken_on_its_second_sighting_only() -> None:
    drift = CashDrift()
    assert drift.observe(100_050.0, 100_000.0) is None  # first sighting
    taken = drift.observe(100_050.0, 100_000.0)
    assert taken == Drift(100_050.0, 100_000.0, 50.0)
    assert drift.observe(100_050.0, 100_000.0) is None  # counted afresh after it was taken


def test_agreement_and_cents_are_no_drift() -> None:
    drift = CashDrift()
    for _ in range(3):
        assert drift.observe(100_000.004, 100_000.0) is None


def test_a_ledger_that_moved_between_the_checks_starts_over() -> None:
    # the broker's cash held a fill of ours the ledger had not applied: by the next check the ledger has it
    drift = CashDrift()
    assert drift.observe(90_000.0, 100_000.0) is None
    assert drift.observe(90_000.0, 90_000.0) is None  # the fill arrived: no drift at all
    assert drift.observe(90_000.0, 89_990.0) is None  # a new difference: first sighting again
    assert drift.observe(90_000.0, 89_990.0) == Drift(90_000.0, 89_990.0, 10.0)


def test_a_broker_figure_that_moved_starts_over() -> None:
    drift = CashDrift()
    assert drift.observe(100_010.0, 100_000.0) is None
    assert drift.observe(100_020.0, 100_000.0) is None
    assert drift.observe(100_020.0, 100_000.0) == Drift(100_020.0, 100_000.0, 20.0)


def test_a_check_that_was_not_quiet_forgets_the_sighting() -> None:
    drift = CashDrift()
    assert drift.observe(100_010.0, 100_000.0) is None
    drift.forget()
    assert drift.observe(100_010.0, 100_000.0) is None


@pytest.mark.parametrize(("amount", "large"), [(999.0, False), (1_001.0, True), (-1_001.0, True)])
def test_large_is_above_one_percent_of_equity(amount: float, large: bool) -> None:
    assert Drift(0.0, 0.0, amount).large(100_000.0) is large
