"""Issue 13 on the paper broker: a protective stop rests at the broker for every filled entry, the daemon's own
exits release it first (one sale, never two), the trailing stop moves it, and a restart puts a missing one back.

The assembled Core against the persistent paper book (its stop orders trigger on bars like a real broker's).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from adapters.paper import PaperBroker
from config.settings import PaperSettings, load_settings
from daemon.core import Core
from pipeline.core.clock import SimulatedClock
from pipeline.core.models import Bar, CloudState, OrderStatus, OrderType, TradeSignal, client_order_id_for
from pipeline.execution.protective_stops import BROKER_STOP_EXIT
from tests.protective_audit import oversold, protection_gaps

NOW = datetime(2026, 11, 24, 16, 0, tzinfo=UTC)  # 11:00 ET on a Tuesday: the market is open


def _settings(tmp_path: Path, **overrides: Any) -> Any:
    return load_settings(state_dir=tmp_path / "state", broker={"primary": "paper", "fallback": None},
                         pipeline={"enable_unified_risk": False}, **overrides)


async def _core(tmp_path: Path, clock: SimulatedClock | None = None, **overrides: Any) -> Core:
    core = Core(_settings(tmp_path, **overrides), clock or SimulatedClock(NOW))
    await core.start()
    return core


def _paper(core: Core) -> PaperBroker:
    broker = core.brokers["paper"]
    assert isinstance(broker, PaperBroker)
    return broker


async def _bar(core: Core, symbol: str, close: float, low: float | None = None, high: float | None = None) -> None:
    bar = Bar(symbol, core.clock.now(), close, high if high is not None else close,
              low if low is not None else close, close, 1_000.0)
    await core.engine.on_batch([bar])
    await core.settle()


async def _enter(core: Core, symbol: str = "AAPL", price: float = 100.0, stop: float = 97.0) -> str:
    await _bar(core, symbol, price)
    signal = TradeSignal(signal_type="cloud_cross_bullish", direction="long", ticker=symbol, timeframe="5m",
                         conviction=80, entry_price=price, stop_loss=stop, timestamp=core.clock.now(), source="test")
    result = await core.orchestrator.process_signal(signal)
    assert result.success, result
    await core.settle()
    assert result.signal_id is not None
    return result.signal_id


def _open_stops(paper: PaperBroker) -> list[Any]:
    return [o for o in paper._orders.values()
            if o.order_type == OrderType.STOP and o.status in (OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED)]


def _sells(paper: PaperBroker, symbol: str) -> float:
    return sum(f.quantity for f in paper.all_fills() if f.symbol == symbol and str(f.side) == "sell")


async def _trades(core: Core) -> list[dict[str, Any]]:
    assert core.journal is not None
    return await core.journal.query("SELECT symbol, exit_type, quantity FROM trades ORDER BY id")


async def test_entry_fill_rests_a_stop_for_the_filled_quantity(tmp_path: Path) -> None:
    core = await _core(tmp_path)
    try:
        signal_id = await _enter(core)
        held = core.ledger.holding("AAPL").quantity
        assert held > 0
        (stop,) = _open_stops(_paper(core))
        assert stop.client_order_id == client_order_id_for(signal_id, "stop0")
        assert (str(stop.side), stop.quantity, stop.stop_price) == ("sell", held, 97.0)
        assert stop.time_in_force == "gtc"  # outlives the session, like the position
        (shown,) = core.positions()
        assert shown["resting_stop"]["client_order_id"] == stop.client_order_id
        assert shown["resting_stop"]["broker_order_id"] == stop.broker_order_id
        assert core.journal is not None
        row = await core.journal.get_order(stop.client_order_id)
        assert row is not None and row["kind"] == "stop" and row["status"] == "new"
        assert protection_gaps(_paper(core)) == []
        # the kill switch stops entries, never the protective stop
        core.kill_switch.activate("test", source="test")
        await core.settle()
        assert [o.client_order_id for o in _open_stops(_paper(core))] == [stop.client_order_id]
    finally:
        await core.stop()


async def test_price_through_the_stop_fills_it_once_as_a_broker_stop(tmp_path: Path) -> None:
    core = await _core(tmp_path)
    try:
        await _enter(core)
        held = core.ledger.holding("AAPL").quantity
        await _bar(core, "AAPL", 96.0, low=95.5, high=99.0)  # the broker's stop triggers on the bar
        assert not core.ledger.holds("AAPL")
        assert _sells(_paper(core), "AAPL") == pytest.approx(held)  # one sale: the daemon's own stop did not sell too
        assert await _trades(core) == [{"symbol": "AAPL", "exit_type": BROKER_STOP_EXIT, "quantity": held}]
        assert core.positions() == [] and _open_stops(_paper(core)) == []
    finally:
        await core.stop()


async def test_a_daemon_exit_cancels_the_stop_first_and_sells_once(tmp_path: Path) -> None:
    core = await _core(tmp_path)
    try:
        await _enter(core)
        held = core.ledger.holding("AAPL").quantity
        (stop,) = _open_stops(_paper(core))
        (exit_intent,) = await core.lifecycle.emergency_close_all("test flatten")  # flatten cancels the stops
        await core.settle()
        assert stop.status == OrderStatus.CANCELED
        calls = [(r.method, r.client_order_id) for r in _paper(core).request_log]
        assert calls.index(("cancel_order", stop.client_order_id)) < calls.index(("submit_order",
                                                                                   exit_intent.client_order_id))
        assert not core.ledger.holds("AAPL")
        await _bar(core, "AAPL", 90.0, low=89.0)  # the price falls through the old level: nothing left to sell
        assert _sells(_paper(core), "AAPL") == pytest.approx(held)
        assert [t["exit_type"] for t in await _trades(core)] == ["flatten"]
        assert _open_stops(_paper(core)) == [] and oversold(_paper(core)) == []
    finally:
        await core.stop()


async def test_broker_stop_filled_before_the_daemon_exit_leaves_nothing_to_sell(tmp_path: Path) -> None:
    core = await _core(tmp_path)
    try:
        await _enter(core)
        held = core.ledger.holding("AAPL").quantity
        paper = _paper(core)
        paper.faults.drop_updates = True  # the stop's fill has not reached the daemon yet
        paper.on_bars([Bar("AAPL", core.clock.now(), 96.0, 96.0, 95.0, 96.0, 1.0)])
        assert paper.position("AAPL")[0] == 0.0 and core.ledger.holds("AAPL")
        exits = await core.lifecycle.emergency_close_all("race")  # the daemon decides to exit meanwhile
        await core.settle()
        (exit_intent,) = exits
        paper.redeliver()
        await core.settle()
        assert exit_intent.client_order_id not in paper._orders  # never sent: the order record said filled
        assert _sells(paper, "AAPL") == pytest.approx(held) and paper.position("AAPL")[0] == 0.0
        assert not core.ledger.holds("AAPL")
        assert core.journal is not None
        row = await core.journal.get_order(exit_intent.client_order_id)
        assert row is not None and row["status"] == "canceled" and "nothing to sell" in row["reason"]
        assert [t["exit_type"] for t in await _trades(core)] == [BROKER_STOP_EXIT]
        assert oversold(paper) == [] and protection_gaps(paper) == []
    finally:
        await core.stop()


class _Clouds:
    """The strategy's view the exits read: completed 5m cloud states of one ticker (what the EMA strategy keeps)."""

    def __init__(self) -> None:
        self.states: list[CloudState] = []

    def completed_on_last_bar(self, _ticker: str) -> set[str]:
        return {"5m"}

    def recent_states(self, _ticker: str, _timeframe: str, n: int) -> list[CloudState]:
        return self.states[-n:]

    def at(self, when: datetime, close: float, pullback: tuple[float, float]) -> None:
        # fast cloud bullish and below the close (no flip, no exhaustion), pullback cloud under the price
        self.states = [CloudState("AAPL", "5m", when, close, close - 0.5, close - 1.0, *pullback, 90.0, 89.0)]


