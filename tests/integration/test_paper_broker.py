"""PaperBroker: fills, resting orders, accounting, event order, persistence of the book."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.paper import (
    PaperBookCorrupt,
    PaperBroker,
    apply_fill_to_position,
)
from config.settings import PaperSettings
from pipeline.core.clock import SimulatedClock
from pipeline.core.models import (
    AssetClass,
    Bar,
    BrokerEvent,
    Fill,
    OrderIntent,
    OrderStatus,
    OrderType,
    OrderUpdate,
    Side,
)
from pipeline.core.ports import Broker, DuplicateClientOrderId, OrderRejected
from pipeline.instruments.pricing import bs_price

T0 = datetime(2026, 11, 17, 15, 0, tzinfo=UTC)


def make_broker(path: Path | None = None, slippage_bps: float = 0.0, commission: float = 0.0,
                cash: float = 100_000.0, clock: SimulatedClock | None = None) -> PaperBroker:
    settings = PaperSettings(initial_cash=cash, slippage_bps=slippage_bps, commission_per_share=commission)
    return PaperBroker(settings, clock or SimulatedClock(T0), state_path=path)


def intent(coid: str, symbol: str = "AAPL", side: Side = Side.BUY, qty: float = 10, **kw: object) -> OrderIntent:
    return OrderIntent(client_order_id=coid, signal_id=f"sig-{coid}", symbol=symbol, side=side, quantity=qty,
                       **kw)  # type: ignore[arg-type]


def bar(symbol: str, o: float, h: float, low: float, c: float, minute: int = 1) -> Bar:
    return Bar(symbol, T0 + timedelta(minutes=minute), o, h, low, c, 1000.0)


class Recorder:
    def __init__(self) -> None:
        self.events: list[BrokerEvent] = []

    async def __call__(self, event: BrokerEvent) -> None:
        self.events.append(event)

    def kinds(self) -> list[str]:
        return [f"fill:{e.client_order_id}" if isinstance(e, Fill) else f"{e.status}:{e.client_order_id}"
                for e in self.events]


async def connected(broker: PaperBroker) -> Recorder:
    recorder = Recorder()
    broker.set_event_handler(recorder)
    await broker.connect()
    return recorder


async def test_satisfies_broker_protocol() -> None:
    assert isinstance(make_broker(), Broker)


async def test_market_buy_pays_slippage_and_commission() -> None:
    broker = make_broker(slippage_bps=10, commission=0.01)
    rec = await connected(broker)
    broker.set_price("AAPL", 100.0)
    result = await broker.submit_order(intent("b1"))
    assert result.status == OrderStatus.FILLED
    assert result.filled_avg_price == pytest.approx(100.1)
    assert broker.cash == pytest.approx(100_000 - 1001.0 - 0.10)
    assert broker.position("AAPL") == (10, pytest.approx(100.1))
    await broker.flush_events()
    assert rec.kinds() == ["new:b1", "fill:b1", "filled:b1"]
    fill = rec.events[1]
    assert isinstance(fill, Fill) and fill.price == pytest.approx(100.1) and fill.commission == pytest.approx(0.1)
    await broker.close()


async def test_market_sell_receives_less() -> None:
    broker = make_broker(slippage_bps=10)
    broker.set_price("AAPL", 100.0)
    result = await broker.submit_order(intent("s1", side=Side.SELL, qty=5))
    assert result.filled_avg_price == pytest.approx(99.9)
    assert broker.position("AAPL")[0] == -5
    assert broker.cash == pytest.approx(100_000 + 499.5)


async def test_order_without_a_price_is_rejected_and_not_booked() -> None:
    broker = make_broker()
    with pytest.raises(OrderRejected, match="no price yet for 'ZZZ'"):
        await broker.submit_order(intent("x1", symbol="ZZZ"))
    assert await broker.get_order_by_client_id("x1") is None


async def test_bad_intent_is_rejected_naming_the_field() -> None:
    broker = make_broker()
    broker.set_price("AAPL", 100.0)
    with pytest.raises(OrderRejected, match="quantity"):
        await broker.submit_order(intent("q0", qty=0))
    with pytest.raises(OrderRejected, match="limit_price"):
        await broker.submit_order(intent("l0", order_type=OrderType.LIMIT))


async def test_limit_buy_rests_until_price_crosses_then_fills_at_limit() -> None:
    broker = make_broker(slippage_bps=10)
    rec = await connected(broker)
    broker.set_price("AAPL", 100.0)
    result = await broker.submit_order(intent("lb", order_type=OrderType.LIMIT, limit_price=99.0))
    assert result.status == OrderStatus.NEW
    assert [o.client_order_id for o in await broker.get_open_orders()] == ["lb"]
    broker.on_bars([bar("AAPL", 99.8, 100.2, 99.01, 99.5)])  # low stays above the limit
    assert (await broker.get_order_by_client_id("lb")).status == OrderStatus.NEW
    broker.on_bars([bar("AAPL", 99.5, 99.6, 98.7, 99.2, minute=2)])  # crosses
    order = await broker.get_order_by_client_id("lb")
    assert order.status == OrderStatus.FILLED and order.filled_avg_price == pytest.approx(99.0)
    assert await broker.get_open_orders() == []
    await broker.flush_events()
    assert rec.kinds() == ["new:lb", "fill:lb", "filled:lb"]
    await broker.close()


async def test_limit_buy_gapping_down_fills_at_the_open() -> None:
    broker = make_broker()
    broker.set_price("AAPL", 100.0)
    await broker.submit_order(intent("lb", order_type=OrderType.LIMIT, limit_price=99.0))
    broker.on_bars([bar("AAPL", 97.0, 97.5, 96.5, 97.2)])
    assert (await broker.get_order_by_client_id("lb")).filled_avg_price == pytest.approx(97.0)


async def test_limit_sell_and_stops_trigger_on_cross_not_before() -> None:
    broker = make_broker(slippage_bps=0)
    broker.set_price("AAPL", 100.0)
    await broker.submit_order(intent("own", qty=30))
    await broker.submit_order(intent("ls", side=Side.SELL, order_type=OrderType.LIMIT, limit_price=102.0))
    await broker.submit_order(intent("ss", side=Side.SELL, order_type=OrderType.STOP, stop_price=98.0))
    await broker.submit_order(intent("bs", side=Side.BUY, order_type=OrderType.STOP, stop_price=103.0))
    broker.on_bars([bar("AAPL", 100.0, 101.99, 98.01, 100.5)])
    statuses = {o.client_order_id: o.status for o in await broker.get_open_orders()}
    assert statuses == {"ls": OrderStatus.NEW, "ss": OrderStatus.NEW, "bs": OrderStatus.NEW}
    broker.on_bars([bar("AAPL", 100.5, 102.0, 100.0, 101.0, minute=2)])
    assert (await broker.get_order_by_client_id("ls")).filled_avg_price == pytest.approx(102.0)
    broker.on_bars([bar("AAPL", 104.0, 104.5, 103.5, 104.0, minute=3)])  # gaps up through the buy stop
    assert (await broker.get_order_by_client_id("bs")).filled_avg_price == pytest.approx(104.0)
    broker.on_bars([bar("AAPL", 99.0, 99.5, 97.9, 98.2, minute=4)])
    assert (await broker.get_order_by_client_id("ss")).filled_avg_price == pytest.approx(98.0)
    assert broker.position("AAPL")[0] == pytest.approx(30 - 10 + 10 - 10)


async def test_marketable_limit_fills_on_submission() -> None:
    broker = make_broker()
    broker.set_price("AAPL", 100.0)
    result = await broker.submit_order(intent("ml", order_type=OrderType.LIMIT, limit_price=101.0))
    assert result.status == OrderStatus.FILLED and result.filled_avg_price == pytest.approx(100.0)


async def test_accounting_average_price_partial_close_and_flip() -> None:
    broker = make_broker(commission=0.0)
    broker.set_price("AAPL", 100.0)
    await broker.submit_order(intent("a1", qty=10))
    broker.set_price("AAPL", 110.0)
    await broker.submit_order(intent("a2", qty=10))
    assert broker.position("AAPL") == (20, pytest.approx(105.0))
    broker.set_price("AAPL", 120.0)
    await broker.submit_order(intent("a3", side=Side.SELL, qty=5))  # partial close keeps the average
    assert broker.position("AAPL") == (15, pytest.approx(105.0))
    assert broker.realized_pnl == pytest.approx(75.0)
    await broker.submit_order(intent("a4", side=Side.SELL, qty=25))  # flip: 15 closed, 10 short at 120
    assert broker.position("AAPL") == (-10, pytest.approx(120.0))
    assert broker.realized_pnl == pytest.approx(75.0 + 15 * 15)
    expected_cash = 100_000 - 1000 - 1100 + 600 + 3000
    assert broker.cash == pytest.approx(expected_cash)
    broker.set_price("AAPL", 115.0)
    account = await broker.get_account()
    assert account.equity == pytest.approx(expected_cash - 10 * 115.0)
    assert account.equity == pytest.approx(100_000 + 75 + 225 + 50)
    await broker.submit_order(intent("a5", qty=10))
    assert broker.position("AAPL") == (0, 0)
    assert await broker.get_positions() == []


def test_apply_fill_to_position_cases() -> None:
    assert apply_fill_to_position(0, 0, 10, 50) == (10, 50, 0)
    assert apply_fill_to_position(-10, 50, -10, 40) == (-20, 45, 0)
    assert apply_fill_to_position(-10, 50, 4, 40) == (-6, 50, 40)
    assert apply_fill_to_position(-10, 50, 10, 60) == (0, 0, -100)
    assert apply_fill_to_position(10, 50, -15, 55) == (-5, 55, 50)


async def test_insufficient_buying_power_is_rejected() -> None:
    broker = make_broker(cash=1_000.0)
    broker.set_price("AAPL", 100.0)
    with pytest.raises(OrderRejected, match="buying_power"):
        await broker.submit_order(intent("big", qty=11))
    await broker.submit_order(intent("ok", qty=10))


async def test_buying_power_is_checked_at_the_price_the_order_fills_at() -> None:
    """A market buy pays the slippage, and so does a buy stop when it triggers: both are funded at that price."""
    from pipeline.core.models import OrderType

    broker = make_broker(cash=10_000.0, slippage_bps=100.0)
    broker.set_price("AAPL", 100.0)
    with pytest.raises(OrderRejected, match=r"needs 10100\.00, has 10000\.00"):
        await broker.submit_order(intent("market", qty=100))        # 100 x 101
    with pytest.raises(OrderRejected, match=r"needs 10201\.00, has 10000\.00"):
        await broker.submit_order(intent("stop", qty=100, order_type=OrderType.STOP, stop_price=101.0))
    await broker.submit_order(intent("fits", qty=99))                # 99 x 101 = 9 999


async def test_reduce_only_cannot_open() -> None:
    broker = make_broker()
    broker.set_price("AAPL", 100.0)
    with pytest.raises(OrderRejected, match="reduce_only"):
        await broker.submit_order(intent("r1", side=Side.SELL, reduce_only=True))
    await broker.submit_order(intent("o1", qty=10))
    await broker.submit_order(intent("r2", side=Side.SELL, qty=10, reduce_only=True))
    assert broker.position("AAPL")[0] == 0


async def test_duplicate_client_order_id_raises_and_books_once() -> None:
    broker = make_broker()
    broker.set_price("AAPL", 100.0)
    await broker.submit_order(intent("dup"))
    with pytest.raises(DuplicateClientOrderId):
        await broker.submit_order(intent("dup"))
    assert len(broker.all_orders()) == 1
    assert broker.position("AAPL")[0] == 10


async def test_cancel_resting_order() -> None:
    broker = make_broker()
    rec = await connected(broker)
    broker.set_price("AAPL", 100.0)
    await broker.submit_order(intent("c1", order_type=OrderType.LIMIT, limit_price=90.0))
    await broker.cancel_order("c1")
    await broker.cancel_order("c1")  # idempotent
    broker.on_bars([bar("AAPL", 89.0, 89.0, 88.0, 88.5)])
    assert (await broker.get_order_by_client_id("c1")).status == OrderStatus.CANCELED
    await broker.submit_order(intent("f1"))
    with pytest.raises(OrderRejected, match="cannot be canceled"):
        await broker.cancel_order("f1")
    with pytest.raises(OrderRejected, match="unknown"):
        await broker.cancel_order("nope")
    await broker.flush_events()
    assert rec.kinds() == ["new:c1", "canceled:c1", "new:f1", "fill:f1", "filled:f1"]
    await broker.close()


async def test_events_arrive_in_order_with_unique_fill_ids() -> None:
    broker = make_broker()
    seen: list[BrokerEvent] = []

    async def slow_handler(event: BrokerEvent) -> None:
        import asyncio

        await asyncio.sleep(0)  # a handler that yields must still see events in order
        seen.append(event)

    broker.set_event_handler(slow_handler)
    await broker.connect()
    broker.set_price("AAPL", 100.0)
    for i in range(20):
        await broker.submit_order(intent(f"o{i:02d}", qty=1))
    await broker.flush_events()
    expected = [k for i in range(20) for k in (f"new:o{i:02d}", f"fill:o{i:02d}", f"filled:o{i:02d}")]
    rec = Recorder()
    rec.events = seen
    assert rec.kinds() == expected
    fill_ids = [e.fill_id for e in seen if isinstance(e, Fill)]
    assert len(set(fill_ids)) == 20
    await broker.close()


async def test_handler_failure_does_not_stop_delivery() -> None:
    broker = make_broker()
    got: list[BrokerEvent] = []

    async def flaky(event: BrokerEvent) -> None:
        if isinstance(event, Fill):
            raise RuntimeError("boom")
        got.append(event)

    broker.set_event_handler(flaky)
    await broker.connect()
    broker.set_price("AAPL", 100.0)
    await broker.submit_order(intent("h1"))
    await broker.flush_events()
    assert [e.status for e in got if isinstance(e, OrderUpdate)] == [OrderStatus.NEW, OrderStatus.FILLED]
    await broker.close()


# ------------------------------------------------------------------ persistence


async def test_book_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "paper_book.json"
    broker = make_broker(path, slippage_bps=5, commission=0.01)
    await connected(broker)
    broker.set_price("AAPL", 100.0)
    broker.set_price("MSFT", 400.0)
    await broker.submit_order(intent("p1", qty=10))
    await broker.submit_order(intent("p2", symbol="MSFT", side=Side.SELL, qty=3))
    await broker.submit_order(intent("p3", order_type=OrderType.LIMIT, limit_price=95.0))
    await broker.close()

    again = make_broker(path, slippage_bps=5, commission=0.01)
    assert again.cash == pytest.approx(broker.cash)
    assert again.positions() == broker.positions()
    assert again.all_orders() == broker.all_orders()
    assert again.all_fills() == broker.all_fills()
    assert again.last_price("MSFT") == 400.0
    with pytest.raises(DuplicateClientOrderId):
        await again.submit_order(intent("p1"))
    again.on_bars([bar("AAPL", 96.0, 96.0, 94.0, 95.5)])  # the resting order survived the restart
    assert (await again.get_order_by_client_id("p3")).status == OrderStatus.FILLED
    await again.submit_order(intent("p4", qty=1))
    fill_ids = [f.fill_id for f in again.all_fills()]
    assert len(fill_ids) == len(set(fill_ids)) == 4


async def test_book_is_on_disk_before_the_event_is_delivered(tmp_path: Path) -> None:
    path = tmp_path / "paper_book.json"
    broker = make_broker(path)
    on_disk_at_delivery: list[bool] = []

    async def handler(event: BrokerEvent) -> None:
        book = json.loads(path.read_text())
        orders = {o["client_order_id"]: o for o in book["orders"]}
        if isinstance(event, Fill):
            fills = [f["fill_id"] for o in orders.values() for f in o["fills"]]
            on_disk_at_delivery.append(event.fill_id in fills)
        else:
            on_disk_at_delivery.append(orders[event.client_order_id]["status"] in (str(event.status), "filled"))

    broker.set_event_handler(handler)
    await broker.connect()
    broker.set_price("AAPL", 100.0)
    await broker.submit_order(intent("d1"))
    await broker.submit_order(intent("d2", order_type=OrderType.LIMIT, limit_price=99.0))
    broker.on_bars([bar("AAPL", 99.5, 99.5, 98.5, 99.0)])  # triggered from the sync path
    await broker.flush_events()
    assert on_disk_at_delivery == [True] * 6
    await broker.close()


async def test_crash_without_close_keeps_the_book(tmp_path: Path) -> None:
    path = tmp_path / "paper_book.json"
    broker = make_broker(path)
    broker.set_price("AAPL", 100.0)
    await broker.submit_order(intent("k1", qty=7))
    # no close(): the process "dies" here
    again = make_broker(path)
    assert again.position("AAPL") == (7, 100.0)
    assert (await again.get_order_by_client_id("k1")).status == OrderStatus.FILLED


async def test_unacknowledged_fills_are_redelivered_after_restart(tmp_path: Path) -> None:
    path = tmp_path / "paper_book.json"
    broker = make_broker(path)
    broker.set_price("AAPL", 100.0)
    await broker.submit_order(intent("u1"))  # never connected: the fill was never delivered
    again = make_broker(path)
    rec = await connected(again)
    await again.flush_events()
    fills = [e for e in rec.events if isinstance(e, Fill)]
    assert [f.fill_id for f in fills] == [broker.all_fills()[0].fill_id]
    assert rec.kinds()[-1] == "filled:u1"
    await again.close()
    third = make_broker(path)
    rec3 = await connected(third)
    await third.flush_events()
    assert rec3.events == []  # acknowledged now: not sent again
    await third.close()


@pytest.mark.parametrize(
    "content",
    [b"", b"{not json", b"[]", b'{"version": 99}', b'{"version": 1, "cash": "lots"}',
     b'{"version": 1, "cash": 5, "positions": {}, "last_prices": {}, "order_seq": 0, "fill_seq": 0, '
     b'"orders": [{"client_order_id": "x"}]}',
     b'{"version": 1, "cash": 5, "positions": {}, "last_prices": {}, "order_seq": Infinity, "fill_seq": 0, '
     b'"orders": []}'],
)
async def test_corrupt_book_raises_a_clear_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "paper_book.json"
    path.write_bytes(content)
    with pytest.raises(PaperBookCorrupt, match=r"paper_book\.json") as info:
        make_broker(path)
    assert "corrupt" in str(info.value)
    assert path.read_bytes() == content  # never reset


async def test_missing_book_starts_with_initial_cash(tmp_path: Path) -> None:
    broker = make_broker(tmp_path / "sub" / "book.json", cash=5_000.0)
    assert (await broker.get_account()).cash == 5_000.0


# ------------------------------------------------------------------ options


def test_black_scholes_reference_values() -> None:
    assert bs_price(100, 100, 1.0, 0.05, 0.2, "C") == pytest.approx(10.4506, abs=1e-4)
    assert bs_price(100, 100, 1.0, 0.05, 0.2, "P") == pytest.approx(5.5735, abs=1e-4)
    assert bs_price(100, 90, 0.0, 0.05, 0.2, "C") == 10.0


async def test_option_order_is_priced_from_the_underlying() -> None:
    broker = make_broker()
    symbol = "AAPL  261218C00230000"
    with pytest.raises(OrderRejected, match="AAPL"):
        await broker.submit_order(intent("opt0", symbol=symbol, qty=2, asset_class=AssetClass.OPTION))
    broker.set_price("AAPL", 240.0)
    result = await broker.submit_order(intent("opt1", symbol=symbol, qty=2, asset_class=AssetClass.OPTION))
    premium = result.filled_avg_price
    assert premium is not None and premium > 10.0  # at least intrinsic
    assert broker.cash == pytest.approx(100_000 - 2 * 100 * premium)
    broker.set_price("AAPL", 260.0)
    marked = broker.last_price(symbol)
    assert marked is not None and marked > premium
    account = await broker.get_account()
    assert account.equity == pytest.approx(broker.cash + 2 * 100 * marked)
    with pytest.raises(OrderRejected, match="OCC"):
        await broker.submit_order(intent("opt2", symbol="NOTANOCC", asset_class=AssetClass.OPTION))


async def test_events_booked_before_connect_are_delivered_once(tmp_path: Path) -> None:
    broker = make_broker(tmp_path / "book.json")
    broker.set_price("AAPL", 100.0)
    await broker.submit_order(intent("early"))
    rec = await connected(broker)
    await broker.flush_events()
    assert rec.kinds() == ["new:early", "fill:early", "filled:early"]
    await broker.close()


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(
    st.binary(max_size=200),
    st.recursive(st.none() | st.booleans() | st.floats() | st.text(max_size=5),
                 lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                 max_leaves=12).map(lambda v: json.dumps(v).encode()),
))
def test_random_book_bytes_always_fail_closed(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "fuzz_book.json"
    path.write_bytes(content)
    with pytest.raises(PaperBookCorrupt):
        make_broker(path)
