"""Only its own orders (issue 11.2): a position the account holder opened by hand is external.

`ordergate run` trades through the real alpaca-py clients against FakeAlpaca; the "hand-placed" order carries a
client order id ordergate never made and shows on trade_updates and in positions as a real account shows it.
It is never applied to the ledger, never exited (no order on a dip), shown as external by `status` and
`positions`, and counted by the risk gate: a signal for the same ticker is rejected as a duplicate.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from pipeline.core.clock import SimulatedClock
from pipeline.core.models import Bar
from tests.alpaca_core import SESSION, alpaca_core, cli_async, daemon_status, held_quantity, until
from tests.daemon_proc import DaemonProcess, base_env
from tests.fakes.alpaca_server import FakeAlpaca
from tests.market import set_market

pytestmark = pytest.mark.timeout(150)


def _decisions(state_dir: Path, stage: str) -> list[dict[str, Any]]:
    conn = sqlite3.connect(state_dir / "journal.db")
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute("SELECT * FROM decisions WHERE stage = ? ORDER BY id", (stage,))]
    finally:
        conn.close()


async def test_hand_placed_fill_is_external_never_traded_and_blocks_a_duplicate(
    tmp_path: Path, fake: FakeAlpaca,
) -> None:
    state_dir = tmp_path / "state"
    env = base_env(state_dir, **fake.env(tickers=["AAPL"]), ORDERGATE_ALPACA__REQUEST_TIMEOUT_SECONDS="5",
                   ORDERGATE_RECONCILE__KILL_NOTIONAL_THRESHOLD="100")
    daemon = DaemonProcess(state_dir, env=env).start()
    try:
        await asyncio.to_thread(daemon.wait_for, "daemon_ready", 45.0)
        await fake.wait_for(lambda: "AAPL" in fake.data_subscriptions and fake.trade_sockets, timeout=15)
        manual = await fake.place_manual_order("AAPL", 10, "buy", 100.0)  # in the broker's app, by hand
        line = await asyncio.to_thread(daemon.wait_for, "external_fill", 20.0)
        assert line["client_order_id"] == manual["client_order_id"] and line["symbol"] == "AAPL"

        async def shown_external() -> bool:
            st = await daemon_status(state_dir, env)
            return [(p["symbol"], p["shares"]) for p in st.get("external_positions", [])] == [("AAPL", 10.0)]

        await until(shown_external, timeout=20, what="AAPL external in status")
        st = await daemon_status(state_dir, env)
        assert st["positions"] == [] and st["open_positions"] == 0  # not ordergate's
        # a one-cent dip, then more: no exit for a position ordergate does not own
        now = datetime.now(UTC).replace(second=0, microsecond=0)
        for i, price in enumerate((99.99, 95.0, 90.0)):
            await fake.push_bar("AAPL", now - timedelta(minutes=3 - i), price, price, price, price, 1000)

        async def bars_seen() -> bool:
            return (await daemon_status(state_dir, env))["stats"]["bars"] >= 3

        await until(bars_seen, timeout=20, what="the dip bars processed")
        # a signal for the ticker the account already holds: the risk gate counts the external position
        out = await cli_async(state_dir, "signal", "--ticker", "AAPL", "--direction", "long", "--entry", "90",
                         "--stop", "88", "--timeframe", "1d", "--json", env=env)
        assert out.returncode == 1 and json.loads(out.stdout)["accepted"] is False, (out.stdout, out.stderr)
        assert fake.submits() == []  # no exit on the dip, no second entry
        await cli_async(state_dir, "reconcile", "--json", env=env)
        rejected = [r for r in _decisions(state_dir, "risk_gate") if r["outcome"] == "rejected"]
        assert rejected and rejected[-1]["reason"].startswith("duplicate_ticker"), rejected
        assert [r["outcome"] for r in _decisions(state_dir, "external")] == ["external_fill"]
        positions = json.loads((await cli_async(state_dir, "positions", "--json", env=env)).stdout)
        assert [(p["symbol"], p["external"]) for p in positions] == [("AAPL", True)]
        flat = await cli_async(state_dir, "flatten", "--yes", "--json", env=env)
        assert flat.returncode == 0, flat.stderr
        assert fake.submits() == []  # flatten leaves an external position alone
        st = await daemon_status(state_dir, env)
        assert not st["kill_switch"]["active"], st["kill_switch"]  # external is not unexplained
    finally:
        code = await asyncio.to_thread(daemon.stop)
    assert code == 0, daemon.text()[-3000:]
    conn = sqlite3.connect(state_dir / "journal.db")
    try:
        assert conn.execute("SELECT COUNT(*) FROM fills").fetchone()[0] == 0  # never booked as ours
    finally:
        conn.close()


async def test_external_at_start_is_counted_not_traded_and_adopt_gives_a_visible_stop(
    tmp_path: Path, fake: FakeAlpaca,
) -> None:
    fake.set_position("MSFT", 20, 400.0)  # held before ordergate ever ran: not its position
    clock = SimulatedClock(SESSION)
    # no pause before the confirming second check (its timing is test_reconcile_confirm's): judged at once
    core = await alpaca_core(tmp_path, fake, clock=clock, reconcile={"kill_notional_threshold": 100.0,
                                                                     "confirm_seconds": 0})
    set_market(core, {"MSFT": 400.0})  # alpaca_core marks MSFT at 100: the external position is valued at the market
    try:
        await core.reconcile_at_start()
        assert not core.state.is_kill_switch_active()
        assert [(p.symbol, p.shares) for p in core.external.positions()] == [("MSFT", 20)]
        assert core.ledger.holdings == {}
        account = core.orchestrator.account_state()
        assert [(p.symbol, p.market_value) for p in account.open_positions] == [("MSFT", 8_000.0)]
        assert account.equity == pytest.approx(100_000.0 + 8_000.0)
        assert core.lifecycle.check_exits() == [] and await core.lifecycle.emergency_close_all() == []
    finally:
        await core.stop()

    adopt = await alpaca_core(tmp_path / "adopt", fake, clock=clock,
                        reconcile={"kill_notional_threshold": 100.0, "external": "adopt", "confirm_seconds": 0})
    try:
        await adopt.reconcile_at_start()
        assert not adopt.state.is_kill_switch_active()
        assert held_quantity(adopt, "MSFT") == 20 and adopt.external.positions() == []
        (shown,) = adopt.positions()
        stop = 400.0 * (1 - adopt.settings.reconcile.adopt_stop_pct)
        assert shown["symbol"] == "MSFT" and shown["stop_loss"] == pytest.approx(stop) and shown["adopted"]
    finally:
        await adopt.stop()


@contextlib.asynccontextmanager
async def _tws_venues(clock: SimulatedClock) -> AsyncIterator[Any]:
    """A started FakeTWS (every two_brokers stock listed) and FakeAlpaca on `clock`, as two_brokers.Venues."""
    from tests.fakes.tws_server import FakeTWS
    from tests.two_brokers import PRICES, Venues

    tws = FakeTWS(now=clock.now)
    await tws.start()
    alpaca = await FakeAlpaca().start()
    try:
        for symbol, price in PRICES.items():
            tws.add_stock(symbol, price)
        yield Venues(alpaca, tws, clock, alpaca.alpaca_settings(request_timeout_seconds=3))
    finally:
        await alpaca.stop()
        await tws.stop()

async def test_hand_placed_tws_order_is_external_and_blocks_a_duplicate(tmp_path: Path) -> None:
    """The same through ib_async against FakeTWS: an order placed by hand in TWS (empty orderRef)."""
    from tests.two_brokers import PRICES, make_core, signal

    clock = SimulatedClock(SESSION)
    async with _tws_venues(clock) as venues:
        tws = venues.tws
        core = make_core(tmp_path, venues, primary="ibkr", fallback=None,
                         reconcile={"kill_notional_threshold": 100.0, "confirm_seconds": 0})
        await core.start()
        set_market(core, PRICES)  # the feed's last bars
        try:
            contract = next(c for c in tws.contracts if c.symbol == "AAPL")
            tws.place_manual_order(contract, "BUY", 10, PRICES["AAPL"])
            await core.brokers["ibkr"].flush_events()  # type: ignore[attr-defined]
            await core.settle()
            assert core.ledger.holdings == {}  # never booked as ordergate's
            await core.reconcile()
            report = await core.reconcile()
            assert report.mismatches == [] and not core.state.is_kill_switch_active()
            assert [(p.symbol, p.shares, p.broker) for p in core.external.positions()] == [("AAPL", 10, "ibkr")]
            assert core.lifecycle.check_exits() == [] and await core.lifecycle.emergency_close_all() == []
            result = await core.orchestrator.process_signal(signal("AAPL", clock))
            assert not result.success and result.rejection_reason.startswith("duplicate_ticker"), result
            assert tws.place_requests == []  # nothing sent: no exit, no second entry
        finally:
            await core.stop()


async def test_adopted_position_closed_by_ordergate_stays_closed_after_a_restart(
    tmp_path: Path, fake: FakeAlpaca,
) -> None:
    """An adopted position is not in the journal; its exit is. A restart must not replay that exit into a short
    (whose "exit" would then buy), and the exit's client order id must be new to the broker."""
    fake.set_position("MSFT", 20, 400.0)
    clock = SimulatedClock(SESSION)
    settings = {"reconcile": {"external": "adopt", "confirm_seconds": 0}}
    core = await alpaca_core(tmp_path, fake, clock=clock, **settings)
    try:
        await core.reconcile_at_start()
        assert held_quantity(core, "MSFT") == 20
        fake.next_submit_fills(399.0)
        (exit_intent,) = await core.lifecycle.emergency_close_all("test flatten")
        await until(lambda: not core.ledger.holds("MSFT"), what="the adopted position closed")
        assert fake.positions == {}
    finally:
        await core.stop()
    again = await alpaca_core(tmp_path, fake, clock=clock, **settings)
    try:
        assert again.ledger.holdings == {}  # not a short of 20 rebuilt from the exit's fill
        await again.reconcile_at_start()
        assert again.ledger.holdings == {} and not again.state.is_kill_switch_active()
        assert again.lifecycle.check_exits() == [] and len(fake.submits()) == 1
        fake.set_position("MSFT", 20, 390.0)  # bought again by hand: adopted again, exited with a fresh id
        clock.advance(60)
        await again.reconcile()
        await again.reconcile()
        fake.next_submit_fills(389.0)
        (second,) = await again.lifecycle.emergency_close_all("test flatten")
        assert second.client_order_id != exit_intent.client_order_id
        await until(lambda: not again.ledger.holds("MSFT"), what="closed again")
    finally:
        await again.stop()


