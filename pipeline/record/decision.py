"""DecisionRecord: every stage outcome of one signal, collected while it is decided and journaled once.

The orchestrator adds a `StageOutcome` per stage (kill switch, guard, market price, each of the risk gate's 8
checks and the gate itself, sizing, unified risk, instrument routing, the instrument's sizing, the intent) and
ends the record where the signal stopped (rejected: that stage and its reason) or with the intent (approved: its
client order id). The journal stores the record as one `decisions` row whose `stages` column holds the list;
the `decision_stages` view gives one row per stage for queries (`ordergate journal`, the dashboard, the replay).

While a signal is decided its stages are plain tuples (nothing formatted twice, no object per stage); the
finished record's `stages` are msgspec Structs, encoded to JSON without a dict per stage.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from enum import Enum
from typing import Any

import msgspec

APPROVED, REJECTED, NOT_RUN = "approved", "rejected", "not_run"
INTENT_STAGE = "intent"  # the last stage of an approved signal: its order intent was made


class StageOutcome(msgspec.Struct, omit_defaults=True):
    """One stage's verdict: approved / rejected / not_run, why, and its figures."""

    stage: str
    outcome: str
    reason: str = ""
    detail: dict[str, Any] | None = None


Entry = tuple[str, str, str, dict[str, Any] | None]  # stage, outcome, reason, detail
Checks = tuple[tuple[str, str, str], ...]           # a stage of several checks: (name, outcome, reason) each
Describe = Callable[[], tuple[str, dict[str, Any] | None]]  # a stage's reason and detail, made when read


class DecisionRecord:
    """The whole decision of one signal: its stages in order and where it ended.

    While the signal is decided its stages are noted as plain tuples: a risk gate's checks as one tuple of
    them, an approval's reason and detail as the function that makes them from the figures the stage found
    (`passed_by`, `approve_by`). They become `StageOutcome`s, each text formatted once, when the record is read
    (`stages`, `reason`, `detail`: the journal encodes the finished record once)."""

    __slots__ = ("_describe", "_described", "_detail", "_entries", "_reason", "client_order_id", "outcome",
                 "signal_id", "stage", "ts")

    def __init__(self, signal_id: str, ts: datetime | None) -> None:
        self.signal_id = signal_id
        self.ts = ts
        self._entries: list[Entry | tuple[str, Checks] | tuple[str, str, Describe]] = []
        self.stage = ""
        self.outcome = ""
        self._reason = ""
        self._detail: dict[str, Any] | None = None
        self._describe: Describe | None = None  # makes the end's reason and detail (approve_by)
        self._described = True                  # ... and they are made
        self.client_order_id: str | None = None

    def passed(self, stage: str, reason: str = "", detail: dict[str, Any] | None = None) -> None:
        """A stage approved the signal."""
        self._entries.append((stage, APPROVED, reason, detail))

    def passed_by(self, stage: str, describe: Describe) -> None:
        """A stage approved the signal; `describe()` gives its reason and detail when the record is read."""
        self._entries.append((stage, APPROVED, describe))

    def add(self, stage: str, outcome: str, reason: str = "", detail: dict[str, Any] | None = None) -> None:
        """A stage outcome of any kind (a risk check not run after an earlier one failed)."""
        self._entries.append((stage, outcome, reason, detail))

    def checks(self, prefix: str, checks: Checks) -> None:
        """Each check of a stage of several (the risk gate's 8), in order, as the stage `<prefix>.<name>`."""
        self._entries.append((prefix, checks))

    def reject(self, stage: str, reason: str, detail: dict[str, Any] | None = None) -> None:
        """The signal stopped at `stage`: the last stage outcome and the record's end."""
        self._entries.append((stage, REJECTED, reason, detail))
        self.stage, self.outcome, self._reason, self._detail = stage, REJECTED, reason, detail or None
        self._describe, self._described = None, True

    def approve(self, client_order_id: str, reason: str = "", detail: dict[str, Any] | None = None) -> None:
        """Every stage passed: the intent `client_order_id` was made."""
        self._entries.append((INTENT_STAGE, APPROVED, reason, detail))
        self.stage, self.outcome, self._reason, self._detail = INTENT_STAGE, APPROVED, reason, detail or None
        self._describe, self._described = None, True
        self.client_order_id = client_order_id

    def approve_by(self, client_order_id: str, describe: Describe) -> None:
        """`approve`, its reason and detail made by `describe()` when the record is read."""
        self._entries.append((INTENT_STAGE, APPROVED, describe))
        self.stage, self.outcome, self._describe, self._described = INTENT_STAGE, APPROVED, describe, False
        self.client_order_id = client_order_id

    @property
    def reason(self) -> str:
        """Why the record ended where it did."""
        if not self._described:
            self._end()
        return self._reason

    @property
    def detail(self) -> dict[str, Any] | None:
        """The figures of the stage it ended at (None for none)."""
        if not self._described:
            self._end()
        return self._detail

    def _end(self) -> None:
        if self._describe is not None:
            reason, detail = self._describe()
            self._reason, self._detail = reason, detail or None
        self._described = True

    @property
    def stages(self) -> list[StageOutcome]:
        """Every stage outcome in order (an empty detail is none)."""
        return self._outcomes(None)  # type: ignore[return-value]

    def stages_json(self) -> str:
        """`encode_stages(self.stages)`, the same text, made without a StageOutcome per plain check: a check that
        passed (or was not run) without a reason is one of a few fixed fragments, encoded once."""
        return _encoder.encode(self._outcomes(_CHECK_FRAGMENTS)).decode()

    def _outcomes(self, fragments: dict[tuple[str, str, str], msgspec.Raw] | None) -> list[StageOutcome | msgspec.Raw]:
        out: list[StageOutcome | msgspec.Raw] = []
        for entry in self._entries:
            if len(entry) == 2:
                prefix, checks = entry  # type: ignore[misc]
                for name, outcome, why in checks:
                    if why or fragments is None:
                        out.append(StageOutcome(f"{prefix}.{name}", outcome, why))
                    else:
                        out.append(_check_fragment(fragments, prefix, name, outcome))
                continue
            if len(entry) == 3:
                stage, outcome, describe = entry  # type: ignore[misc]
                reason, detail = (self.reason, self.detail) if describe is self._describe else describe()
            else:
                stage, outcome, reason, detail = entry  # type: ignore[misc]
            out.append(StageOutcome(stage, outcome, reason, detail or None))
        return out

    @property
    def finished(self) -> bool:
        return bool(self.outcome)

    def outcome_of(self, stage: str) -> StageOutcome | None:
        """The (last) outcome of `stage`, or None when the signal never reached it."""
        for entry in reversed(self.stages):
            if entry.stage == stage:
                return entry
        return None


