"""Issue 12, parts 1-3: no order left in limbo after a crash, a shutdown or an outage.

Each test builds what a crash leaves behind with the real parts — an order intent committed to the SQLite journal
(the router commits it before it sends, so a SIGKILL between the two leaves exactly that row), fills at the
paper broker's persistent book or at FakeAlpaca / FakeTWS — and then starts a new Core over the same state
directory. The resolver's timer is `Core.check_overdue` (the daemon's gauges loop calls it every 5 s).
"""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from adapters.alpaca import AlpacaBroker
from adapters.paper import PaperBroker
from config.settings import load_settings
from daemon.core import Core
from pipeline.core.clock import LiveClock, SimulatedClock
from pipeline.core.models import Direction, OrderIntent, Side, TradeSignal, client_order_id_for
from pipeline.record.journal import Journal
from tests.conftest import make_signal
from tests.conftest import until as _until
from tests.daemon_proc import DaemonProcess, base_env, cli, status
from tests.fakes.alpaca_server import FakeAlpaca
from tests.fakes.tws_server import FakeTWS

pytestmark = pytest.mark.timeout(120)

SESSION = datetime(2026, 11, 24, 16, 0, tzinfo=UTC)  # 11:00 ET, a regular session
TICKERS = ["AAPL", "MSFT", "NVDA", "AMD", "JPM", "XOM", "GOOGL", "TSLA", "META", "AMZN", "NFLX"]
BOUND = 0.3  # [broker] never_reached_after_seconds in these tests (default 120)


# -- helpers -----------------------------------------------------------------------------------------------
class Alerts:
    """Collects the core's alerts (the daemon's dispatcher is not running in-process)."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, dict[str, Any]]] = []

    async def __call__(self, kind: str, message: str, severity: str = "warning", **fields: Any) -> None:
        self.seen.append((kind, message, fields))

    def kinds(self) -> list[str]:
        return [k for k, _, _ in self.seen]


def _settings(tmp_path: Path, venue: str, fake: Any = None, **overrides: Any) -> Any:
    extra: dict[str, Any] = {}
    if venue == "alpaca":
        extra["alpaca"] = fake.alpaca_settings(request_timeout_seconds=3.0)
    if venue == "ibkr":
        extra["ibkr"] = {"host": "127.0.0.1", "port": fake.port, "client_id": 21, "request_timeout_seconds": 3}
    return load_settings(
        state_dir=tmp_path / "state",
        broker={"primary": venue, "never_reached_after_seconds": BOUND, **overrides.pop("broker", {})},
        pipeline={"retry_backoff_base": 0.01, "retry_backoff_max": 0.05, "enable_unified_risk": False,
                  **overrides.pop("pipeline", {})},
        executor={"max_single_stock_exposure": 0.05, "max_sector_exposure": 1.0},
        shutdown={"cancel_inflight_entries": False},
        **extra, **overrides,
    )


async def _start(tmp_path: Path, venue: str, fake: Any = None, clock: Any = None,
                 alerts: Alerts | None = None, **overrides: Any) -> Core:
    core = Core(_settings(tmp_path, venue, fake, **overrides), clock or SimulatedClock(SESSION))
    core.alerts.attach(alerts)
    b = core.brokers[venue]
    if isinstance(b, AlpacaBroker):
        b.stream_backoff = (0.05, 0.3)
    if isinstance(b, PaperBroker):
        for t in TICKERS:
            b.set_price(t, 100.0)
    for t in TICKERS:
        core.ledger.mark(t, 100.0)
    await core.start()
    return core


def _entry(ticker: str, broker: str, name: str | None = None) -> OrderIntent:
    signal_id = name or f"sig-limbo-{ticker}"
    return OrderIntent(client_order_id=client_order_id_for(signal_id), signal_id=signal_id, symbol=ticker,
                       side=Side.BUY, quantity=10, ticker=ticker, direction=Direction.LONG, reference_price=100.0,
                       broker=None, created_at=SESSION, signal_type="cloud_cross_bullish", timeframe="5m")


async def _journal_unsent(tmp_path: Path, intents: list[OrderIntent], broker: str) -> None:
    """What a SIGKILL between the intent's commit and its send leaves: the row, status pending, nothing sent."""
    journal = Journal(tmp_path / "state" / "journal.db")
    await journal.open()
    try:
        for intent in intents:
            assert await journal.record_order_intent(intent, broker, SESSION)
    finally:
        await journal.close()


