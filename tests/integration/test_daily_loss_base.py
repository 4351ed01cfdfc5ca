"""The daily loss limit is a share of the day's starting equity, renewed each trading day.

The starting equity was taken once, at start: a service up for weeks judged today's loss against the equity of
the day it started. After $40 000 of losses on a $100 000 account, a 10 % limit still allowed a $10 000 day —
17 % of what the account held that morning. Now each new trading day's starting equity is the equity as it began.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from tests.conftest import make_signal


async def test_a_new_day_judges_its_loss_against_that_days_equity(paper_core: Callable[..., Awaitable[Any]]) -> None:
    core = await paper_core(executor={"daily_loss_limit": 0.10})
    try:
        assert core.account.get_starting_equity() == 100_000.0
        core.ledger.cash -= 40_000.0  # the losses of the days before (the broker's cash moved with them)
        core.clock.advance(timedelta(days=1).total_seconds())  # Wednesday, the next session
        assert core.account.get_starting_equity() == 60_000.0  # renewed as the new day is first looked at
        core.state.record_pnl(-7_000.0)  # today's loss so far: 11.7 % of this morning's equity
        core.brokers["paper"].set_price("AAPL", 100.0)
        core.ledger.mark("AAPL", 100.0)
        result = await core.orchestrator.process_signal(make_signal("AAPL", 100.0, at=core.clock.now()))
        assert not result.success and result.pipeline_stage == "risk_gate", result
        assert "daily_loss" in (result.rejection_reason or "") and "60,000.00" in (result.rejection_reason or "")
        core.ledger.cash -= 1_000.0
        assert core.account.get_starting_equity() == 60_000.0  # once a day
    finally:
        await core.stop()


async def test_the_starting_equity_holds_through_the_day(paper_core: Callable[..., Awaitable[Any]]) -> None:
    core = await paper_core()
    try:
        core.ledger.cash -= 5_000.0
        core.clock.advance(timedelta(hours=2).total_seconds())  # the same session
        assert core.account.get_starting_equity() == 100_000.0
    finally:
        await core.stop()
