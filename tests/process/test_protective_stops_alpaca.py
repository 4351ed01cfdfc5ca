"""Issue 13 through alpaca-py against FakeAlpaca: the protective stop rests at Alpaca (a GTC stop order placed on
each fill, grown and trailed with PATCH /v2/orders/{id}), fills there while the daemon is SIGKILLed and is booked
once on restart as `stop_loss (broker)`; a daemon exit racing the broker's stop sells once; a restart puts a
missing stop back.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from daemon.core import Core
from pipeline.core.models import client_order_id_for
from pipeline.execution.protective_stops import BROKER_STOP_EXIT
from tests.alpaca_core import alert_kinds, alpaca_core, cli_async, daemon_status, entry_signal, held_quantity, until
from tests.daemon_proc import DaemonProcess, base_env
from tests.fakes.alpaca_server import FINAL, FakeAlpaca

pytestmark = pytest.mark.timeout(120)


async def _core(tmp_path: Path, fake: FakeAlpaca, **overrides: Any) -> Core:
    exits = {"broker_stop": True, **overrides.pop("exits", {})}
    return await alpaca_core(tmp_path, fake, exits=exits, **overrides)


def _stops(fake: FakeAlpaca, symbol: str = "AAPL", open_only: bool = True) -> list[dict[str, Any]]:
    return [o for o in fake.orders.values() if o["symbol"] == symbol and o["type"] == "stop"
            and (not open_only or o["status"] not in FINAL)]


def _sell_orders(fake: FakeAlpaca, symbol: str = "AAPL") -> list[dict[str, Any]]:
    return [o for o in fake.orders.values() if o["symbol"] == symbol and o["side"] == "sell"
            and float(o["filled_qty"]) > 0]


async def _entered(core: Core, fake: FakeAlpaca, partials: tuple[float, ...] = ()) -> tuple[str, float]:
    fake.next_submit_fills(100.0, partials=partials)
    result = await core.orchestrator.process_signal(entry_signal("AAPL"))
    assert result.success, result
    assert result.signal_id is not None and result.intent is not None
    qty = result.intent.quantity
    await until(lambda: held_quantity(core, "AAPL") == qty, what="entry filled")
    await until(lambda: [float(o["qty"]) for o in _stops(fake)] == [qty], what="stop resting for the whole fill")
    return result.signal_id, qty


async def test_partial_fills_rest_a_stop_that_grows_by_replace(tmp_path: Path, fake: FakeAlpaca) -> None:
    core = await _core(tmp_path, fake)
    try:
        signal_id, qty = await _entered(core, fake, partials=(40, 30))
        (stop,) = _stops(fake)
        first = client_order_id_for(signal_id, "stop0")
        placed = [r.body for r in fake.submits() if r.body["type"] == "stop"]
        assert placed[0]["client_order_id"] == first
        assert placed[0]["side"] == "sell" and placed[0]["time_in_force"] == "gtc"
        assert float(placed[0]["stop_price"]) == 98.0 and float(placed[0]["qty"]) < qty  # for the first fills only
        assert fake.replaces(), "grown with PATCH /v2/orders/{id}, not a second stop"
        assert len(placed) == 1 and float(stop["stop_price"]) == 98.0 and stop["replaces"] is not None
        await until(lambda: core.positions()[0]["resting_stop"] is not None
                     and core.positions()[0]["resting_stop"]["broker_order_id"] == stop["id"], what="stop shown")
        assert core.positions()[0]["resting_stop"]["client_order_id"] == stop["client_order_id"]
        core.kill_switch.activate("test", source="test")  # never cancels a protective stop
        await asyncio.sleep(0.1)
        assert [o["id"] for o in _stops(fake)] == [stop["id"]]
    finally:
        await core.stop()


async def test_daemon_exit_racing_the_broker_stop_sells_once(tmp_path: Path, fake: FakeAlpaca) -> None:
    core = await _core(tmp_path, fake)
    try:
        _, qty = await _entered(core, fake)
        fake.drop_trade_stream(block=True)  # the stop's fill will not reach the daemon in time
        assert await fake.trade("AAPL", 97.0)  # the broker's stop fires ...
        exits = await core.lifecycle.emergency_close_all("race")  # ... as the daemon decides to exit
        await core.settle()
        fake.allow_trade_stream()
        await until(lambda: not core.ledger.holds("AAPL"), what="the stop's fill booked after the catch-up")
        await core.settle()
        (exit_intent,) = exits
        assert fake.order_by_client_id(exit_intent.client_order_id) is None  # the exit was never sent
        assert [float(o["filled_qty"]) for o in _sell_orders(fake)] == [qty]  # one sale: the stop
        assert "AAPL" not in fake.positions  # not short
        assert core.trades is not None
        assert [t.exit_type for t in await core.trades.all_trades()] == [BROKER_STOP_EXIT]
    finally:
        await core.stop()


async def test_daemon_exit_first_cancels_the_stop_then_sells(tmp_path: Path, fake: FakeAlpaca) -> None:
    core = await _core(tmp_path, fake)
    try:
        _, qty = await _entered(core, fake)
        (stop,) = _stops(fake)
        fake.next_submit_fills(101.0)
        (exit_intent,) = await core.lifecycle.emergency_close_all("flatten")
        await until(lambda: not core.ledger.holds("AAPL"), what="exit filled")
        assert fake.orders[stop["id"]]["status"] == "canceled"
        calls = [(r.method, r.path, (r.body or {}).get("client_order_id")) for r in fake.requests]
        cancelled = calls.index(("DELETE", f"/v2/orders/{stop['id']}", None))
        sent = calls.index(("POST", "/v2/orders", exit_intent.client_order_id))
        assert cancelled < sent  # the stop was cancelled (and confirmed) before the exit went out
        assert await fake.trade("AAPL", 90.0) == []  # nothing rests to sell a second time
        assert [float(o["filled_qty"]) for o in _sell_orders(fake)] == [qty]
    finally:
        await core.stop()


async def test_trailing_moves_the_stop_with_a_replace(tmp_path: Path, fake: FakeAlpaca) -> None:
    core = await _core(tmp_path, fake, exits={"stop_replace_min_seconds": 0})
    try:
        _, qty = await _entered(core, fake)
        (old,) = _stops(fake)
        assert core.stops.trail(core.ledger.holding("AAPL").position, 99.25)
        await until(lambda: [float(o["stop_price"]) for o in _stops(fake)] == [99.25], what="stop moved")
        (new,) = _stops(fake)
        assert fake.orders[old["id"]]["status"] == "replaced" and new["replaces"] == old["id"]
        (patch,) = fake.replaces()
        assert patch.body["stop_price"] == 99.25 and patch.body["client_order_id"] == new["client_order_id"]
        assert float(new["qty"]) == qty
        assert await fake.trade("AAPL", 99.0) == [new["client_order_id"]]  # fills there, on the live stream
        await until(lambda: not core.ledger.holds("AAPL"), what="the stop's fill booked")
        await core.settle()
        assert core.trades is not None
        assert [t.exit_type for t in await core.trades.all_trades()] == [BROKER_STOP_EXIT]
    finally:
        await core.stop()


async def test_restart_places_a_missing_stop(tmp_path: Path, fake: FakeAlpaca) -> None:
    core = await _core(tmp_path, fake, shutdown={"cancel_inflight_entries": False})
    signal_id, qty = await _entered(core, fake)
    await core.stop()
    (stop,) = _stops(fake)
    await fake.cancel(stop["client_order_id"])  # gone while the daemon is down
    core = await _core(tmp_path, fake, shutdown={"cancel_inflight_entries": False})
    try:
        (placed,) = _stops(fake)
        assert placed["client_order_id"] == client_order_id_for(signal_id, "stop1")
        assert (float(placed["qty"]), float(placed["stop_price"]), placed["side"]) == (qty, 98.0, "sell")
    finally:
        await core.stop()


def _trades(state_dir: Path) -> list[tuple[str, str, float]]:
    with sqlite3.connect(state_dir / "journal.db") as conn:
        return list(conn.execute("SELECT symbol, exit_type, quantity FROM trades"))


async def test_sigkill_then_price_falls_through_the_stop_booked_once_on_restart(
    tmp_path: Path, fake: FakeAlpaca,
) -> None:
    state_dir = tmp_path / "state"
    env = base_env(state_dir, **fake.env(tickers=["AAPL"]), ORDERGATE_ALPACA__REQUEST_TIMEOUT_SECONDS="5")
    daemon = DaemonProcess(state_dir, env=env).start()
    try:
        await asyncio.to_thread(daemon.wait_for, "daemon_ready", 45.0)
        await fake.wait_for(lambda: "AAPL" in fake.data_subscriptions, timeout=15)
        # the market the entry is sized on: one minute bar from the data socket
        await fake.push_bar("AAPL", datetime.now(UTC).replace(second=0, microsecond=0), 187.5, 187.5, 187.5, 187.5,
                            1_000)
        await asyncio.to_thread(daemon.wait_for, "bars_flowing", 15.0)
        fake.next_submit_fills(187.5)
        out = await cli_async(state_dir, "signal", "--ticker", "AAPL", "--direction", "long", "--entry", "187.5",
                         "--stop", "183.0", "--timeframe", "1d", "--json", env=env)
        reply = json.loads(out.stdout)
        assert reply["accepted"] is True, reply
        await fake.wait_for(lambda: len(_stops(fake)) == 1, timeout=15)
        (stop,) = _stops(fake)
        assert stop["client_order_id"] == client_order_id_for(reply["signal_id"], "stop0")
        qty = float(stop["qty"])

        async def shown() -> bool:
            (pos,) = (await daemon_status(state_dir, env))["positions"] or [{}]
            rest = pos.get("resting_stop") or {}
            return rest.get("broker_order_id") == stop["id"]

        await until(shown, timeout=20, what="the resting stop in ordergate status")
    finally:
        await asyncio.to_thread(daemon.kill9)  # down hard, the stop still resting at the broker
    assert await fake.trade("AAPL", 182.0) == [stop["client_order_id"]]  # nobody listening
    assert "AAPL" not in fake.positions
    again = DaemonProcess(state_dir, env=env).start()
    try:
        await asyncio.to_thread(again.wait_for, "daemon_ready", 45.0)
        status = await daemon_status(state_dir, env)
        assert status["positions"] == []
        assert _trades(state_dir) == [("AAPL", BROKER_STOP_EXIT, qty)]
        assert [float(o["filled_qty"]) for o in _sell_orders(fake)] == [qty]  # the stop's sale, nothing else
        assert _stops(fake) == []  # and no new stop for a position that is gone
    finally:
        code = await asyncio.to_thread(again.stop)
    assert code == 0, again.text()[-3000:]
    assert _trades(state_dir) == [("AAPL", BROKER_STOP_EXIT, qty)]  # once, also after a clean stop


async def test_an_option_position_at_alpaca_is_marked_unprotected_and_the_operator_told(
    tmp_path: Path, fake: FakeAlpaca,
) -> None:
    from pipeline.core.models import InstrumentType, Position

    core = await _core(tmp_path, fake)
    alerts: list[tuple[str, str]] = []

    async def hook(kind: str, message: str, severity: str = "warning", **_fields: Any) -> None:
        alerts.append((kind, message))

    core.alerts.attach(hook)
    try:
        occ = "AAPL261218C00230000"
        core.ledger.adopt(Position("AAPL", "long", 5.0, 5.0, 2, 2.5, symbol=occ, instrument_type=InstrumentType.OPTIONS,
                                   broker="alpaca", signal_id="sig-opt", multiplier=100.0), 2)
        core.stops.request_sync(occ)  # what an entry fill does
        await core.settle()
        assert [o for o in fake.orders.values() if o["type"] == "stop"] == []
        (shown,) = core.positions()
        assert shown["resting_stop"]["status"] == "unprotected" and "options" in shown["resting_stop"]["reason"]
        assert [kind for kind, _ in alerts] == ["position_unprotected"] and occ in alerts[0][1]
    finally:
        await core.stop()


async def test_a_stop_cancelled_at_alpaca_is_put_back_then_alerted_if_it_keeps_going(
    tmp_path: Path, fake: FakeAlpaca,
) -> None:
    from pipeline.execution.protective_stops import MAX_PUT_BACK

    core = await _core(tmp_path, fake)
    alerts = alert_kinds(core)
    try:
        signal_id, _ = await _entered(core, fake)
        for n in range(1, MAX_PUT_BACK + 1):
            (stop,) = _stops(fake)
            await fake.cancel(stop["client_order_id"])  # cancelled in Alpaca's app
            again = client_order_id_for(signal_id, f"stop{n}")
            await until(lambda again=again: [o["client_order_id"] for o in _stops(fake)] == [again],
                         what=f"stop put back ({n})")
        (stop,) = _stops(fake)
        await fake.cancel(stop["client_order_id"])
        await until(lambda: "position_unprotected" in alerts, what="the operator told")
        assert _stops(fake) == [] and core.positions()[0]["resting_stop"]["status"] == "unprotected"
    finally:
        await core.stop()


async def test_a_stop_cancelled_before_its_placing_reply_arrives_is_still_put_back(
    tmp_path: Path, fake: FakeAlpaca,
) -> None:
    """The put-back's POST reply (the order as accepted) is slow; the stop is cancelled at Alpaca meanwhile and the
    stream's `canceled` reaches the daemon first. The late reply must not make the cancelled stop live again (it
    did: the position sat unprotected with a stop shown as resting)."""
    from pipeline.core.models import OrderStatus

    core = await _core(tmp_path, fake)
    try:
        signal_id, qty = await _entered(core, fake)
        (stop,) = _stops(fake)
        fake.next_submit_reply_held()  # the put-back's reply will be late
        await fake.cancel(stop["client_order_id"])
        again = client_order_id_for(signal_id, "stop1")
        await until(lambda: [o["client_order_id"] for o in _stops(fake)] == [again], what="stop put back at Alpaca")
        await fake.cancel(again)  # cancelled in Alpaca's app before the daemon has the reply
        await until(lambda: (s := core.stops.stop_for(("", "AAPL"))) is not None and s.client_order_id == again
                    and s.status == OrderStatus.CANCELED, what="the daemon saw the cancel")
        fake.release_replies()  # the stale reply: `accepted`
        third = client_order_id_for(signal_id, "stop2")
        await until(lambda: [o["client_order_id"] for o in _stops(fake)] == [third], what="stop put back again")
        await until(lambda: core.positions()[0]["resting_stop"]["client_order_id"] == third, what="stop shown")
        assert [float(o["qty"]) for o in _stops(fake)] == [qty]
    finally:
        await core.stop()


async def test_a_trailed_stop_cancelled_before_its_replace_reply_arrives_is_put_back(
    tmp_path: Path, fake: FakeAlpaca,
) -> None:
    """The trailing PATCH's reply is slow; the new stop is cancelled at Alpaca meanwhile, and the stream's
    `canceled` (for an order the daemon does not yet call current) reaches it first. It must still be put back."""
    core = await _core(tmp_path, fake, exits={"stop_replace_min_seconds": 0})
    try:
        signal_id, qty = await _entered(core, fake)
        fake.next_replace_reply_held()
        assert core.stops.trail(core.ledger.holding("AAPL").position, 99.25)
        moved = client_order_id_for(signal_id, "stop1")
        await until(lambda: [o["client_order_id"] for o in _stops(fake)] == [moved], what="stop moved at Alpaca")
        await fake.cancel(moved)  # cancelled in Alpaca's app before the daemon has the reply
        assert core.journal is not None

        async def seen() -> bool:
            rows = await core.journal.query("SELECT status FROM orders WHERE client_order_id = ?", (moved,))
            return [r["status"] for r in rows] == ["canceled"]

        await until(seen, what="the daemon saw the cancel")
        fake.release_replies()  # the stale reply: `new`
        third = client_order_id_for(signal_id, "stop2")
        await until(lambda: [o["client_order_id"] for o in _stops(fake)] == [third], what="stop put back")
        (back,) = _stops(fake)
        assert (float(back["qty"]), float(back["stop_price"])) == (qty, 99.25)  # at the trailed level
        await until(lambda: core.positions()[0]["resting_stop"]["client_order_id"] == third, what="stop shown")
    finally:
        await core.stop()


async def test_a_hand_sale_of_some_of_our_shares_shrinks_the_stop_so_it_never_oversells(
    tmp_path: Path, fake: FakeAlpaca,
) -> None:
    core = await _core(tmp_path, fake)
    try:
        _, qty = await _entered(core, fake)
        await fake.place_manual_order("AAPL", 5, "sell", 99.0)  # in Alpaca's app, out of ordergate's shares
        await until(lambda: [float(o["qty"]) for o in _stops(fake)] == [qty - 5], what="stop shrunk to what is left")
        assert await fake.trade("AAPL", 97.0)  # it fires: the account ends flat, not short
        await until(lambda: "AAPL" not in fake.positions, what="stop filled at the fake")
        assert [float(o["filled_qty"]) for o in _sell_orders(fake) if o["type"] == "stop"] == [qty - 5]
    finally:
        await core.stop()


async def test_a_resting_stop_does_not_make_a_hand_bought_addition_unexplained(
    tmp_path: Path, fake: FakeAlpaca,
) -> None:
    from pipeline.core.clock import SimulatedClock
    from tests.alpaca_core import SESSION

    clock = SimulatedClock(SESSION)
    core = await _core(tmp_path, fake, clock=clock)
    try:
        _, qty = await _entered(core, fake)
        await until(lambda: [o["status"] for o in _stops(fake)] == ["new"], what="the stop acknowledged")
        await core.settle()  # an order of ours on AAPL that is not final: its stop
        fake.set_position("AAPL", qty + 10, 100.0)  # 10 more bought by hand (seen only in positions)
        for _ in range(4):
            clock.advance(core.settings.reconcile.grace_seconds + core.settings.reconcile.confirm_seconds + 1)
            await core.reconcile()
        assert core.external.quantity("AAPL") == 10, json.dumps(core.last_reconciliation, default=str)  # a stop
        # only ever sells: it cannot explain shares bought beside ours
        assert not core.state.is_kill_switch_active()
        assert [float(o["qty"]) for o in _stops(fake)] == [qty]  # and ours stays protected, no more
    finally:
        await core.stop()


async def test_a_gtc_stop_done_for_the_day_keeps_resting_and_is_not_placed_twice(
    tmp_path: Path, fake: FakeAlpaca,
) -> None:
    """At the close Alpaca sends `done_for_day` for a GTC order that rests on: "done executing for the day, no
    further updates until the next trading day" (its REST status says the same, not final). It used to be taken
    as expired: the stop was put back as a second one while the first still rested at Alpaca."""
    core = await _core(tmp_path, fake)
    alerts = alert_kinds(core)
    try:
        _, qty = await _entered(core, fake)
        (stop,) = _stops(fake)
        fake._set_status(stop, "done_for_day")  # as Alpaca shows it overnight; it rests on
        await fake.push_trade_update("done_for_day", stop)
        await asyncio.sleep(0.5)
        await core.settle()
        assert [o["client_order_id"] for o in fake.orders.values() if o["type"] == "stop"] == \
            [stop["client_order_id"]], "a second stop was placed beside the resting one"
        resting = core.positions()[0]["resting_stop"]
        assert resting is not None and resting.get("client_order_id") == stop["client_order_id"], resting
        assert resting["status"] != "unprotected" and "position_unprotected" not in alerts
        record = core.book.get(stop["client_order_id"])
        assert record is not None and not record.final, record
        # the next day it fills at the broker: booked once, as the broker's stop
        fake._set_status(stop, "new")
        await fake.fill(stop["client_order_id"], qty, 97.5)
        await until(lambda: held_quantity(core, "AAPL") == 0, what="the stop's fill booked")
    finally:
        await core.stop()


async def test_a_trailing_replace_done_at_alpaca_but_answered_500_leaves_one_stop(
    tmp_path: Path, fake: FakeAlpaca,
) -> None:
    """The PATCH that trails the stop is done at Alpaca (the old stop `replaced`, the new one resting, both on the
    stream) but its reply is a 500. Whatever the daemon makes of the error, the account must end with one stop for
    the position, shown as resting, and a fall through it sells once."""
    core = await _core(tmp_path, fake, exits={"stop_replace_min_seconds": 0})
    alerts = alert_kinds(core)
    try:
        signal_id, qty = await _entered(core, fake)
        fake.next_replace_done_then_errors(500)
        assert core.stops.trail(core.ledger.holding("AAPL").position, 99.25)
        moved = client_order_id_for(signal_id, "stop1")
        await until(lambda: [o["client_order_id"] for o in _stops(fake)] == [moved], what="stop moved at Alpaca")
        await asyncio.sleep(1.0)
        await core.settle()
        open_stops = _stops(fake)
        assert [(float(o["qty"]), float(o["stop_price"])) for o in open_stops] == [(qty, 99.25)], open_stops
        resting = core.positions()[0]["resting_stop"]
        assert resting is not None and resting.get("client_order_id") == open_stops[0]["client_order_id"], resting
        assert "position_unprotected" not in alerts, alerts
        assert await fake.trade("AAPL", 99.0) == [open_stops[0]["client_order_id"]]
        await until(lambda: not core.ledger.holds("AAPL"), what="the stop's fill booked")
        await asyncio.sleep(0.3)
        assert "AAPL" not in fake.positions and not _sell_orders(fake)[1:], _sell_orders(fake)
    finally:
        await core.stop()


async def test_a_stop_cancel_done_at_alpaca_but_answered_500_still_lets_the_exit_sell_once(
    tmp_path: Path, fake: FakeAlpaca,
) -> None:
    """The daemon's exit cancels the resting stop first; Alpaca cancels it but answers the DELETE with a 500.
    The exit must still go (the stop's cancel confirmed by asking), sell the position once, and leave nothing
    resting that could sell it again."""
    core = await _core(tmp_path, fake)
    try:
        _, qty = await _entered(core, fake)
        (stop,) = _stops(fake)
        fake.next_cancel_done_then_errors(500)
        fake.next_submit_fills(101.0)
        assert len(await core.lifecycle.emergency_close_all("flatten")) == 1
        await until(lambda: not core.ledger.holds("AAPL"), what="exit filled")
        assert fake.orders[stop["id"]]["status"] == "canceled"
        assert await fake.trade("AAPL", 90.0) == []  # nothing rests to sell a second time
        assert [float(o["filled_qty"]) for o in _sell_orders(fake)] == [qty]
        assert "AAPL" not in fake.positions
    finally:
        await core.stop()


async def test_a_stop_the_broker_ends_after_resting_for_months_is_always_put_back(
    tmp_path: Path, fake: FakeAlpaca,
) -> None:
    """A GTC stop does not rest for ever: Alpaca expires GTC orders after 90 days, IB cancels them at the end of
    the quarter after next and on splits. A position held for a year sees that happen more often than the put-back
    limit (meant for a stop that keeps being ended at once); each time, the stop must come back, not an
    'unprotected' alert."""
    from datetime import timedelta

    from pipeline.core.clock import SimulatedClock
    from pipeline.execution.protective_stops import MAX_PUT_BACK
    from tests.alpaca_core import SESSION

    clock = SimulatedClock(SESSION)
    core = await _core(tmp_path, fake, clock=clock)
    alerts = alert_kinds(core)
    try:
        signal_id, qty = await _entered(core, fake)
        for n in range(1, MAX_PUT_BACK + 3):
            clock.advance(timedelta(days=90).total_seconds())
            (stop,) = _stops(fake)
            fake._set_status(stop, "expired", "expired_at")  # its 90 days are up
            await fake.push_trade_update("expired", stop)
            again = client_order_id_for(signal_id, f"stop{n}")
            await until(lambda again=again: [o["client_order_id"] for o in _stops(fake)] == [again],
                        what=f"stop put back after expiry {n}")
        assert "position_unprotected" not in alerts, alerts
        (back,) = _stops(fake)
        assert float(back["qty"]) == qty
    finally:
        await core.stop()
