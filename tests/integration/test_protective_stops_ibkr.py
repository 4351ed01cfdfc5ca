"""Issue 13 through ib_async against FakeTWS: the protective stop is a child STP attached to the entry (parentId,
the parent untransmitted until the child is placed, so the pair goes live together), adopted by the daemon as the
position's resting stop, moved by placing the same IB order id again, and booked as `stop_loss (broker)` when the
price falls through it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pipeline.core.models import client_order_id_for
from pipeline.execution.protective_stops import BROKER_STOP_EXIT
from tests.fakes.tws_server import FakeTWS
from tests.ibkr_core import aapl_tws, enter_with_stop, ibkr_core, until

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def tws() -> AsyncIterator[FakeTWS]:
    async with aapl_tws() as server:
        yield server


async def test_entry_goes_out_with_its_stop_attached_as_a_child(tmp_path: Path, tws: FakeTWS) -> None:
    core = await ibkr_core(tmp_path, tws)
    try:
        signal_id, qty = await enter_with_stop(core)
        parent, child = tws.place_requests  # one entry, one child: no second stop placed on the fill
        stop_ref = client_order_id_for(signal_id, "stop0")
        assert parent[26] == client_order_id_for(signal_id) and parent[27] == "0"  # held until the child goes
        assert (child[26], child[18], float(child[20]), child[16]) == (stop_ref, "STP", 97.0, "SELL")
        assert child[27] == "1" and int(child[28]) == int(parent[1]) and child[21] == "GTC"
        (resting,) = tws.orders_with_ref(stop_ref)
        assert not resting.is_done and resting.quantity == qty
        shown = core.positions()[0]["resting_stop"]
        assert shown["client_order_id"] == stop_ref and shown["broker_order_id"] == str(resting.perm_id)
        assert core.journal is not None
        row = await core.journal.get_order(stop_ref)
        assert row is not None and row["kind"] == "stop"

        # the trailing stop moves it: the same IB order id placed again, new stop price and orderRef
        assert core.stops.trail(core.ledger.holding("AAPL").position, 98.5) is False  # rate-limited (30 s)
        core.clock.advance(31)
        assert core.stops.trail(core.ledger.holding("AAPL").position, 98.5)
        await core.settle()
        await until(lambda: len(tws.place_requests) == 3, what="modify", timeout=10.0)
        modify = tws.place_requests[2]
        assert int(modify[1]) == resting.order_id and float(modify[20]) == 98.5
        assert float(resting.aux_price) == 98.5 and not resting.is_done
        assert core.stops.view("AAPL")["client_order_id"] == modify[26] == resting.order_ref

        # the price falls through it at IB: one sale, booked as the broker's stop
        assert tws.trade("AAPL", 98.0) == [resting.order_ref]
        await until(lambda: not core.ledger.holds("AAPL"), what="stop fill booked", timeout=10.0)
        await core.settle()
        assert core.trades is not None
        trips = await core.trades.all_trades()
        assert [(t.exit_type, t.quantity) for t in trips] == [(BROKER_STOP_EXIT, qty)]
        assert len(tws.place_requests) == 3  # the daemon sent no exit of its own
    finally:
        await core.stop()


async def test_restart_with_the_child_gone_places_a_standalone_stop(tmp_path: Path, tws: FakeTWS) -> None:
    core = await ibkr_core(tmp_path, tws, shutdown={"cancel_inflight_entries": False})
    try:
        signal_id, qty = await enter_with_stop(core)
        (child,) = tws.orders_with_ref(client_order_id_for(signal_id, "stop0"))
    finally:
        await core.stop()
    child.status = "Cancelled"  # cancelled in TWS by hand while the daemon is down
    core = await ibkr_core(tmp_path, tws, shutdown={"cancel_inflight_entries": False})
    try:
        stop_ref = client_order_id_for(signal_id, "stop1")
        await until(lambda: bool(tws.orders_with_ref(stop_ref)), what="a new stop", timeout=10.0)
        (placed,) = tws.orders_with_ref(stop_ref)
        assert (placed.order_type, float(placed.aux_price), placed.action) == ("STP", 97.0, "SELL")
        assert placed.quantity == qty
        assert placed.parent_id == 0 and not placed.is_done  # on its own: the entry is long done
        assert core.stops.view("AAPL")["client_order_id"] == stop_ref
    finally:
        await core.stop()
    core = await ibkr_core(tmp_path, tws, shutdown={"cancel_inflight_entries": False})
    try:  # resting: left alone
        await core.settle()
        assert len(tws.place_requests) == 3 and core.stops.view("AAPL")["client_order_id"] == stop_ref
    finally:
        await core.stop()
