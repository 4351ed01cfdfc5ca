"""SignalRecorder: gives every signal its id and journals its decision record (every stage outcome, one row).

The id is derived from the signal's content (ticker, direction, type, timeframe, timestamp, source), so the
same signal seen again — after a restart, or re-sent by an alert service — has the same id and therefore the
same client order id: the broker and the journal recognise it instead of trading it twice.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

import structlog

from pipeline.core.models import TradeSignal
from pipeline.record.decision import REJECTED, DecisionRecord
from pipeline.record.journal import Journal, iso_of

log = structlog.get_logger("ordergate.signals")


def signal_id_for(signal: TradeSignal) -> str:
    """Deterministic id of a signal's content (and of the strategy that made it)."""
    ts = iso_of(signal.timestamp) if isinstance(signal.timestamp, datetime) else str(signal.timestamp)
    parts: tuple[object, ...] = (
        signal.ticker, signal.direction, signal.signal_type, signal.timeframe, ts, signal.source,
        signal.entry_price, signal.stop_loss,
    )
    if signal.strategy:  # two strategies seeing the same setup give two signals
        parts = (*parts, signal.strategy)
    key = "|".join(str(x) for x in parts)
    return "sig-" + hashlib.sha256(key.encode()).hexdigest()[:20]


class SignalRecorder:
    """Audit trail of signals (PRD-162): one signals row and one decision record (all its stages) per signal."""

    def __init__(self, journal: Journal | None, enabled: bool = True) -> None:
        self.journal = journal if enabled else None

    def assign(self, signal: TradeSignal, received: datetime) -> str:
        """Give the signal its id (unless it has one) and journal it (buffered)."""
        if not signal.signal_id:
            signal.signal_id = signal_id_for(signal)
        if self.journal is not None:
            self.journal.record_signal(signal, received)
        return signal.signal_id

    def begin(self, signal: TradeSignal, received: datetime) -> DecisionRecord:
        """Give the signal its id, journal it (buffered) and open its decision record."""
        return DecisionRecord(self.assign(signal, received), received)

    def finish(self, record: DecisionRecord, signal: TradeSignal) -> None:
        """Journal the finished record once (buffered: committed with the next intent or batch) and log a
        rejection with the signal id."""
        if self.journal is not None:
            self.journal.record_signal_decision(record)
        if record.outcome == REJECTED:
            log.info("signal_rejected", signal_id=record.signal_id, ticker=str(signal.ticker)[:24],
                     stage=record.stage, reason=record.reason)

    def stage(
        self, signal: TradeSignal, stage: str, approved: bool, reason: str = "", ts: datetime | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        """Record one stage's outcome on its own (a decision row of one stage) and log it with the signal id; the
        orchestrator collects a signal's stages in one record instead (`begin` / `finish`)."""
        outcome = "approved" if approved else "rejected"
        if self.journal is not None:
            self.journal.record_decision(signal.signal_id, stage, outcome, reason, ts, detail)
        if not approved:
            log.info("signal_rejected", signal_id=signal.signal_id, strategy=signal.strategy,
                     ticker=str(signal.ticker)[:24], stage=stage, reason=reason)