def _signal(ticker: str, at: datetime = SESSION) -> TradeSignal:
    return make_signal(ticker, 100.0, 98.0, at=at)


async def _status(core: Core, coid: str) -> str | None:
    assert core.journal is not None
    row = await core.journal.get_order(coid)
    return row["status"] if row else None


async def _resolve_twice(core: Core) -> None:
    """Two passes of the resolver's timer, the bound apart (the first lookup happened at start)."""
    await core.check_overdue()
    await asyncio.sleep(BOUND + 0.05)
    await core.check_overdue()
    await core.settle()


def _send(core: Core, intent: OrderIntent) -> None:
    """What the orchestrator does with an approved entry: reserve, track, dispatch (no market-hours gate)."""
    core.orchestrator.reservations.reserve(intent)
    core.lifecycle.register_intent(intent)
    core.router.dispatch(intent)


def _held(core: Core, symbol: str) -> float:
    holding = core.ledger.holding(symbol)
    return holding.quantity if holding else 0.0


@pytest.fixture
async def tws() -> AsyncIterator[FakeTWS]:
    server = FakeTWS()
    await server.start()
    for t in TICKERS:
        server.add_stock(t, 100.0)
    yield server
    await server.stop()


# -- 1. entries journaled but never sent --------------------------------------------------------------------
async def _ten_unsent_then_a_new_entry(tmp_path: Path, broker: str, fake: Any = None) -> None:
    unsent = [_entry(t, broker) for t in TICKERS[:10]]
    await _journal_unsent(tmp_path, unsent, broker)
    alerts = Alerts()
    core = await _start(tmp_path, broker, fake, alerts=alerts)
    try:
        assert len(core.orchestrator.reservations) == 10  # restored: each could still be at the broker
        await _resolve_twice(core)
        assert [await _status(core, i.client_order_id) for i in unsent] == ["never_reached"] * 10
        assert len(core.orchestrator.reservations) == 0
        assert alerts.kinds().count("order_never_reached") == 10
        result = await core.orchestrator.process_signal(_signal(TICKERS[10]))
        assert result.success, result.rejection_reason
    finally:
        await core.stop()
    core = await _start(tmp_path, broker, fake)  # and they stay resolved across the next restart
    try:
        assert all(i.client_order_id not in core.orchestrator.reservations for i in unsent)
    finally:
        await core.stop()


async def test_paper_ten_unsent_entries_do_not_block_entries_after_restart(tmp_path: Path) -> None:
    await _ten_unsent_then_a_new_entry(tmp_path, "paper")


async def test_alpaca_ten_unsent_entries_do_not_block_entries_after_restart(tmp_path: Path, fake: FakeAlpaca) -> None:
    await _ten_unsent_then_a_new_entry(tmp_path, "alpaca", fake)


