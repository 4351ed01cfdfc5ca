"""Stock splits found by reconciliation: the book rebased the way the broker rebased the position.

A difference (no order activity on the symbol within the grace, no order of ours unfinished on it; one sighting
is enough, since no lagging view keeps the cost while the quantity moves) whose broker side is a split of the
whole book of that symbol, ordergate's positions and the external part together
(`pipeline.positions.splits.split_ratio`), is not a mismatch: the split is journaled first
(kv `splits`, so a restart rebuilding the ledger from the fills applies it at the same place), then every part
that holds prices of the symbol takes the new shares: the ledger's positions (entry, stop, target over r), the
external part, the risk's close history, the strategies' indicators, and each resting stop (a replace at its
level over r). The operator is alerted. Options are not judged here (a split changes their deliverable, not
their quantity).
"""

from __future__ import annotations

from fractions import Fraction
from typing import TYPE_CHECKING, Any

import structlog

from pipeline.instruments.occ import is_occ
from pipeline.positions.splits import SplitRecord, describe, is_whole, split_ratio
from pipeline.strategy.port import RescalesPrices
from pipeline.strategy.strategy_set import StrategySet

if TYPE_CHECKING:
    from daemon.core import Core

log = structlog.get_logger("ordergate.daemon")


class Splits:
    """Finds the splits among a reconciliation's differences and applies them to a Core's parts."""

    def __init__(self, core: Core) -> None:
        self.core = core

    def ratio(self, symbol: str, broker_positions: list[dict[str, Any]],
              seen: tuple[float, float] | None = None) -> Fraction | None:
        """The split that turned the symbol's whole book (ours and external, one side) into the broker's one
        position in it ({symbol, shares, avg_price, broker} rows, as reconciliation reads them), or None.
        `seen`: (quantity, average) the broker showed when it last agreed with the book; its own average is the
        better one to compare (IB's average cost holds the commissions, more than the slack on a small position)."""
        if is_occ(symbol):
            return None
        at_broker = [p for p in broker_positions if p["symbol"] == symbol]
        if len(at_broker) != 1:
            return None
        before = self._book(symbol)
        if before is None:
            return None
        after = float(at_broker[0]["shares"]), float(at_broker[0].get("avg_price") or 0.0)
        ratio = split_ratio(*before, *after)
        if ratio is None and seen is not None and abs(seen[0] - before[0]) < 1e-9:
            ratio = split_ratio(*seen, *after)
        return ratio

    def _book(self, symbol: str) -> tuple[float, float] | None:
        """(signed quantity, average price) of everything the book holds of `symbol`, or None when there is
        nothing, or both sides (no one average)."""
        parts = [(h.quantity, h.position.entry_price) for h in self.core.ledger.holdings.values()
                 if h.position.symbol == symbol and abs(h.quantity) > 1e-9]
        external = next((e for e in self.core.external.held() if e.symbol == symbol), None)
        if external is not None and abs(external.quantity) > 1e-9:
            parts.append((external.quantity, external.avg_price))
        if not parts or len({q > 0 for q, _ in parts}) != 1:
            return None
        qty = sum(q for q, _ in parts)
        return qty, sum(abs(q) * p for q, p in parts) / abs(qty)

    async def apply(self, symbol: str, ratio: Fraction, broker_qty: float, broker: str) -> SplitRecord:
        """Journal the split, then rebase every part that holds the symbol's prices; returns the record."""
        core = self.core
        quantities = [h.quantity for h in core.ledger.holdings.values() if h.position.symbol == symbol]
        whole = is_whole(broker_qty) and all(is_whole(q) for q in quantities) \
            and is_whole(core.external.quantity(symbol))
        fills_before = await core.journal.fill_count(symbol) if core.journal is not None else 0
        record = SplitRecord(symbol, ratio, fills_before, core.clock.now().isoformat(), broker, whole)
        if core.journal is not None:
            await core.journal.record_split(record)  # durable before anything moves (and before a stop does)
        before = core.ledger.net(symbol)
        self.rebase(record)
        log.warning("stock_split_applied", symbol=symbol, split=describe(ratio), ratio=float(ratio),
                    quantity_before=before, quantity_after=core.ledger.net(symbol), broker=broker,
                    broker_quantity=broker_qty)
        await core.alert("stock_split", f"{symbol}: {describe(ratio)} split seen at {broker} (broker holds "
                         f"{broker_qty:g}): positions, stops and indicators rebased", "warning")
        return record

    def rebase(self, record: SplitRecord) -> None:
        """Every in-memory part that holds prices or shares of the symbol, in the new shares."""
        core, symbol, ratio = self.core, record.symbol, record.ratio
        core.ledger.rescale(symbol, ratio, record.whole)
        core.external.rescale(symbol, ratio, record.whole)
        core.orchestrator.prices.rescale(symbol, float(ratio))
        left_out = self._rescale_strategies(symbol, float(ratio))
        if left_out:
            log.warning("stock_split_strategy_not_rescaled", symbol=symbol, strategies=list(left_out),
                        description="these strategies keep pre-split prices for the symbol")
        core.lifecycle.rebuild_index()
        core.stops.rescale(symbol, float(ratio))

    def _rescale_strategies(self, symbol: str, ratio: float) -> tuple[str, ...]:
        """The strategies' indicators of `symbol` in the new shares; the names of those that cannot rescale."""
        strategy = self.core.strategy
        if isinstance(strategy, StrategySet):
            return strategy.rescale(symbol, ratio)
        if isinstance(strategy, RescalesPrices):  # one strategy alone (its own cloud source)
            strategy.rescale(symbol, ratio)
            return ()
        return (str(getattr(strategy, "name", type(strategy).__name__)),)
