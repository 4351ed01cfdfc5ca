"""Our own fill on a trade_updates stream that lags behind Alpaca's REST answers (a stalled websocket).

Through the real alpaca-py clients against FakeAlpaca (`hold_trade_updates`): the entry fills at the broker, the
positions endpoint shows it at once, the stream's events come a minute and more later. What a user needs: no false
"unexplained position" trip of the kill switch while the event is missing, the fill in the ledger as soon as the
order is looked up (the overdue timer), and, when the late events finally arrive, nothing applied twice.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.core.clock import SimulatedClock
from tests.alpaca_core import SESSION, alert_kinds, alpaca_core, entry_signal, held_quantity, journal_fills, until
from tests.fakes.alpaca_server import FakeAlpaca

pytestmark = pytest.mark.timeout(120)


async def test_a_fill_held_back_by_the_stream_is_found_once_and_trips_nothing(
    tmp_path: Path, fake: FakeAlpaca,
) -> None:
    clock = SimulatedClock(SESSION)
    core = await alpaca_core(tmp_path, fake, clock=clock, reconcile={"kill_notional_threshold": 100.0})
    alerts = alert_kinds(core)
    try:
        fake.hold_trade_updates()
        fake.next_submit_fills(100.0)
        result = await core.orchestrator.process_signal(entry_signal("AAPL"))
        assert result.success, result
        assert result.intent is not None
        coid = result.intent.client_order_id
        await until(lambda: float(fake.positions.get("AAPL", {}).get("qty", 0)) > 0, what="filled at the broker")
        broker_qty = float(fake.positions["AAPL"]["qty"])
        await core.settle()
        assert held_quantity(core, "AAPL") == 0  # no event has come: nothing applied yet
        for _ in range(4):  # a minute of checks passes with the stream silent
            clock.advance(core.settings.reconcile.grace_seconds + 1)
            await core.check_overdue()  # the overdue timer looks the order up by its id
            await core.settle()
            await core.reconcile()
        assert held_quantity(core, "AAPL") == broker_qty, "the order's lookup did not bring its fill in"
        assert not core.state.is_kill_switch_active(), core.state.kill_switch_info()
        assert "reconciliation_mismatch" not in alerts
        assert core.last_reconciliation is not None and core.last_reconciliation["ok"] is True
        assert core.external.quantity("AAPL") == 0
        assert await fake.release_trade_updates() >= 2  # the stream catches up: new, fill
        await core.settle()
        await until(lambda: any(f["data"]["event"] == "fill" for f in fake.sent_trade_frames), what="sent")
        await core.reconcile()
        assert held_quantity(core, "AAPL") == broker_qty  # not twice
        fills = await journal_fills(core, coid)
        assert sum(f["quantity"] for f in fills) == broker_qty, fills
        assert not core.state.is_kill_switch_active() and core.external.quantity("AAPL") == 0
    finally:
        await core.stop()