def test_daemon_ten_sends_hung_at_shutdown_do_not_block_entries_after_restart(tmp_path: Path) -> None:
    """`ordergate run` (paper, synthetic bars): ten entries a shutdown left journaled and unsent are resolved by
    the daemon's own timer, and a new entry is accepted; before, every restart reserved all ten again."""
    unsent = [_entry(t, "paper") for t in ("META", "AMZN", "NFLX", "ORCL", "IBM", "INTC", "CSCO", "ADBE", "CRM",
                                           "QCOM")]
    asyncio.run(_journal_unsent(tmp_path, unsent, "paper"))
    state_dir = tmp_path / "state"
    env = base_env(state_dir, ORDERGATE_BROKER__NEVER_REACHED_AFTER_SECONDS="1", ORDERGATE_STRATEGY__ENABLED="false",
                   ORDERGATE_DATA__BARS_PER_SECOND="20", ORDERGATE_EXECUTOR__MAX_SINGLE_STOCK_EXPOSURE="0.5",
                   ORDERGATE_EXECUTOR__MAX_SECTOR_EXPOSURE="1.0")
    daemon = DaemonProcess(state_dir, env=env).start()
    try:
        daemon.wait_for("daemon_ready")
        daemon.wait_for("bars_flowing")
        assert status(state_dir)["open_orders"] == 10
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline and \
                sum(1 for line in daemon.lines() if line.get("event") == "order_never_reached") < 10:
            time.sleep(0.1)
        assert status(state_dir)["open_orders"] == 0, daemon.text()[-3000:]
        out = cli(state_dir, "buy", "AAPL", "--shares", "10", "--json", env=env)
        assert out.returncode == 0 and json.loads(out.stdout)["ok"], (out.stdout, out.stderr)
        orders = json.loads(cli(state_dir, "orders", "--json", env=env).stdout)
        assert sorted(o["client_order_id"] for o in orders if o["status"] == "never_reached") == \
            sorted(i.client_order_id for i in unsent)
    finally:
        assert daemon.stop() == 0


async def test_ibkr_unsent_entry_ends_never_reached(tmp_path: Path, tws: FakeTWS) -> None:
    unsent = _entry("AAPL", "ibkr")
    await _journal_unsent(tmp_path, [unsent], "ibkr")
    core = await _start(tmp_path, "ibkr", tws)
    try:
        assert unsent.client_order_id in core.orchestrator.reservations
        await _resolve_twice(core)
        assert await _status(core, unsent.client_order_id) == "never_reached"
        assert unsent.client_order_id not in core.orchestrator.reservations
        assert tws.orders_with_ref(unsent.client_order_id) == []
    finally:
        await core.stop()


async def test_alpaca_every_submit_5xx_every_lookup_404_ends_never_reached(tmp_path: Path, fake: FakeAlpaca) -> None:
    alerts = Alerts()
    core = await _start(tmp_path, "alpaca", fake, alerts=alerts)
    try:
        fake.fail_requests("POST", "/v2/orders", status=503, times=50)
        result = await core.orchestrator.process_signal(_signal("AAPL"))
        assert result.success and result.intent is not None
        coid = result.intent.client_order_id
        await core.settle()
        assert await _status(core, coid) == "pending" and fake.orders == {}
        assert coid in core.orchestrator.reservations
        for _ in range(3):
            await core.check_overdue()
            await asyncio.sleep(BOUND / 2 + 0.05)
        await core.settle()
        assert await _status(core, coid) == "never_reached"
        assert coid not in core.orchestrator.reservations
        assert "order_never_reached" in alerts.kinds()
    finally:
        await core.stop()


# -- 2. exits journaled but never sent ---------------------------------------------------------------------
async def _open_position(core: Core, ticker: str) -> float:
    result = await core.orchestrator.process_signal(_signal(ticker))
    assert result.success, result.rejection_reason
    await _until(lambda: _held(core, ticker) > 0, what="entry filled")
    await core.settle()
    return _held(core, ticker)


def _exit_for(core: Core, ticker: str, attempt: int = 0) -> OrderIntent:
    pos = core.ledger.position(ticker)
    assert pos is not None
    key = pos.signal_id or ticker
    return OrderIntent(client_order_id=client_order_id_for(key, f"exit{attempt}"), signal_id=key, symbol=ticker,
                       side=Side.SELL, quantity=abs(pos.shares), reduce_only=True, kind="exit", ticker=ticker,
                       reference_price=100.0, broker=pos.broker, created_at=SESSION, exit_type="stop_loss")


