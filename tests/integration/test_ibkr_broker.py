"""IBKRBroker through the real ib_async 2.1 client over loopback against tests/fakes/tws_server.FakeTWS."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from adapters.ibkr import IBKRBroker, contract_for, symbol_of
from config.settings import IBKRSettings
from pipeline.core.clock import LiveClock
from pipeline.core.models import (
    AssetClass,
    BrokerEvent,
    Fill,
    OrderIntent,
    OrderStatus,
    OrderType,
    OrderUpdate,
    Side,
)
from pipeline.core.ports import (
    Broker,
    BrokerUnavailable,
    DuplicateClientOrderId,
    OrderRejected,
    RetryableBrokerError,
)
from tests.conftest import until
from tests.fakes.tws_server import IN_PLACE_ORDER, IN_REQ_EXECUTIONS, IN_START_API, FakeTWS, OrderScript

OPTION = "AAPL  260116C00150000"
WAIT = 10.0


class Recorder:
    """Collects the broker's events."""

    def __init__(self) -> None:
        self.events: list[BrokerEvent] = []

    async def __call__(self, event: BrokerEvent) -> None:
        self.events.append(event)

    def fills(self, cid: str | None = None) -> list[Fill]:
        return [e for e in self.events if isinstance(e, Fill) and (cid is None or e.client_order_id == cid)]

    def updates(self, cid: str) -> list[OrderUpdate]:
        return [e for e in self.events if isinstance(e, OrderUpdate) and e.client_order_id == cid]

    def statuses(self, cid: str) -> list[OrderStatus]:
        return [u.status for u in self.updates(cid)]


def intent(cid: str, symbol: str = "AAPL", qty: float = 5, **kw) -> OrderIntent:  # type: ignore[no-untyped-def]
    return OrderIntent(client_order_id=cid, signal_id=f"sig-{cid}", symbol=symbol, side=kw.pop("side", Side.BUY),
                       quantity=qty, reference_price=190.0, **kw)


def make_broker(fake: FakeTWS, client_id: int = 7, timeout: float = 5) -> tuple[IBKRBroker, Recorder]:
    settings = IBKRSettings(host="127.0.0.1", port=fake.port, client_id=client_id, request_timeout_seconds=timeout)
    broker = IBKRBroker(settings, LiveClock(), reconnect_initial_delay=0.05, reconnect_max_delay=0.2,
                        commission_wait_seconds=2.0)
    recorder = Recorder()
    broker.set_event_handler(recorder)
    return broker, recorder


@pytest.fixture
async def fake() -> AsyncIterator[FakeTWS]:
    server = FakeTWS()
    await server.start()
    aapl = server.add_stock("AAPL", 190.0)
    server.add_stock("SPY", 500.0, primary_exchange="ARCA")
    option = server.add_option("AAPL", "20260116", 150.0, "C", 3.1)
    server.set_position(aapl, 10, 180.0)
    server.set_position(option, 2, 310.0)
    yield server
    await server.stop()


@pytest.fixture
async def ibkr(fake: FakeTWS) -> AsyncIterator[tuple[IBKRBroker, Recorder]]:
    broker, recorder = make_broker(fake)
    await broker.connect()
    yield broker, recorder
    await broker.close()


async def test_connect_positions_and_account(fake: FakeTWS, ibkr: tuple[IBKRBroker, Recorder]) -> None:
    broker, _ = ibkr
    assert isinstance(broker, Broker)
    assert broker.is_connected() and broker.health == "connected"
    assert fake.messages(IN_START_API)[0][2] == "7"
    positions = {p.symbol: p for p in await broker.get_positions()}
    assert positions["AAPL"].quantity == 10 and positions["AAPL"].avg_price == pytest.approx(180.0)
    assert positions[OPTION].quantity == 2 and positions[OPTION].avg_price == pytest.approx(3.10)
    account = await broker.get_account()
    assert (account.equity, account.cash, account.buying_power) == (100_000.0, 100_000.0, 400_000.0)
    assert broker.throttle == (45, 1.0)


