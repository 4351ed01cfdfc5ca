"""When an option the book holds has expired: its last session (on or before its expiry date) has closed.

After that close the broker takes the contract out of the account overnight: worthless, or exercised into (or
assigned from) shares of the underlying. The daemon closes its options at the cutoff of that last session (the
EOD rule); one still in the book past the close (the daemon was down, its exit was refused) is gone from the broker
by the next check, and reconciliation books it as expired (daemon.expiries) instead of calling it a lost position.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, timedelta

from pipeline.instruments.occ import try_parse_occ

MAX_HOLIDAY_RUN = 10  # days searched back from an expiry for its last session


def last_session_close(expiry: date, session: Callable[[date], tuple[datetime, datetime] | None]) -> datetime | None:
    """The close of the last session on or before `expiry` (a holiday expiry trades last the day before)."""
    day = expiry
    for _ in range(MAX_HOLIDAY_RUN):
        hours = session(day)
        if hours is not None:
            return hours[1]
        day -= timedelta(days=1)
    return None


def expired_by(symbol: str, now: datetime,
               session: Callable[[date], tuple[datetime, datetime] | None]) -> date | None:
    """The expiry date of the option `symbol` when its last session has closed by `now`; None for anything else
    (not an OCC option symbol, or still tradable)."""
    contract = try_parse_occ(symbol)
    if contract is None:
        return None
    close = last_session_close(contract.expiry, session)
    if close is None or now < close:
        return None
    return contract.expiry
