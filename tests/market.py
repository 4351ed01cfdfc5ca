"""A market for in-process tests: the prices the data feed would have shown before the test's signals.

Entries are sized on the market price (issue 11.3), so a signal with no market is rejected: tests that send one
first mark its ticker here, as a feed bar would (the ledger's marks, and each paper broker's own price).
"""

from __future__ import annotations

from typing import Any


def set_market(core: Any, prices: dict[str, float]) -> None:
    """Mark each symbol at its price in the core's ledger and in every broker that keeps its own (paper)."""
    for symbol, price in prices.items():
        core.ledger.mark(symbol, price)
        for broker in core.brokers.values():
            set_price = getattr(broker, "set_price", None)
            if set_price is not None:
                set_price(symbol, price)
