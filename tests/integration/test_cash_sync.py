"""The ledger's cash follows the broker's through a run (daemon.cash_sync), through alpaca-py against FakeAlpaca.

A dividend, a fee or a withdrawal moves the broker's cash without a fill; the ledger used to take the broker's
cash only at start, so over a long run the risk gate sized on an equity the account did not have. Now a quiet
reconciliation check (positions agreeing, no order activity within the grace period) compares the two, and the
same difference on two checks in a row is taken. What must not be taken: a hand trade's cash (the external book
carries it) and a fill of ours the broker's cash holds before our ledger has it (it would be counted twice).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from daemon.cash_sync import QUIET_SECONDS
from daemon.core import Core
from pipeline.core.clock import SimulatedClock
from tests.alpaca_core import SESSION, alert_kinds, alpaca_core, held_quantity, until
from tests.conftest import make_signal
from tests.fakes.alpaca_server import FakeAlpaca

pytestmark = pytest.mark.timeout(120)
GRACE = 30.0
QUIET = max(GRACE, QUIET_SECONDS) + 1  # no order activity this long: the broker's cash holds every fill


def _broker_cash(fake: FakeAlpaca) -> float:
    return float(fake.account["cash"])


async def _core(tmp_path: Path, fake: FakeAlpaca) -> tuple[Core, SimulatedClock]:
    clock = SimulatedClock(SESSION)  # a regular session (the fake's own clock is the host's)
    core = await alpaca_core(tmp_path, fake, clock=clock, reconcile={"grace_seconds": GRACE})
    fake.prices.update({"AAPL": 100.0, "MSFT": 100.0})  # the broker fills at the market the core sees
    return core, clock


async def _bought(core: Core, fake: FakeAlpaca, clock: SimulatedClock, ticker: str = "AAPL") -> float:
    fake.market_fills()
    result = await core.orchestrator.process_signal(make_signal(ticker, 100.0, 98.0, at=clock.now()))
    assert result.success, result
    await until(lambda: held_quantity(core, ticker) > 0, what="the entry's fill")
    await core.settle()
    return held_quantity(core, ticker)


async def _quiet_checks(core: Core, clock: SimulatedClock, n: int = 2) -> None:
    for _ in range(n):
        clock.advance(QUIET)
        await core.reconcile()
        assert core.last_reconciliation is not None and core.last_reconciliation["ok"], core.last_reconciliation


async def test_a_dividend_reaches_the_ledger_after_two_quiet_checks(tmp_path: Path, fake: FakeAlpaca) -> None:
    core, clock = await _core(tmp_path, fake)
    alerts = alert_kinds(core)
    try:
        await _bought(core, fake, clock)
        await _quiet_checks(core, clock, 1)
        assert core.ledger.cash == pytest.approx(_broker_cash(fake))  # the fill moved both alike: nothing to take
        equity = core.account_state().equity
        amount = fake.pay_dividend("AAPL", 0.5)
        assert amount > 0
        clock.advance(QUIET)
        await core.reconcile()
        assert core.ledger.cash == pytest.approx(_broker_cash(fake) - amount), "taken on a single sighting"
        await core.reconcile()
        assert core.ledger.cash == pytest.approx(_broker_cash(fake))
        assert core.account_state().equity == pytest.approx(equity + amount)
        assert "cash_drift" not in alerts  # small: a log line (cash_resynced), no alert
        await _quiet_checks(core, clock)
        assert core.ledger.cash == pytest.approx(_broker_cash(fake))  # taken once
    finally:
        await core.stop()


async def test_a_withdrawal_is_taken_and_alerted(tmp_path: Path, fake: FakeAlpaca) -> None:
    core, clock = await _core(tmp_path, fake)
    alerts = alert_kinds(core)
    try:
        before = core.ledger.cash
        fake.move_cash(-25_000.0)
        await _quiet_checks(core, clock)
        assert core.ledger.cash == pytest.approx(before - 25_000.0)
        assert core.account_state().equity == pytest.approx(before - 25_000.0)
        assert "cash_drift" in alerts
    finally:
        await core.stop()


async def test_no_cash_is_taken_within_the_grace_of_order_activity(tmp_path: Path, fake: FakeAlpaca) -> None:
    core, clock = await _core(tmp_path, fake)
    try:
        await _bought(core, fake, clock)
        fake.move_cash(-10.0)  # a fee, just after our fill
        before = core.ledger.cash
        for _ in range(3):
            clock.advance(GRACE + 1)  # past the positions' grace, not the cash's
            await core.reconcile()
        assert core.ledger.cash == before  # the fill is minutes old at most: the broker's cash may still lag it
        await _quiet_checks(core, clock)
        assert core.ledger.cash == pytest.approx(before - 10.0)
    finally:
        await core.stop()


async def test_a_hand_trade_is_no_drift(tmp_path: Path, fake: FakeAlpaca) -> None:
    core, clock = await _core(tmp_path, fake)
    try:
        before = core.ledger.cash
        await fake.place_manual_order("MSFT", 10, "buy", 100.0)  # the holder buys by hand: the broker's cash moves
        await until(lambda: core.external.quantity("MSFT") == 10, what="the hand fill counted")
        clock.advance(QUIET)
        await core.reconcile()
        await core.reconcile()
        await _quiet_checks(core, clock, 3)
        assert core.ledger.cash == before  # the ledger's cash stays ordergate's own
        assert core.account.comparable_cash() == pytest.approx(_broker_cash(fake))
        assert core.account_state().cash == pytest.approx(_broker_cash(fake))
    finally:
        await core.stop()


async def test_a_fill_the_broker_holds_before_the_ledger_is_not_counted_twice(tmp_path: Path,
                                                                              fake: FakeAlpaca) -> None:
    core, clock = await _core(tmp_path, fake)
    try:
        fake.hold_trade_updates()  # the stream stalls: the broker's cash and positions hold our fill, we do not
        fake.market_fills()
        result = await core.orchestrator.process_signal(make_signal("AAPL", 100.0, 98.0,
                                                                          at=clock.now()))
        assert result.success, result
        await until(lambda: float(fake.account["cash"]) < 100_000.0, what="the fill at the broker")
        for _ in range(3):
            clock.advance(QUIET)
            await core.reconcile()
        assert held_quantity(core, "AAPL") == 0
        assert core.ledger.cash == 100_000.0  # the broker's cash was not taken: it holds a fill not applied yet
        await fake.release_trade_updates()
        await until(lambda: held_quantity(core, "AAPL") > 0, what="the fill applied")
        await core.settle()
        await _quiet_checks(core, clock)
        assert core.ledger.cash == pytest.approx(_broker_cash(fake))  # counted once
    finally:
        await core.stop()