async def test_trailing_moves_the_resting_stop_by_replace_rate_limited(tmp_path: Path) -> None:
    clock = SimulatedClock(NOW)
    core = await _core(tmp_path, clock, exits={"stop_replace_min_seconds": 60})
    clouds = _Clouds()
    core.lifecycle.clouds = clouds
    try:
        await _enter(core)
        held = core.ledger.holding("AAPL").quantity
        (first,) = _open_stops(_paper(core))
        clock.advance(61)
        clouds.at(clock.now(), 102.0, (99.0, 99.5))
        await _bar(core, "AAPL", 102.0)
        (moved,) = _open_stops(_paper(core))
        assert first.status == OrderStatus.REPLACED and moved.client_order_id != first.client_order_id
        assert (moved.stop_price, moved.quantity) == (99.0, held)
        assert core.positions()[0]["resting_stop"]["client_order_id"] == moved.client_order_id
        clouds.at(clock.now(), 103.0, (100.0, 100.5))
        await _bar(core, "AAPL", 103.0)  # too soon after the last move: it stays
        assert [o.stop_price for o in _open_stops(_paper(core))] == [99.0]
        clock.advance(61)
        clouds.at(clock.now(), 103.0, (98.0, 98.5))  # lower: a stop only ever tightens
        await _bar(core, "AAPL", 103.0)
        assert [o.stop_price for o in _open_stops(_paper(core))] == [99.0]
        clouds.at(clock.now(), 104.0, (100.5, 101.0))
        await _bar(core, "AAPL", 104.0)
        assert [o.stop_price for o in _open_stops(_paper(core))] == [100.5]
        await _bar(core, "AAPL", 100.0, low=100.0, high=100.4)  # through the trailed stop: sold there, once
        assert not core.ledger.holds("AAPL") and _sells(_paper(core), "AAPL") == pytest.approx(held)
        assert [t["exit_type"] for t in await _trades(core)] == [BROKER_STOP_EXIT]
    finally:
        await core.stop()