async def test_exits_trade_only_ordergates_part_of_a_symbol_someone_else_also_trades(
    tmp_path: Path, fake: FakeAlpaca,
) -> None:
    """A hand trade on a symbol ordergate holds: a hand buy beside it is not sold by ordergate's exit; a hand sale
    of part of ordergate's shares caps the exit at what the account still holds (no oversell into a short)."""
    from tests.alpaca_core import entry_signal

    clock = SimulatedClock(SESSION)
    core = await alpaca_core(tmp_path, fake, clock=clock)
    alerts: list[tuple[str, str, str]] = []

    async def hook(kind: str, message: str, severity: str = "warning", **_fields: Any) -> None:
        alerts.append((kind, severity, message))

    core.alerts.attach(hook)
    try:
        held = {}
        for ticker in ("AAPL", "MSFT"):
            fake.next_submit_fills(100.0)
            result = await core.orchestrator.process_signal(entry_signal(ticker))
            assert result.success, result
            await until(lambda t=ticker: held_quantity(core, t) > 0, what=f"{ticker} bought")
            held[ticker] = held_quantity(core, ticker)
        await fake.place_manual_order("AAPL", 10, "buy", 101.0)   # beside ordergate's AAPL
        await fake.place_manual_order("MSFT", 5, "sell", 99.0)    # out of ordergate's MSFT
        await until(lambda: core.external.quantity("MSFT") == -5 and core.external.quantity("AAPL") == 10,
                     what="both hand trades recorded as external")
        assert core.ledger.signed_quantities() == held  # neither booked
        assert [s for k, s, _ in alerts if k == "external_fill"] == ["warning", "critical"]
        fake.next_submit_fills(100.0)
        fake.next_submit_fills(100.0)
        exits = {i.symbol: i.quantity for i in await core.lifecycle.emergency_close_all("test flatten")}
        assert exits == {"AAPL": held["AAPL"], "MSFT": held["MSFT"] - 5}
        await until(lambda: float(fake.positions.get("MSFT", {}).get("qty", 0)) == 0
                     and float(fake.positions.get("AAPL", {}).get("qty", 0)) == 10, what="exits filled")
        assert "MSFT" not in fake.positions  # flat, not short
        await until(lambda: not core.ledger.holds("AAPL"), what="AAPL closed in the ledger")
        assert await core.lifecycle.emergency_close_all("again") == []  # nothing of ordergate's left to trade
        clock.advance(core.settings.reconcile.grace_seconds + 1)
        await core.reconcile()
        report = await core.reconcile()
        assert report.mismatches == [] and not core.state.is_kill_switch_active()
    finally:
        await core.stop()


