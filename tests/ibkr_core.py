"""Shared helpers for tests that trade through ib_async against FakeTWS (tests/fakes/tws_server.py).

`aapl_tws`: a started FakeTWS quoting AAPL at 100; `ibkr_core`: a started Core whose only broker is ibkr at it, at
SESSION (a regular session); `enter_with_stop`: a long AAPL entry at 100 with its stop at 97, filled, its child STP
adopted as the position's resting stop.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from config.settings import load_settings
from daemon.core import Core
from pipeline.core.clock import SimulatedClock
from pipeline.core.models import TradeSignal
from tests.conftest import until
from tests.fakes.tws_server import FakeTWS
from tests.market import set_market

SESSION = datetime(2026, 11, 24, 16, 0, tzinfo=UTC)  # 11:00 ET

__all__ = ["SESSION", "aapl_tws", "enter_with_stop", "ibkr_core", "until"]


@asynccontextmanager
async def aapl_tws(at: datetime = SESSION) -> AsyncIterator[FakeTWS]:
    """A started FakeTWS whose clock reads `at`, AAPL at 100; stopped on leaving."""
    server = FakeTWS(now=SimulatedClock(at).now)
    await server.start()
    server.add_stock("AAPL", 100.0)
    try:
        yield server
    finally:
        await server.stop()


async def ibkr_core(tmp_path: Path, tws: FakeTWS, clock: SimulatedClock | None = None, **overrides: Any) -> Core:
    """A started Core on ibkr at `tws` (client id 11), no unified risk, a 50 % single-stock limit; its clock at
    SESSION unless given."""
    settings = load_settings(
        state_dir=tmp_path / "state", broker={"primary": "ibkr", "fallback": None},
        ibkr={"host": "127.0.0.1", "port": tws.port, "client_id": 11, "request_timeout_seconds": 3},
        pipeline={"enable_unified_risk": False, "retry_backoff_base": 0.01},
        executor={"max_single_stock_exposure": 0.5}, **overrides,
    )
    core = Core(settings, clock or SimulatedClock(SESSION))
    await core.start()
    return core


async def enter_with_stop(core: Core) -> tuple[str, float]:
    """A long AAPL entry at 100, stop 97, filled and its resting stop adopted: (its signal id, its quantity)."""
    set_market(core, {"AAPL": 100.0})  # the feed's last bar: the entry is sized on it
    signal = TradeSignal(signal_type="cloud_cross_bullish", direction="long", ticker="AAPL", timeframe="5m",
                         conviction=80, entry_price=100.0, stop_loss=97.0, timestamp=core.clock.now(), source="test")
    result = await core.orchestrator.process_signal(signal)
    assert result.success, result
    assert result.signal_id is not None and result.intent is not None
    await until(lambda: core.ledger.holds("AAPL"), what="entry fill", timeout=10.0)
    await core.settle()
    await until(lambda: core.stops.view("AAPL") is not None, what="resting stop adopted", timeout=10.0)
    return result.signal_id, result.intent.quantity
