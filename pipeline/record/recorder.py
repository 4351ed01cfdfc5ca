"""SignalRecorder: gives every signal its id and journals its decision record (every stage outcome, one row).

The id is derived from the signal's content (ticker, direction, type, timeframe, timestamp, source), so the
same signal seen again — after a restart, or re-sent by an alert service — has the same id and therefore the
same client order id: the broker and the journal recognise it instead of trading it twice.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import structlog

from pipeline.core.digest import sha256_hex
from pipeline.core.logs import info_enabled
from pipeline.core.models import TradeSignal
from pipeline.record.decision import REJECTED, DecisionRecord
from pipeline.record.journal import Journal, iso_of
from pipeline.record.rejections import RejectionKinds

log = structlog.get_logger("ordergate.signals")


def signal_id_for(signal: TradeSignal) -> str:
    """Deterministic id of a signal's content (and of the strategy that made it): the sha256 of
    `ticker|direction|signal_type|timeframe|timestamp|source|entry_price|stop_loss[|strategy]`, each as str()."""
    stamp = signal.timestamp
    ts = iso_of(stamp) if isinstance(stamp, datetime) else str(stamp)
    key = (f"{signal.ticker!s}|{signal.direction!s}|{signal.signal_type!s}|{signal.timeframe!s}|{ts}|"
           f"{signal.source!s}|{signal.entry_price!s}|{signal.stop_loss!s}")
    if signal.strategy:  # two strategies seeing the same setup give two signals
        key = f"{key}|{signal.strategy!s}"
    return "sig-" + sha256_hex(key.encode())[:20]


class SignalRecorder:
    """Audit trail of signals (PRD-162): one signals row and one decision record (all its stages) per signal."""

    def __init__(self, journal: Journal | None, enabled: bool = True) -> None:
        self.journal = journal if enabled else None
        # no journal to hold the decision records: the kinds of rejection they would show, tallied here
        self.rejections: RejectionKinds | None = RejectionKinds() if self.journal is None else None

    def assign(self, signal: TradeSignal, received: datetime) -> str:
        """Give the signal its id (unless it has one) and journal it (buffered)."""
        if not signal.signal_id:
            signal.signal_id = signal_id_for(signal)
        if self.journal is not None:
            self.journal.record_signal(signal, received)
        return signal.signal_id

    def begin(self, signal: TradeSignal, received: datetime) -> DecisionRecord:
        """Give the signal its id, journal it (buffered) and open its decision record."""
        if not signal.signal_id:
            signal.signal_id = signal_id_for(signal)
        if self.journal is not None:
            self.journal.record_signal(signal, received)
        return DecisionRecord(signal.signal_id, received)

    def finish(self, record: DecisionRecord, signal: TradeSignal) -> None:
        """Journal the finished record once (buffered: committed with the next intent or batch) and log a
        rejection with the signal id."""
        if self.journal is not None:
            self.journal.record_signal_decision(record)
        if record.outcome == REJECTED:
            if self.rejections is not None:
                self.rejections.add(record.stage, record.reason)
            if info_enabled(log):
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