async def test_restart_places_a_missing_stop_at_the_journals_level(tmp_path: Path) -> None:
    clock = SimulatedClock(NOW)
    # the stop must rest across the stop: the shutdown leaves working orders alone (settings are frozen)
    core = await _core(tmp_path, clock, exits={"stop_replace_min_seconds": 0},
                       shutdown={"cancel_inflight_entries": False})
    try:
        signal_id = await _enter(core)
        held = core.ledger.holding("AAPL").quantity
        position = core.ledger.holding("AAPL").position
        core.stops.trail(position, 98.5)  # trailed once: the journal's current level is 98.5, not the entry's 97
        await core.settle()
        (stop,) = _open_stops(_paper(core))
        assert stop.stop_price == 98.5
    finally:
        await core.stop()
    # while the daemon is down the stop disappears from the broker (cancelled by hand in the broker's app)
    book = PaperBroker(PaperSettings(), clock, state_path=tmp_path / "state" / "paper_book.json")
    await book.connect()
    await book.cancel_order(stop.client_order_id)
    await book.close()
    core = await _core(tmp_path, clock)
    try:
        (placed,) = _open_stops(_paper(core))
        assert placed.client_order_id == client_order_id_for(signal_id, "stop2")  # stop0, its replacement stop1
        assert (placed.stop_price, placed.quantity, str(placed.side)) == (98.5, held, "sell")
        assert core.positions()[0]["resting_stop"]["client_order_id"] == placed.client_order_id
    finally:
        await core.stop()
    core = await _core(tmp_path, clock)  # and a restart with the stop resting leaves it alone
    try:
        assert [o.client_order_id for o in _open_stops(_paper(core))] == [placed.client_order_id]
    finally:
        await core.stop()


async def test_restart_cancels_a_stop_whose_position_is_gone_and_a_stray_one(tmp_path: Path) -> None:
    from pipeline.core.models import OrderIntent, Side

    clock = SimulatedClock(NOW)
    core = await _core(tmp_path, clock, shutdown={"cancel_inflight_entries": False})
    try:
        await _enter(core)
        held = core.ledger.holding("AAPL").quantity
        (stop,) = _open_stops(_paper(core))
    finally:
        await core.stop()
    # while the daemon is down: the position is sold in the broker's app, and a stop of ours the journal never
    # heard of rests for MSFT (a crash between its send and its journal row cannot happen; a hand-made one can)
    book = PaperBroker(PaperSettings(), clock, state_path=tmp_path / "state" / "paper_book.json")
    seen: list[Any] = []

    async def someone_else(event: Any) -> None:  # that app saw its own fill: it is not redelivered to us
        seen.append(event)

    book.set_event_handler(someone_else)
    await book.connect()
    book.set_price("MSFT", 50.0)
    await book.submit_order(OrderIntent("manual-sale", "manual", "AAPL", Side.SELL, held, reference_price=100.0))
    await book.submit_order(OrderIntent(client_order_id_for("nobody", "stop0"), "nobody", "MSFT", Side.SELL, 1,
                                        order_type=OrderType.STOP, stop_price=40.0, reference_price=40.0))
    await book.flush_events()
    await book.close()
    core = await _core(tmp_path, clock)
    try:
        paper = _paper(core)
        assert _open_stops(paper) == []  # no stop without shares behind it (it would open a short)
        assert paper._orders[stop.client_order_id].status == OrderStatus.CANCELED
        assert paper.position("AAPL")[0] == 0.0 and core.ledger.holds("AAPL")  # reconciliation's to tell
        assert core.positions()[0]["resting_stop"]["status"] == "unprotected"
    finally:
        await core.stop()


