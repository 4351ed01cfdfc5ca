"""A short entry IB holds while it locates shares to borrow, through the daemon's Core, ib_async and FakeTWS.

IB answers a short sale it cannot borrow for yet with warning 404 and status `Inactive` (whyHeld "locate"). The
order is live: IB keeps looking and fills it once it finds shares. Read as a rejection, the daemon would free the
entry's reservation and call the order done while a short could still open at any time, unprotected by the limits.
Held, it stays working (reserved, listed at its broker); the fill opens the short with its protective stop; a
cancel reaches IB.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from config.settings import load_settings
from daemon.core import Core
from pipeline.core.clock import SimulatedClock
from pipeline.core.models import TradeSignal
from pipeline.execution.order_record import OrderState
from tests.alpaca_core import alert_kinds
from tests.conftest import until
from tests.fakes.tws_server import FakeTWS, OrderScript
from tests.market import set_market

pytestmark = pytest.mark.timeout(60)
SESSION = datetime(2026, 11, 24, 16, 0, tzinfo=UTC)


@pytest.fixture
async def tws() -> AsyncIterator[FakeTWS]:
    server = FakeTWS(now=lambda: datetime.now(UTC))
    await server.start()
    server.add_stock("GME", 20.0)
    yield server
    await server.stop()


def _core(tmp_path: Path, tws: FakeTWS, clock: SimulatedClock) -> Core:
    settings = load_settings(
        state_dir=tmp_path / "state", broker={"primary": "ibkr", "fallback": None},
        ibkr={"host": "127.0.0.1", "port": tws.port, "client_id": 12, "request_timeout_seconds": 3},
        pipeline={"enable_unified_risk": False, "retry_backoff_base": 0.01},
        executor={"max_single_stock_exposure": 0.5}, reconcile={"grace_seconds": 0.0},
    )
    return Core(settings, clock)


def _short(clock: SimulatedClock) -> TradeSignal:
    return TradeSignal(signal_type="cloud_cross_bearish", direction="short", ticker="GME", timeframe="5m",
                       conviction=80, entry_price=20.0, stop_loss=21.0, timestamp=clock.now(), source="test",
                       metadata={"instrument": "stock"})


async def _held_short(core: Core, tws: FakeTWS, clock: SimulatedClock) -> tuple[str, float]:
    """A short entry of GME that IB holds for a locate: (its client order id, its quantity)."""
    set_market(core, {"GME": 20.0})
    tws.script(OrderScript("locate"))
    result = await core.orchestrator.process_signal(_short(clock))
    assert result.success and result.intent is not None, result
    cid = result.intent.client_order_id
    await until(lambda: any(o.why_held == "locate" for o in tws.orders_with_ref(cid)), what="held for locate")
    await core.settle()
    return cid, result.intent.quantity


async def test_a_short_held_for_a_locate_stays_reserved_and_opens_with_its_stop(tmp_path: Path,
                                                                              tws: FakeTWS) -> None:
    clock = SimulatedClock(SESSION)
    core = _core(tmp_path, tws, clock)
    await core.start()
    try:
        cid, qty = await _held_short(core, tws, clock)
        record = core.book.get(cid)
        assert record is not None and record.state is OrderState.ACCEPTED, record and record.state
        assert [r.client_order_id for r in core.book.reserved()] == [cid]  # its exposure still counts
        assert core.orchestrator.counts.get("order:rejected", 0) == 0
        clock.advance(5)
        await core.reconcile()
        assert core.last_reconciliation is not None and core.last_reconciliation["ok"] is True

        tws.locate(cid)  # IB found the shares: the short opens, and its stop goes to IB
        await until(lambda: core.ledger.net("GME") == -qty, what="the short's fill")
        await core.settle()
        assert core.book.get(cid).state is OrderState.FILLED
        await until(lambda: [(o.action, o.quantity, float(o.aux_price)) for o in tws.orders.values()
                             if o.order_type == "STP" and not o.is_done] == [("BUY", qty, 21.0)],
                    what="the protective buy stop resting")
    finally:
        await core.stop()


async def test_a_held_short_is_cancelled_at_ib_on_shutdown(tmp_path: Path, tws: FakeTWS) -> None:
    clock = SimulatedClock(SESSION)
    core = _core(tmp_path, tws, clock)
    await core.start()
    try:
        cid, _ = await _held_short(core, tws, clock)
        assert await core.limbo.cancel_working_entries() == [cid]
        (held,) = tws.orders_with_ref(cid)
        assert held.status == "Cancelled" and held.order_id in tws.cancel_requests
        await until(lambda: core.book.get(cid).state is OrderState.CANCELLED, what="the cancel confirmed")
        assert core.book.reserved() == []
    finally:
        await core.stop()


async def test_a_short_held_longer_than_a_signal_lives_is_cancelled(tmp_path: Path, tws: FakeTWS) -> None:
    # filled hours later, the short would open on a market the signal never saw: an entry still working with
    # nothing filled after [pipeline] max_signal_age_seconds (120) is cancelled, as a stale signal is refused
    clock = SimulatedClock(SESSION)
    core = _core(tmp_path, tws, clock)
    alerts = alert_kinds(core)
    await core.start()
    try:
        cid, _ = await _held_short(core, tws, clock)
        clock.advance(100)
        await core.check_overdue()
        (held,) = tws.orders_with_ref(cid)
        assert held.status == "Inactive" and tws.cancel_requests == []  # younger than a signal may be: working
        clock.advance(30)
        await core.check_overdue()
        await until(lambda: held.status == "Cancelled", what="the stale entry cancelled at IB")
        await until(lambda: core.book.get(cid).state is OrderState.CANCELLED, what="the cancel confirmed")
        assert core.book.reserved() == [] and "stale_entry_cancelled" in alerts
        clock.advance(30)
        await core.check_overdue()
        assert tws.cancel_requests == [held.order_id]  # cancelled once
    finally:
        await core.stop()


async def test_a_held_short_is_cancelled_once_the_kill_switch_trips(tmp_path: Path, tws: FakeTWS) -> None:
    # no entry leaves the process after a trip, and none already at the broker may open a position after it
    clock = SimulatedClock(SESSION)
    core = _core(tmp_path, tws, clock)
    alerts = alert_kinds(core)
    await core.start()
    try:
        cid, _ = await _held_short(core, tws, clock)
        clock.advance(5)
        await core.check_overdue()
        assert tws.cancel_requests == []  # young, and trading on: it may fill
        core.kill_switch.activate("operator halt", source="test")
        await core.check_overdue()
        (held,) = tws.orders_with_ref(cid)
        await until(lambda: held.status == "Cancelled", what="the held short cancelled after the trip")
        await until(lambda: core.book.get(cid).state is OrderState.CANCELLED, what="the cancel confirmed")
        assert "entry_cancelled_by_kill_switch" in alerts and core.book.reserved() == []
    finally:
        await core.stop()
