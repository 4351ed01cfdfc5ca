"""A stock split overnight rebases the book instead of selling the position.

Through the real alpaca-py clients against FakeAlpaca, which splits like Alpaca (`FakeAlpaca.split`): the position
holds r times the shares at its average price over r, and the resting protective stop gets r times its quantity
at its old stop price (alpaca-py issue 469). Before, reconciliation counted the new shares as an external position
and left the stop where it was: a 2-for-1 split put a sell stop for twice the shares at 98 under a market at 50,
so the first trade sold the whole position, and the daemon's own stop loss (98 in its ledger) would have sold it
on the first bar. Now the split is found, journaled and applied: positions, the external part and the resting
stop in the new shares, and a restart rebuilds the same book.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from daemon.core import Core
from pipeline.core.clock import SimulatedClock
from pipeline.core.models import Bar
from tests.alpaca_core import (
    SESSION,
    alert_kinds,
    alpaca_core,
    held_quantity,
    held_with_stop,
    live_stops,
    resting_stops,
    stops_core,
    until,
)
from tests.fakes.alpaca_server import FakeAlpaca

pytestmark = pytest.mark.timeout(120)


def _sold(fake: FakeAlpaca) -> float:
    return sum(float(o["filled_qty"]) for o in fake.orders.values() if o["symbol"] == "AAPL" and o["side"] == "sell")


async def _reconciled(core: Core, clock: SimulatedClock, checks: int = 3) -> None:
    for _ in range(checks):  # a difference counts once two checks in a row have seen it
        clock.advance(5)
        await core.reconcile()
        await core.settle()


async def test_a_split_overnight_rebases_the_position_and_its_stop(tmp_path: Path, fake: FakeAlpaca) -> None:
    clock = SimulatedClock(SESSION)
    core = await stops_core(tmp_path, fake, clock)
    alerts = alert_kinds(core)
    try:
        qty = await held_with_stop(core, fake)
        fake.split("AAPL", 2.0)
        await _reconciled(core, clock)
        assert await fake.trade("AAPL", 50.0) == [], "the stop sold at the new price"
        pos = core.ledger.position("AAPL")
        assert pos is not None and held_quantity(core, "AAPL") == 2 * qty
        assert (pos.entry_price, pos.stop_loss) == pytest.approx((50.0, 49.0))
        assert core.external.quantity("AAPL") == 0, "the new shares are not someone else's"
        await until(lambda: resting_stops(fake) == [(2 * qty, 49.0)],
                    what="the resting stop moved to 49 for the new shares")
        assert core.last_reconciliation is not None and core.last_reconciliation["ok"] is True
        assert "stock_split" in alerts and not core.kill_switch.is_active()
        assert await fake.trade("AAPL", 50.5) == [] and _sold(fake) == 0
        assert await fake.trade("AAPL", 48.9)  # still protected, at the level over two
        await until(lambda: not core.ledger.holds("AAPL"), what="the stop's fill booked")
        assert _sold(fake) == 2 * qty and "AAPL" not in fake.positions
        assert core.journal is not None
        (trade,) = await core.journal.query("SELECT * FROM trades")
        assert trade["pnl"] == pytest.approx(2 * qty * (48.9 - 50.0)), "the P&L of the whole position, in dollars"
    finally:
        await core.stop()
    # the rebuild: the entry, the split, then the stop's sale of 2 x qty
    again = await stops_core(tmp_path, fake, clock)
    try:
        assert not again.ledger.holds("AAPL"), "rebuilt without the split, the sale would open a short"
        assert again.ledger.realized_pnl == pytest.approx(core.ledger.realized_pnl)
    finally:
        await again.stop()


async def test_a_restart_after_the_split_rebuilds_the_rebased_book(tmp_path: Path, fake: FakeAlpaca) -> None:
    clock = SimulatedClock(SESSION)
    core = await stops_core(tmp_path, fake, clock)
    try:
        qty = await held_with_stop(core, fake)
        fake.split("AAPL", 2.0)
        await _reconciled(core, clock)
        assert held_quantity(core, "AAPL") == 2 * qty
    finally:
        await core.stop()
    again = await stops_core(tmp_path, fake, clock)
    alerts = alert_kinds(again)
    try:
        pos = again.ledger.position("AAPL")
        assert pos is not None and held_quantity(again, "AAPL") == 2 * qty
        assert (pos.entry_price, pos.stop_loss) == pytest.approx((50.0, 49.0))
        await _reconciled(again, clock)
        assert again.last_reconciliation is not None and again.last_reconciliation["ok"] is True
        assert held_quantity(again, "AAPL") == 2 * qty, "the split was applied a second time"
        assert "stock_split" not in alerts
        assert resting_stops(fake) == [(2 * qty, 49.0)]
    finally:
        await again.stop()


async def test_a_split_while_the_daemon_was_down_is_applied_at_start(tmp_path: Path, fake: FakeAlpaca) -> None:
    clock = SimulatedClock(SESSION)
    core = await stops_core(tmp_path, fake, clock)
    try:
        qty = await held_with_stop(core, fake)
    finally:
        await core.stop()
    fake.split("AAPL", 0.1)  # 1-for-10: a whole-share position rounds down, the rest is paid as cash
    clock.advance(3600)
    again = await stops_core(tmp_path, fake, clock)
    try:
        held = held_quantity(again, "AAPL")
        assert held == qty // 10
        pos = again.ledger.position("AAPL")
        assert pos is not None and (pos.entry_price, pos.stop_loss) == pytest.approx((1000.0, 980.0))
        assert again.external.quantity("AAPL") == 0
        await until(lambda: resting_stops(fake) == [(held, 980.0)],
                    what="the stop at 980 for the new shares")
    finally:
        await again.stop()


async def test_a_hand_buy_that_doubles_the_shares_is_not_a_split(tmp_path: Path, fake: FakeAlpaca) -> None:
    clock = SimulatedClock(SESSION)
    core = await stops_core(tmp_path, fake, clock)
    alerts = alert_kinds(core)
    try:
        qty = await held_with_stop(core, fake)
        await fake.place_manual_order("AAPL", qty, "buy", 100.0)
        await _reconciled(core, clock)
        assert held_quantity(core, "AAPL") == qty and core.external.quantity("AAPL") == qty
        assert "stock_split" not in alerts
        assert resting_stops(fake) == [(qty, 98.0)]
    finally:
        await core.stop()


async def test_a_stop_not_moved_before_a_crash_is_moved_at_the_restart(tmp_path: Path, fake: FakeAlpaca) -> None:
    """The split is journaled before the stop moves: a daemon that stopped in between finds, at its restart, a
    stop journaled before the split, and moves it to the level over r instead of keeping 98 for the new shares."""
    clock = SimulatedClock(SESSION)
    core = await stops_core(tmp_path, fake, clock)
    try:
        qty = await held_with_stop(core, fake)

        def crash(_record: object) -> None:
            raise RuntimeError("the daemon died here")

        core.reconciliation.splits.rebase = crash  # type: ignore[method-assign]  # journaled, nothing moved yet
        fake.split("AAPL", 2.0)
        with pytest.raises(RuntimeError, match="died"):
            await _reconciled(core, clock)
        assert core.journal is not None and len(await core.journal.split_records()) == 1
        assert resting_stops(fake) == [(2 * qty, 98.0)]
    finally:
        await core.stop()
    clock.advance(60)
    again = await stops_core(tmp_path, fake, clock)
    try:
        await until(lambda: resting_stops(fake) == [(2 * qty, 49.0)],
                    what="the stop moved to 49 at the restart")
        assert await fake.trade("AAPL", 50.0) == []
    finally:
        await again.stop()


async def test_the_clouds_are_rescaled_so_no_cloud_exit_fires_on_the_new_prices(
    tmp_path: Path, fake: FakeAlpaca,
) -> None:
    """The position's cloud exits (cloud flip, trailing cloud) read the strategy's EMAs: left at the pre-split
    prices, the first candle at half the price is far below every cloud and sells the position."""
    clock = SimulatedClock(SESSION)
    core = await stops_core(tmp_path, fake, clock)
    try:
        start = SESSION - timedelta(minutes=240)
        core.engine.warm_up([Bar("AAPL", start + timedelta(minutes=m), 100.0, 100.05, 99.95, 100.0, 10_000.0)
                             for m in range(240)])  # a quiet market at 100: the clouds flat, no exit reads them
        qty = await held_with_stop(core, fake)
        fake.split("AAPL", 2.0)
        await _reconciled(core, clock)
        assert held_quantity(core, "AAPL") == 2 * qty
        state = core.strategy.cloud_state("AAPL", "5m")
        assert state is not None and (state.close, state.fast_short, state.trend_long) == pytest.approx((50, 50, 50))
        for _ in range(6):  # a 5-minute candle just above the clouds, at the new price
            clock.advance(60)
            price = 50.025
            await core.engine.on_batch([Bar("AAPL", clock.now(), price, price + 0.025, price - 0.025, price,
                                            20_000.0)])
            await core.settle()
        exits = [r.body for r in fake.submits() if r.body["side"] == "sell" and r.body["type"] != "stop"]
        assert exits == [], "an exit was sent on the split"
        assert held_quantity(core, "AAPL") == 2 * qty and live_stops(fake)
    finally:
        await core.stop()


async def test_a_damaged_split_record_is_left_out_and_the_split_found_again(tmp_path: Path, fake: FakeAlpaca) -> None:
    """A journal whose split record cannot be read still opens: that record is logged and left out, the ledger
    rebuilds in the old shares, and the start-up's split check finds the split again from the broker."""
    clock = SimulatedClock(SESSION)
    core = await stops_core(tmp_path, fake, clock)
    try:
        qty = await held_with_stop(core, fake)
        fake.split("AAPL", 2.0)
        await _reconciled(core, clock)
        assert core.journal is not None
        await core.journal.set_kv("splits", [{"symbol": "AAPL", "ratio": "two", "fills_before": 1}])
    finally:
        await core.stop()
    again = await stops_core(tmp_path, fake, clock)
    try:
        assert held_quantity(again, "AAPL") == 2 * qty and again.external.quantity("AAPL") == 0
        pos = again.ledger.position("AAPL")
        assert pos is not None and pos.stop_loss == pytest.approx(49.0)
        assert resting_stops(fake) == [(2 * qty, 49.0)]
    finally:
        await again.stop()