async def test_a_fill_of_an_id_of_ours_that_no_journal_holds_is_external_and_never_sold(
    tmp_path: Path, fake: FakeAlpaca,
) -> None:
    """A fill whose client order id is of ordergate's scheme but of no journaled order: the journal that sent it
    was lost (the daemon starts halted and the broker redelivers the fill). Nothing says what its stop or strategy
    was, so it is journaled and alerted as a ghost fill and counted as external, not put in the ledger with a
    stop at its own entry price (which sold it on the first tick below, while halted); a restart does not rebuild
    it as ordergate's either."""
    clock = SimulatedClock(SESSION)
    ghost = "og-entry-0123456789abcdef"
    core = await alpaca_core(tmp_path, fake, clock=clock, reconcile={"kill_notional_threshold": 1e9})
    try:
        await fake.place_manual_order("AAPL", 10, "buy", 100.0, client_order_id=ghost)
        await until(lambda: core.external.quantity("AAPL") == 10, what="the ghost fill counted as external")
        await core.settle()
        assert core.ledger.holdings == {} and core.positions() == []
        dip = Bar("AAPL", clock.now(), 99.0, 99.0, 95.0, 95.0, 5000.0)  # below the entry: a stop there sells
        assert core.lifecycle.check_exits([dip]) == [] and await core.lifecycle.emergency_close_all() == []
        assert fake.submits() == []
        assert [(p["symbol"], p["shares"]) for p in core.external_positions()] == [("AAPL", 10.0)]
    finally:
        await core.stop()
    conn = sqlite3.connect(tmp_path / "state" / "journal.db")
    try:  # journaled all the same: the fill (deduplicated by its id) and the validator's finding
        assert conn.execute("SELECT client_order_id FROM fills").fetchall() == [(ghost,)]
        outcomes = [r[0] for r in conn.execute("SELECT outcome FROM decisions WHERE stage = 'fill_validator'")]
        assert outcomes == ["ghost_fill"]
    finally:
        conn.close()
    again = await alpaca_core(tmp_path, fake, clock=clock, reconcile={"kill_notional_threshold": 1e9,
                                                                      "confirm_seconds": 0})
    try:
        assert again.ledger.holdings == {}  # its journaled fill is not rebuilt into a position of ours
        await again.reconcile_at_start()
        await again.reconcile()
        assert [(p.symbol, p.shares) for p in again.external.positions()] == [("AAPL", 10)]
        assert again.lifecycle.check_exits([dip]) == [] and fake.submits() == []
        assert not again.state.is_kill_switch_active()  # external, not unexplained
    finally:
        await again.stop()


