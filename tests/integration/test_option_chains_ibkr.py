"""Issue 14.6 against IB: the chain from reqSecDefOptParams, contract details and market data; orders as OPT.

The real ib_async client over loopback against tests/fakes/tws_server.py: the daemon's core prefetches NVDA's
chain, a long signal in options mode buys the call that passes the filters, sent as an OPT contract (symbol,
expiry, strike, right, multiplier 100) and sized on the fake's ask x the one option multiplier. Without market
data for the options there is no option (no invented prices).
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from config.settings import load_settings
from daemon.core import Core
from pipeline.core.clock import SimulatedClock
from pipeline.core.models import OPTION_MULTIPLIER, AssetClass
from tests.conftest import make_signal, until
from tests.fakes.tws_market import OptionQuoteScript
from tests.fakes.tws_server import FakeTWS
from tests.integration.test_option_chains import chain_ready
from tests.market import set_market

pytestmark = pytest.mark.timeout(90)
SESSION = datetime(2026, 11, 24, 16, 0, tzinfo=UTC)  # Tuesday 11:00 ET
ASK = 3.37
PADDED = "NVDA  261218C00100000"


@pytest.fixture
async def tws() -> AsyncIterator[FakeTWS]:
    async with FakeTWS(now=lambda: SESSION) as fake:
        fake.add_stock("NVDA", 100.0)
        q = OptionQuoteScript
        fake.add_option("NVDA", "20261218", 100, "C", quote=q(3.21, ASK, delta=0.46, iv=0.41, open_interest=2300))
        fake.add_option("NVDA", "20261218", 95, "C", quote=q(6.40, 6.60, delta=0.68, iv=0.42, open_interest=1900))
        fake.add_option("NVDA", "20261218", 105, "C", quote=q(1.45, 1.52, delta=0.29, iv=0.40, open_interest=1700))
        fake.add_option("NVDA", "20261218", 102.5, "C", quote=q(2.30, 2.41, delta=0.40, iv=0.40, open_interest=30))
        fake.add_option("NVDA", "20261218", 100, "P", quote=q(3.00, 3.15, delta=-0.52, iv=0.41, open_interest=2100))
        fake.add_option("NVDA", "20261127", 100, "C", quote=q(1.30, 1.36, delta=0.45, iv=0.39, open_interest=5000))
        fake.add_option("NVDA", "20261218", 150, "C", quote=q(0.05, 0.07, delta=0.01, iv=0.60, open_interest=900))
        yield fake


async def _core(tmp_path: Path, tws: FakeTWS, timeout: float = 3.0) -> Core:
    settings = load_settings(
        state_dir=tmp_path / "state", broker={"primary": "ibkr", "fallback": None},
        ibkr={"host": "127.0.0.1", "port": tws.port, "client_id": 21, "request_timeout_seconds": timeout},
        executor={"instrument_mode": "options"}, options={"chain_tickers": ["NVDA"], "chain_strikes_each_side": 2},
        pipeline={"enable_unified_risk": False, "retry_backoff_base": 0.01},
    )
    core = Core(settings, SimulatedClock(SESSION))
    await core.start()
    set_market(core, {"NVDA": 100.0})
    return core


async def test_a_long_signal_buys_the_ib_call_as_an_opt_contract(tmp_path: Path, tws: FakeTWS) -> None:
    core = await _core(tmp_path, tws)
    try:
        await chain_ready(core)
        held = core.orchestrator.instruments.chain_provider.chain("NVDA", 100.0, SESSION)
        result = await core.orchestrator.process_signal(make_signal("NVDA", 100.0, 98.0, conviction=90, at=SESSION))
        assert result.success, result.rejection_reason
        await until(lambda: core.ledger.holds(PADDED), what="the option fill in the ledger")
        await core.settle()
    finally:
        await core.stop()
    # the strike 150 call is beyond the 2 strikes either side of spot: never asked for market data
    asked = {(r["lastTradeDateOrContractMonth"], r["strike"], r["right"]) for r in tws.market.requests
             if r["secType"] == "OPT"}
    assert ("20261218", "150.0", "C") not in asked and ("20261218", "100.0", "C") in asked
    options = [r for r in tws.market.requests if r["secType"] == "OPT"]
    assert all(r["genericTickList"] == "101" and not r["snapshot"] for r in options)
    assert len(tws.market.cancelled) >= len(asked)  # every market data line given back
    assert tws.market.opt_param_requests[0]["symbol"] == "NVDA" and tws.market.opt_param_requests[0]["conId"] != "0"
    by_symbol = {q.occ_symbol: q for q in held}
    assert by_symbol[PADDED].open_interest == 2300 and by_symbol[PADDED].delta == pytest.approx(0.46)
    assert by_symbol[PADDED].iv == pytest.approx(0.41) and by_symbol[PADDED].ask == ASK
    intent = result.intent
    assert intent is not None and intent.symbol == PADDED and intent.asset_class == AssetClass.OPTION
    placed = [o for o in tws.orders.values() if o.contract.sec_type == "OPT" and o.order_ref == intent.client_order_id]
    assert len(placed) == 1
    order = placed[0]
    assert (order.contract.symbol, order.contract.expiry, order.contract.strike, order.contract.right) == (
        "NVDA", "20261218", 100.0, "C")
    request = dict(zip(("conId", "symbol", "secType", "expiry", "strike", "right", "multiplier", "exchange"),
                       next(r for r in tws.place_requests if int(r[1]) == order.order_id)[2:10], strict=False))
    assert request["secType"] == "OPT" and request["multiplier"] == "100" and request["exchange"] == "SMART"
    assert order.action == "BUY" and order.quantity == intent.quantity >= 1
    # the resting protective stop: at the premium the call has once NVDA reaches the signal's stop (98), not at
    # the entry premium (which the first trade under the ask would hit)
    (stop,) = [o for o in tws.orders.values() if o.contract.sec_type == "OPT" and o.order_type == "STP"]
    assert stop.action == "SELL" and float(stop.aux_price) == pytest.approx(round(ASK - 0.46 * 2.0, 2))
    assert intent.reference_price == ASK
    budget = core.orchestrator.sizer.size_option(
        make_signal("NVDA", 100.0, 98.0, conviction=90, at=SESSION), core.account_state(), by_symbol[PADDED],
    ).adjustments["risk_budget"]
    assert order.quantity == math.floor(budget / (ASK * OPTION_MULTIPLIER))


async def test_no_market_data_is_no_option(tmp_path: Path, tws: FakeTWS) -> None:
    for contract in tws.contracts:
        if contract.sec_type == "OPT":
            tws.market.silent.add(contract.con_id)  # listed, but no quote ever comes
    core = await _core(tmp_path, tws, timeout=0.5)  # the quotes are waited for min(3 s, the request timeout)
    try:
        await chain_ready(core)
        held = core.orchestrator.instruments.chain_provider.chain("NVDA", 100.0, SESSION)
        result = await core.orchestrator.process_signal(make_signal("NVDA", 100.0, 98.0, conviction=90, at=SESSION))
    finally:
        await core.stop()
    assert held == []  # listed contracts, no quotes: nothing to size on
    assert not result.success and result.pipeline_stage == "instrument_router"
    assert "no call for NVDA among 0 quotes" in (result.rejection_reason or "")
    assert not [o for o in tws.orders.values() if o.contract.sec_type == "OPT"]