@pytest.mark.parametrize("version", [176, 177, 178])
async def test_market_order_presubmitted_submitted_filled(version: int) -> None:
    async with FakeTWS(server_version=version) as fake:
        fake.add_stock("AAPL", 190.0)
        broker, rec = make_broker(fake)
        await broker.connect()
        try:
            assert broker.ib.client.serverVersion() == version
            result = await broker.submit_order(intent("og-mkt-1"))
            assert result.client_order_id == "og-mkt-1" and result.broker == "ibkr"
            assert result.status in (OrderStatus.NEW, OrderStatus.FILLED)
            await until(lambda: OrderStatus.FILLED in rec.statuses("og-mkt-1"))
            await broker.flush_events()
            placed = fake.messages(IN_PLACE_ORDER)
            assert len(placed) == 1 and placed[0][26] == "og-mkt-1"  # orderRef carries the client order id
            trade = next(t for t in broker.ib.trades() if t.order.orderRef == "og-mkt-1")
            ib_statuses = [entry.status for entry in trade.log]
            assert ib_statuses.index("PreSubmitted") < ib_statuses.index("Submitted") < ib_statuses.index("Filled")
            fills = rec.fills("og-mkt-1")
            assert len(fills) == 1
            fill = fills[0]
            assert fill.fill_id == fake.executions[0].exec_id
            assert (fill.symbol, fill.side, fill.quantity, fill.price) == ("AAPL", Side.BUY, 5.0, 190.0)
            assert fill.commission == pytest.approx(1.0)
            assert fill.timestamp.tzinfo is not None
            kinds = [(type(e).__name__, getattr(e, "status", None)) for e in rec.events]
            assert kinds == [("OrderUpdate", OrderStatus.NEW), ("Fill", None), ("OrderUpdate", OrderStatus.FILLED)]
            found = await broker.get_order_by_client_id("og-mkt-1")
            assert found is not None and found.status == OrderStatus.FILLED and found.filled_qty == 5
        finally:
            await broker.close()


async def test_limit_order_cancelled(fake: FakeTWS, ibkr: tuple[IBKRBroker, Recorder]) -> None:
    broker, rec = ibkr
    fake.script("rest")
    result = await broker.submit_order(intent("og-lmt-1", order_type=OrderType.LIMIT, limit_price=150.0))
    assert result.status == OrderStatus.NEW
    assert fake.place_requests[0][18] == "LMT" and float(fake.place_requests[0][19]) == 150.0
    open_orders = await broker.get_open_orders()
    assert [o.client_order_id for o in open_orders] == ["og-lmt-1"]
    await broker.cancel_order("og-lmt-1")
    assert fake.cancel_requests == [fake.orders_with_ref("og-lmt-1")[0].order_id]
    await until(lambda: OrderStatus.CANCELED in rec.statuses("og-lmt-1"))
    assert rec.fills() == []
    assert await broker.get_open_orders() == []
    found = await broker.get_order_by_client_id("og-lmt-1")
    assert found is not None and found.status == OrderStatus.CANCELED
    await broker.cancel_order("og-lmt-1")  # already final: a no-op
    with pytest.raises(OrderRejected, match="no open order"):
        await broker.cancel_order("og-never-sent")


async def test_unknown_contract_is_rejected_with_clear_reason(fake: FakeTWS,
                                                              ibkr: tuple[IBKRBroker, Recorder]) -> None:
    broker, _ = ibkr
    with pytest.raises(OrderRejected) as info:
        await broker.submit_order(intent("og-unk-1", symbol="ZZZZ"))
    assert "ZZZZ" in info.value.reason and "No security definition" in info.value.reason
    assert info.value.code == 200
    assert fake.place_requests == []
    with pytest.raises(OrderRejected, match="OCC"):
        await broker.submit_order(intent("og-unk-2", symbol="AAPL", asset_class=AssetClass.OPTION))


async def test_option_order_by_occ_symbol(fake: FakeTWS, ibkr: tuple[IBKRBroker, Recorder]) -> None:
    broker, rec = ibkr
    await broker.submit_order(intent("og-opt-1", symbol=OPTION, qty=1, asset_class=AssetClass.OPTION))
    await until(lambda: len(rec.fills("og-opt-1")) == 1)
    assert rec.fills("og-opt-1")[0].symbol == OPTION
    request = fake.place_requests[0]
    assert request[3:8] == ["AAPL", "OPT", "20260116", "150.0", "C"]