async def test_the_external_positions_are_back_at_a_restart_before_any_check(tmp_path: Path) -> None:
    """The last check's external positions are journaled (with the broker time their figures hold every fill up
    to): a restart has the 10 AAPL bought by hand in TWS back at once, counted by the risk gate before the
    start-up reconciliation runs (before, none until it had confirmed them again), and TWS's replay of that day's
    executions at the connect does not count them twice."""
    from tests.two_brokers import PRICES, make_core

    clock = SimulatedClock(datetime.now(UTC))  # our clock with TWS's: its executions are stamped by it
    async with _tws_venues(clock) as venues:
        tws = venues.tws
        settings = {"primary": "ibkr", "fallback": None,
                    "reconcile": {"kill_notional_threshold": 100.0, "confirm_seconds": 0, "grace_seconds": 0.0}}
        core = make_core(tmp_path, venues, **settings)
        await core.start()
        try:
            contract = next(c for c in tws.contracts if c.symbol == "AAPL")
            tws.place_manual_order(contract, "BUY", 10, PRICES["AAPL"])
            await core.brokers["ibkr"].flush_events()  # type: ignore[attr-defined]
            await core.settle()
            clock.advance(10)
            await core.reconcile()
            await core.reconcile()
            assert core.external.quantity("AAPL") == 10
        finally:
            await core.stop()
        clock.advance(10)
        again = make_core(tmp_path, venues, **settings)
        await again.start()
        try:
            await again.brokers["ibkr"].flush_events()  # type: ignore[attr-defined]
            await again.settle()
            assert again.external.quantity("AAPL") == 10, "the external part is not back (or counted twice)"
            assert [(p.ticker, p.shares) for p in again.account_state().open_positions] == [("AAPL", 10.0)]
            await again.reconcile()
            assert again.last_reconciliation is not None and again.last_reconciliation["ok"] is True
        finally:
            await again.stop()
