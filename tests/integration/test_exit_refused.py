"""An exit the broker keeps refusing is tried again with a growing pause and alerted once, not on every bar.

Through alpaca-py against FakeAlpaca: the account holder has a limit sell of the whole position resting by hand, so
Alpaca refuses every sale of ours ("insufficient qty available": those shares are held by that order). The exit
loop sent a new exit on every bar of the ticker, each refused and each alerted: a storm of alerts to the phone and
of orders to the broker's rate limit (shared with every other order of the account). Now a refused exit waits
before the next one (30 s, doubling, up to 5 minutes of the injected clock), its alert is said once per reason,
and the exit goes through once the shares are free again.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from daemon.core import Core
from pipeline.core.clock import SimulatedClock
from pipeline.core.models import Bar
from tests.alpaca_core import SESSION, alert_kinds, alpaca_core, entry_signal, held_quantity, until
from tests.fakes.alpaca_server import FakeAlpaca

pytestmark = pytest.mark.timeout(120)


def _exit_submits(fake: FakeAlpaca) -> int:
    return sum(1 for r in fake.submits() if isinstance(r.body, dict) and r.body.get("side") == "sell")


async def _bar(core: Core, clock: SimulatedClock, price: float) -> None:
    clock.advance(60)
    await core.engine.on_batch([Bar("AAPL", clock.now(), price, price, price, price, 1000.0)])
    await core.settle()


async def test_a_refused_exit_backs_off_and_is_alerted_once(tmp_path: Path, fake: FakeAlpaca) -> None:
    clock = SimulatedClock(SESSION)
    core = await alpaca_core(tmp_path, fake, clock=clock)
    alerts = alert_kinds(core)
    try:
        fake.next_submit_fills(100.0)
        result = await core.orchestrator.process_signal(entry_signal("AAPL", 100.0, 98.0))
        assert result.success and result.intent is not None, result
        qty = result.intent.quantity
        await until(lambda: held_quantity(core, "AAPL") == qty, what="entry filled")
        await core.settle()
        held = await fake.rest_manual_order("AAPL", qty, "sell", 150.0)  # the holder's own sale holds every share
        for _ in range(10):  # ten minute bars under the stop loss
            await _bar(core, clock, 97.0)
        sent = _exit_submits(fake)
        assert 1 <= sent <= 5, f"{sent} exits sent in ten bars"
        assert alerts.count("exit_refused") == 1 and "order_rejected" not in alerts, alerts
        assert held_quantity(core, "AAPL") == qty
        await fake.cancel(held["client_order_id"])  # the holder takes the order back: the shares are free
        fake.prices["AAPL"] = 97.0
        fake.market_fills()
        for _ in range(6):  # within the longest pause (5 minutes)
            await _bar(core, clock, 97.0)
            if held_quantity(core, "AAPL") == 0:
                break
        await until(lambda: held_quantity(core, "AAPL") == 0, what="the exit through once the shares are free")
        await core.settle()
        assert core.lifecycle.backoff.refusals == {}  # closed: a later position there starts without a pause
    finally:
        await core.stop()