async def test_reject_201(fake: FakeTWS, ibkr: tuple[IBKRBroker, Recorder]) -> None:
    broker, rec = ibkr
    fake.script(OrderScript("reject", reason="Order rejected - reason: no trading permissions"))
    with pytest.raises(OrderRejected) as info:
        await broker.submit_order(intent("og-rej-1"))
    assert info.value.code == 201 and "no trading permissions" in info.value.reason
    await until(lambda: rec.statuses("og-rej-1") == [OrderStatus.REJECTED])
    assert "no trading permissions" in (rec.updates("og-rej-1")[0].reason or "")
    found = await broker.get_order_by_client_id("og-rej-1")
    assert found is not None and found.status == OrderStatus.REJECTED
    with pytest.raises(DuplicateClientOrderId):
        await broker.submit_order(intent("og-rej-1"))


async def test_short_held_for_a_locate_stays_working_and_its_fill_arrives(
        fake: FakeTWS, ibkr: tuple[IBKRBroker, Recorder], caplog: pytest.LogCaptureFixture) -> None:
    # IB holds a short sale it cannot borrow for yet: warning 404, status Inactive with whyHeld "locate". The
    # order is live (IB keeps looking and may fill it any time): not rejected, listed open, and its fill arrives
    broker, rec = ibkr
    fake.script(OrderScript("locate"))
    result = await broker.submit_order(intent("og-short-1", side=Side.SELL))
    assert result.status == OrderStatus.NEW
    await until(lambda: broker.ib.trades() and broker.ib.trades()[-1].orderStatus.whyHeld == "locate")
    await broker.flush_events()
    assert OrderStatus.REJECTED not in rec.statuses("og-short-1")
    assert [o.client_order_id for o in await broker.get_open_orders()] == ["og-short-1"]
    found = await broker.get_order_by_client_id("og-short-1")
    assert found is not None and found.status == OrderStatus.NEW
    assert [r.getMessage() for r in caplog.records if r.getMessage() == "ibkr_order_held_for_locate"] == \
        ["ibkr_order_held_for_locate"]  # said once, as the hold begins
    fake.locate("og-short-1")  # the shares are found: it goes Submitted and fills
    await until(lambda: OrderStatus.FILLED in rec.statuses("og-short-1"))
    await broker.flush_events()
    assert [f.quantity for f in rec.fills("og-short-1")] == [5.0]
    assert OrderStatus.REJECTED not in rec.statuses("og-short-1")


async def test_an_order_held_for_a_locate_is_cancelled_at_ib(fake: FakeTWS,
                                                             ibkr: tuple[IBKRBroker, Recorder]) -> None:
    # a kill switch or a stale entry cancels it: the cancel must reach IB, or the short can still fill later
    broker, rec = ibkr
    fake.script(OrderScript("locate"))
    await broker.submit_order(intent("og-short-2", side=Side.SELL))
    await until(lambda: broker.ib.trades() and broker.ib.trades()[-1].orderStatus.whyHeld == "locate")
    await broker.cancel_order("og-short-2")
    held = fake.orders_with_ref("og-short-2")[0]
    assert fake.cancel_requests == [held.order_id] and held.status == "Cancelled"
    await until(lambda: OrderStatus.CANCELED in rec.statuses("og-short-2"))
    assert await broker.get_open_orders() == []
    with pytest.raises(ValueError):
        fake.locate("og-short-2")


async def test_pacing_100_is_retryable_and_resend_works(fake: FakeTWS, ibkr: tuple[IBKRBroker, Recorder]) -> None:
    broker, rec = ibkr
    fake.script("pacing")
    with pytest.raises(RetryableBrokerError) as info:
        await broker.submit_order(intent("og-pace-1"))
    assert not info.value.ambiguous and info.value.retry_after and "100" in str(info.value)
    assert rec.statuses("og-pace-1") == []
    await broker.submit_order(intent("og-pace-1"))
    await until(lambda: OrderStatus.FILLED in rec.statuses("og-pace-1"))
    assert len(fake.orders_with_ref("og-pace-1")) == 1


