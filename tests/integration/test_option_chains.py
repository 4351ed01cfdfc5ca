"""Issue 14.6: options only from a real chain.

The synthetic chain (invented strikes, expiries, open interest and premiums) serves the paper broker only and
says so in the routing reason. With a real broker that provides no chain (Alpaca today) options mode rejects
before anything is sized or sent, and `both` routes on to the ETF / the stock, saying why.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from config.settings import load_settings
from daemon.app import Core
from pipeline.core.clock import SimulatedClock
from pipeline.core.models import TradeSignal
from tests.conftest import make_signal
from tests.fakes.alpaca_server import FakeAlpaca
from tests.market import set_market

pytestmark = pytest.mark.timeout(120)
SESSION = datetime(2026, 11, 24, 16, 0, tzinfo=UTC)  # 11:00 ET


def _signal(ticker: str = "NVDA") -> TradeSignal:
    return make_signal(ticker, 100.0, 98.0, conviction=90, at=SESSION)


def _alpaca(tmp_path: Path, fake: FakeAlpaca, mode: str) -> Any:
    alpaca = {"api_key": fake.api_key, "secret_key": fake.secret_key, "paper": True, "base_url": fake.base_url,
              "trading_stream_url": fake.trading_stream_url, "data_stream_url": fake.data_stream_url("iex"),
              "feed": "iex", "request_timeout_seconds": 3.0}
    return load_settings(state_dir=tmp_path / "state", broker={"primary": "alpaca"}, alpaca=alpaca,
                         executor={"instrument_mode": mode},
                         pipeline={"retry_backoff_base": 0.01, "enable_unified_risk": False})


@pytest.mark.parametrize("mode", ["options", "both"])
async def test_no_synthetic_chain_behind_a_real_broker(tmp_path: Path, fake: FakeAlpaca, mode: str) -> None:
    core = Core(_alpaca(tmp_path, fake, mode), SimulatedClock(SESSION))
    await core.start()
    set_market(core, {"NVDA": 100.0})  # the feed's last bar: entries are sized on the market
    try:
        result = await core.orchestrator.process_signal(_signal())
        await core.settle()
    finally:
        await core.stop()
    symbols = [o["symbol"] for o in fake.orders.values()]
    assert not [s for s in symbols if len(s) > 10], symbols  # no option order ever reached the broker
    if mode == "options":
        assert not result.success and result.pipeline_stage == "instrument_router"
        reason = result.rejection_reason or ""
        assert "no option chain" in reason and "alpaca" in reason
        assert "synthetic chain only on the paper broker" in reason
    else:  # both: NVDA -> its sector's 3x ETF, which has no price here -> the stock itself
        assert result.success, result.rejection_reason
        assert result.intent is not None and result.intent.symbol == "NVDA"


async def test_the_paper_brokers_synthetic_chain_is_labelled(tmp_path: Path) -> None:
    settings = load_settings(state_dir=tmp_path / "state", executor={"instrument_mode": "options"},
                             pipeline={"enable_unified_risk": False})
    core = Core(settings, SimulatedClock(SESSION))
    await core.start()
    try:
        core.ledger.last_prices["NVDA"] = 100.0
        decision = core.orchestrator.instruments.route(_signal(), SESSION)
    finally:
        await core.stop()
    assert decision.approved, decision.reason
    assert "synthetic chain (paper broker)" in decision.reason