async def test_a_partial_sell_releases_the_stop_then_protects_the_rest(tmp_path: Path) -> None:
    from pipeline.trading_service import TradingConfig, TradingService

    core = await _core(tmp_path)
    try:
        await _enter(core)
        held = core.ledger.holding("AAPL").quantity
        (first,) = _open_stops(_paper(core))
        service = TradingService(TradingConfig(), orchestrator=core.orchestrator, ledger=core.ledger,
                                 price_lookup=core.ledger.last_prices.get, account=core.account_state,
                                 clock=core.clock, lifecycle=core.lifecycle, settle=core.settle)
        result = await service.sell("AAPL", shares=50)
        await core.settle()
        assert result.ok, result
        assert first.status == OrderStatus.CANCELED  # released before the sale: never two sells for one share
        (rest,) = _open_stops(_paper(core))
        assert (rest.quantity, rest.stop_price) == (held - 50, 97.0)
        assert protection_gaps(_paper(core)) == []
        await _bar(core, "AAPL", 96.0, low=95.0)
        assert _sells(_paper(core), "AAPL") == pytest.approx(held) and _paper(core).position("AAPL")[0] == 0.0
    finally:
        await core.stop()


async def test_the_audit_catches_an_unprotected_position_and_a_double_sale() -> None:
    from pipeline.core.models import OrderIntent, Side

    book = PaperBroker(PaperSettings(), SimulatedClock(NOW))
    book.set_price("AAPL", 100.0)
    await book.submit_order(OrderIntent("buy", "s", "AAPL", Side.BUY, 10, reference_price=100.0))
    assert protection_gaps(book) == ["AAPL: position 10 has 0 resting stops"]
    await book.submit_order(OrderIntent(client_order_id_for("s", "stop0"), "s", "AAPL", Side.SELL, 10,
                                        order_type=OrderType.STOP, stop_price=97.0, reference_price=97.0,
                                        reduce_only=True))
    assert protection_gaps(book) == [] and oversold(book) == []
    await book.submit_order(OrderIntent("exit", "s", "AAPL", Side.SELL, 10, reference_price=100.0))
    assert protection_gaps(book) == [f"AAPL: stop {client_order_id_for('s', 'stop0')} rests without a position"]
    book.set_price("AAPL", 96.0)  # the stop left behind fires: the long is sold twice
    assert oversold(book) == [f"AAPL: 0 -> -10 by {client_order_id_for('s', 'stop0')}"]


async def test_a_stop_journaled_but_never_sent_before_a_crash_ends_never_reached(tmp_path: Path) -> None:
    """Found by the real-daemon chaos run: a stop journaled, then the daemon killed before the broker had it, was
    journaled `canceled` at the restart, as if the broker had held and cancelled it. It never reached the broker:
    `never_reached`, and a fresh stop protects the position."""
    import json

    clock = SimulatedClock(NOW)
    core = await _core(tmp_path, clock, shutdown={"cancel_inflight_entries": False})
    try:
        await _enter(core)
        (stop,) = _open_stops(_paper(core))
    finally:
        await core.stop()
    path = tmp_path / "state" / "paper_book.json"
    book = json.loads(path.read_text())  # the broker never got it: as if the kill came between journal and send
    book["orders"] = [o for o in book["orders"] if o["client_order_id"] != stop.client_order_id]
    path.write_text(json.dumps(book))
    core = await _core(tmp_path, clock)
    try:
        assert core.journal is not None
        (row,) = await core.journal.query("SELECT status, reason FROM orders WHERE client_order_id = ?",
                                          (stop.client_order_id,))
        assert row["status"] == "never_reached" and "never reached the broker" in row["reason"], row
        (fresh,) = _open_stops(_paper(core))
        assert fresh.client_order_id != stop.client_order_id and fresh.quantity == stop.quantity
    finally:
        await core.stop()
