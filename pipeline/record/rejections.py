"""RejectionKinds: how often each kind of rejection happened, with the first reason of each as its example.

A kind is (stage, the reason's leading name): 'risk_gate' / 'buying_power', 'signal_guard' / 'freshness'. The
replay's "top rejection reasons" are the most frequent kinds: from the journal's decision records when it keeps
them, else from the tally the signal recorder keeps of the records it finished (a journal-off replay). The tally
is bounded: past `limit` kinds, a new kind is counted under its stage as OTHER_KIND.
"""

from __future__ import annotations

from typing import Any

KIND_CHARS = 60    # a kind is at most this long (a reason without a leading name is its own kind)
MAX_KINDS = 256    # kinds a tally keeps apart
OTHER_KIND = "(other kinds)"


def rejection_kind(reason: str) -> str:
    """The reason's leading name ('var' of 'var: 1.2% of equity > 1.0%'), else the reason itself, cut short."""
    return reason.split(":", 1)[0].strip()[:KIND_CHARS] if ":" in reason else reason[:KIND_CHARS]


class RejectionKinds:
    """A count and the first example of each kind of rejection (see the module docstring)."""

    def __init__(self, limit: int | None = MAX_KINDS) -> None:
        self.limit = limit
        self._kinds: dict[tuple[str, str], list[Any]] = {}  # (stage, kind) -> [count, first reason]

    def add(self, stage: str, reason: str) -> None:
        """Count one rejection at `stage` for `reason`."""
        key = (stage, rejection_kind(reason))
        entry = self._kinds.get(key)
        if entry is None:
            if self.limit is not None and len(self._kinds) >= self.limit:
                key = (stage, OTHER_KIND)
                entry = self._kinds.get(key)
            if entry is None:
                entry = self._kinds[key] = [0, reason]
        entry[0] += 1

    def __len__(self) -> int:
        return len(self._kinds)

    def top(self, limit: int) -> list[dict[str, Any]]:
        """The `limit` most frequent kinds, most first (ties by stage, then kind): stage, kind, count, example."""
        ranked = sorted(self._kinds.items(), key=lambda item: (-item[1][0], item[0][0], item[0][1]))
        return [{"stage": stage, "kind": kind, "count": count, "example": example}
                for (stage, kind), (count, example) in ranked[:limit]]
