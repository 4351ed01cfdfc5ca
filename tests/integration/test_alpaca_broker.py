"""AlpacaBroker through the real alpaca-py client code over loopback against FakeAlpaca."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from adapters.alpaca import AlpacaBroker
from config.settings import BrokerSettings, PipelineConfig
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
    client_order_id_for,
)
from pipeline.core.ports import (
    Broker,
    BrokerError,
    BrokerUnavailable,
    DuplicateClientOrderId,
    OrderRejected,
    RetryableBrokerError,
)
from tests.fakes.alpaca_server import FakeAlpaca


@dataclass
class Harness:
    fake: FakeAlpaca
    broker: AlpacaBroker
    events: list[BrokerEvent] = field(default_factory=list)

    def fills(self, coid: str | None = None) -> list[Fill]:
        return [e for e in self.events if isinstance(e, Fill) and (coid is None or e.client_order_id == coid)]

    def updates(self, coid: str | None = None) -> list[OrderUpdate]:
        return [e for e in self.events if isinstance(e, OrderUpdate) and (coid is None or e.client_order_id == coid)]

    def statuses(self, coid: str) -> list[OrderStatus]:
        return [u.status for u in self.updates(coid)]

    async def wait_status(self, coid: str, status: OrderStatus, timeout: float = 10.0) -> None:
        await self.fake.wait_for(lambda: status in self.statuses(coid), timeout)


async def _start(fake: FakeAlpaca, timeout: float = 3.0) -> Harness:
    broker = AlpacaBroker(fake.alpaca_settings(request_timeout_seconds=timeout), LiveClock(),
                          stream_backoff=(0.05, 0.3))
    harness = Harness(fake, broker)

    async def handler(event: BrokerEvent) -> None:
        harness.events.append(event)

    broker.set_event_handler(handler)
    await broker.connect()
    return harness


@pytest.fixture
async def h(fake: FakeAlpaca) -> AsyncIterator[Harness]:
    harness = await _start(fake)
    yield harness
    await harness.broker.close()


def intent(signal_id: str, qty: float = 100, **kw: object) -> OrderIntent:
    values: dict = {"client_order_id": client_order_id_for(signal_id), "signal_id": signal_id, "symbol": "AAPL",
                    "side": Side.BUY, "quantity": qty, "reference_price": 100.0}
    values.update(kw)
    return OrderIntent(**values)


# -- orders and events -------------------------------------------------------------------------------------
async def test_satisfies_broker_port_and_connects(h: Harness) -> None:
    assert isinstance(h.broker, Broker)
    assert h.broker.is_connected()
    assert h.fake.trade_stream_connects == 1
    auth = h.fake.requests[0]
    assert auth.path == "/v2/account" and auth.headers["APCA-API-KEY-ID"] == "test-key"


async def test_submit_partial_fill_fill_in_order_then_position(h: Harness) -> None:
    h.fake.next_submit_fills(101.5, partials=(40, 30))
    order = intent("sig-fill")
    result = await h.broker.submit_order(order)
    assert result.status == OrderStatus.NEW and result.client_order_id == order.client_order_id
    assert result.broker == "alpaca" and result.broker_order_id in h.fake.orders
    body = h.fake.submits()[0].body
    assert body["client_order_id"] == order.client_order_id and body["type"] == "market" and body["qty"] == 100
    await h.wait_status(order.client_order_id, OrderStatus.FILLED)
    kinds = [(type(e).__name__, getattr(e, "status", None), getattr(e, "quantity", None)) for e in h.events]
    assert kinds == [
        ("OrderUpdate", OrderStatus.NEW, None),
        ("Fill", None, 40.0), ("OrderUpdate", OrderStatus.PARTIALLY_FILLED, None),
        ("Fill", None, 30.0), ("OrderUpdate", OrderStatus.PARTIALLY_FILLED, None),
        ("Fill", None, 30.0), ("OrderUpdate", OrderStatus.FILLED, None),
    ]
    executions = [f["data"]["execution_id"] for f in h.fake.sent_trade_frames if "execution_id" in f["data"]]
    assert [f.fill_id for f in h.fills()] == executions
    assert all(f.price == 101.5 and f.side == Side.BUY and f.symbol == "AAPL" for f in h.fills())
    assert h.updates()[-1].filled_qty == 100
    positions = await h.broker.get_positions()
    assert [(p.symbol, p.quantity, p.avg_price) for p in positions] == [("AAPL", 100.0, 101.5)]


async def test_rejection_carries_alpacas_reason(h: Harness) -> None:
    h.fake.next_submit_rejects("insufficient buying power", status=403)
    with pytest.raises(OrderRejected) as info:
        await h.broker.submit_order(intent("sig-reject"))
    assert info.value.reason == "insufficient buying power" and info.value.code == 403
    assert not isinstance(info.value, DuplicateClientOrderId)
    assert h.fake.orders == {}


async def test_cancel_by_client_order_id(h: Harness) -> None:
    order = intent("sig-cancel", order_type=OrderType.LIMIT, limit_price=50.123)
    result = await h.broker.submit_order(order)
    await h.broker.cancel_order(order.client_order_id)
    await h.wait_status(order.client_order_id, OrderStatus.CANCELED)
    deletes = [r for r in h.fake.requests if r.method == "DELETE"]
    assert [r.path for r in deletes] == [f"/v2/orders/{result.broker_order_id}"]
    assert h.fake.submits()[0].body["limit_price"] == 50.12
    found = await h.broker.get_order_by_client_id(order.client_order_id)
    assert found is not None and found.status == OrderStatus.CANCELED
    with pytest.raises(OrderRejected) as info:
        await h.broker.cancel_order("og-entry-unknown")
    assert info.value.code == 404
    assert await h.broker.get_order_by_client_id("og-entry-unknown") is None


async def test_hanging_submit_times_out_then_lookup_finds_exactly_one_order(fake: FakeAlpaca) -> None:
    h = await _start(fake, timeout=1.0)
    try:
        fake.next_submit_hangs()
        order = intent("sig-hang")
        with pytest.raises(RetryableBrokerError) as info:
            await h.broker.submit_order(order)
        assert info.value.ambiguous
        found = await h.broker.get_order_by_client_id(order.client_order_id)
        assert found is not None and found.client_order_id == order.client_order_id
        assert found.status == OrderStatus.NEW
        assert len(fake.orders) == 1 and len(fake.submits()) == 1
        with pytest.raises(DuplicateClientOrderId):  # a blind resend is refused, still one order
            await h.broker.submit_order(order)
        assert len(fake.orders) == 1
    finally:
        await h.broker.close()


async def test_duplicate_client_order_id_is_its_own_error(h: Harness) -> None:
    order = intent("sig-dup")
    await h.broker.submit_order(order)
    with pytest.raises(DuplicateClientOrderId) as info:
        await h.broker.submit_order(order)
    assert info.value.code == 422 and "client_order_id" in info.value.reason
    assert len(h.fake.orders) == 1


async def test_429_backs_off_until_reset_then_succeeds(h: Harness) -> None:
    h.fake.next_submit_rate_limited(reset_in=1.0)
    order = intent("sig-429")
    with pytest.raises(RetryableBrokerError) as info:
        await h.broker.submit_order(order)
    assert not info.value.ambiguous
    assert info.value.retry_after is not None and 0 < info.value.retry_after <= 2.5
    result = await h.broker.submit_order(order)  # the bucket holds this one until the reset
    assert result.status == OrderStatus.NEW
    first, second = h.fake.submits()
    assert second.at - first.at >= 0.3  # not sent straight away: it waited for the reset
    assert len(h.fake.orders) == 1


async def test_router_retries_429_and_resolves_a_hang_with_one_order(fake: FakeAlpaca) -> None:
    from pipeline.execution.order_router import OrderRouter

    h = await _start(fake, timeout=1.0)
    try:
        router = OrderRouter({"alpaca": h.broker}, None, LiveClock(), PipelineConfig(),
                             BrokerSettings(primary="alpaca"))
        fake.next_submit_rate_limited(reset_in=1.0)
        result = await router.submit(intent("sig-router-429"))
        assert result.status == OrderStatus.NEW and len(fake.submits()) == 2
        fake.next_submit_hangs()
        hung = intent("sig-router-hang")
        result = await router.submit(hung)
        assert result.client_order_id == hung.client_order_id and result.status == OrderStatus.NEW
        assert sum(o["client_order_id"] == hung.client_order_id for o in fake.orders.values()) == 1
    finally:
        await h.broker.close()


async def test_server_error_on_submit_is_ambiguous(h: Harness) -> None:
    h.fake.next_submit_errors(status=500)
    with pytest.raises(RetryableBrokerError) as info:
        await h.broker.submit_order(intent("sig-500"))
    assert info.value.ambiguous and not isinstance(info.value, BrokerUnavailable)


async def test_refused_connection_is_unavailable(fake: FakeAlpaca) -> None:
    h = await _start(fake)
    try:
        await fake.stop()
        with pytest.raises(BrokerUnavailable):
            await h.broker.submit_order(intent("sig-refused"))
        with pytest.raises(BrokerUnavailable):
            await h.broker.get_account()
    finally:
        await h.broker.close()


async def test_bad_keys_fail_connect_clearly(fake: FakeAlpaca) -> None:
    broker = AlpacaBroker(fake.alpaca_settings(secret_key="wrong"), LiveClock())
    with pytest.raises(BrokerError, match="not authorized"):
        await broker.connect()
    await broker.close()


# -- order types -------------------------------------------------------------------------------------------
async def test_stop_bracket_and_option_requests(h: Harness) -> None:
    await h.broker.submit_order(intent("sig-stop", side=Side.SELL, order_type=OrderType.STOP, stop_price=95.0))
    await h.broker.submit_order(intent("sig-bracket", order_type=OrderType.BRACKET, take_profit_price=110.0,
                                       stop_loss=95.0))
    await h.broker.submit_order(intent("sig-opt", qty=2, symbol="AAPL250117C00150000",
                                       asset_class=AssetClass.OPTION, order_type=OrderType.LIMIT, limit_price=3.2))
    stop, bracket, option = (r.body for r in h.fake.submits())
    assert stop["type"] == "stop" and stop["stop_price"] == 95.0 and stop["side"] == "sell"
    assert bracket["order_class"] == "bracket" and bracket["type"] == "market"
    assert bracket["take_profit"] == {"limit_price": 110.0} and bracket["stop_loss"] == {"stop_price": 95.0}
    assert option["symbol"] == "AAPL250117C00150000" and option["qty"] == 2 and option["limit_price"] == 3.2
    held = h.fake.order_by_client_id(client_order_id_for("sig-opt"))
    assert held is not None and held["asset_class"] == "us_option"
    assert len(h.fake.order_by_client_id(client_order_id_for("sig-bracket"))["legs"]) == 2


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"order_type": OrderType.BRACKET, "stop_loss": 95.0}, "take_profit_price"),
        ({"order_type": OrderType.LIMIT}, "limit_price"),
        ({"qty": 0}, "quantity"),
        ({"symbol": "AAPL", "asset_class": AssetClass.OPTION}, "symbol"),
        ({"symbol": "AAPL250117C00150000", "asset_class": AssetClass.OPTION, "qty": 1.5}, "quantity"),
        ({"time_in_force": "forever"}, "time_in_force"),
    ],
)
async def test_malformed_intent_rejected_before_sending(h: Harness, kw: dict, field: str) -> None:
    with pytest.raises(OrderRejected, match=field):
        await h.broker.submit_order(intent("sig-bad", **kw))
    assert h.fake.submits() == []


# -- stream supervision --------------------------------------------------------------------------------------
async def test_fill_while_stream_down_is_recovered_once(h: Harness) -> None:
    order = intent("sig-drop")
    result = await h.broker.submit_order(order)
    await h.wait_status(order.client_order_id, OrderStatus.NEW)
    h.fake.drop_trade_stream(block=True)
    await h.fake.wait_for(lambda: not h.broker.is_connected())
    execution_id = await h.fake.fill(order.client_order_id, 100, 50.0)  # nobody is listening
    assert h.fills() == []
    h.fake.allow_trade_stream()
    await h.wait_status(order.client_order_id, OrderStatus.FILLED)
    assert h.broker.reconnects == 1 and h.broker.is_connected()
    # caught up by identity (issue 12), not by a time window a skewed clock could miss
    catch_up = [r for r in h.fake.requests if r.path == "/v2/orders:by_client_order_id" and r.method == "GET"]
    assert catch_up and catch_up[-1].query["client_order_id"] == order.client_order_id
    # the live frame for the same execution arriving late must not double it
    held = h.fake.order_by_client_id(order.client_order_id)
    await h.fake.push_trade_update("fill", held, execution_id=execution_id, price="50", qty="100")
    await asyncio.sleep(0.2)
    fills = h.fills(order.client_order_id)
    assert [(f.quantity, f.price, f.fill_id) for f in fills] == [(100.0, 50.0, f"{result.broker_order_id}:100")]
    assert h.statuses(order.client_order_id).count(OrderStatus.FILLED) == 1


async def test_partial_fills_split_across_a_drop(h: Harness) -> None:
    order = intent("sig-drop-partial")
    await h.broker.submit_order(order)
    await h.wait_status(order.client_order_id, OrderStatus.NEW)
    await h.fake.fill(order.client_order_id, 30, 10.0)
    await h.fake.wait_for(lambda: len(h.fills()) == 1)
    h.fake.drop_trade_stream(block=True)
    await h.fake.wait_for(lambda: not h.broker.is_connected())
    await h.fake.fill(order.client_order_id, 70, 12.0)
    h.fake.allow_trade_stream()
    await h.wait_status(order.client_order_id, OrderStatus.FILLED)
    fills = h.fills()
    assert [f.quantity for f in fills] == [30.0, 70.0]
    assert fills[1].price == pytest.approx(12.0)


async def test_fill_sent_twice_is_emitted_once(h: Harness) -> None:
    order = intent("sig-twice")
    await h.broker.submit_order(order)
    await h.wait_status(order.client_order_id, OrderStatus.NEW)
    await h.fake.fill(order.client_order_id, 100, 20.0, times=2)
    await h.wait_status(order.client_order_id, OrderStatus.FILLED)
    await asyncio.sleep(0.2)
    assert sum(1 for f in h.fake.sent_trade_frames if f["data"]["event"] == "fill") == 2
    assert len(h.fills()) == 1
    assert h.statuses(order.client_order_id) == [OrderStatus.NEW, OrderStatus.FILLED]


async def test_stream_task_that_ends_is_restarted(h: Harness) -> None:
    stream = h.broker._stream
    assert stream is not None
    stream._should_run = False  # the SDK loop returns at its next turn: the supervisor must start a fresh stream
    h.fake.drop_trade_stream()
    await h.fake.wait_for(lambda: h.broker._stream is not stream and h.broker.is_connected())
    assert h.fake.trade_stream_connects >= 2
    order = intent("sig-after-restart")
    h.fake.next_submit_fills(10.0)
    await h.broker.submit_order(order)
    await h.wait_status(order.client_order_id, OrderStatus.FILLED)
    assert len(h.fills(order.client_order_id)) == 1


async def test_handler_error_does_not_kill_the_stream(fake: FakeAlpaca) -> None:
    h = await _start(fake)
    try:
        calls: list[BrokerEvent] = []

        async def broken(event: BrokerEvent) -> None:
            calls.append(event)
            raise RuntimeError("downstream bug")

        h.broker.set_event_handler(broken)
        fake.next_submit_fills(10.0)
        await h.broker.submit_order(intent("sig-broken"))
        await fake.wait_for(lambda: any(isinstance(e, OrderUpdate) and e.status == OrderStatus.FILLED
                                        for e in calls))
        assert h.broker.is_connected()
    finally:
        await h.broker.close()


# -- account, positions, open orders -------------------------------------------------------------------------
async def test_positions_account_and_open_orders_mapping(h: Harness) -> None:
    h.fake.set_position("MSFT", 10, 400.0, price=410.0)
    h.fake.set_position("TSLA", -5, 200.0)
    h.fake.account.update(equity="123456.7", cash="50000", buying_power="99000.5")
    positions = {p.symbol: p for p in await h.broker.get_positions()}
    assert positions["MSFT"].quantity == 10 and positions["MSFT"].avg_price == 400.0
    assert positions["MSFT"].market_price == 410.0 and positions["MSFT"].broker == "alpaca"
    assert positions["TSLA"].quantity == -5
    account = await h.broker.get_account()
    assert (account.equity, account.cash, account.buying_power) == (123456.7, 50000.0, 99000.5)
    open_order = intent("sig-open", order_type=OrderType.LIMIT, limit_price=1.0)
    h.fake.next_submit_fills(1.0)
    await h.broker.submit_order(intent("sig-done"))
    await h.broker.submit_order(open_order)
    await h.wait_status(client_order_id_for("sig-done"), OrderStatus.FILLED)
    opened = await h.broker.get_open_orders()
    assert [o.client_order_id for o in opened] == [open_order.client_order_id]
    assert opened[0].side == Side.BUY and opened[0].quantity == 100
    clock = await h.broker.get_clock()
    assert clock["is_open"] is True


async def test_close_positions(h: Harness) -> None:
    h.fake.set_position("MSFT", 10, 400.0)
    result = await h.broker.close_position("MSFT")
    assert result.side == Side.SELL and result.quantity == 10
    await h.fake.wait_for(lambda: "MSFT" not in h.fake.positions)
    h.fake.set_position("XOM", -3, 100.0)
    results = await h.broker.close_all_positions()
    assert [(r.symbol, r.side) for r in results] == [("XOM", Side.BUY)]


def test_token_bucket_never_exceeds_the_minute_budget() -> None:
    from pipeline.core.rate_limit import TokenBucket

    now = [0.0]
    bucket = TokenBucket.per_minute(200, now=lambda: now[0])
    sent = 0
    while now[0] < 60.0:  # greedy client for one minute, simulated time
        if bucket.wait_time() == 0:
            bucket.tokens -= 1
            sent += 1
        else:
            now[0] += 0.01
    assert 190 <= sent <= 200
    bucket.pause_for(5.0)
    assert bucket.wait_time() == pytest.approx(5.0)


# -- option symbols: ours (padded OCC) out as Alpaca's compact form, and back ---------------------------------
async def test_our_padded_option_symbol_goes_out_compact_and_comes_back_padded(h: Harness) -> None:
    ours = "AAPL  261218C00150000"
    order = intent("sig-occ", qty=3, symbol=ours, asset_class=AssetClass.OPTION, order_type=OrderType.LIMIT,
                   limit_price=3.2)
    result = await h.broker.submit_order(order)
    (sent,) = (r.body for r in h.fake.submits())
    assert sent["symbol"] == "AAPL261218C00150000" and sent["qty"] == 3
    assert result.symbol == ours
    await h.fake.fill(order.client_order_id, 3, 3.2)
    await h.fake.wait_for(lambda: bool(h.fills(order.client_order_id)))
    assert {f.symbol for f in h.fills(order.client_order_id)} == {ours}
    assert {u.symbol for u in h.updates(order.client_order_id)} == {ours}
    positions = await h.broker.get_positions()
    assert [p.symbol for p in positions] == [ours]


@pytest.mark.parametrize(("symbol", "words"), [
    ("AAPL  261318C00150000", "not a calendar date"),
    ("AAPL  261218X00150000", "right 'X'"),
    ("AAPL261218C0015000", "expected ROOT"),
])
async def test_a_bad_option_symbol_is_one_line_and_never_sent(h: Harness, symbol: str, words: str) -> None:
    with pytest.raises(OrderRejected) as caught:
        await h.broker.submit_order(intent("sig-bad-occ", qty=1, symbol=symbol, asset_class=AssetClass.OPTION))
    assert words in caught.value.reason and "\n" not in caught.value.reason
    assert h.fake.submits() == []
