"""The spec's "Bot Orchestrator Pipeline" example; imports differ, `process_signal` is awaited (the daemon is
asyncio) inside `asyncio.run(main())`, and the `signal` the spec takes from the risk-gate example is built here.

Run offline it has no market data, so the signal stops at the market-price stage (entries are sized on the
market, never on the price a signal claims); the daemon gives the orchestrator its feed's prices."""

import asyncio

from pipeline import (
    AccountState,
    BotOrchestrator,
    ExecutorConfig,
    InstrumentMode,
    PersistentStateManager,  # noqa: F401
    PipelineConfig,
    PipelineResult,  # noqa: F401  (imported by the spec's example)
    SignalGuard,  # noqa: F401
    SignalType,
    TradeSignal,
)

signal = TradeSignal(
    signal_type=SignalType.CLOUD_CROSS_BULLISH,
    direction="long",
    ticker="NVDA",
    timeframe="5m",
    conviction=75,
    entry_price=850.0,
    stop_loss=830.0,
)


async def main() -> None:
    # Configure the hardened pipeline
    pipeline_config = PipelineConfig(
        executor_config=ExecutorConfig(
            instrument_mode=InstrumentMode.BOTH,
            max_concurrent_positions=10,
            daily_loss_limit=0.10,
        ),
        enable_signal_recording=True,    # PRD-162 audit trail
        enable_unified_risk=True,        # PRD-163 unified risk
        enable_feedback_loop=True,       # PRD-166 performance feedback
        max_order_retries=3,
        retry_backoff_base=1.0,
        state_dir=".bot_state",
        max_signal_age_seconds=120.0,    # Reject stale signals
        dedup_window_seconds=300.0,      # Reject duplicate signals
        auto_kill_on_daily_loss=True,
        enable_alerting=True,            # PRD-174 alert dispatch
        enable_analytics=True,           # PRD-175 live analytics
        feedback_adjust_every_n_trades=50,  # PRD-176 adaptive feedback
    )

    # Create orchestrator
    account = AccountState(equity=100_000, cash=50_000, buying_power=150_000)
    orchestrator = BotOrchestrator(config=pipeline_config, account=account)

    # Process a signal through the full pipeline
    result = await orchestrator.process_signal(signal)

    if result.success:
        print(f"Position created: {result.position.ticker}")
        print(f"Order: {result.order_result}")
        print(f"Signal ID: {result.signal_id}")      # Audit trail
        print(f"Pipeline stage: {result.pipeline_stage}")
    else:
        print(f"Rejected at stage '{result.pipeline_stage}': {result.rejection_reason}")

    # Kill switch management
    state = orchestrator.get_state()  # noqa: F841
    orchestrator.activate_kill_switch("Manual halt")
    orchestrator.deactivate_kill_switch()


asyncio.run(main())