async def test_duplicate_order_id_103(fake: FakeTWS, ibkr: tuple[IBKRBroker, Recorder]) -> None:
    broker, rec = ibkr
    fake.script("duplicate")
    with pytest.raises(DuplicateClientOrderId) as info:
        await broker.submit_order(intent("og-dup-1"))
    assert info.value.code == 103
    assert fake.orders_with_ref("og-dup-1") == []
    await broker.submit_order(intent("og-dup-2"))
    await until(lambda: OrderStatus.FILLED in rec.statuses("og-dup-2"))


async def test_same_client_order_id_is_never_sent_twice(fake: FakeTWS, ibkr: tuple[IBKRBroker, Recorder]) -> None:
    broker, _ = ibkr
    fake.script("rest")
    await broker.submit_order(intent("og-twice"))
    with pytest.raises(DuplicateClientOrderId):
        await broker.submit_order(intent("og-twice"))
    assert len(fake.place_requests) == 1


async def test_partial_fill_then_rest(fake: FakeTWS, ibkr: tuple[IBKRBroker, Recorder]) -> None:
    broker, rec = ibkr
    fake.script(OrderScript("partial", fill_qty=2))
    await broker.submit_order(intent("og-part-1"))
    await until(lambda: OrderStatus.PARTIALLY_FILLED in rec.statuses("og-part-1") and rec.fills("og-part-1"))
    fake.fill("og-part-1")
    await until(lambda: OrderStatus.FILLED in rec.statuses("og-part-1"))
    await broker.flush_events()
    assert [f.quantity for f in rec.fills("og-part-1")] == [2.0, 3.0]
    assert rec.updates("og-part-1")[-1].filled_qty == 5


async def test_drop_during_open_order_fill_while_down(fake: FakeTWS, ibkr: tuple[IBKRBroker, Recorder]) -> None:
    broker, rec = ibkr
    fake.script(OrderScript("drop", fill_while_down=True))
    result = await broker.submit_order(intent("og-drop-1"))
    assert result.status == OrderStatus.NEW
    await until(lambda: fake.connect_count >= 2 and broker.is_connected())
    await until(lambda: OrderStatus.FILLED in rec.statuses("og-drop-1"))
    await broker.flush_events()
    assert broker.reconnects >= 1
    fills = rec.fills("og-drop-1")
    assert [f.fill_id for f in fills] == [fake.executions[0].exec_id]
    assert fills[0].commission == pytest.approx(1.0)
    # the missed fill comes before the final status
    kinds = [type(e).__name__ for e in rec.events if getattr(e, "client_order_id", "") == "og-drop-1"]
    assert kinds.index("Fill") < len(kinds) - 1 and rec.statuses("og-drop-1")[-1] == OrderStatus.FILLED
    found = await broker.get_order_by_client_id("og-drop-1")
    assert found is not None and found.status == OrderStatus.FILLED and found.filled_qty == 5
    # a resend of the same client order id never reaches IB
    with pytest.raises(DuplicateClientOrderId):
        await broker.submit_order(intent("og-drop-1"))
    assert len(fake.orders_with_ref("og-drop-1")) == 1
    assert len([m for m in fake.place_requests if m[26] == "og-drop-1"]) == 1
    # another drop and rebuild: IB repeats the execution, the fill is still emitted once
    await fake.drop_connections()
    await until(lambda: fake.connect_count >= 3 and broker.is_connected())
    await broker.flush_events()
    assert len(rec.fills("og-drop-1")) == 1


async def test_drop_before_ack_is_ambiguous_then_found_by_order_ref(fake: FakeTWS,
                                                                     ibkr: tuple[IBKRBroker, Recorder]) -> None:
    broker, rec = ibkr
    fake.script(OrderScript("drop", drop_before_ack=True))
    with pytest.raises(RetryableBrokerError) as info:
        await broker.submit_order(intent("og-amb-1"))
    assert info.value.ambiguous
    assert await broker.wait_ready(WAIT)
    found = await broker.get_order_by_client_id("og-amb-1")
    assert found is not None and found.status == OrderStatus.NEW
    await until(lambda: OrderStatus.NEW in rec.statuses("og-amb-1"))
    with pytest.raises(DuplicateClientOrderId):
        await broker.submit_order(intent("og-amb-1"))
    assert len(fake.orders_with_ref("og-amb-1")) == 1


