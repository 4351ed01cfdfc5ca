"""Issue 13 through ib_async against FakeTWS: the protective stop is a child STP attached to the entry (parentId,
the parent untransmitted until the child is placed, so the pair goes live together), adopted by the daemon as the
position's resting stop, moved by placing the same IB order id again, and booked as `stop_loss (broker)` when the
price falls through it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from config.settings import load_settings
from daemon.core import Core
from pipeline.core.clock import SimulatedClock
from pipeline.core.models import TradeSignal, client_order_id_for
from pipeline.execution.protective_stops import BROKER_STOP_EXIT
from tests.fakes.tws_server import FakeTWS
from tests.market import set_market

pytestmark = pytest.mark.timeout(60)
SESSION = datetime(2026, 11, 24, 16, 0, tzinfo=UTC)


@pytest.fixture
async def tws() -> AsyncIterator[FakeTWS]:
    clock = SimulatedClock(SESSION)
    server = FakeTWS(now=clock.now)
    await server.start()
    server.add_stock("AAPL", 100.0)
    yield server
    await server.stop()


async def _core(tmp_path: Path, tws: FakeTWS, **overrides: Any) -> Core:
    settings = load_settings(
        state_dir=tmp_path / "state", broker={"primary": "ibkr", "fallback": None},
        ibkr={"host": "127.0.0.1", "port": tws.port, "client_id": 11, "request_timeout_seconds": 3},
        pipeline={"enable_unified_risk": False, "retry_backoff_base": 0.01},
        executor={"max_single_stock_exposure": 0.5}, **overrides,
    )
    core = Core(settings, SimulatedClock(SESSION))
    await core.start()
    return core


async def _until(predicate: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"no {what} within {timeout}s")
        await asyncio.sleep(0.02)


async def _enter(core: Core) -> tuple[str, float]:
    set_market(core, {"AAPL": 100.0})  # the feed's last bar: the entry is sized on it
    signal = TradeSignal(signal_type="cloud_cross_bullish", direction="long", ticker="AAPL", timeframe="5m",
                         conviction=80, entry_price=100.0, stop_loss=97.0, timestamp=core.clock.now(), source="test")
    result = await core.orchestrator.process_signal(signal)
    assert result.success, result
    assert result.signal_id is not None and result.intent is not None
    await _until(lambda: core.ledger.holds("AAPL"), "entry fill")
    await core.settle()
    await _until(lambda: core.stops.view("AAPL") is not None, "resting stop adopted")
    return result.signal_id, result.intent.quantity


async def test_entry_goes_out_with_its_stop_attached_as_a_child(tmp_path: Path, tws: FakeTWS) -> None:
    core = await _core(tmp_path, tws)
    try:
        signal_id, qty = await _enter(core)
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
        await _until(lambda: len(tws.place_requests) == 3, "modify")
        modify = tws.place_requests[2]
        assert int(modify[1]) == resting.order_id and float(modify[20]) == 98.5
        assert float(resting.aux_price) == 98.5 and not resting.is_done
        assert core.stops.view("AAPL")["client_order_id"] == modify[26] == resting.order_ref

        # the price falls through it at IB: one sale, booked as the broker's stop
        assert tws.trade("AAPL", 98.0) == [resting.order_ref]
        await _until(lambda: not core.ledger.holds("AAPL"), "stop fill booked")
        await core.settle()
        assert core.trades is not None
        trips = await core.trades.all_trades()
        assert [(t.exit_type, t.quantity) for t in trips] == [(BROKER_STOP_EXIT, qty)]
        assert len(tws.place_requests) == 3  # the daemon sent no exit of its own
    finally:
        await core.stop()


async def test_restart_with_the_child_gone_places_a_standalone_stop(tmp_path: Path, tws: FakeTWS) -> None:
    core = await _core(tmp_path, tws, shutdown={"cancel_inflight_entries": False})
    try:
        signal_id, qty = await _enter(core)
        (child,) = tws.orders_with_ref(client_order_id_for(signal_id, "stop0"))
    finally:
        await core.stop()
    child.status = "Cancelled"  # cancelled in TWS by hand while the daemon is down
    core = await _core(tmp_path, tws, shutdown={"cancel_inflight_entries": False})
    try:
        stop_ref = client_order_id_for(signal_id, "stop1")
        await _until(lambda: bool(tws.orders_with_ref(stop_ref)), "a new stop")
        (placed,) = tws.orders_with_ref(stop_ref)
        assert (placed.order_type, float(placed.aux_price), placed.action) == ("STP", 97.0, "SELL")
        assert placed.quantity == qty
        assert placed.parent_id == 0 and not placed.is_done  # on its own: the entry is long done
        assert core.stops.view("AAPL")["client_order_id"] == stop_ref
    finally:
        await core.stop()
    core = await _core(tmp_path, tws, shutdown={"cancel_inflight_entries": False})
    try:  # resting: left alone
        await core.settle()
        assert len(tws.place_requests) == 3 and core.stops.view("AAPL")["client_order_id"] == stop_ref
    finally:
        await core.stop()