async def test_paper_unsent_exit_is_sent_after_restart_and_the_position_closes(tmp_path: Path) -> None:
    core = await _start(tmp_path, "paper")
    qty = await _open_position(core, "AAPL")
    stuck = _exit_for(core, "AAPL")
    await core.stop()
    await _journal_unsent(tmp_path, [stuck], "paper")  # SIGKILL between the exit's commit and its send
    alerts = Alerts()
    core = await _start(tmp_path, "paper", alerts=alerts)
    try:
        assert _held(core, "AAPL") == qty and core.lifecycle.pending_exits == {stuck.key: stuck.client_order_id}
        await _resolve_twice(core)
        await _until(lambda: _held(core, "AAPL") == 0, what="position closed by a fresh exit")
        assert await _status(core, stuck.client_order_id) == "never_reached"
        paper = core.brokers["paper"]
        assert isinstance(paper, PaperBroker) and paper.position("AAPL")[0] == 0
        assert "order_never_reached" in alerts.kinds()
    finally:
        await core.stop()


async def test_flatten_covers_a_position_whose_exit_is_stuck(tmp_path: Path) -> None:
    core = await _start(tmp_path, "paper")
    await _open_position(core, "AAPL")
    await _open_position(core, "MSFT")
    stuck = _exit_for(core, "AAPL")
    await core.stop()
    await _journal_unsent(tmp_path, [stuck], "paper")
    core = await _start(tmp_path, "paper", broker={"never_reached_after_seconds": 120})
    try:
        report = await core.flatten("ordergate flatten")
        await core.settle()
        # the stuck exit was looked up (not at the broker), ended never_reached, and replaced: both close
        assert report["stuck_exits"] == [stuck.client_order_id]
        assert len(report["exit_orders"]) == 2
        assert _held(core, "AAPL") == 0 and _held(core, "MSFT") == 0
        assert await _status(core, stuck.client_order_id) == "never_reached"
    finally:
        await core.stop()


async def test_alpaca_exit_hung_at_shutdown_is_sent_after_restart_and_closes(tmp_path: Path, fake: FakeAlpaca) -> None:
    core = await _start(tmp_path, "alpaca", fake)
    fake.next_submit_fills(100.0)
    qty = await _open_position(core, "AAPL")
    fake.fail_requests("POST", "/v2/orders", status=503, times=50)  # the exit's sends never get through
    (exit_intent,) = await core.lifecycle.emergency_close_all("test")
    await core.settle()
    assert await _status(core, exit_intent.client_order_id) == "pending"
    await core.stop()
    fake._failures.clear()
    fake.next_submit_fills(100.0)
    core = await _start(tmp_path, "alpaca", fake)
    try:
        assert _held(core, "AAPL") == qty
        await _resolve_twice(core)
        await _until(lambda: _held(core, "AAPL") == 0, what="position closed after the restart")
        assert await _status(core, exit_intent.client_order_id) == "never_reached"
        assert fake.positions == {}
    finally:
        await core.stop()


async def test_exit_whose_journal_write_failed_is_sent_when_the_disk_recovers(tmp_path: Path) -> None:
    core = await _start(tmp_path, "paper")
    try:
        await _open_position(core, "AAPL")
        assert core.journal is not None
        await _journal_writes_fail(core.journal, True)
        (exit_intent,) = await core.lifecycle.emergency_close_all("test")
        await core.settle()
        assert _held(core, "AAPL") > 0 and await _status(core, exit_intent.client_order_id) is None
        await core.check_overdue()  # still full: nothing sent, nothing dropped
        assert _held(core, "AAPL") > 0
        await _journal_writes_fail(core.journal, False)  # space is back
        await core.check_overdue()
        await _until(lambda: _held(core, "AAPL") == 0, what="exit sent after the disk recovered")
        assert await _status(core, exit_intent.client_order_id) == "filled"
    finally:
        await core.stop()


