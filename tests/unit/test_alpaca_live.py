"""Live suite against Alpaca's paper API: skipped unless ALPACA_API_KEY (and ALPACA_SECRET_KEY) are set.

Run: ALPACA_API_KEY=... ALPACA_SECRET_KEY=... .venv/bin/pytest tests/unit/test_alpaca_live.py -m live
It only uses the paper endpoints and leaves nothing open: the one order it places is a far-from-market
limit buy that is cancelled straight away.
"""

from __future__ import annotations

import os
import uuid

import pytest

from adapters.alpaca import AlpacaBroker
from config.settings import AlpacaSettings
from pipeline.core.clock import LiveClock
from pipeline.core.models import OrderIntent, OrderStatus, OrderType, Side

pytestmark = [
    pytest.mark.live,
    pytest.mark.skipif(not os.environ.get("ALPACA_API_KEY"), reason="ALPACA_API_KEY not set (live paper suite)"),
]


@pytest.fixture
async def broker():
    settings = AlpacaSettings(api_key=os.environ["ALPACA_API_KEY"], secret_key=os.environ.get("ALPACA_SECRET_KEY"),
                              paper=True, request_timeout_seconds=15)
    b = AlpacaBroker(settings, LiveClock())
    await b.connect()
    yield b
    await b.close()


async def test_account_and_clock(broker: AlpacaBroker) -> None:
    account = await broker.get_account()
    assert account.equity >= 0 and account.buying_power >= 0
    clock = await broker.get_clock()
    assert isinstance(clock["is_open"], bool)
    assert isinstance(await broker.get_positions(), list)


async def test_submit_and_cancel_far_limit_order(broker: AlpacaBroker) -> None:
    coid = f"og-live-{uuid.uuid4().hex[:20]}"
    intent = OrderIntent(client_order_id=coid, signal_id="live", symbol="AAPL", side=Side.BUY, quantity=1,
                         order_type=OrderType.LIMIT, limit_price=1.00, time_in_force="day")
    result = await broker.submit_order(intent)
    try:
        assert result.client_order_id == coid
        found = await broker.get_order_by_client_id(coid)
        assert found is not None and found.broker_order_id == result.broker_order_id
    finally:
        await broker.cancel_order(coid)
    after = await broker.get_order_by_client_id(coid)
    assert after is not None and after.status in (OrderStatus.CANCELED, OrderStatus.NEW)  # NEW = pending_cancel
