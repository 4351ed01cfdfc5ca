"""The kill switch's send guard at each broker adapter's wire, and the spec's in-memory KillSwitch.

The guard is checked by the adapter itself right before the order is written (after the rate limiter, the worker
thread queue, the contract lookup), so an entry that waited anywhere while the switch tripped never leaves.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from adapters.ibkr import IBKRBroker
from adapters.paper import PaperBroker
from config.settings import IBKRSettings, PaperSettings
from pipeline.core.clock import LiveClock, SimulatedClock
from pipeline.core.models import Bar, OrderIntent, Side
from pipeline.core.ports import SendRefused
from pipeline.safety.kill_switch import KillSwitch
from pipeline.safety.state_manager import PersistentStateManager
from tests.fakes.tws_server import FakeTWS

NOW = datetime(2026, 11, 24, 16, 0, tzinfo=UTC)


def _intent(cid: str, kind: str = "entry", side: Side = Side.BUY) -> OrderIntent:
    return OrderIntent(client_order_id=cid, signal_id=f"sig-{cid}", symbol="AAPL", side=side, quantity=5,
                       reference_price=190.0, kind=kind)


def test_in_memory_kill_switch_has_the_spec_api() -> None:
    switch = KillSwitch()
    assert not switch.is_active()
    assert switch.activate("Manual halt") is True and switch.is_active()
    assert switch.activate("again") is False and switch.info()["reason"] == "Manual halt"
    with pytest.raises(SendRefused, match="kill switch: Manual halt"):
        switch.guard(_intent("e1"))
    switch.guard(_intent("x1", kind="exit", side=Side.SELL))  # exits always pass
    assert switch.deactivate() is True and not switch.is_active()
    switch.guard(_intent("e2"))


def test_persistent_kill_switch_is_on_disk_when_activate_returns(tmp_path: Path) -> None:
    clock = SimulatedClock(NOW)
    switch = KillSwitch(PersistentStateManager(tmp_path, clock))
    assert switch.activate("daily loss", source="daily_loss") is True
    assert switch.durable and switch.info()["write_error"] is None
    assert KillSwitch(PersistentStateManager(tmp_path, clock)).is_active()


async def test_paper_broker_refuses_an_entry_at_the_wire_and_lets_exits_through(tmp_path: Path) -> None:
    clock = SimulatedClock(NOW)
    broker = PaperBroker(PaperSettings(), clock)
    switch = KillSwitch(PersistentStateManager(tmp_path, clock))
    broker.set_send_guard(switch.guard)
    await broker.connect()
    broker.on_bars([Bar("AAPL", NOW, 190.0, 190.0, 190.0, 190.0, 1000.0)])
    switch.activate("test")
    with pytest.raises(SendRefused):
        await broker.submit_order(_intent("og-entry-1"))
    assert await broker.get_order_by_client_id("og-entry-1") is None  # nothing was booked
    result = await broker.submit_order(_intent("og-exit-1", kind="exit", side=Side.SELL))
    assert result.client_order_id == "og-exit-1"
    await broker.close()


@pytest.fixture
async def tws() -> AsyncIterator[FakeTWS]:
    server = FakeTWS()
    await server.start()
    server.add_stock("AAPL", 190.0)
    yield server
    await server.stop()


async def test_ibkr_refuses_an_entry_tripped_during_its_contract_lookup(tmp_path: Path, tws: FakeTWS) -> None:
    settings = IBKRSettings(host="127.0.0.1", port=tws.port, client_id=7, request_timeout_seconds=5)
    broker = IBKRBroker(settings, LiveClock(), reconnect_initial_delay=0.05, reconnect_max_delay=0.2)
    switch = KillSwitch(PersistentStateManager(tmp_path, SimulatedClock(NOW)))

    def guard(intent: OrderIntent) -> None:
        switch.activate("tripped while the contract was looked up")  # the trip lands after the router's check
        switch.guard(intent)

    broker.set_send_guard(guard)
    await broker.connect()
    try:
        with pytest.raises(SendRefused):
            await broker.submit_order(_intent("og-entry-ib1"))
        await asyncio.sleep(0.2)
        assert tws.orders_with_ref("og-entry-ib1") == []  # no placeOrder reached TWS
    finally:
        await broker.close()