async def _journal_writes_fail(journal: Journal, failing: bool) -> None:
    """Every write on the journal's connection fails (SQLite's query_only: an OperationalError on each write, as
    SQLITE_FULL is on a full disk), or works again."""

    def switch(conn: sqlite3.Connection) -> None:
        conn.execute(f"PRAGMA query_only={'ON' if failing else 'OFF'}")

    await journal.run(switch)


async def test_an_entry_whose_journal_write_failed_is_sent_while_fresh_and_given_up_when_stale(tmp_path: Path) -> None:
    clock = SimulatedClock(SESSION)
    alerts = Alerts()
    core = await _start(tmp_path, "paper", clock=clock, alerts=alerts)
    assert core.journal is not None
    try:
        await _journal_writes_fail(core.journal, True)
        stale = await core.orchestrator.process_signal(_signal("MSFT"))
        clock.advance(core.config.max_signal_age_seconds + 1)
        fresh = await core.orchestrator.process_signal(_signal("AAPL", clock.now()))
        assert fresh.intent is not None and stale.intent is not None
        await core.settle()
        assert _held(core, "AAPL") == 0 and _held(core, "MSFT") == 0
        await _journal_writes_fail(core.journal, False)
        await core.check_overdue()  # AAPL's entry is retried; MSFT's is past [pipeline] max_signal_age_seconds
        await _until(lambda: _held(core, "AAPL") > 0, what="fresh entry sent once the journal works")
        await core.settle()
        assert _held(core, "MSFT") == 0 and stale.intent.client_order_id not in core.orchestrator.reservations
        paper = core.brokers["paper"]
        assert isinstance(paper, PaperBroker)
        assert stale.intent.client_order_id not in {o.client_order_id for o in paper.all_orders()}
        await core.check_overdue()
        assert stale.intent.client_order_id not in {o.client_order_id for o in paper.all_orders()}
        assert "entry_not_sent" in alerts.kinds()
    finally:
        await core.stop()


async def test_a_fill_whose_journal_write_failed_is_applied_once_when_the_disk_recovers(tmp_path: Path) -> None:
    core = await _start(tmp_path, "paper")
    paper = core.brokers["paper"]
    assert isinstance(paper, PaperBroker) and core.journal is not None
    try:
        paper.faults.drop_updates = True  # the order is sent and journaled; its events wait at the broker
        result = await core.orchestrator.process_signal(_signal("AAPL"))
        assert result.success and result.intent is not None
        coid = result.intent.client_order_id
        await core.settle()
        assert await _status(core, coid) in ("new", "filled")
        await _journal_writes_fail(core.journal, True)
        paper.redeliver()  # the fill arrives while the journal cannot be written: held
        await _until(lambda: core.events.held() >= 1, what="the fill held")
        await core.check_overdue()  # still failing: held, not dropped, not applied (journal before ledger)
        assert _held(core, "AAPL") == 0
        await _journal_writes_fail(core.journal, False)
        await core.check_overdue()
        await _until(lambda: _held(core, "AAPL") == result.intent.quantity, what="fill applied after recovery")
        fills = await core.journal.query("SELECT quantity FROM fills WHERE client_order_id=?", (coid,))
        assert [f["quantity"] for f in fills] == [result.intent.quantity]
        assert await _status(core, coid) == "filled" and coid not in core.orchestrator.reservations
        assert not [i for i in core.lifecycle.issues if i.kind == "overfill"]
    finally:
        await core.stop()


async def _a_fill_held(core: Core) -> OrderIntent:
    """An entry sent and filled at the paper broker whose fill arrives while the journal cannot be written: held."""
    paper = core.brokers["paper"]
    assert isinstance(paper, PaperBroker) and core.journal is not None
    paper.faults.drop_updates = True  # the order is sent and journaled; its events wait at the broker
    result = await core.orchestrator.process_signal(_signal("AAPL"))
    assert result.success and result.intent is not None
    await core.settle()
    await _journal_writes_fail(core.journal, True)
    paper.redeliver()
    await _until(lambda: core.events.held() >= 1, what="the fill held")
    return result.intent


