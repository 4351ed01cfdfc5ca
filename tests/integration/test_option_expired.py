"""An option still in the book after its last session closed is booked out at 0 once its broker drops it.

Through alpaca-py against FakeAlpaca: a call bought from the chain, the daemon down through the cutoff of the
option's last session (its EOD rule would have sold it), and Alpaca takes the expired contract out of the account
overnight. Reconciliation at the next start saw a position the broker lacks: an unexplained difference, alerted,
held in the book for ever and, above `kill_notional_threshold`, a kill-switch trip. Now it is an expiry: closed by a
journaled exit filled at 0 (`option_expired`), the premium the trade's loss, and a restart rebuilds the same book.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from daemon.core import Core
from pipeline.core.clock import SimulatedClock
from pipeline.core.models import OPTION_MULTIPLIER
from tests.alpaca_core import alert_kinds
from tests.conftest import until
from tests.fakes.alpaca_server import FakeAlpaca
from tests.integration.test_option_chains import (
    COMPACT,
    PADDED,
    SESSION,
    _list_nvda,
    _settings,
    _signal,
    _started,
    chain_ready,
)

pytestmark = pytest.mark.timeout(120)
AFTER_EXPIRY = datetime(2026, 12, 21, 15, 0, tzinfo=UTC)  # Monday 10:00 ET after the 2026-12-18 expiry


@pytest.fixture
async def fake() -> AsyncIterator[FakeAlpaca]:
    async with FakeAlpaca() as server:
        server.options.quote_time = SESSION - timedelta(seconds=20)
        yield server


async def _holding_the_call(tmp_path: Path, fake: FakeAlpaca) -> tuple[float, float]:
    _list_nvda(fake)
    fake.market_fills()
    core = await _started(_settings(tmp_path, fake, "options"),
                          SimulatedClock(SESSION))
    try:
        await chain_ready(core)
        result = await core.orchestrator.process_signal(_signal())
        assert result.success, result.rejection_reason
        await until(lambda: core.ledger.holds(PADDED), what="the option fill in the ledger")
        await core.settle()
        holding = core.ledger.holding(PADDED)
        return holding.quantity, holding.position.entry_price
    finally:
        await core.stop()


async def _trades(core: Core) -> list[dict]:
    assert core.journal is not None
    return await core.journal.query("SELECT symbol, exit_type, pnl, quantity FROM trades")


async def test_an_option_gone_after_its_expiry_is_booked_out_at_zero(tmp_path: Path, fake: FakeAlpaca) -> None:
    qty, premium = await _holding_the_call(tmp_path, fake)
    fake.positions.pop(COMPACT)  # expired worthless while the daemon was down: Alpaca takes it out of the account
    core = await _started(_settings(tmp_path, fake, "options"),
                          SimulatedClock(AFTER_EXPIRY))
    alerts = alert_kinds(core)
    try:
        assert core.ledger.holds(PADDED)  # rebuilt from the journal: the book still holds it
        await core.reconcile_at_start()  # as the daemon does before READY
        assert not core.ledger.holds(PADDED)
        assert not core.kill_switch.is_active()
        assert "option_expired" in alerts
        await core.reconcile()
        assert core.last_reconciliation is not None and core.last_reconciliation["ok"] is True
        (trade,) = await _trades(core)
        assert trade["exit_type"] == "option_expired" and trade["quantity"] == qty
        assert trade["pnl"] == pytest.approx(-qty * premium * OPTION_MULTIPLIER)
        assert "reconciliation_mismatch" not in alerts
    finally:
        await core.stop()
    again = await _started(_settings(tmp_path, fake, "options"),
                           SimulatedClock(AFTER_EXPIRY))
    try:
        assert not again.ledger.holds(PADDED), "the rebuild from the journal brought the expired option back"
        assert len(await _trades(again)) == 1
    finally:
        await again.stop()


async def test_an_option_gone_before_its_expiry_is_still_a_difference(tmp_path: Path, fake: FakeAlpaca) -> None:
    qty, _ = await _holding_the_call(tmp_path, fake)
    fake.positions.pop(COMPACT)  # gone from the broker while still tradable: nothing explains it
    core = await _started(_settings(tmp_path, fake, "options"),
                          SimulatedClock(SESSION.replace(day=25)))
    try:
        await core.reconcile_at_start()
        assert core.ledger.holding(PADDED).quantity == qty
        assert core.last_reconciliation is not None and core.last_reconciliation["ok"] is False
        assert await _trades(core) == []
    finally:
        await core.stop()


async def test_a_booking_cut_short_is_finished_at_the_next_start_and_never_sent(tmp_path: Path,
                                                                                fake: FakeAlpaca) -> None:
    await _holding_the_call(tmp_path, fake)
    fake.positions.pop(COMPACT)
    core = await _started(_settings(tmp_path, fake, "options"), SimulatedClock(AFTER_EXPIRY))
    try:
        applied = core.lifecycle.on_broker_event

        async def down_before_the_fill(event: object) -> None:  # the process dies between exit and fill
            raise OSError("disk full")

        core.lifecycle.on_broker_event = down_before_the_fill  # type: ignore[method-assign]
        await core.reconcile_at_start()
        core.lifecycle.on_broker_event = applied  # type: ignore[method-assign]
        assert core.ledger.holds(PADDED)
    finally:
        await core.stop()
    again = await _started(_settings(tmp_path, fake, "options"), SimulatedClock(AFTER_EXPIRY))
    try:
        await again.reconcile_at_start()
        assert not again.ledger.holds(PADDED)
        (trade,) = await _trades(again)
        assert trade["exit_type"] == "option_expired"
        await again.check_overdue()
        assert [r.body["side"] for r in fake.submits()] == ["buy"], "the expiry's exit went to the broker"
    finally:
        await again.stop()
