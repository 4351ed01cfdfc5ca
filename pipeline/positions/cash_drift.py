"""The broker's cash against the ledger's, between reconciliation checks: when to take the broker's figure.

The ledger's cash is the broker's at start plus every fill since. Over a long run the broker's moves without a
fill — dividends, fees, margin and borrow interest, a deposit or a withdrawal — and the ledger drifts from it,
so the risk gate sizes on an equity the account does not have. `CashDrift.observe` is given, at each quiet check
(one broker, the positions agreeing, no order activity within the grace period), the broker's cash and the
ledger's (with the hand trades' cash the external book carries). A difference is taken only when two checks in a
row saw the same one with the ledger unchanged between them: a fill of ours that the broker's cash already holds
and the ledger has not applied yet (its event in transit, a lagging positions view) moves the ledger before the
second check, so it is never counted twice.
"""

from __future__ import annotations

from dataclasses import dataclass

CENT = 0.005           # figures this close are the same (the broker's cash is in cents)
LARGE_SHARE = 0.01     # a move above 1 % of the equity is alerted (a deposit, a withdrawal, a large fee)


@dataclass(frozen=True, slots=True)
class Drift:
    """A confirmed difference: the broker's cash, the ledger's before, and the difference (broker - ledger)."""

    broker_cash: float
    ledger_cash: float
    amount: float

    def large(self, equity: float) -> bool:
        """More than LARGE_SHARE of `equity`: worth an alert, not just a log line."""
        return abs(self.amount) > LARGE_SHARE * max(abs(equity), 1.0)


class CashDrift:
    """Two consecutive sightings of the same cash difference, the ledger unchanged between them, before the
    ledger takes the broker's cash."""

    def __init__(self) -> None:
        self._last: tuple[float, float] | None = None  # (broker cash, ledger cash) at the previous quiet check

    def forget(self) -> None:
        """A check that was not quiet (a working order's activity, a difference in positions): start over."""
        self._last = None

    def observe(self, broker_cash: float, ledger_cash: float) -> Drift | None:
        """This quiet check's figures; the drift to take now, or None (none, or not seen twice yet)."""
        if abs(broker_cash - ledger_cash) < CENT:
            self._last = None
            return None
        last, self._last = self._last, (broker_cash, ledger_cash)
        if last is None or abs(last[0] - broker_cash) >= CENT or abs(last[1] - ledger_cash) >= CENT:
            return None  # first sighting, or something moved since: seen once more first
        self._last = None
        return Drift(broker_cash, ledger_cash, broker_cash - ledger_cash)