async def test_a_held_fill_is_applied_by_settle_once_the_journal_takes_it_and_a_stuck_one_is_not_waited_for(
        tmp_path: Path) -> None:
    """Seen with the PostgreSQL journal restarting: a fill held while the journal could not be written kept every
    settle (the shutdown's included) waiting out its whole timeout — the paper broker's delivery waits for that
    fill to be applied, and only the five-second order check tried it again. A settle now tries the held events
    first: applied once the journal takes them; while it still cannot, the settle ends at once, leaves them held
    (applied later, or asked of the broker at the next start) and says so."""
    core = await _start(tmp_path, "paper")
    assert core.journal is not None
    try:
        intent = await _a_fill_held(core)
        # nothing can move: a settle with a minute to spare must not spend it (before: it waited it all out —
        # 30 s for the broker's delivery of the held fill to give up, then the rest for events that stayed held)
        async with asyncio.timeout(20.0):
            await core.settle(timeout=60.0)
        assert core.events.held() >= 1 and _held(core, "AAPL") == 0  # held, not dropped, not applied
        await _journal_writes_fail(core.journal, False)
        await core.settle()  # no order check in between: the settle itself applies what is held
        assert core.events.held() == 0 and _held(core, "AAPL") == intent.quantity
        assert await _status(core, intent.client_order_id) == "filled"
    finally:
        await core.stop()


async def test_a_held_fill_is_applied_before_its_order_is_called_overdue(tmp_path: Path) -> None:
    """The order check applies the fills it holds before it looks for orders overdue a fill: a fill held through
    a journal outage longer than fill_timeout_seconds is applied, not reported missing at the broker (with Alpaca:
    a critical 'fill_missing' alert for a fill the daemon itself holds)."""
    alerts = Alerts()
    core = await _start(tmp_path, "paper", alerts=alerts)
    assert core.journal is not None
    try:
        intent = await _a_fill_held(core)
        assert isinstance(core.clock, SimulatedClock)
        core.clock.advance(core.config.fill_timeout_seconds + 5)  # the outage outlasts the fill timeout
        await _journal_writes_fail(core.journal, False)
        checked = await core.check_overdue()
        assert intent.client_order_id not in checked  # not looked up as overdue: its fill was applied first
        assert core.events.held() == 0 and _held(core, "AAPL") == intent.quantity
        assert "fill_missing" not in alerts.kinds()
    finally:
        await core.stop()


# -- 3. a fill while the daemon was down, found by identity --------------------------------------------------
async def _fill_while_down(tmp_path: Path, fake: FakeAlpaca, clock: Callable[[], Any]) -> tuple[str, float]:
    core = await _start(tmp_path, "alpaca", fake, clock=clock())
    intent = _entry("AAPL", "alpaca", name="sig-down")
    _send(core, intent)  # accepted, stays open
    coid = intent.client_order_id
    await _until(lambda: fake.order_by_client_id(coid) is not None and
                 fake.order_by_client_id(coid)["status"] == "new", what="order open at Alpaca")
    await core.settle()
    await core.stop()
    qty = float(fake.order_by_client_id(coid)["qty"])
    await fake.fill(coid, qty, 100.0)  # while the daemon is down
    return coid, qty


async def test_alpaca_503_on_the_first_orders_query_after_restart_still_applies_the_fill(
        tmp_path: Path, fake: FakeAlpaca) -> None:
    coid, qty = await _fill_while_down(tmp_path, fake, lambda: SimulatedClock(SESSION))
    fake.fail_requests("GET", "/v2/orders", status=503, times=1)
    fake.fail_requests("GET", "/v2/orders:by_client_order_id", status=503, times=1)
    core = await _start(tmp_path, "alpaca", fake)
    try:
        # start returns (READY follows) only once every open order has been answered for
        assert await _status(core, coid) == "filled"
        assert _held(core, "AAPL") == qty
    finally:
        await core.stop()


