"""Multi-broker routing at the Core level, through the real SDK clients over loopback.

Alpaca primary (alpaca-py against FakeAlpaca) and IB fallback (ib_async against FakeTWS): fallback only while
the primary is unreachable, with the same client order id, never to both; exits to the broker that holds the
position; a dropped IB connection during an open order rebuilds by orderRef with the fill journaled and applied
once; reconciliation covers every connected broker.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from daemon.core import Core
from pipeline.core.clock import SimulatedClock
from pipeline.core.models import OrderIntent, Position
from tests.conftest import until
from tests.fakes.alpaca_server import FakeAlpaca
from tests.fakes.tws_server import FakeTWS, OrderScript
from tests.market import set_market
from tests.two_brokers import PRICES, SESSION, Venues, make_core, running, signal


@pytest.fixture
async def venues() -> AsyncIterator[Venues]:
    clock = SimulatedClock(SESSION)
    alpaca = FakeAlpaca()
    await alpaca.start()
    tws = FakeTWS(now=clock.now)
    await tws.start()
    for symbol, price in PRICES.items():
        tws.add_stock(symbol, price)
    yield Venues(alpaca, tws, clock, alpaca.alpaca_settings(request_timeout_seconds=3))
    await tws.stop()
    await alpaca.stop()


async def enter(core: Core, symbol: str) -> OrderIntent:
    """Run one long entry through the pipeline (the feed's market at PRICES) and wait until the router answered."""
    set_market(core, {symbol: PRICES[symbol]})
    result = await core.orchestrator.process_signal(signal(symbol, core.clock))  # type: ignore[arg-type]
    assert result.success, result.rejection_reason
    assert result.intent is not None
    await core.settle()
    return result.intent


async def journal_fills(core: Core, cid: str) -> list[dict[str, Any]]:
    assert core.journal is not None
    await core.journal.flush()
    return await core.journal.query("SELECT fill_id, broker, quantity FROM fills WHERE client_order_id=?", (cid,))


async def journal_order(core: Core, cid: str) -> dict[str, Any]:
    assert core.journal is not None
    await core.journal.flush()
    rows = await core.journal.query("SELECT broker, status, quantity FROM orders WHERE client_order_id=?", (cid,))
    assert len(rows) == 1
    return rows[0]


def alpaca_refs(fake: FakeAlpaca) -> list[str]:
    return [o["client_order_id"] for o in fake.orders.values()]


def alpaca_posted(fake: FakeAlpaca) -> list[str]:
    return [r.body.get("client_order_id") for r in fake.submits() if isinstance(r.body, dict)]


def ib_refs(fake: FakeTWS) -> list[str]:
    return [m[26] for m in fake.place_requests]


# -- 1. the primary down -> the fallback, same client order id ---------------------------------------------


async def test_primary_down_at_startup_entry_goes_to_ib_with_same_client_order_id(
        tmp_path: Path, venues: Venues) -> None:
    await venues.alpaca.stop()  # connection refused from now on
    # must not crash: the primary is marked down, the fallback trades
    async with running(make_core(tmp_path, venues)) as core:
        assert core.router.health["alpaca"].state == "down"
        assert core.brokers["ibkr"].is_connected() and not core.brokers["alpaca"].is_connected()
        intent = await enter(core, "AAPL")
        await until(lambda: core.ledger.position("AAPL") is not None)
        await core.settle()
        cid = intent.client_order_id
        at_ib = venues.tws.orders_with_ref(cid)
        assert len(at_ib) == 1 and at_ib[0].status == "Filled"
        assert ib_refs(venues.tws) == [cid]            # orderRef == client order id, sent once
        assert alpaca_refs(venues.alpaca) == []        # nothing reached Alpaca
        fills = await journal_fills(core, cid)
        assert len(fills) == 1 and fills[0]["broker"] == "ibkr"
        assert fills[0]["fill_id"] == venues.tws.executions[0].exec_id
        assert (await journal_order(core, cid))["broker"] == "ibkr"
        position = core.ledger.position("AAPL")
        assert position is not None and position.broker == "ibkr" and position.shares == intent.quantity


async def test_both_up_every_order_at_exactly_one_venue_then_primary_refused_falls_back(
        tmp_path: Path, venues: Venues) -> None:
    alpaca, tws = venues.alpaca, venues.tws
    async with running(make_core(tmp_path, venues)) as core:
        assert {n: h.state for n, h in core.router.health.items()} == {"alpaca": "connected", "ibkr": "connected"}
        alpaca.next_submit_fills(PRICES["AAPL"])                   # plain fill
        alpaca.next_submit_errors(500, times=1)                    # 5xx reached Alpaca: retried there, never IB
        alpaca.next_submit_fills(PRICES["MSFT"])
        alpaca.next_submit_rejects("insufficient buying power")    # a rejection is final
        alpaca.next_submit_hangs()                                 # stored, no reply: found by client order id
        alpaca.next_submit_fills(PRICES["XOM"])
        intents = {s: await enter(core, s) for s in ("AAPL", "MSFT", "AMD", "JPM", "XOM")}
        await until(lambda: all(core.ledger.position(s) is not None for s in ("AAPL", "MSFT", "XOM")))
        cids = {s: i.client_order_id for s, i in intents.items()}
        assert tws.place_requests == []                            # Alpaca was reachable: nothing went to IB
        assert sorted(alpaca_refs(alpaca)) == sorted(cids[s] for s in ("AAPL", "MSFT", "JPM", "XOM"))
        posted = alpaca_posted(alpaca)
        assert posted.count(cids["MSFT"]) == 2 and posted.count(cids["JPM"]) == 1
        assert (await journal_order(core, cids["AMD"]))["status"] == "rejected"
        assert core.router.health["alpaca"].state == "connected"

        alpaca.next_submit_errors(500, times=3)                    # every attempt 5xx: unconfirmed, the breaker opens
        nvda = (await enter(core, "NVDA")).client_order_id
        assert alpaca_posted(alpaca).count(nvda) == 3 and nvda not in ib_refs(tws)  # it may be at Alpaca: not IB
        assert (await journal_order(core, nvda))["broker"] == "alpaca"
        assert core.router.health["alpaca"].state == "down"
        tsla = (await enter(core, "TSLA")).client_order_id          # breaker open: straight to the fallback
        assert ib_refs(tws) == [tsla] and tsla not in alpaca_posted(alpaca)
        core.router.health["alpaca"].record_success()              # breaker closed again

        await alpaca.stop()                                        # now Alpaca refuses connections
        intent = await enter(core, "GOOGL")
        cid = intent.client_order_id
        await until(lambda: core.ledger.position("GOOGL") is not None)
        await core.settle()
        assert core.router.health["alpaca"].state == "down"
        assert ib_refs(tws) == [tsla, cid] and len(tws.orders_with_ref(cid)) == 1
        assert cid not in alpaca_posted(alpaca)
        assert (await journal_order(core, cid))["broker"] == "ibkr"
        assert [f["broker"] for f in await journal_fills(core, cid)] == ["ibkr"]
        # never both: no client order id is at the two venues
        assert not set(alpaca_refs(alpaca)) & set(ib_refs(tws))


async def test_exits_go_to_the_broker_that_holds_the_position(tmp_path: Path, venues: Venues) -> None:
    alpaca, tws = venues.alpaca, venues.tws
    async with running(make_core(tmp_path, venues)) as core:
        alpaca.next_submit_fills(PRICES["AAPL"])
        await enter(core, "AAPL")
        core.router.health["alpaca"].mark_down("test: breaker open")   # the primary is down for a while
        await enter(core, "MSFT")
        core.router.health["alpaca"].record_success()                  # and back
        await until(lambda: core.ledger.position("AAPL") is not None and core.ledger.position("MSFT") is not None)
        await core.settle()
        assert core.ledger.position("AAPL").broker == "alpaca"  # type: ignore[union-attr]
        assert core.ledger.position("MSFT").broker == "ibkr"    # type: ignore[union-attr]
        alpaca.next_submit_fills(PRICES["AAPL"])
        exits = {i.symbol: i for i in await core.lifecycle.emergency_close_all("test flatten")}
        await core.settle()
        await until(lambda: not core.ledger.holdings)
        await core.settle()
        assert exits["AAPL"].broker == "alpaca" and exits["MSFT"].broker == "ibkr"
        aapl_exit, msft_exit = exits["AAPL"].client_order_id, exits["MSFT"].client_order_id
        assert aapl_exit in alpaca_refs(alpaca) and aapl_exit not in ib_refs(tws)
        assert msft_exit in ib_refs(tws) and msft_exit not in alpaca_posted(alpaca)
        assert tws.orders_with_ref(msft_exit)[0].action == "SELL"
        assert alpaca.order_by_client_id(aapl_exit)["side"] == "sell"  # type: ignore[index]
        assert [f["broker"] for f in await journal_fills(core, msft_exit)] == ["ibkr"]
        assert [f["broker"] for f in await journal_fills(core, aapl_exit)] == ["alpaca"]
        assert tws.positions == {} and alpaca.positions == {}


async def test_exit_of_a_position_at_an_unreachable_broker_never_goes_to_the_other(
        tmp_path: Path, venues: Venues) -> None:
    alpaca, tws = venues.alpaca, venues.tws
    async with running(make_core(tmp_path, venues)) as core:
        alpaca.next_submit_fills(PRICES["AAPL"])
        await enter(core, "AAPL")
        await until(lambda: core.ledger.position("AAPL") is not None)
        await core.settle()
        await alpaca.stop()
        exits = await core.lifecycle.emergency_close_all("test flatten")
        await core.settle()
        assert [i.broker for i in exits] == ["alpaca"]
        assert tws.place_requests == []                      # IB does not hold AAPL: the exit is not sent there
        assert (await journal_order(core, exits[0].client_order_id))["status"] == "rejected"
        assert core.ledger.position("AAPL") is not None


async def test_cancel_of_an_entry_resting_at_the_fallback_goes_to_the_fallback(
        tmp_path: Path, venues: Venues) -> None:
    await venues.alpaca.stop()
    tws = venues.tws
    async with running(make_core(tmp_path, venues)) as core:
        tws.script("rest")
        intent = await enter(core, "AAPL")
        [order] = tws.orders_with_ref(intent.client_order_id)
        await core.lifecycle.emergency_close_all("test flatten")
        await core.settle()
        assert tws.cancel_requests == [order.order_id]
        await until(lambda: intent.client_order_id not in core.orchestrator.reservations)
        assert order.status == "Cancelled"


# -- 2. a dropped IB connection during an open order -------------------------------------------------------


async def test_dropped_ib_connection_during_open_order_fill_journaled_and_applied_once(
        tmp_path: Path, venues: Venues) -> None:
    tws = venues.tws
    async with running(make_core(tmp_path, venues, primary="ibkr", fallback=None)) as core:
        tws.script(OrderScript("drop", fill_while_down=True))    # acknowledged, then the socket drops, then it fills
        intent = await enter(core, "AAPL")
        cid = intent.client_order_id
        await until(lambda: tws.connect_count >= 2 and core.brokers["ibkr"].is_connected())
        await until(lambda: core.ledger.position("AAPL") is not None)
        await core.settle()
        await tws.drop_connections()                             # another drop: IB repeats the execution
        await until(lambda: tws.connect_count >= 3 and core.brokers["ibkr"].is_connected())
        await core.brokers["ibkr"].flush_events()  # type: ignore[attr-defined]
        await core.settle()
        assert len(tws.orders_with_ref(cid)) == 1 and ib_refs(tws) == [cid]   # no duplicate order at the fake
        fills = await journal_fills(core, cid)
        assert [f["fill_id"] for f in fills] == [tws.executions[0].exec_id]
        assert core.ledger.signed_quantities() == {"AAPL": intent.quantity}
        assert (await journal_order(core, cid))["status"] == "filled"
        assert cid not in core.orchestrator.reservations
    # a restart: the new client is told the execution again; the journal knows it, the ledger applies it once
    again = make_core(tmp_path, venues, primary="ibkr", fallback=None)
    await again.start()
    try:
        await again.brokers["ibkr"].flush_events()  # type: ignore[attr-defined]
        await again.settle()
        assert len(await journal_fills(again, cid)) == 1
        assert again.ledger.signed_quantities() == {"AAPL": intent.quantity}
        assert ib_refs(tws) == [cid]
    finally:
        await again.stop()


async def test_drop_before_ack_is_never_resent_and_the_fill_is_applied_once(tmp_path: Path, venues: Venues) -> None:
    tws = venues.tws
    async with running(make_core(tmp_path, venues, primary="ibkr", fallback=None)) as core:
        # the socket drops before IB answers (ambiguous: the order may be there), and it fills while we are away
        tws.script(OrderScript("drop", drop_before_ack=True, fill_while_down=True))
        intent = await enter(core, "AAPL")
        cid = intent.client_order_id
        await until(lambda: core.ledger.position("AAPL") is not None)
        await core.brokers["ibkr"].flush_events()  # type: ignore[attr-defined]
        await core.settle()
        assert ib_refs(tws) == [cid] and len(tws.orders_with_ref(cid)) == 1   # never resent
        assert len(await journal_fills(core, cid)) == 1
        assert core.ledger.signed_quantities() == {"AAPL": intent.quantity}
        assert (await journal_order(core, cid))["status"] == "filled"


# -- 3. reconciliation covers every connected broker ------------------------------------------------------


def _ib_contract(tws: FakeTWS, symbol: str) -> Any:
    return next(c for c in tws.contracts if c.symbol == symbol)


async def test_reconciliation_compares_positions_at_both_brokers(tmp_path: Path, venues: Venues) -> None:
    alpaca, tws = venues.alpaca, venues.tws
    tws.set_position(_ib_contract(tws, "AAPL"), 10, 100.0)
    alpaca.set_position("MSFT", 5, 200.0)
    core = make_core(tmp_path, venues, reconcile={"policy": "adopt", "external": "adopt", "confirm_seconds": 0})
    async with running(core):
        report = await core.reconcile_at_start()  # positions ordergate never opened: external, adopted
        assert report.mismatches == []
        assert {(e["symbol"], e["quantity"]) for e in core.last_reconciliation["external"]} == set()
        assert core.ledger.signed_quantities() == {"AAPL": 10.0, "MSFT": 5.0}
        assert all(p.origin == "adopted" and p.stop_loss < p.entry_price for p in core.ledger.positions())
        assert core.ledger.position("AAPL").broker == "ibkr"    # type: ignore[union-attr]
        assert core.ledger.position("MSFT").broker == "alpaca"  # type: ignore[union-attr]
        again = await core.reconcile()
        assert again.mismatches == [] and again.matches == 2
        tws.set_position(_ib_contract(tws, "AAPL"), 7, 100.0)     # a manual partial sale at IB
        assert (await core.reconcile()).mismatches == []           # first sighting
        third = await core.reconcile()
        assert [(m.symbol, m.mismatch_type) for m in third.mismatches] == [("AAPL", "quantity_mismatch")]
        assert core.ledger.signed_quantities() == {"AAPL": 7.0, "MSFT": 5.0}  # policy adopt: the broker's size
        assert not core.state.is_kill_switch_active()


async def test_positions_at_a_disconnected_broker_are_not_orphans(tmp_path: Path, venues: Venues) -> None:
    alpaca, tws = venues.alpaca, venues.tws
    tws.set_position(_ib_contract(tws, "AAPL"), 200, 100.0)   # 20k: above the kill threshold if misread
    alpaca.set_position("MSFT", 5, 200.0)
    async with running(make_core(tmp_path, venues, reconcile={"policy": "adopt"})) as core:
        for symbol, qty, broker in (("AAPL", 200.0, "ibkr"), ("MSFT", 5.0, "alpaca")):
            price = PRICES[symbol]
            core.ledger.adopt(Position(symbol, "long", price, price, qty, price * 0.98, symbol=symbol, broker=broker),
                              qty)
        core.lifecycle.rebuild_index()
        assert (await core.reconcile()).matches == 2
        await tws.stop_listening()
        await tws.drop_connections()                               # IB is reconnecting
        await until(lambda: not core.brokers["ibkr"].is_connected())
        report = await core.reconcile()
        assert report.mismatches == [], [m.description for m in report.mismatches]
        assert core.ledger.signed_quantities() == {"AAPL": 200.0, "MSFT": 5.0}
        assert not core.state.is_kill_switch_active()


async def test_resubmit_after_restart_looks_where_the_order_went_never_both(tmp_path: Path, venues: Venues) -> None:
    """An entry that fell back to IB, then a restart with the primary healthy again: a resend of the same
    intent (a redelivered signal) must find it at IB, not send it to Alpaca too."""
    await venues.alpaca.stop()
    tws = venues.tws
    first = make_core(tmp_path, venues)
    await first.start()
    try:
        tws.script("rest")
        intent = await enter(first, "AAPL")
        assert ib_refs(tws) == [intent.client_order_id]
    finally:
        await first.stop()
    async with FakeAlpaca() as alpaca:                         # Alpaca is reachable again
        venues.alpaca_settings = alpaca.alpaca_settings(request_timeout_seconds=3)
        second = make_core(tmp_path, venues)
        await second.start()
        try:
            assert second.router.health["alpaca"].state == "connected"
            result = await second.router.submit(intent)
            assert alpaca_posted(alpaca) == []                 # never both
            assert result.broker == "ibkr" and result.found_existing
            assert ib_refs(tws) == [intent.client_order_id]
            await second.lifecycle.emergency_close_all("test flatten")   # the cancel reaches IB as well
            await second.settle()
            assert tws.cancel_requests == [tws.orders_with_ref(intent.client_order_id)[0].order_id]
        finally:
            await second.stop()


# -- 4. the smart router on: decisions journaled with their scores, children at exactly one venue ---------


async def test_smart_router_journals_decisions_and_children_go_to_one_venue(tmp_path: Path, venues: Venues) -> None:
    alpaca, tws = venues.alpaca, venues.tws
    core = make_core(tmp_path, venues, smart_router={"enabled": True, "split_notional_threshold": 1_000.0,
                                                     "slices": 3, "slice_interval_seconds": 0})
    await core.start()
    try:
        for _ in range(3):
            alpaca.next_submit_fills(PRICES["AAPL"])
        intent = await enter(core, "AAPL")
        await until(lambda: core.router.in_flight() == 0)
        await core.settle()
        assert core.journal is not None
        await core.journal.flush()
        rows = await core.journal.query("SELECT reason, detail FROM decisions WHERE stage='smart_router'")
        assert len(rows) == 1
        detail = json.loads(rows[0]["detail"])
        assert {s["venue"] for s in detail["scores"]} == {"alpaca", "ibkr"}
        children = [c["client_order_id"] for c in detail["children"]]
        assert len(children) == 3 and sum(c["quantity"] for c in detail["children"]) == intent.quantity
        at_alpaca, at_ib = set(alpaca_posted(alpaca)), set(ib_refs(tws))
        assert not at_alpaca & at_ib
        assert all((c in at_alpaca) != (c in at_ib) for c in children)   # each child at exactly one venue
        assert intent.client_order_id not in at_alpaca | at_ib         # the parent itself is never sent
        await until(lambda: core.ledger.signed_quantities().get("AAPL") == intent.quantity)
    finally:
        await core.stop()


async def test_broker_down_at_startup_is_connected_later_and_used_again(tmp_path: Path, venues: Venues) -> None:
    await venues.alpaca.stop()
    async with running(make_core(tmp_path, venues)) as core:
        assert core.router.unstarted == {"alpaca"}
        core.router.health["alpaca"].reset_seconds = 0.0  # the breaker alone would let a probe through now
        first = await enter(core, "AAPL")
        assert core.router.venues[first.client_order_id] == "ibkr"  # never probed: its stream never ran
        assert await core.connect_unstarted() == []                # still down
        await venues.alpaca.start()                                  # back, same address
        assert await core.connect_unstarted() == ["alpaca"]
        assert core.brokers["alpaca"].is_connected() and not core.router.unstarted
        second = await enter(core, "MSFT")
        await until(lambda: second.client_order_id in alpaca_refs(venues.alpaca))
        assert second.client_order_id not in ib_refs(venues.tws)


async def test_a_primary_back_after_an_outage_is_found_back_by_a_probe_without_an_order(
        tmp_path: Path, venues: Venues) -> None:
    """Before: an order that failed while Alpaca refused connections left its breaker open until the next order
    got through, so /healthz said 'down' for as long as the strategy was quiet. The order checks now probe a broker
    down past its cool-down with a call that sends nothing (its account)."""
    alpaca, tws = venues.alpaca, venues.tws
    async with running(make_core(tmp_path, venues, breaker_reset_seconds=0.3)) as core:
        health = core.router.health["alpaca"]
        await alpaca.stop()                                        # connection refused
        first = (await enter(core, "GOOGL")).client_order_id
        assert health.state == "down" and ib_refs(tws) == [first]  # the fallback took it
        assert await core.router.probe_down_brokers() == []       # still cooling down: not even asked
        await asyncio.sleep(0.35)
        assert await core.router.probe_down_brokers() == []       # asked, still refused: down for another cool-down
        assert health.state == "down" and (health.last_error or "").startswith("probe: ")
        assert not health.available()
        await alpaca.start()                                       # back, same port
        await asyncio.sleep(0.35)
        posted = len(alpaca_posted(alpaca))
        assert await core.router.probe_down_brokers() == ["alpaca"]
        assert health.state == "connected"
        assert len(alpaca_posted(alpaca)) == posted                # the probe sent no order
        alpaca.next_submit_fills(PRICES["AAPL"])
        second = (await enter(core, "AAPL")).client_order_id
        assert second in alpaca_posted(alpaca) and second not in ib_refs(tws)  # entries go to the primary again
