"""A hand trade whose fill reaches us after the broker's positions already held it is counted once.

Through the real alpaca-py clients against FakeAlpaca, whose trade_updates stream lags behind its REST answers
(`hold_trade_updates`): the account holder buys 10 AAPL by hand; the positions endpoint shows them at once and a
confirmed reconciliation records 10 external; the stream's fill event comes only afterwards. It used to be added
on top (20 external AAPL, twice the risk the gate and `status` saw) until the next confirmed reconciliation. A hand
trade made after that reconciliation is still counted at once.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest

from daemon.broker_time import MIN_VIEW_LAG_SECONDS
from daemon.core import Core
from pipeline.core.clock import SimulatedClock
from tests.alpaca_core import alert_kinds, alpaca_core, until
from tests.fakes.alpaca_server import FakeAlpaca

pytestmark = pytest.mark.timeout(120)


async def _confirmed_external(core: Core, symbol: str, qty: float) -> None:
    for _ in range(3):  # a difference counts once two checks in a row have seen it
        await core.reconcile()
        if core.external.quantity(symbol) == qty:
            return
    raise AssertionError(f"{symbol}: external {core.external.quantity(symbol)}, wanted {qty}; "
                         f"{core.last_reconciliation}")


async def test_a_hand_fill_streamed_after_the_positions_held_it_is_counted_once(
    tmp_path: Path, fake: FakeAlpaca,
) -> None:
    clock = SimulatedClock(datetime.now(UTC))  # our clock with the broker's (the fake runs on the host's)
    core = await alpaca_core(tmp_path, fake, clock=clock, reconcile={"grace_seconds": 0.0})
    alerts = alert_kinds(core)
    try:
        fake.hold_trade_updates()  # the websocket stalls; REST answers at once
        await fake.place_manual_order("AAPL", 10, "buy", 100.0)
        clock.advance(10)  # ten seconds pass, on both clocks
        fake.clock_offset += 10
        await _confirmed_external(core, "AAPL", 10)
        assert await fake.release_trade_updates() == 2  # new, fill: the stream catches up
        await until(lambda: "external_fill" in alerts, what="the late fill applied")
        assert core.external.quantity("AAPL") == 10, "the fill the positions held was counted again"
        assert [(p.ticker, p.shares) for p in core.account_state().open_positions] == [("AAPL", 10.0)]
        # a hand trade after the reconciliation moves the count at once, before any check sees it
        await fake.place_manual_order("AAPL", 5, "buy", 101.0)
        await until(lambda: core.external.quantity("AAPL") == 15, what="the new hand fill counted")
        await core.reconcile()
        await core.reconcile()
        assert core.external.quantity("AAPL") == 15 and core.last_reconciliation["ok"] is True
    finally:
        await core.stop()


async def test_a_hand_fill_the_lagging_positions_did_not_show_yet_is_still_counted(
    tmp_path: Path, fake: FakeAlpaca,
) -> None:
    """The other side: the positions endpoint lags (1 s here) and confirms 10 external while a second hand fill
    of 5 is already made but not in its answer yet. When that fill's event comes, it is counted (15): figures
    read at a time are taken to hold only the fills stamped a margin before it (daemon.broker_time)."""
    clock = SimulatedClock(datetime.now(UTC))
    core = await alpaca_core(tmp_path, fake, clock=clock, reconcile={"grace_seconds": 0.0})
    alerts = alert_kinds(core)
    try:
        fake.hold_trade_updates()
        await fake.place_manual_order("AAPL", 10, "buy", 100.0)
        await core.reconcile()  # the first sighting of 10
        await asyncio.sleep(MIN_VIEW_LAG_SECONDS + 0.5)  # the 10 older than the margin: held once confirmed
        fake.positions_lag = 1.0  # from now on the endpoint answers the positions of a second ago
        await fake.place_manual_order("AAPL", 5, "buy", 101.0)
        await core.reconcile()  # still 10 in its answer: the difference of 10 is confirmed
        assert core.external.quantity("AAPL") == 10
        assert {p["symbol"]: float(p["qty"]) for p in fake.positions.values()} == {"AAPL": 15.0}
        await fake.release_trade_updates()
        await until(lambda: alerts.count("external_fill") == 2, what="both hand fills applied")
        assert core.external.quantity("AAPL") == 15, "a fill the positions did not hold yet was taken as held"
    finally:
        await core.stop()


async def test_the_cash_read_at_start_holds_a_hand_fill_streamed_afterwards(tmp_path: Path, fake: FakeAlpaca) -> None:
    """A hand trade made while the daemon was down whose event comes after start-up: the cash the start-up took
    from the account already paid for it, so the account view's cash is the broker's, not $1 000 less."""
    fake.hold_trade_updates()
    await fake.place_manual_order("AAPL", 10, "buy", 100.0)
    await asyncio.sleep(MIN_VIEW_LAG_SECONDS + 0.5)
    clock = SimulatedClock(datetime.now(UTC))
    core = await alpaca_core(tmp_path, fake, clock=clock, reconcile={"grace_seconds": 0.0})  # lag: the margin
    alerts = alert_kinds(core)
    try:
        broker_cash = float(fake.account["cash"])
        assert core.ledger.cash == broker_cash
        await fake.release_trade_updates()
        await until(lambda: "external_fill" in alerts, what="the late fill applied")
        assert core.external.quantity("AAPL") == 10  # no reconciliation has said so yet: the fill itself counts
        assert core.external.cash_adjustment == 0.0
        assert core.account_state().cash == broker_cash
    finally:
        await core.stop()