@pytest.mark.parametrize("alpaca_ahead", [10.0, -10.0])
async def test_alpaca_clock_skew_of_10s_loses_no_fill(tmp_path: Path, fake: FakeAlpaca, alpaca_ahead: float) -> None:
    fake.clock_offset = alpaca_ahead

    def host_clock() -> Any:
        return LiveClock()

    coid, qty = await _fill_while_down(tmp_path, fake, host_clock)
    alerts = Alerts()
    core = await _start(tmp_path, "alpaca", fake, clock=host_clock(), alerts=alerts)
    try:
        await _until(lambda: _status(core, coid), timeout=3, what="journal row")
        assert await _status(core, coid) == "filled"
        assert _held(core, "AAPL") == qty
        (skew,) = [f for k, _, f in alerts.seen if k == "broker_clock_skew"]
        assert skew["broker"] == "alpaca" and skew["offset_seconds"] == pytest.approx(alpaca_ahead, abs=1.5)
    finally:
        await core.stop()


async def test_alpaca_reconnect_catch_up_finds_a_fill_despite_clock_skew(tmp_path: Path, fake: FakeAlpaca) -> None:
    fake.clock_offset = -10.0  # Alpaca's clock behind ours: its submitted_at is before our send time
    core = await _start(tmp_path, "alpaca", fake, clock=LiveClock())
    broker = core.brokers["alpaca"]
    try:
        intent = _entry("AAPL", "alpaca", name="sig-reconnect")
        _send(core, intent)
        coid = intent.client_order_id
        await _until(lambda: _status(core, coid), what="journal row")
        await _until(lambda: fake.order_by_client_id(coid) is not None and
                     fake.order_by_client_id(coid)["status"] == "new", what="order open")
        fake.drop_trade_stream(block=True)
        await _until(lambda: not broker.is_connected(), what="stream down")
        qty = float(fake.order_by_client_id(coid)["qty"])
        await fake.fill(coid, qty, 100.0)  # nobody listening
        fake.allow_trade_stream()
        await _until(lambda: _held(core, "AAPL") == qty, what="missed fill recovered after the reconnect")
    finally:
        await core.stop()


async def test_paper_restart_asks_the_book_for_every_open_order(tmp_path: Path) -> None:
    """The paper broker is asked too: an order final in its book but open in the journal is resolved at start."""
    core = await _start(tmp_path, "paper")
    await _open_position(core, "AAPL")
    paper = core.brokers["paper"]
    assert isinstance(paper, PaperBroker)
    resting = OrderIntent(client_order_id=client_order_id_for("sig-rest"), signal_id="sig-rest", symbol="MSFT",
                          side=Side.BUY, quantity=5, order_type="limit", limit_price=50.0, ticker="MSFT",
                          reference_price=100.0, created_at=SESSION)
    core.orchestrator.reservations.reserve(resting)
    core.lifecycle.register_intent(resting)
    core.router.dispatch(resting)
    await core.settle()
    assert await _status(core, resting.client_order_id) == "new"
    await core.stop()
    paper = PaperBroker(core.settings.paper, core.clock, state_path=tmp_path / "state" / "paper_book.json")
    await paper.connect()
    await paper.cancel_order(resting.client_order_id)  # canceled at the broker while the daemon was down
    await paper.close()
    core = await _start(tmp_path, "paper")
    try:
        assert await _status(core, resting.client_order_id) == "canceled"
        assert resting.client_order_id not in core.orchestrator.reservations
    finally:
        await core.stop()


# -- IB: asked at restart by orderRef (open trades, completed orders, executions) -------------------------------
async def _resting_at_ib(tmp_path: Path, tws: FakeTWS) -> OrderIntent:
    core = await _start(tmp_path, "ibkr", tws)
    tws.script("rest")
    intent = _entry("AAPL", "ibkr", name="sig-ib-rest")
    _send(core, intent)
    await _until(lambda: _status(core, intent.client_order_id), what="journal row")
    await _until(lambda: tws.orders_with_ref(intent.client_order_id), what="order at TWS")
    await core.settle()
    await core.stop()
    return intent


