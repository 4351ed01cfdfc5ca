"""Shared helpers for tests with two real brokers: Alpaca (alpaca-py against FakeAlpaca) and IB (ib_async
against FakeTWS) behind one Core, at the market prices PRICES."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from config.settings import load_settings
from daemon.core import Core
from pipeline.core.clock import SimulatedClock
from pipeline.core.models import TradeSignal
from tests.conftest import make_signal
from tests.fakes.alpaca_server import FakeAlpaca
from tests.fakes.tws_server import FakeTWS

SESSION = datetime(2026, 11, 24, 16, 0, tzinfo=UTC)  # 11:00 ET on a regular session
WAIT = 15.0
PRICES = {"AAPL": 100.0, "MSFT": 200.0, "NVDA": 50.0, "AMD": 80.0, "JPM": 150.0, "XOM": 110.0, "GOOGL": 120.0,
          "TSLA": 250.0}


@dataclass
class Venues:
    """The two wire fakes and the clock the Core runs on."""

    alpaca: FakeAlpaca
    tws: FakeTWS
    clock: SimulatedClock
    alpaca_settings: Any


def make_core(tmp_path: Path, v: Venues, *, primary: str = "alpaca", fallback: str | None = "ibkr",
              breaker_reset_seconds: float = 600, **overrides: Any) -> Core:
    """A Core (not started) routing to alpaca and ibkr at the fakes of `v`."""
    overrides.setdefault("exits", {"broker_stop": False})  # routing only: the protective stops have tests of their own
    settings = load_settings(
        state_dir=tmp_path / "state",
        broker={"primary": primary, "fallback": fallback, "breaker_reset_seconds": breaker_reset_seconds},
        alpaca=v.alpaca_settings,
        ibkr={"host": "127.0.0.1", "port": v.tws.port, "client_id": 11, "request_timeout_seconds": 3},
        pipeline={"enable_unified_risk": False, "retry_backoff_base": 0.01, "max_order_retries": 2},
        executor={"max_concurrent_positions": 20, "max_single_stock_exposure": 0.05, "max_sector_exposure": 1.0},
        **overrides,
    )
    return Core(settings, v.clock)


def signal(symbol: str, clock: SimulatedClock) -> TradeSignal:
    """A long entry at PRICES[symbol], stop 2% below."""
    price = PRICES[symbol]
    return make_signal(symbol, price, price * 0.98, at=clock.now())


@contextlib.asynccontextmanager
async def running(core: Core) -> AsyncIterator[Core]:
    """`core` started for the block and stopped after it, whatever happens in it."""
    await core.start()
    try:
        yield core
    finally:
        await core.stop()
