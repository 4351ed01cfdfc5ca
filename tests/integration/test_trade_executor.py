"""TradeExecutor (the spec's direct path) and OrderManager / SmartOrderRouter over the real router and stages."""

from __future__ import annotations

from datetime import UTC, datetime

from adapters import PaperBroker
from config.settings import PaperSettings, SmartRouterSettings
from pipeline import (
    AccountState,
    ExecutorConfig,
    OrderManager,
    SimulatedClock,
    SmartOrderRouter,
    SmartRouter,
    TradeExecutor,
    TradeSignal,
)
from pipeline.core.models import OrderIntent, OrderStatus, Side, client_order_id_for
from pipeline.execution.smart_router import Venue

NOW = datetime(2026, 11, 24, 16, 0, tzinfo=UTC)  # 11:00 ET, a regular session
ACCOUNT = AccountState(equity=100_000, cash=100_000, buying_power=100_000, starting_equity=100_000)


def _signal(**kw: object) -> TradeSignal:
    values = {"signal_type": "cloud_cross_bullish", "direction": "long", "ticker": "AAPL", "timeframe": "5m",
              "conviction": 80, "entry_price": 100.0, "stop_loss": 98.0, "timestamp": NOW, "source": "test", **kw}
    return TradeSignal(**values)  # type: ignore[arg-type]


async def _executor() -> tuple[TradeExecutor, PaperBroker]:
    clock = SimulatedClock(NOW)
    broker = PaperBroker(PaperSettings(persistent=False), clock, name="paper")
    await broker.connect()
    broker.set_price("AAPL", 100.0)
    executor = TradeExecutor(ExecutorConfig(instrument_mode="stock"), broker=broker, price_lookup=broker.last_price,
                             clock=clock)
    return executor, broker


async def test_signal_to_a_filled_position_in_one_attempt() -> None:
    executor, broker = await _executor()
    result = await executor.process_signal(_signal(), ACCOUNT)
    assert result.success and result.order_result is not None
    assert result.order_result.status == OrderStatus.FILLED
    assert result.position is not None and result.position.ticker == "AAPL"
    assert result.position.shares == result.order_result.filled_qty > 0
    assert result.position.stop_loss == result.intent.stop_loss
    assert [r.method for r in broker.request_log].count("submit_order") == 1


async def test_no_freshness_or_dedup_guard_but_the_risk_gate_and_the_kill_switch() -> None:
    executor, _ = await _executor()
    old = _signal(timestamp=datetime(2026, 11, 20, 16, 0, tzinfo=UTC))  # days old: the orchestrator rejects it
    assert (await executor.process_signal(old, ACCOUNT)).pipeline_stage != "signal_guard"
    poor = AccountState(equity=10_000, cash=10_000, buying_power=10_000, starting_equity=10_000)
    rejected = await executor.process_signal(_signal(ticker="MSFT"), poor)
    assert not rejected.success
    executor.activate_kill_switch("test")
    assert executor.kill_switch.durable is False or executor.kill_switch.state is None  # in memory
    halted = await executor.process_signal(_signal(ticker="NVDA"), ACCOUNT)
    assert halted.pipeline_stage == "kill_switch"


async def test_order_manager_and_smart_order_router_use_the_one_router() -> None:
    executor, broker = await _executor()
    router = executor.router
    assert router is not None
    manager = OrderManager(router)
    sid = "sig-om-1"
    intent = OrderIntent(client_order_id=client_order_id_for(sid), signal_id=sid, symbol="AAPL", side=Side.BUY,
                         quantity=5, ticker="AAPL", reference_price=100.0)
    assert (await manager.submit(intent)).status == OrderStatus.FILLED
    assert await broker.get_order_by_client_id(intent.client_order_id) is not None
    smart = SmartOrderRouter(SmartRouter(SmartRouterSettings(enabled=True), [Venue("paper")], executor.clock), router)
    assert smart.route(intent).venue == "paper" and router.smart is smart.smart