async def test_unacknowledged_order_is_resent_with_the_same_ib_id(fake: FakeTWS) -> None:
    broker, rec = make_broker(fake, timeout=0.5)
    await broker.connect()
    try:
        fake.script("silent")  # IB takes the order but says nothing
        with pytest.raises(RetryableBrokerError) as info:
            await broker.submit_order(intent("og-silent"))
        assert info.value.ambiguous
        result = await broker.submit_order(intent("og-silent"))  # the router's retry
        assert result.status == OrderStatus.NEW
        ids = {int(m[1]) for m in fake.place_requests}
        assert len(fake.place_requests) == 2 and len(ids) == 1  # same IB order id: a modification, not a second order
        assert len(fake.orders_with_ref("og-silent")) == 1
        await until(lambda: OrderStatus.NEW in rec.statuses("og-silent"))
    finally:
        await broker.close()


async def test_submit_while_reconnecting_raises_unavailable(fake: FakeTWS,
                                                             ibkr: tuple[IBKRBroker, Recorder]) -> None:
    broker, _ = ibkr
    health: list[str] = []
    broker.set_health_listener(lambda _name, state: health.append(state))
    await fake.stop_listening()
    await fake.drop_connections()
    await until(lambda: not broker.is_connected())
    with pytest.raises(BrokerUnavailable):
        await broker.submit_order(intent("og-down-1"))
    with pytest.raises(BrokerUnavailable):
        await broker.get_positions()
    assert not await broker.wait_ready(0.3)
    await fake.resume_listening()
    assert await broker.wait_ready(WAIT)
    assert health[0] == "down" and health[-1] == "connected"
    assert fake.place_requests == []
    await broker.submit_order(intent("og-down-1"))
    assert len(fake.orders_with_ref("og-down-1")) == 1


async def test_connectivity_1100_then_1102(fake: FakeTWS, ibkr: tuple[IBKRBroker, Recorder]) -> None:
    broker, _ = ibkr
    fake.send_error(-1, 1100, "Connectivity between IB and Trader Workstation has been lost.")
    await until(lambda: broker.health == "degraded")
    with pytest.raises(BrokerUnavailable):
        await broker.submit_order(intent("og-1100"))
    fake.send_error(-1, 1102, "Connectivity between IB and Trader Workstation has been restored - data maintained.")
    assert await broker.wait_ready(WAIT)
    assert broker.health == "connected"
    await broker.submit_order(intent("og-1100"))


async def test_1101_data_lost_resyncs_and_emits_missed_fill_once(fake: FakeTWS,
                                                                   ibkr: tuple[IBKRBroker, Recorder]) -> None:
    broker, rec = ibkr
    fake.script("rest")
    await broker.submit_order(intent("og-1101"))
    fake.send_error(-1, 1100, "Connectivity between IB and Trader Workstation has been lost.")
    await until(lambda: broker.health == "degraded")
    fake.fill("og-1101", push=False)  # the execution happens while IB's messages are lost
    fake.send_error(-1, 1101, "Connectivity between IB and TWS has been restored - data lost.")
    assert await broker.wait_ready(WAIT)
    await until(lambda: OrderStatus.FILLED in rec.statuses("og-1101"))
    await broker.flush_events()
    assert [f.fill_id for f in rec.fills("og-1101")] == [fake.executions[0].exec_id]
    resyncs = len(fake.messages(IN_REQ_EXECUTIONS))
    fake.send_error(-1, 1102, "Connectivity between IB and TWS has been restored - data maintained.")
    await fake.wait_for(lambda: len(fake.messages(IN_REQ_EXECUTIONS)) > resyncs)
    assert await broker.wait_ready(WAIT) and broker.health == "connected"
    await broker.flush_events()
    assert len(rec.fills("og-1101")) == 1 and rec.statuses("og-1101").count(OrderStatus.FILLED) == 1


