"""Broker fault mixes through the whole Core: exactly one broker order per intent, each fill applied once."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from tests.chaos import FAULT_MIXES, FAULT_STATS, FAULT_TICKERS, run_fault_mix

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize("name", sorted(FAULT_MIXES))
async def test_fault_mix_ends_with_one_order_per_intent_and_fills_applied_once(name: str, tmp_path: Path) -> None:
    losses = await run_fault_mix(name, FAULT_MIXES[name], tmp_path / "state")
    assert losses == []
    stats = FAULT_STATS[name]
    # entries, their protective stops (cancelled by the flatten) and the flatten exits: one order each; the entries
    # and exits filled once each
    assert stats["entries"] == len(FAULT_TICKERS)
    assert stats["orders"] == 3 * len(FAULT_TICKERS) and stats["fills"] == 2 * len(FAULT_TICKERS)


async def test_the_checks_catch_a_second_order_for_one_intent(tmp_path: Path) -> None:
    """The judge must be able to fail: a broker that books every entry twice is reported."""
    from tests import chaos

    original = chaos._apply_faults

    def double_booking(paper, mix):  # type: ignore[no-untyped-def]
        original(paper, mix)
        submit = paper.submit_order

        async def twice(intent):  # type: ignore[no-untyped-def]
            result = await submit(intent)
            if intent.kind == "entry":
                await submit(dataclasses.replace(intent, client_order_id=intent.client_order_id + "-dup"))
            return result

        paper.submit_order = twice

    chaos._apply_faults = double_booking
    try:
        losses = await run_fault_mix("double", {}, tmp_path / "state")
    finally:
        chaos._apply_faults = original
    assert losses, "a doubled entry went unnoticed"
