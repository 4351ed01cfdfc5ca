"""The account holder edits the protective stop in TWS: the daemon follows its new level.

IB keeps an edited order's id and orderRef and only tells the placing client the new auxPrice (openOrder). The daemon
kept its own level: it showed the old one, and its next trailing move was judged against it, so a stop the holder
had tightened to 99 was moved back down to 98.5 (the trail's level, "tighter" than the 97 it remembered): the
holder's protection loosened by the daemon. An edit made while the daemon was down was the same after a restart.
Now the level at IB is the position's stop level, from the openOrder as it comes and from the broker at start.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pipeline.core.models import client_order_id_for
from tests.alpaca_core import alert_kinds
from tests.fakes.tws_server import FakeTWS
from tests.ibkr_core import aapl_tws, enter_with_stop, ibkr_core, until

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def tws() -> AsyncIterator[FakeTWS]:
    async with aapl_tws() as server:
        yield server


def _level(core: object) -> float:
    view = core.stops.view("AAPL")  # type: ignore[attr-defined]
    assert view is not None and "stop_price" in view, view
    return float(view["stop_price"])


async def test_a_stop_tightened_in_tws_is_followed_and_never_loosened_by_the_trail(tmp_path: Path,
                                                                                  tws: FakeTWS) -> None:
    core = await ibkr_core(tmp_path, tws)
    try:
        alerts = alert_kinds(core)
        signal_id, qty = await enter_with_stop(core)
        stop_ref = client_order_id_for(signal_id, "stop0")
        resting = tws.edit_by_hand(stop_ref, stop_price=99.0)
        await until(lambda: _level(core) == 99.0, what="the holder's level taken", timeout=10.0)
        await core.settle()
        assert alerts.count("protective_stop_moved") == 1
        shown = core.positions()[0]["resting_stop"]
        assert (shown["client_order_id"], shown["stop_price"]) == (stop_ref, 99.0)

        core.clock.advance(31)  # past the trail's rate limit
        assert core.stops.trail(core.ledger.holding("AAPL").position, 98.5) is False  # looser than the holder's
        await core.settle()
        assert float(resting.aux_price) == 99.0 and len(tws.place_requests) == 2  # entry and its stop: no modify
        assert core.stops.trail(core.ledger.holding("AAPL").position, 99.4)  # tighter than the holder's: moved
        await until(lambda: len(tws.place_requests) == 3, what="the trail's modify", timeout=10.0)
        await core.settle()
        assert float(resting.aux_price) == 99.4 and resting.quantity == qty
        assert _level(core) == 99.4 and alerts.count("protective_stop_moved") == 1  # our own move is not an edit
    finally:
        await core.stop()


async def test_a_stop_edited_while_the_daemon_is_down_keeps_the_holders_level_after_the_restart(
        tmp_path: Path, tws: FakeTWS) -> None:
    core = await ibkr_core(tmp_path, tws, shutdown={"cancel_inflight_entries": False})
    try:
        signal_id, qty = await enter_with_stop(core)
    finally:
        await core.stop()
    stop_ref = client_order_id_for(signal_id, "stop0")
    resting = tws.edit_by_hand(stop_ref, stop_price=99.0)  # nobody connected: TWS tells no one
    core = await ibkr_core(tmp_path, tws, shutdown={"cancel_inflight_entries": False})
    try:
        await core.settle()
        assert _level(core) == 99.0
        assert len(tws.place_requests) == 2 and float(resting.aux_price) == 99.0  # kept, not put back to 97
        core.clock.advance(31)
        assert core.stops.trail(core.ledger.holding("AAPL").position, 98.5) is False
        await core.settle()
        assert float(resting.aux_price) == 99.0 and resting.quantity == qty
    finally:
        await core.stop()
