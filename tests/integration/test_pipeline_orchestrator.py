"""The entry pipeline end to end in process: burst safety, buying power, bad signals, journaling."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest

from config.settings import load_settings
from daemon.core import Core
from pipeline.core.clock import SimulatedClock
from pipeline.core.models import TradeSignal

SESSION = datetime(2026, 11, 24, 16, 0, tzinfo=UTC)  # 11:00 ET on a regular session


async def _core(tmp_path: Path, **overrides) -> Core:
    settings = load_settings(
        state_dir=tmp_path / "state",
        broker={"primary": "paper"},
        exits={"broker_stop": False},  # counts entry orders only
        paper={"persistent": False, **overrides.pop("paper", {})},
        pipeline={"enable_unified_risk": False, "retry_backoff_base": 0.01, **overrides.pop("pipeline", {})},
        **overrides,
    )
    core = Core(settings, SimulatedClock(SESSION))
    await core.start()
    return core


def _signal(symbol: str, price: float = 100.0, **kw) -> TradeSignal:
    fields = dict(signal_type="cloud_cross_bullish", direction="long", ticker=symbol, timeframe="5m",
                  conviction=80, entry_price=price, stop_loss=price * 0.98, timestamp=SESSION, source="test")
    fields.update(kw)
    return TradeSignal(**fields)


def _priced(core: Core, prefix: str, count: int, price: float) -> list[str]:
    """`count` tickers named `prefix`NN, each priced at `price` in the paper market."""
    tickers = [f"{prefix}{i:03d}" for i in range(count)]
    for ticker in tickers:
        core.brokers["paper"].set_price(ticker, price)
    return tickers


def _submitted(core: Core) -> list[str]:
    paper = core.brokers["paper"]
    return [r.client_order_id for r in paper.request_log if r.method == "submit_order"]


async def test_burst_of_100_signals_opens_exactly_max_positions(tmp_path: Path) -> None:
    core = await _core(tmp_path, paper={"initial_cash": 1_000_000.0}, executor={"max_single_stock_exposure": 0.05})
    tickers = _priced(core, "T", 100, 100.0)
    consumer = asyncio.create_task(core.consume_signals())
    try:
        await asyncio.gather(*(core.bus.signals.publish(_signal(t)) for t in tickers))
        for _ in range(200):
            await asyncio.sleep(0.01)
            if core.bus.signals.depth() == 0 and not core.router.in_flight():
                break
        await core.settle()
        limit = core.settings.executor.max_concurrent_positions
        assert len(_submitted(core)) == limit
        assert len(core.ledger.holdings) == limit
        await core.journal.flush()
        rejected = await core.journal.query(
            "SELECT reason FROM decisions WHERE stage='risk_gate' AND outcome='rejected'")
        assert len(rejected) == 100 - limit
        assert all("max_positions" in r["reason"] or "positions" in r["reason"] for r in rejected)
    finally:
        consumer.cancel()
        await core.stop()


async def test_signals_never_overspend_buying_power(tmp_path: Path) -> None:
    core = await _core(tmp_path, paper={"initial_cash": 100_000.0}, executor={"max_concurrent_positions": 100})
    paper = core.brokers["paper"]
    tickers = _priced(core, "B", 50, 50.0)
    try:
        results = [await core.orchestrator.process_signal(_signal(t, 50.0)) for t in tickers]
        approved = [r for r in results if r.success]
        assert approved and len(approved) < 50
        assert sum(r.intent.notional for r in approved) <= 100_000.0
        await core.settle()
        assert paper.cash >= 0
        assert all(r.status != "rejected" for r in (await paper.get_open_orders()))
        refused = [r for r in results if not r.success]
        assert all(r.pipeline_stage in ("risk_gate", "sizing") for r in refused)
        assert any("buying" in (r.rejection_reason or "") for r in refused)
    finally:
        await core.stop()


@pytest.mark.parametrize(
    ("field", "change"),
    [
        ("entry_price", {"entry_price": float("nan")}),
        ("entry_price", {"entry_price": -5.0}),
        ("stop_loss", {"stop_loss": 120.0}),
        ("timeframe", {"timeframe": "7m"}),
        ("conviction", {"conviction": 150}),
        ("ticker", {"ticker": ""}),
    ],
)
async def test_bad_signals_rejected_at_guard_naming_the_field_and_journaled(
    tmp_path: Path, field: str, change: dict
) -> None:
    core = await _core(tmp_path)
    try:
        result = await core.orchestrator.process_signal(_signal("AAPL", **change))
        assert not result.success and result.pipeline_stage == "signal_guard"
        assert field in result.rejection_reason
        await core.journal.flush()
        rows = await core.journal.query("SELECT stage, outcome, reason FROM decisions WHERE signal_id=?",
                                        (result.signal_id,))
        assert {"stage": "signal_guard", "outcome": "rejected", "reason": result.rejection_reason} in rows
        assert await core.journal.query("SELECT 1 FROM signals WHERE signal_id=?", (result.signal_id,))
        # the pipeline keeps working after it
        core.brokers["paper"].set_price("MSFT", 100.0)
        ok = await core.orchestrator.process_signal(_signal("MSFT"))
        assert ok.success, ok.rejection_reason
    finally:
        await core.stop()


async def test_kill_switch_blocks_entries(tmp_path: Path) -> None:
    core = await _core(tmp_path)
    try:
        core.state.activate_kill_switch("test halt")
        result = await core.orchestrator.process_signal(_signal("AAPL"))
        assert not result.success and result.pipeline_stage == "kill_switch"
        assert "test halt" in result.rejection_reason
        assert _submitted(core) == []
    finally:
        await core.stop()
