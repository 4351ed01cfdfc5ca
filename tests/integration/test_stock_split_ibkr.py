"""A stock split overnight at Interactive Brokers, through ib_async against FakeTWS: IB cancels the resting GTC
stop and rebases the position (r times the shares at its average cost over r). The stop is put back at once, at
the level the ledger still holds; reconciliation then finds the split, rebases the book and moves that stop to the
level over r for the new shares, so the first trade at the new price sells nothing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from config.settings import load_settings
from daemon.core import Core
from pipeline.core.clock import SimulatedClock
from pipeline.core.models import TradeSignal
from tests.conftest import until
from tests.fakes.tws_server import FakeTWS
from tests.market import set_market

pytestmark = pytest.mark.timeout(60)
SESSION = datetime(2026, 11, 24, 16, 0, tzinfo=UTC)


@pytest.fixture(params=[1.0, 50.0], ids=["commission-1", "commission-50"])
async def tws(request: pytest.FixtureRequest) -> AsyncIterator[FakeTWS]:
    # IB's average cost holds the commission: 50.00 on 300 shares at 100 is 0.17 % on the average, more than the
    # split check's slack against the ledger's entry; the broker's own average before the split is compared then
    server = FakeTWS(now=lambda: datetime.now(UTC), min_commission=request.param)
    await server.start()
    server.add_stock("AAPL", 100.0)
    yield server
    await server.stop()


def _live_stops(tws: FakeTWS) -> list[tuple[float, float]]:
    return [(o.quantity, float(o.aux_price)) for o in tws.orders.values()
            if o.order_type == "STP" and not o.is_done]


async def test_a_split_at_ib_moves_the_put_back_stop_to_the_new_level(tmp_path: Path, tws: FakeTWS) -> None:
    clock = SimulatedClock(SESSION)
    settings = load_settings(
        state_dir=tmp_path / "state", broker={"primary": "ibkr", "fallback": None},
        ibkr={"host": "127.0.0.1", "port": tws.port, "client_id": 11, "request_timeout_seconds": 3},
        pipeline={"enable_unified_risk": False, "retry_backoff_base": 0.01},
        executor={"max_single_stock_exposure": 0.5}, reconcile={"grace_seconds": 0.0},
    )
    core = Core(settings, clock)
    await core.start()
    try:
        set_market(core, {"AAPL": 100.0})
        signal = TradeSignal(signal_type="cloud_cross_bullish", direction="long", ticker="AAPL", timeframe="5m",
                             conviction=80, entry_price=100.0, stop_loss=97.0, timestamp=clock.now(), source="test")
        result = await core.orchestrator.process_signal(signal)
        assert result.success and result.intent is not None, result
        qty = result.intent.quantity
        await until(lambda: core.ledger.holds("AAPL"), what="entry fill")
        await core.settle()
        await until(lambda: _live_stops(tws) == [(qty, 97.0)], what="the stop resting")
        clock.advance(5)
        await core.reconcile()  # the broker agrees with the book: its quantity and average cost are noted
        tws.split("AAPL", 2.0)
        for _ in range(3):  # a difference counts once two checks in a row have seen it
            clock.advance(5)
            await core.reconcile()
            await core.settle()
        assert core.ledger.net("AAPL") == 2 * qty and core.external.quantity("AAPL") == 0
        await until(lambda: _live_stops(tws) == [(2 * qty, 48.5)], what="one stop, at 48.5 for the new shares")
        assert tws.trade("AAPL", 50.0) == []
        assert core.last_reconciliation is not None and core.last_reconciliation["ok"] is True
    finally:
        await core.stop()
