"""The spec's "Position Reconciliation" example; only the import differs."""

from pipeline import PositionReconciler, ReconciliationReport  # noqa: F401

reconciler = PositionReconciler()

# Compare internal positions with broker positions
report = reconciler.reconcile(
    internal_positions=[
        {"symbol": "AAPL", "shares": 100, "direction": "long"},
        {"symbol": "MSFT", "shares": 50, "direction": "long"},
    ],
    broker_positions=[
        {"symbol": "AAPL", "shares": 100},
        {"symbol": "GOOGL", "shares": 25},  # Ghost position (not in internal)
    ],
)
print(f"Matches: {report.matches}")
print(f"Mismatches: {len(report.mismatches)}")
for m in report.mismatches:
    print(f"  {m.symbol}: {m.mismatch_type} - {m.description}")
# Types: "ghost" (broker only), "orphan" (internal only), "quantity_mismatch"