def _enc_hook(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    return str(value)  # anything else a stage put in its detail (a Decimal, a date) as text: never lost, never raised


_encoder = msgspec.json.Encoder(enc_hook=_enc_hook)
# (stage prefix, check, outcome) -> the encoded StageOutcome of a check without a reason: the risk gate's checks
# are a fixed set (bounded all the same: a stage of checks made up at run time cannot grow it without end)
_CHECK_FRAGMENTS: dict[tuple[str, str, str], msgspec.Raw] = {}
_MAX_CHECK_FRAGMENTS = 512


def _check_fragment(fragments: dict[tuple[str, str, str], msgspec.Raw], prefix: str, name: str,
                    outcome: str) -> msgspec.Raw:
    key = (prefix, name, outcome)
    raw = fragments.get(key)
    if raw is None:
        if len(fragments) >= _MAX_CHECK_FRAGMENTS:
            fragments.clear()
        raw = fragments[key] = msgspec.Raw(_encoder.encode(StageOutcome(f"{prefix}.{name}", outcome)))
    return raw
_stages_decoder = msgspec.json.Decoder(list[StageOutcome])


def encode_stages(stages: list[StageOutcome]) -> str:
    """The stage list as JSON (the `decisions.stages` column)."""
    return _encoder.encode(stages).decode()


def encode_detail(detail: dict[str, Any] | None) -> str | None:
    """A detail mapping as JSON, None for none (the `decisions.detail` column)."""
    return _encoder.encode(detail).decode() if detail else None


def decode_stages(text: str | bytes) -> list[StageOutcome]:
    """The stage list of a journaled record."""
    return _stages_decoder.decode(text)