async def test_cancel_missed_during_outage_is_found_by_resync(fake: FakeTWS,
                                                              ibkr: tuple[IBKRBroker, Recorder]) -> None:
    broker, rec = ibkr
    fake.script("rest")
    await broker.submit_order(intent("og-cx-lost"))
    fake.orders_with_ref("og-cx-lost")[0].status = "Cancelled"  # cancelled at IB, the client never told
    fake.send_error(-1, 1101, "Connectivity between IB and TWS has been restored - data lost.")
    await until(lambda: OrderStatus.CANCELED in rec.statuses("og-cx-lost"))


async def test_restart_rebuilds_from_completed_orders_and_executions(fake: FakeTWS) -> None:
    first, rec1 = make_broker(fake, client_id=7)
    await first.connect()
    await first.submit_order(intent("og-rs-1"))
    await until(lambda: OrderStatus.FILLED in rec1.statuses("og-rs-1"))
    await first.close()
    second, rec2 = make_broker(fake, client_id=7)
    await second.connect()
    try:
        found = await second.get_order_by_client_id("og-rs-1")
        assert found is not None and found.status == OrderStatus.FILLED and found.filled_qty == 5
        await second.flush_events()
        assert [f.fill_id for f in rec2.fills("og-rs-1")] == [rec1.fills("og-rs-1")[0].fill_id]
        assert await second.get_order_by_client_id("og-unknown") is None
        with pytest.raises(DuplicateClientOrderId):
            await second.submit_order(intent("og-rs-1"))
    finally:
        await second.close()


async def test_a_restart_finds_an_order_held_for_a_locate_still_working(fake: FakeTWS) -> None:
    first, _ = make_broker(fake, client_id=7)
    await first.connect()
    fake.script(OrderScript("locate"))
    await first.submit_order(intent("og-rs-held", side=Side.SELL))
    await until(lambda: first.ib.trades() and first.ib.trades()[-1].orderStatus.whyHeld == "locate")
    await first.close()
    second, rec2 = make_broker(fake, client_id=7)
    await second.connect()
    try:
        assert [(o.client_order_id, o.status) for o in await second.get_open_orders()] == \
            [("og-rs-held", OrderStatus.NEW)]
        found = await second.get_order_by_client_id("og-rs-held")
        assert found is not None and found.status == OrderStatus.NEW
        fake.locate("og-rs-held")
        await until(lambda: OrderStatus.FILLED in rec2.statuses("og-rs-held"))
        await second.flush_events()
        assert [f.quantity for f in rec2.fills("og-rs-held")] == [5.0]
    finally:
        await second.close()


async def test_connection_refused_is_unavailable() -> None:
    fake = FakeTWS()
    await fake.start()
    port = fake.port
    await fake.stop()
    settings = IBKRSettings(host="127.0.0.1", port=port, client_id=3, request_timeout_seconds=2)
    broker = IBKRBroker(settings, LiveClock(), reconnect_initial_delay=0.05)
    with pytest.raises(BrokerUnavailable, match="cannot connect"):
        await broker.connect()
    assert not broker.is_connected() and broker.health == "down"
    await broker.close()


async def test_client_throttle_stays_on(fake: FakeTWS, ibkr: tuple[IBKRBroker, Recorder]) -> None:
    broker, _ = ibkr
    throttled: list[bool] = []
    broker.ib.client.throttleStart += lambda: throttled.append(True)
    before = len(fake.messages(49))
    for _ in range(60):
        broker.ib.client.reqCurrentTime()
    await fake.wait_for(lambda: len(fake.messages(49)) - before == 60, timeout=WAIT)
    assert throttled  # more than 45 requests in a second were held back by ib_async


def test_contract_mapping() -> None:
    stock = contract_for("brk.b")
    assert (stock.secType, stock.symbol, stock.exchange, stock.currency) == ("STK", "BRK B", "SMART", "USD")
    assert symbol_of(stock) == "BRK.B"
    option = contract_for("SPY260320P00500000")
    assert (option.secType, option.symbol, option.lastTradeDateOrContractMonth, option.strike, option.right) == (
        "OPT", "SPY", "20260320", 500.0, "P")
    assert symbol_of(option) == "SPY   260320P00500000"
    with pytest.raises(OrderRejected, match="symbol"):
        contract_for("not a symbol!")
