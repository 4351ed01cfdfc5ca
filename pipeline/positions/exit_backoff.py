"""ExitBackoff: a position whose exits its broker keeps refusing is tried again after a growing pause.

An exit the broker refuses (the shares held by an order the account holder placed, the account restricted, the
asset not tradable) would otherwise be made again on the position's next bar, and the next: one order a minute
per position against the account's rate limit, each refusal alerted. After a refusal the position's next exit
waits FIRST_PAUSE (30 s) of the injected clock, doubling with each refusal in a row up to MOST_PAUSE (5 minutes:
a refusal that lasts is one somebody must act on, and the alert says so); each refusal reason
is alerted once (a new reason is alerted again). An exit that the broker takes (filled, cancelled, or working)
ends the pauses. `flatten` is not held back: it is the operator asking now.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from pipeline.core.models import PositionKey

FIRST_PAUSE = timedelta(seconds=30)
MOST_PAUSE = timedelta(minutes=5)


@dataclass(slots=True)
class Refusals:
    """One position's refusals in a row: when its next exit may go, how many, and the last reason."""

    until: datetime
    count: int
    reason: str


class ExitBackoff:
    """The refused positions and when each may exit again (see the module docstring)."""

    def __init__(self, first: timedelta = FIRST_PAUSE, most: timedelta = MOST_PAUSE) -> None:
        self.first = first
        self.most = most
        self.refusals: dict[PositionKey, Refusals] = {}

    def refused(self, key: PositionKey, reason: str, now: datetime) -> tuple[bool, timedelta]:
        """An exit of `key` was refused now: (whether the reason is new for it, the pause before the next one)."""
        last = self.refusals.get(key)
        count = last.count + 1 if last is not None else 1
        pause = min(self.first * (2 ** (count - 1)), self.most)
        self.refusals[key] = Refusals(now + pause, count, reason)
        return last is None or last.reason != reason, pause

    def holds(self, key: PositionKey, now: datetime) -> datetime | None:
        """Until when the position's next exit waits; None when it may go now."""
        refusals = self.refusals.get(key)
        if refusals is None or now >= refusals.until:
            return None
        return refusals.until

    def taken(self, key: PositionKey) -> None:
        """The broker took an exit of the position (or the position is gone): no more pauses."""
        self.refusals.pop(key, None)

    def keep_only(self, held: set[PositionKey]) -> None:
        """Forget the positions no longer held."""
        for key in [k for k in self.refusals if k not in held]:
            del self.refusals[key]
