"""The spec's "Instrument Routing (Options / ETFs / Stocks)" example; only the imports differ."""

from pipeline import (
    LEVERAGED_ETF_CATALOG,  # noqa: F401
    ExecutorConfig,
    InstrumentDecision,  # noqa: F401  (imported by the spec's example)
    InstrumentMode,
    InstrumentRouter,
    SignalType,
    TradeSignal,
)

# Route based on instrument mode
config = ExecutorConfig(instrument_mode=InstrumentMode.BOTH)
router = InstrumentRouter(config)

signal = TradeSignal(
    signal_type=SignalType.TREND_ALIGNED_LONG,
    direction="long",
    ticker="NVDA",
    timeframe="5m",
    conviction=80,
    entry_price=850.0,
    stop_loss=830.0,
)

decision = router.route(signal)
print(f"Instrument: {decision.instrument_type}")  # "leveraged_etf" or "options"
print(f"Symbol: {decision.symbol}")               # e.g., "SOXL" (semiconductor 3x bull)
print(f"Reason: {decision.reason}")

# ETF catalog maps sectors to leveraged ETFs:
# TQQQ/SQQQ (NASDAQ 3x), SPXL/SPXS (S&P 3x), SOXL/SOXS (Semis 3x),
# TECL/TECS (Tech 3x), FAS/FAZ (Financials 3x), TNA/TZA (Russell 3x), etc.