async def test_a_split_while_down_on_a_symbol_also_held_by_hand_is_found(tmp_path: Path, fake: FakeAlpaca) -> None:
    """The account also holds 40 AAPL bought by hand: the external part the last check confirmed is journaled,
    so the start-up judges the split on the whole book (ours and the hand shares) and rebases both."""
    clock = SimulatedClock(SESSION)
    core = await stops_core(tmp_path, fake, clock)
    try:
        qty = await held_with_stop(core, fake)
        await fake.place_manual_order("AAPL", 40, "buy", 100.0)
        await _reconciled(core, clock)
        assert core.external.quantity("AAPL") == 40
    finally:
        await core.stop()
    fake.split("AAPL", 2.0)
    clock.advance(3600)
    again = await stops_core(tmp_path, fake, clock)
    try:
        assert held_quantity(again, "AAPL") == 2 * qty and again.external.quantity("AAPL") == 80
        await until(lambda: resting_stops(fake) == [(2 * qty, 49.0)],
                    what="the stop at 49 for the new shares")
        await _reconciled(again, clock)
        assert again.last_reconciliation is not None and again.last_reconciliation["ok"] is True
    finally:
        await again.stop()


async def test_one_check_is_enough_for_a_split_but_not_within_the_grace(tmp_path: Path, fake: FakeAlpaca) -> None:
    """A split is applied on the first check that sees it (no lagging view keeps the cost while the quantity
    moves), but not while the symbol has had order activity within the grace period."""
    clock = SimulatedClock(SESSION)
    core = await alpaca_core(tmp_path, fake, clock=clock, exits={"broker_stop": True},
                             reconcile={"grace_seconds": 30.0})
    try:
        qty = await held_with_stop(core, fake)
        (stop,) = live_stops(fake)
        await until(lambda: any(f["data"]["event"] == "new" and f["data"]["order"]["id"] == stop["id"]
                                for f in fake.sent_trade_frames), what="the stop's new event sent")
        await core.settle()  # and applied before the clock moves: it is order activity on the symbol too
        fake.split("AAPL", 2.0)
        await core.reconcile()
        assert held_quantity(core, "AAPL") == qty, "a split judged within the grace of the entry's fill"
        await core.settle()  # what that check's order read brought in is applied now, not after the clock moves
        clock.advance(31)
        await core.reconcile()
        assert held_quantity(core, "AAPL") == 2 * qty
    finally:
        await core.stop()
