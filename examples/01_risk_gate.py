"""The spec's "Risk Gate Validation (8 Checks)" example; only the imports differ."""

from pipeline import (
    AccountState,
    ExecutorConfig,
    Position,
    RiskDecision,  # noqa: F401  (imported by the spec's example)
    RiskGate,
    SignalType,
    TradeSignal,
)

# Configure risk parameters
config = ExecutorConfig(
    max_risk_per_trade=0.05,
    max_concurrent_positions=10,
    daily_loss_limit=0.10,          # 10% daily loss limit
    max_single_stock_exposure=0.15,  # 15% per ticker
    max_sector_exposure=0.30,        # 30% per sector
    min_account_equity=25_000.0,     # PDT compliance
)

# Current account state
account = AccountState(
    equity=100_000,
    cash=50_000,
    buying_power=150_000,
    open_positions=[
        Position(
            ticker="AAPL", direction="long",
            entry_price=180.0, current_price=185.0,
            shares=100, stop_loss=175.0,
        ),
    ],
    daily_pnl=-500.0,
    starting_equity=100_000,
)

# Create a trade signal
signal = TradeSignal(
    signal_type=SignalType.CLOUD_CROSS_BULLISH,
    direction="long",
    ticker="NVDA",
    timeframe="5m",
    conviction=75,
    entry_price=850.0,
    stop_loss=830.0,
)

# Run all 8 risk checks
gate = RiskGate(config)
decision = gate.validate(signal, account)

if decision.approved:
    print("Signal APPROVED for execution")
    if decision.adjustments:
        print(f"Adjustments: {decision.adjustments}")
else:
    print(f"Signal REJECTED: {decision.reason}")

# The 8 checks are:
# 1. Daily P&L above loss limit
# 2. Open positions below max (10)
# 3. No duplicate ticker (unless adding to winner)
# 4. No conflicting signals (long + short same ticker)
# 5. Sector exposure within limits (30%)
# 6. Market hours check (9:30-16:00 ET)
# 7. Account equity above minimum ($25K PDT)
# 8. Sufficient buying power
