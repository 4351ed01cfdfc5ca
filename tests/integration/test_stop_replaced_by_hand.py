"""The account holder moves the protective stop by hand (Alpaca's app): the daemon follows the replacement.

Alpaca answers an edit of an open order with a new order (a client order id it makes up, `replaces` the old one)
and ends the old one `replaced`. The daemon knew only the old id: it took the stop as gone for good (replaced, not
put back) while the holder's stop kept resting with all the shares. The daemon's own exit then cancelled nothing
and sent a sale Alpaca refuses (the shares are held by that stop: "insufficient qty available"), or, if it went
through, left a sell stop under a position that is no more: a short opened by the next dip. Now the new order is
the position's stop: its level is the holder's, an exit cancels it before selling, and a restart finds it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from daemon.core import Core
from pipeline.core.clock import SimulatedClock
from tests.alpaca_core import SESSION, held_with_stop, live_stops, resting_stops, stops_core, until
from tests.fakes.alpaca_server import FakeAlpaca

pytestmark = pytest.mark.timeout(120)


def _resting_stop(core: Core) -> dict[str, Any] | None:
    (position,) = core.positions()
    return position.get("resting_stop")


async def _followed(core: Core, fake: FakeAlpaca, stop_price: float = 95.0) -> tuple[float, dict[str, Any]]:
    """A long with its stop, the stop moved by hand to `stop_price`, and the daemon following it: (the quantity,
    the holder's order)."""
    qty = await held_with_stop(core, fake)
    await core.settle()
    (ours,) = live_stops(fake)
    theirs = await fake.replace_by_hand(ours["client_order_id"], stop_price=stop_price)
    await until(lambda: (_resting_stop(core) or {}).get("client_order_id") == theirs["client_order_id"],
                what="the holder's stop taken as the position's")
    await core.settle()
    return qty, theirs


async def test_a_stop_moved_by_hand_is_followed_and_cancelled_before_the_exit_sells(tmp_path: Path,
                                                                                  fake: FakeAlpaca) -> None:
    clock = SimulatedClock(SESSION)
    core = await stops_core(tmp_path, fake, clock)
    try:
        qty, _ = await _followed(core, fake)
        for _ in range(3):
            clock.advance(5)
            await core.reconcile()
            await core.settle()
        assert resting_stops(fake) == [(qty, 95.0)], "a second stop was placed beside the holder's"
        assert core.last_reconciliation is not None and core.last_reconciliation["ok"] is True
        fake.prices["AAPL"] = 100.0
        fake.market_fills()
        report = await core.flatten("test")
        assert report["ok"], report
        await until(lambda: not core.ledger.holds("AAPL"), what="the exit's fill")
        await core.settle()
        assert live_stops(fake) == [], "a sell stop left under a position that is gone"
        assert "AAPL" not in fake.positions
    finally:
        await core.stop()


async def test_a_restart_finds_the_stop_moved_by_hand(tmp_path: Path, fake: FakeAlpaca) -> None:
    clock = SimulatedClock(SESSION)
    core = await stops_core(tmp_path, fake, clock)
    try:
        qty, theirs = await _followed(core, fake)
    finally:
        await core.stop()
    again = await stops_core(tmp_path, fake, clock)
    try:
        await again.settle()
        assert resting_stops(fake) == [(qty, 95.0)], "the restart placed a stop beside the holder's"
        assert (_resting_stop(again) or {}).get("client_order_id") == theirs["client_order_id"]
    finally:
        await again.stop()


async def test_a_stop_cut_by_hand_to_part_of_the_position_is_brought_back_to_all_of_it(tmp_path: Path,
                                                                                       fake: FakeAlpaca) -> None:
    clock = SimulatedClock(SESSION)
    core = await stops_core(tmp_path, fake, clock)
    try:
        qty = await held_with_stop(core, fake)
        await core.settle()
        (ours,) = live_stops(fake)
        await fake.replace_by_hand(ours["client_order_id"], stop_price=96.0, qty=qty // 3)
        await until(lambda: resting_stops(fake) == [(qty, 96.0)], what="the whole position protected, at 96")
        await core.settle()
        (current,) = live_stops(fake)
        assert (_resting_stop(core) or {}).get("client_order_id") == current["client_order_id"]
    finally:
        await core.stop()


async def test_the_followed_stop_filling_closes_the_position_live_and_after_a_restart(tmp_path: Path,
                                                                                    fake: FakeAlpaca) -> None:
    clock = SimulatedClock(SESSION)
    core = await stops_core(tmp_path, fake, clock)
    try:
        qty, theirs = await _followed(core, fake)
        assert await fake.trade("AAPL", 94.5) == [theirs["client_order_id"]]
        await until(lambda: not core.ledger.holds("AAPL"), what="the followed stop's fill closing the position")
        await core.settle()
        assert core.external.quantity("AAPL") == 0, "the fill was taken for someone else's sale"
        assert core.journal is not None
        (trade,) = await core.journal.query("SELECT exit_type, quantity FROM trades")
        assert trade["exit_type"] == "stop_loss (broker)" and trade["quantity"] == qty
    finally:
        await core.stop()
    again = await stops_core(tmp_path, fake, clock)
    try:
        assert not again.ledger.holds("AAPL") and again.external.quantity("AAPL") == 0
        await again.reconcile()
        assert again.last_reconciliation is not None and again.last_reconciliation["ok"] is True
    finally:
        await again.stop()


async def test_the_followed_stop_filling_while_down_is_booked_as_ours_at_the_start(tmp_path: Path,
                                                                                 fake: FakeAlpaca) -> None:
    clock = SimulatedClock(SESSION)
    core = await stops_core(tmp_path, fake, clock)
    try:
        _, theirs = await _followed(core, fake)
    finally:
        await core.stop()
    assert await fake.trade("AAPL", 94.5) == [theirs["client_order_id"]]  # fills while the daemon is down
    again = await stops_core(tmp_path, fake, clock)
    try:
        await until(lambda: not again.ledger.holds("AAPL"), what="the stop's fill found at the start")
        await again.settle()
        assert again.external.quantity("AAPL") == 0
        await again.reconcile()
        assert again.last_reconciliation is not None and again.last_reconciliation["ok"] is True
        assert [o for o in fake.orders.values() if o["side"] == "sell" and o["type"] == "market"] == []
    finally:
        await again.stop()