@pytest.mark.parametrize("while_down", ["cancelled", "filled"])
async def test_ibkr_order_finished_while_down_is_resolved_at_restart(tmp_path: Path, tws: FakeTWS,
                                                                    while_down: str) -> None:
    intent = await _resting_at_ib(tmp_path, tws)
    coid = intent.client_order_id
    (held,) = tws.orders_with_ref(coid)
    if while_down == "cancelled":
        held.status = "Cancelled"
    else:
        tws.fill(held, push=False)
    core = await _start(tmp_path, "ibkr", tws)
    try:
        await core.settle()
        assert await _status(core, coid) == ("canceled" if while_down == "cancelled" else "filled")
        assert coid not in core.orchestrator.reservations
        assert _held(core, "AAPL") == (0 if while_down == "cancelled" else intent.quantity)
    finally:
        await core.stop()


async def test_ibkr_clock_offset_is_measured_and_a_skew_alerted(tmp_path: Path) -> None:
    server = FakeTWS(now=lambda: datetime.now(UTC) + timedelta(seconds=10))
    await server.start()
    alerts = Alerts()
    core = await _start(tmp_path, "ibkr", server, clock=LiveClock(), alerts=alerts)
    try:
        assert core.clock_offsets["ibkr"] == pytest.approx(10.0, abs=1.5)
        (skew,) = [f for k, _, f in alerts.seen if k == "broker_clock_skew"]
        assert skew["broker"] == "ibkr"
    finally:
        await core.stop()
        await server.stop()


async def test_ordergate_run_is_ready_only_after_alpaca_answered_and_sigterm_ends_the_wait(
        tmp_path: Path, fake: FakeAlpaca) -> None:
    unsent = _entry("AAPL", "alpaca", name="sig-ready")
    await _journal_unsent(tmp_path, [unsent], "alpaca")
    lookups = "/v2/orders:by_client_order_id"
    fake.fail_requests("GET", lookups, status=503, times=1_000_000)
    state_dir = tmp_path / "state"
    env = base_env(state_dir, **fake.env(tickers=["AAPL"]), ORDERGATE_ALPACA__REQUEST_TIMEOUT_SECONDS="5")
    daemon = DaemonProcess(state_dir, env=env).start()
    try:
        await asyncio.to_thread(daemon.wait_for, "open_orders_lookup_retry", 45.0)
        await asyncio.to_thread(daemon.wait_for, "open_orders_lookup_retry", 10.0, delay=1.0)  # backing off
        assert not [line for line in daemon.lines() if line.get("event") == "daemon_ready"]
        fake._failures.clear()  # Alpaca answers again: 404, the order never got there
        await asyncio.to_thread(daemon.wait_for, "daemon_ready", 30.0)
        asked = [r for r in fake.requests if r.path == lookups]
        assert len(asked) >= 3 and all(r.query["client_order_id"] == unsent.client_order_id for r in asked)
    finally:
        code = await asyncio.to_thread(daemon.stop)
    assert code == 0, daemon.text()[-3000:]
    # made a week ago by an earlier process and unknown to Alpaca on two lookups: settled at once
    assert any(line.get("event") == "order_never_reached" for line in daemon.lines())
    # another order left unsent, and Alpaca failing again at the next start: SIGTERM ends the wait
    await _journal_unsent(tmp_path, [_entry("AAPL", "alpaca", name="sig-ready-2")], "alpaca")
    fake.fail_requests("GET", lookups, status=503, times=1_000_000)
    daemon = DaemonProcess(state_dir, env=env).start()
    try:
        await asyncio.to_thread(daemon.wait_for, "open_orders_lookup_retry", 45.0)
        daemon.signal(signal.SIGTERM)
        code = await asyncio.to_thread(daemon.wait, 15.0)
    finally:
        await asyncio.to_thread(daemon.stop)
    assert code == 0, daemon.text()[-3000:]
