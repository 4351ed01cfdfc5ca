"""A daily strategy's entry sent after the close waits at its broker for the open, and is not cancelled as stale.

Daily-bar signals come at the close and bypass the market-hours check: their market entry rests at the broker (IB
holds a DAY market order until the open; Alpaca queues it) and fills at the next open. The working-entries rule
(an entry still working past max_signal_age_seconds is held: cancelled) counted from the acceptance, so every such
entry was cancelled two minutes after the close, and a daily strategy never traded. The time counts from when the
entry could first fill: the next open (and it is not looked up as an order whose fill went missing, every 30 s of
the weekend, either).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import structlog

from pipeline.core.clock import SimulatedClock
from pipeline.core.models import TradeSignal
from pipeline.execution.order_record import OrderState
from tests.alpaca_core import alert_kinds
from tests.fakes.tws_server import FakeTWS, OrderScript
from tests.ibkr_core import aapl_tws, ibkr_core, until
from tests.market import set_market

pytestmark = pytest.mark.timeout(60)
FRIDAY_CLOSE = datetime(2026, 12, 4, 21, 0, tzinfo=UTC)
MONDAY_OPEN = datetime(2026, 12, 7, 14, 30, tzinfo=UTC)


@pytest.fixture
async def tws() -> AsyncIterator[FakeTWS]:
    async with aapl_tws(FRIDAY_CLOSE) as server:
        yield server


async def test_a_daily_entry_sent_after_the_close_waits_for_the_open(tmp_path: Path, tws: FakeTWS) -> None:
    clock = SimulatedClock(FRIDAY_CLOSE + timedelta(minutes=2))
    core = await ibkr_core(tmp_path, tws, clock, exits={"broker_stop": False})
    alerts = alert_kinds(core)
    try:
        set_market(core, {"AAPL": 100.0})
        tws.script(OrderScript("rest"))  # a DAY market order after the close: held by IB until the open
        signal = TradeSignal(signal_type="breakout_long", direction="long", ticker="AAPL", timeframe="1d",
                             conviction=80, entry_price=100.0, stop_loss=95.0, timestamp=FRIDAY_CLOSE, source="test")
        result = await core.orchestrator.process_signal(signal)
        assert result.success, result
        cid = result.intent.client_order_id
        await until(lambda: core.book.get(cid).accepted_at is not None, what="the entry accepted", timeout=10.0)
        with structlog.testing.capture_logs() as logged:
            for at in (FRIDAY_CLOSE + timedelta(minutes=10), datetime(2026, 12, 6, 20, 0, tzinfo=UTC),
                       MONDAY_OPEN + timedelta(seconds=20), MONDAY_OPEN + timedelta(seconds=100)):
                clock.advance_to(at)
                await core.check_overdue()
                assert tws.cancel_requests == [] and "stale_entry_cancelled" not in alerts, at
        # not looked up as a lost fill all weekend either: from 30 s after the open (fill_timeout_seconds)
        assert [e["event"] for e in logged if e["event"] == "order_overdue"] == ["order_overdue"]
        (held,) = tws.orders_with_ref(cid)
        assert not held.is_done
        # two minutes after the open and still nothing filled: held (a halt, a hold), cancelled as before
        clock.advance_to(MONDAY_OPEN + timedelta(seconds=121))
        await core.check_overdue()
        await until(lambda: core.book.get(cid).state is OrderState.CANCELLED, what="the held entry cancelled")
        assert tws.cancel_requests == [held.order_id] and "stale_entry_cancelled" in alerts
    finally:
        await core.stop()
