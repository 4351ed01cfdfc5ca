"""FakeTWS's wire encodings, checked by decoding them with the real ib_async 2.1 client (server 176-178)."""

from __future__ import annotations

import asyncio

import pytest
from ib_async import IB, LimitOrder, MarketOrder, Option, Stock

from tests.fakes.tws_server import IN_PLACE_ORDER, IN_START_API, FakeTWS, OrderScript


@pytest.mark.parametrize("version", [176, 177, 178])
async def test_ib_async_decodes_every_fake_message(version: int) -> None:
    async with FakeTWS(server_version=version) as fake:
        aapl = fake.add_stock("AAPL", 190.0)
        fake.add_option("AAPL", "20260116", 150.0, "C", 3.1)
        fake.set_position(aapl, 10, 180.0)
        ib = IB()
        await ib.connectAsync("127.0.0.1", fake.port, clientId=11, timeout=5, raiseSyncErrors=True)
        try:
            assert ib.client.serverVersion() == version
            assert ib.managedAccounts() == ["DU1234567"]
            assert [(p.contract.symbol, p.position, p.avgCost) for p in ib.positions()] == [("AAPL", 10.0, 180.0)]
            stock, option, unknown = await ib.qualifyContractsAsync(
                Stock("AAPL", "SMART", "USD"), Option("AAPL", "20260116", 150.0, "C", "SMART", "100", "USD"),
                Stock("ZZZZ", "SMART", "USD"),
            )
            assert stock is not None and stock.conId == aapl.con_id and stock.primaryExchange == "NASDAQ"
            assert option is not None and option.localSymbol == "AAPL  260116C00150000"
            assert unknown is None

            trade = ib.placeOrder(stock, MarketOrder("BUY", 5, orderRef="ref-mkt"))
            await fake.wait_for(lambda: bool(trade.fills) and trade.fills[0].commissionReport.execId != "")
            await asyncio.sleep(0.05)
            assert [e.status for e in trade.log if not e.message] == ["PendingSubmit", "PreSubmitted", "Submitted",
                                                                      "Filled"]
            assert trade.orderStatus.filled == 5 and trade.orderStatus.avgFillPrice == 190.0
            assert trade.order.permId == fake.orders_with_ref("ref-mkt")[0].perm_id
            fill = trade.fills[0]
            assert (fill.execution.orderRef, fill.execution.side, fill.execution.shares) == ("ref-mkt", "BOT", 5.0)
            assert fill.execution.time.tzinfo is not None and fill.commissionReport.commission == 1.0

            fake.script(OrderScript("rest"))
            resting = ib.placeOrder(stock, LimitOrder("SELL", 3, 200.0, orderRef="ref-lmt"))
            await fake.wait_for(lambda: resting.orderStatus.status == "Submitted")
            open_trades = await ib.reqAllOpenOrdersAsync()
            assert [(t.order.orderRef, t.order.lmtPrice, t.order.totalQuantity) for t in open_trades] == [
                ("ref-lmt", 200.0, 3.0)]
            ib.cancelOrder(resting.order)
            await fake.wait_for(lambda: resting.orderStatus.status == "Cancelled")

            completed = await ib.reqCompletedOrdersAsync(False)
            assert sorted((t.order.orderRef, t.orderStatus.status) for t in completed) == [
                ("ref-lmt", "Cancelled"), ("ref-mkt", "Filled")]
            assert next(t for t in completed if t.order.orderRef == "ref-mkt").order.filledQuantity == 5
            executions = await ib.reqExecutionsAsync()
            assert [f.execution.orderRef for f in executions] == ["ref-mkt"]
            summary = {v.tag: v.value for v in await ib.accountSummaryAsync()}
            assert float(summary["NetLiquidation"]) == 100_000.0
            assert (await ib.reqCurrentTimeAsync()).tzinfo is not None
            positions = await ib.reqPositionsAsync()
            assert [(p.contract.symbol, p.position) for p in positions] == [("AAPL", 15.0)]
        finally:
            ib.disconnect()
        assert fake.messages(IN_START_API)[0][2] == "11"
        assert [m[26] for m in fake.messages(IN_PLACE_ORDER)] == ["ref-mkt", "ref-lmt"]


async def test_errors_and_drop_reach_ib_async() -> None:
    async with FakeTWS() as fake:
        fake.add_stock("AAPL", 190.0)
        ib = IB()
        errors: list[tuple[int, int]] = []
        ib.errorEvent += lambda req_id, code, _msg, _contract: errors.append((req_id, code))
        disconnected: list[bool] = []
        ib.disconnectedEvent += lambda: disconnected.append(True)
        await ib.connectAsync("127.0.0.1", fake.port, clientId=1, timeout=5)
        stock = Stock("AAPL", "SMART", "USD")
        fake.script("reject", "duplicate", "pacing")
        for ref in ("a", "b", "c"):
            ib.placeOrder(stock, MarketOrder("BUY", 1, orderRef=ref))
        await fake.wait_for(lambda: len(errors) >= 3)
        assert [code for _, code in errors] == [201, 103, 100]
        fake.send_error(-1, 1100, "Connectivity between IB and Trader Workstation has been lost.")
        await fake.wait_for(lambda: (-1, 1100) in errors)
        await fake.drop_connections()
        await fake.wait_for(lambda: bool(disconnected))
        assert not ib.isConnected()
