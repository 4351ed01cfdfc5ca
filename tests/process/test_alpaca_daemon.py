"""Issue 5 at the daemon level: the assembled Core and `ordergate run` trading through alpaca-py against FakeAlpaca.

Everything goes through the real alpaca-py clients (TradingClient, TradingStream, StockDataStream) over loopback.
The fake runs on the test's event loop, so nothing here may block it: the daemon subprocess and the CLI are
driven through `asyncio.to_thread`.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from adapters.alpaca_data import AlpacaBarFeed
from pipeline.core.clock import SimulatedClock
from pipeline.core.models import Position, client_order_id_for
from tests.alpaca_core import (
    BARS_START,
    alpaca_core,
    cli_async,
    daemon_status,
    entry_signal,
    held_quantity,
    journal_fills,
    order_row,
    order_status_is,
    until,
)
from tests.daemon_proc import DaemonProcess, base_env
from tests.fakes.alpaca_server import FakeAlpaca

pytestmark = pytest.mark.timeout(120)

# -- 1. signal -> order -> partial fill -> fill -> ledger and journal -------------------------------------------
async def test_signal_to_order_partial_fill_fill_position(tmp_path: Path, fake: FakeAlpaca) -> None:
    core = await alpaca_core(tmp_path, fake)
    try:
        assert core.ledger.cash == 100_000.0 and core.starting_equity == 100_000.0  # from the fake's account
        fake.next_submit_fills(100.0, partials=(40, 30))
        signal = entry_signal("AAPL")
        result = await core.orchestrator.process_signal(signal)
        assert result.success, result
        coid = client_order_id_for(result.signal_id)
        assert result.intent is not None and result.intent.client_order_id == coid
        await until(lambda: order_status_is(core, coid, "filled"), what="order filled in the journal")
        (submit,) = fake.submits()
        assert submit.body["client_order_id"] == coid and coid.startswith("og-entry-")
        assert submit.body["symbol"] == "AAPL" and submit.body["side"] == "buy"
        qty = float(submit.body["qty"])
        assert qty > 70
        fills = await journal_fills(core, coid)
        assert [f["quantity"] for f in fills] == [40.0, 30.0, qty - 70]
        held = fake.order_by_client_id(coid)
        executions = [f["data"]["execution_id"] for f in fake.sent_trade_frames
                      if f["data"].get("execution_id") and f["data"]["order"]["id"] == held["id"]]
        assert [f["fill_id"] for f in fills] == executions
        assert all(f["broker"] == "alpaca" and f["price"] == 100.0 for f in fills)
        await until(lambda: held_quantity(core, "AAPL") == qty, what="position in the ledger")
        row = await order_row(core, coid)
        assert row["filled_qty"] == qty and row["broker"] == "alpaca" and row["broker_order_id"] == held["id"]
        events = await core.journal.query("SELECT status FROM order_events WHERE client_order_id = ? ORDER BY id",
                                          (coid,))
        assert [e["status"] for e in events][-1] == "filled"
        assert "partially_filled" in [e["status"] for e in events]
        position = core.ledger.holding("AAPL").position
        assert position.entry_price == pytest.approx(100.0) and position.broker == "alpaca"
        assert {p.symbol: p.quantity for p in await core.brokers["alpaca"].get_positions()} == {"AAPL": qty}
    finally:
        await core.stop()


async def test_rejection_reaches_the_journal_with_alpacas_reason(tmp_path: Path, fake: FakeAlpaca) -> None:
    core = await alpaca_core(tmp_path, fake)
    try:
        fake.next_submit_rejects("insufficient buying power", status=403)
        result = await core.orchestrator.process_signal(entry_signal("MSFT"))
        coid = client_order_id_for(result.signal_id)
        await until(lambda: order_status_is(core, coid, "rejected"), what="rejection in the journal")
        row = await order_row(core, coid)
        assert "insufficient buying power" in (row["reason"] or "")
        assert len(fake.submits()) == 1 and fake.orders == {}  # a 403 is final: not retried
        assert held_quantity(core, "MSFT") == 0
        assert coid not in core.orchestrator.reservations  # the reservation is released
    finally:
        await core.stop()


async def test_fill_while_trade_stream_down_is_journaled_once(tmp_path: Path, fake: FakeAlpaca) -> None:
    core = await alpaca_core(tmp_path, fake)
    broker = core.brokers["alpaca"]
    try:
        result = await core.orchestrator.process_signal(entry_signal("NVDA"))  # accepted, stays open
        coid = client_order_id_for(result.signal_id)
        await until(lambda: order_status_is(core, coid, "new"), what="order acknowledged")
        qty = float(fake.order_by_client_id(coid)["qty"])
        fake.drop_trade_stream(block=True)
        await until(lambda: not broker.is_connected(), what="stream down")
        execution_id = await fake.fill(coid, qty, 100.0)  # nobody is listening
        await asyncio.sleep(0.2)
        assert await journal_fills(core, coid) == []
        fake.allow_trade_stream()
        await until(lambda: order_status_is(core, coid, "filled"), what="missed fill recovered")
        # the live frame for the same execution arriving late (Alpaca resends) must not double it
        await fake.push_trade_update("fill", fake.order_by_client_id(coid), execution_id=execution_id,
                                     price="100", qty=f"{qty:g}")
        await asyncio.sleep(0.3)
        fills = await journal_fills(core, coid)
        assert len(fills) == 1 and fills[0]["quantity"] == qty
        assert broker.reconnects == 1
        await until(lambda: held_quantity(core, "NVDA") == qty, what="ledger quantity")
        await asyncio.sleep(0.1)
        assert held_quantity(core, "NVDA") == qty
    finally:
        await core.stop()


# -- 2. bars from the market-data socket -> strategy -> order at the fake --------------------------------------
def _jump_path() -> list[tuple[float, float, float, float]]:
    """Flat, a slide to 92, a jump to 101 through the trend cloud (tests/test_strategy_signals: cloud cross)."""
    closes = [100.0] * 60 + [100.0 - 0.2 * k for k in range(1, 41)] + [101.0]
    out, prev = [], closes[0]
    for c in closes:
        out.append((prev, max(prev, c) + 0.01, min(prev, c) - 0.01, c))
        prev = c
    return out


async def test_bars_from_the_data_socket_drive_the_strategy_to_an_order(tmp_path: Path, fake: FakeAlpaca) -> None:
    clock = SimulatedClock(BARS_START)
    core = await alpaca_core(tmp_path, fake, clock, strategy={"timeframes": ["1m"], "min_conviction": 0},
                       data={"source": "alpaca", "tickers": ["AAPL"]})
    feed = AlpacaBarFeed(core.settings.alpaca, ["AAPL"], clock, batch_window_seconds=0.3,
                         stream_backoff=(0.05, 0.3))
    seen: list[datetime] = []

    async def pump() -> None:
        async for batch in feed.batches():
            clock.advance_to(batch[0].timestamp + timedelta(minutes=1))  # the bar has closed
            await core.engine.on_batch(batch)
            seen.append(batch[0].timestamp)

    task = asyncio.create_task(pump())
    try:
        await fake.wait_for(lambda: "AAPL" in fake.data_subscriptions and len(fake.data_sockets) == 1)
        fake.next_submit_fills(101.0)
        path = _jump_path()
        for i, (o, h, low, c) in enumerate(path):
            await fake.push_bar("AAPL", BARS_START + timedelta(minutes=i), o, h, low, c, 1000)
        await until(lambda: len(seen) == len(path), what="every bar through the engine")
        assert core.engine.signals >= 1 and core.engine.entries == 1
        await until(lambda: len(fake.submits()) == 1, what="an order at the fake")
        body = fake.submits()[0].body
        assert body["symbol"] == "AAPL" and body["client_order_id"].startswith("og-entry-")
        # the slide fires a bearish set-up first (the later bullish cross then conflicts with the short held)
        signals = await core.journal.query("SELECT signal_id, signal_type, direction, ts FROM signals ORDER BY ts")
        assert signals and all(datetime.fromisoformat(s["ts"]) > BARS_START + timedelta(minutes=49) for s in signals)
        by_coid = {client_order_id_for(s["signal_id"]): s for s in signals}
        fired = by_coid[body["client_order_id"]]  # the order is the strategy's signal, by its deterministic id
        assert body["side"] == ("buy" if fired["direction"] == "long" else "sell")
        signed = float(body["qty"]) * (1 if body["side"] == "buy" else -1)
        await until(lambda: held_quantity(core, "AAPL") == signed, what="position from the fill")
    finally:
        await feed.close()
        await asyncio.wait_for(task, 5)
        await core.stop()


# -- 3. reconciliation against the fake's positions ---------------------------------------------------------------
async def test_reconciliation_finds_ghost_and_orphan(tmp_path: Path, fake: FakeAlpaca) -> None:
    core = await alpaca_core(tmp_path, fake)
    try:
        fake.set_position("GHST", 10, 50.0)  # at Alpaca only
        core.ledger.adopt(Position("ORPH", "long", 40.0, 40.0, 5, 39.0, symbol="ORPH"), 5)  # in the book only
        fake.set_position("SAME", 4, 20.0)
        core.ledger.adopt(Position("SAME", "long", 20.0, 20.0, 4, 19.0, symbol="SAME"), 4)
        assert (await core.reconcile()).mismatches == []  # first sighting: pending until the next check
        report = await core.reconcile()
        assert {m.symbol: m.mismatch_type for m in report.mismatches} == {"ORPH": "orphan"}
        assert report.matches == 1
        assert [(p.symbol, p.shares) for p in core.external.positions()] == [("GHST", 10)]  # no order of ours
        gets = [r.path for r in fake.requests if r.method == "GET" and r.path in ("/v2/orders", "/v2/positions")]
        assert gets[-2:] == ["/v2/orders", "/v2/positions"]  # the order set is read before the positions
        assert core.ledger.signed_quantities() == {"ORPH": 5, "SAME": 4}  # policy "alert": nothing changed
    finally:
        await core.stop()


# -- 4. `ordergate run` as a subprocess ---------------------------------------------------------------------
async def test_ordergate_run_trades_through_alpaca(tmp_path: Path, fake: FakeAlpaca) -> None:
    state_dir = tmp_path / "state"
    # bars from the fake's data socket (none pushed: the signal comes from the CLI), live clock; the signal is
    # "1d" so the market-hours check does not depend on when the test runs
    env = base_env(state_dir, **fake.env(tickers=["AAPL"]), ORDERGATE_ALPACA__REQUEST_TIMEOUT_SECONDS="5")
    daemon = DaemonProcess(state_dir, env=env).start()
    try:
        await asyncio.to_thread(daemon.wait_for, "daemon_ready", 45.0)
        assert fake.trade_stream_connects == 1
        await fake.wait_for(lambda: "AAPL" in fake.data_subscriptions, timeout=15)
        # the market the entry is sized on: one minute bar from the data socket
        await fake.push_bar("AAPL", datetime.now(UTC).replace(second=0, microsecond=0), 187.5, 187.5, 187.5, 187.5,
                            1_000)
        await asyncio.to_thread(daemon.wait_for, "bars_flowing", 15.0)
        fake.next_submit_fills(187.5, partials=(10,))
        out = await cli_async(state_dir, "signal", "--ticker", "AAPL", "--direction", "long", "--entry", "187.5",
                         "--stop", "183.0", "--timeframe", "1d", "--json", env=env)
        assert out.returncode == 0, (out.stdout, out.stderr)
        reply = json.loads(out.stdout)
        assert reply["accepted"] is True, reply
        coid = client_order_id_for(reply["signal_id"])
        await fake.wait_for(lambda: len(fake.submits()) >= 1, timeout=15)  # then its protective stop
        body = fake.submits()[0].body
        assert body["client_order_id"] == coid and coid.startswith("og-entry-") and body["symbol"] == "AAPL"
        qty = float(body["qty"])
        await fake.wait_for(lambda: fake.order_by_client_id(coid)["status"] == "filled", timeout=15)

        async def position_shown() -> bool:
            st = await daemon_status(state_dir, env)
            return any(p["symbol"] == "AAPL" and p["shares"] == qty for p in st["positions"])

        await until(position_shown, timeout=20, what="position in ordergate status")
        st = await daemon_status(state_dir, env)
        (pos,) = st["positions"]
        assert pos["broker"] == "alpaca" and pos["entry_price"] == pytest.approx(187.5)
        assert pos["signal_id"] == reply["signal_id"]
        orders = json.loads((await cli_async(state_dir, "orders", "--json", env=env)).stdout)
        entries = [(o["client_order_id"], o["status"], o["filled_qty"]) for o in orders if o["kind"] == "entry"]
        assert entries == [(coid, "filled", qty)]
        assert [o["status"] for o in orders if o["kind"] == "stop"].count("new") == 1  # its protective stop rests
    finally:
        code = await asyncio.to_thread(daemon.stop)
    assert code == 0, daemon.text()[-3000:]


@pytest.mark.parametrize(
    ("extra", "needles", "absent"),
    [
        ({"ORDERGATE_BROKER__PRIMARY": "alpaca", "ORDERGATE_ALPACA__SECRET_KEY": "s"},
         ["alpaca.api_key", "broker.primary", "ORDERGATE_ALPACA__API_KEY"], "secret_key"),
        ({"ORDERGATE_DATA__SOURCE": "alpaca"}, ["alpaca.api_key", "alpaca.secret_key", "data.source"], None),
        ({"ORDERGATE_BROKER__PRIMARY": "alpaca", "ORDERGATE_ALPACA__API_KEY": "k", "ORDERGATE_ALPACA__SECRET_KEY": "s",
          "ORDERGATE_ALPACA__BASE_URL": "https://paper-api.alpaca.markets/v2"}, ["alpaca.base_url", "/v2"], "api_key"),
    ],
)
async def test_ordergate_run_with_bad_alpaca_settings_exits_2_with_one_line(
    tmp_path: Path, extra: dict[str, str], needles: list[str], absent: str | None,
) -> None:
    state_dir = tmp_path / "state"
    env = base_env(state_dir, **extra)
    out = await cli_async(state_dir, "run", env=env)
    assert out.returncode == 2, (out.stdout, out.stderr)
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
    assert all(n in lines[0] for n in needles), lines[0]
    assert absent is None or absent not in lines[0]
    assert not (state_dir / "journal.db").exists()  # refused before anything started


# -- restart recovery: open journal orders are adopted by the adapter (Core.recover_open_orders) -------------


async def test_fill_while_daemon_down_is_applied_after_restart(tmp_path: Path, fake: FakeAlpaca) -> None:
    core = await alpaca_core(tmp_path, fake, shutdown={"cancel_inflight_entries": False})
    result = await core.orchestrator.process_signal(entry_signal("AAPL"))  # accepted, stays open
    coid = client_order_id_for(result.signal_id)
    await until(lambda: order_status_is(core, coid, "new"), what="order acknowledged")
    await core.stop()
    qty = float(fake.order_by_client_id(coid)["qty"])
    await fake.fill(coid, qty, 100.0)  # filled while the daemon is down
    core = await alpaca_core(tmp_path, fake, shutdown={"cancel_inflight_entries": False})
    try:
        await until(lambda: order_status_is(core, coid, "filled"), timeout=3, what="missed fill applied")
        assert held_quantity(core, "AAPL") == qty
    finally:
        await core.stop()


async def test_partial_fill_before_restart_is_not_counted_twice(tmp_path: Path, fake: FakeAlpaca) -> None:
    core = await alpaca_core(tmp_path, fake, shutdown={"cancel_inflight_entries": False})
    result = await core.orchestrator.process_signal(entry_signal("MSFT"))
    coid = client_order_id_for(result.signal_id)
    await until(lambda: order_status_is(core, coid, "new"), what="order acknowledged")
    await fake.fill(coid, 40, 100.0)
    await until(lambda: held_quantity(core, "MSFT") == 40, what="partial fill booked")
    await core.stop()
    core = await alpaca_core(tmp_path, fake, shutdown={"cancel_inflight_entries": False})
    try:
        qty = float(fake.order_by_client_id(coid)["qty"])
        await fake.fill(coid, qty - 40, 100.0)  # the rest, live, after the restart
        await until(lambda: order_status_is(core, coid, "filled"), what="order filled")
        await asyncio.sleep(0.2)
        assert sum(f["quantity"] for f in await journal_fills(core, coid)) == qty
        assert held_quantity(core, "MSFT") == qty  # not qty + 40
    finally:
        await core.stop()


async def test_ordergate_run_warms_the_strategy_from_history_without_trading(tmp_path: Path, fake: FakeAlpaca) -> None:
    """At start, the minute bars of the sessions before now come from the data API and warm the clouds: the
    daemon can signal on its first live bar, and the history itself never trades."""
    from pipeline.core.calendar import default_calendar

    calendar = default_calendar()
    now = datetime.now(UTC)
    start = calendar.open_sessions_back(now, 2)  # the default 5m timeframe needs 52 x 5 minutes: 2 sessions
    bars = 0
    day = start
    while day <= now:
        session = calendar.session_for(day)
        if session is not None:
            minute = session[0]
            while minute < min(session[1], now - timedelta(minutes=1)):
                price = 100.0 + 3.0 * ((bars // 40) % 2) + 0.01 * (bars % 40)  # a zig-zag: the clouds cross
                fake.add_history("AAPL", minute, price, price + 0.2, price - 0.2, price + 0.05, 1000)
                bars += 1
                minute += timedelta(minutes=1)
        day += timedelta(days=1)
    assert bars >= 390
    state_dir = tmp_path / "state"
    env = base_env(state_dir, **fake.env(tickers=["AAPL"]), ORDERGATE_ALPACA__REQUEST_TIMEOUT_SECONDS="5")
    daemon = DaemonProcess(state_dir, env=env).start()
    try:
        line = await asyncio.to_thread(daemon.wait_for, "strategy_warmed_up", 45.0)
        assert (line["batches"], line["warm"], line["of"], line["sessions"]) == (bars, 1, 1, 2)
        assert datetime.fromisoformat(line["start"]) == start
        warm_up_request = fake.history_requests()[0]
        assert warm_up_request.query["symbols"] == "AAPL"
        await fake.wait_for(lambda: "AAPL" in fake.data_subscriptions, timeout=15)
        # the first connect after the warm-up asks for the minutes since its last bar (none here)
        await fake.wait_for(lambda: len(fake.history_requests()) == 2, timeout=15)
        await asyncio.sleep(0.5)
        assert fake.submits() == []
        st = await daemon_status(state_dir, env)
        assert st["positions"] == []
    finally:
        code = await asyncio.to_thread(daemon.stop)
    assert code == 0, daemon.text()[-3000:]
    with sqlite3.connect(state_dir / "journal.db") as conn:
        assert conn.execute("SELECT COUNT(*) FROM signals").fetchone()[0] == 0
