"""Alpaca's `done_for_day` ("done executing for the day, no further updates until the next trading day") is the
end of an order that lives one session (a DAY entry partly filled at the close), and nothing for a GTC order
(tests/process/test_protective_stops_alpaca.py: the protective stop rests on). Through alpaca-py against
FakeAlpaca, on the stream and from GET /v2/orders alike."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapters.alpaca import AlpacaBroker
from pipeline.core.models import OrderStatus
from tests.alpaca_core import alpaca_core, entry_signal, held_quantity, until
from tests.fakes.alpaca_server import FakeAlpaca

pytestmark = pytest.mark.timeout(120)


async def test_a_day_entry_done_for_the_day_ends_with_what_filled(tmp_path: Path, fake: FakeAlpaca) -> None:
    core = await alpaca_core(tmp_path, fake)
    try:
        fake.next_submit_accepts()
        result = await core.orchestrator.process_signal(entry_signal("AAPL"))
        assert result.success and result.intent is not None, result
        coid = result.intent.client_order_id
        await until(lambda: fake.order_by_client_id(coid) is not None, what="the order at the broker")
        await fake.fill(coid, 40, 100.0)  # a part fills before the close
        await until(lambda: held_quantity(core, "AAPL") == 40, what="the partial fill booked")
        order = fake.order_by_client_id(coid)
        assert order is not None and order["time_in_force"] == "day"
        fake._set_status(order, "done_for_day")
        await fake.push_trade_update("done_for_day", order)
        await until(lambda: core.book.get(coid) is not None and core.book.get(coid).final, what="the entry ended")
        assert held_quantity(core, "AAPL") == 40
        assert core.orchestrator.get_state()["in_flight_orders"] == 0  # the unfilled rest no longer reserved
        broker = core.brokers["alpaca"]
        assert isinstance(broker, AlpacaBroker)
        looked_up = await broker.get_order_by_client_id(coid)
        assert looked_up is not None and looked_up.status == OrderStatus.EXPIRED  # REST says the same
    finally:
        await core.stop()


async def test_a_gtc_order_done_for_the_day_reads_as_working_from_rest(tmp_path: Path, fake: FakeAlpaca) -> None:
    core = await alpaca_core(tmp_path, fake)
    try:
        order = fake._new_order({"symbol": "AAPL", "qty": "5", "side": "buy", "type": "limit", "limit_price": "90",
                                 "time_in_force": "gtc", "client_order_id": "og-entry-gtc000000000000000000"})
        fake._set_status(order, "done_for_day")
        broker = core.brokers["alpaca"]
        assert isinstance(broker, AlpacaBroker)
        looked_up = await broker.get_order_by_client_id("og-entry-gtc000000000000000000")
        assert looked_up is not None and looked_up.status == OrderStatus.NEW
    finally:
        await core.stop()


@pytest.mark.parametrize(("tif", "filled", "status"), [
    ("day", "5", OrderStatus.FILLED),       # completed for the day by filling: filled
    ("day", "2", OrderStatus.EXPIRED),      # done for the day with 2 of 5: over, with what filled
    ("gtc", "2", OrderStatus.PARTIALLY_FILLED),  # a GTC order rests on to the next day
])
async def test_an_order_calculated_after_the_close_reads_as_what_it_is(
    tmp_path: Path, fake: FakeAlpaca, tif: str, filled: str, status: OrderStatus,
) -> None:
    """Alpaca's `calculated` ("completed for the day, filled or done for day; settlement calculations pending")
    from GET /v2/orders: before, a filled order read as partially filled (still working) until Alpaca moved it on."""
    core = await alpaca_core(tmp_path, fake)
    try:
        coid = f"og-entry-calc{tif}{filled}0000000000000"
        order = fake._new_order({"symbol": "AAPL", "qty": "5", "side": "buy", "type": "market",
                                 "time_in_force": tif, "client_order_id": coid})
        order["filled_qty"] = filled
        order["filled_avg_price"] = "100"
        fake._set_status(order, "calculated")
        broker = core.brokers["alpaca"]
        assert isinstance(broker, AlpacaBroker)
        looked_up = await broker.get_order_by_client_id(coid)
        assert looked_up is not None and looked_up.status == status
    finally:
        await core.stop()
