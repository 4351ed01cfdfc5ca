"""NYSE sessions (XNYS, from exchange_calendars): holidays, early closes, regular hours. Cached per day.

The session table of the calendar's range comes from its cache file (pipeline.core.session_cache) when there
is one of the installed exchange_calendars and pandas; only otherwise is it worked out
(pipeline.core.xnys_rules, which imports pandas and exchange_calendars) and the file written for the next
process.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from pipeline.core import session_cache

NEW_YORK = ZoneInfo("America/New_York")


def session_table(start: str, end: str) -> dict[int, tuple[int, int]]:
    """{day ordinal: (open, close) in UTC epoch seconds} of every XNYS session in [start, end]."""
    rows = session_cache.read(start, end)
    if rows is None:
        from pipeline.core.xnys_rules import session_rows  # pandas and exchange_calendars: only to build

        rows = session_rows(start, end)
        session_cache.write(start, end, rows)
    return {day: (opens, closes) for day, opens, closes in rows}


class MarketCalendar:
    """Answers 'is the market open at t', 'when does today's session close' for XNYS."""

    def __init__(self, start: str = "2000-01-01", end: str | None = None) -> None:
        end = end or f"{datetime.now(UTC).year + 2}-12-31"
        self._table = session_table(start, end)
        self._session_cache: dict[date, tuple[datetime, datetime] | None] = {}

    def session(self, day: date) -> tuple[datetime, datetime] | None:
        """(open, close) in UTC of the session on this New York calendar day, or None if it is closed."""
        try:
            return self._session_cache[day]
        except KeyError:
            pass
        row = self._table.get(day.toordinal())
        result = None if row is None else (datetime.fromtimestamp(row[0], UTC), datetime.fromtimestamp(row[1], UTC))
        self._session_cache[day] = result
        return result

    def is_session(self, day: date) -> bool:
        return self.session(day) is not None

    def session_for(self, ts: datetime) -> tuple[datetime, datetime] | None:
        """The session of the New York day that `ts` falls on."""
        return self.session(ts.astimezone(NEW_YORK).date())

    def is_open(self, ts: datetime) -> bool:
        """True during regular trading hours (open inclusive, close exclusive)."""
        session = self.session_for(ts)
        return session is not None and session[0] <= ts < session[1]

    def next_open(self, ts: datetime) -> datetime:
        """The next session open at or after `ts`."""
        day = ts.astimezone(NEW_YORK).date()
        for offset in range(0, 15):
            session = self.session(day + timedelta(days=offset))
            if session is not None and session[0] >= ts:
                return session[0]
        raise ValueError(f"no NYSE session within 15 days of {ts.isoformat()}")

    def tradable_from(self, ts: datetime) -> datetime:
        """When a market order accepted at `ts` can first fill: `ts` during a session, else the next open (its
        broker holds it until then); `ts` itself beyond the calendar."""
        if self.is_open(ts):
            return ts
        try:
            return self.next_open(ts)
        except ValueError:
            return ts

    def open_sessions_back(self, ts: datetime, sessions: int) -> datetime:
        """The open of the `sessions`-th session counting back from `ts` (1: the latest session opened at or
        before `ts`)."""
        day = ts.astimezone(NEW_YORK).date()
        found: datetime | None = None
        for offset in range(0, sessions * 2 + 15):
            session = self.session(day - timedelta(days=offset))
            if session is None or session[0] > ts:
                continue
            found = session[0]
            sessions -= 1
            if sessions <= 0:
                return found
        if found is None:
            raise ValueError(f"no NYSE session before {ts.isoformat()}")
        return found

    def daily_session(self, ts: datetime) -> tuple[datetime, datetime] | None:
        """The session whose daily bar a daily signal stamped `ts` comes from: a date stamp (00:00 UTC) names
        its date's session; any other stamp the latest session opened at or before it (during a session: that
        one, forming; before the open, at a weekend or holiday: the last one). None beyond the calendar."""
        if is_date_stamp(ts):
            return self.session(ts.astimezone(UTC).date())
        day = ts.astimezone(NEW_YORK).date()
        for offset in range(0, 15):
            session = self.session(day - timedelta(days=offset))
            if session is not None and session[0] <= ts:
                return session
        return None

    def trading_day(self, ts: datetime) -> date:
        """The New York calendar day of `ts` (the key for daily P&L and rollover)."""
        return trading_day(ts)


def trading_day(ts: datetime) -> date:
    """The New York calendar day of `ts`: the day of daily P&L, rollover and the journal's `trades.day`."""
    return ts.astimezone(NEW_YORK).date()


class TradingDayCache:
    """`trading_day(ts).isoformat()` without a timezone conversion while `ts` stays on the same New York day
    (the decision path asks it once or twice per signal)."""

    __slots__ = ("_day", "_end", "_start")

    def __init__(self) -> None:
        self._start: datetime | None = None
        self._end: datetime | None = None
        self._day = ""

    def __call__(self, ts: datetime) -> str:
        start, end = self._start, self._end
        if start is not None and end is not None and start <= ts < end:
            return self._day
        day = trading_day(ts)
        self._start = datetime.combine(day, time.min, NEW_YORK).astimezone(UTC)
        self._end = datetime.combine(day + timedelta(days=1), time.min, NEW_YORK).astimezone(UTC)
        self._day = day.isoformat()
        return self._day


def is_date_stamp(ts: datetime) -> bool:
    """True for exactly 00:00 UTC: a date written without a time."""
    utc = ts.astimezone(UTC)
    return utc.hour == 0 and utc.minute == 0 and utc.second == 0 and utc.microsecond == 0


def daily_session_date(ts: datetime) -> date:
    """The exchange date a daily bar's stamp names: a stamp at exactly 00:00 UTC is a date written without a
    time (its UTC date); any other stamp is the New York date it falls on (20:00Z all year, 16:00 ET, the
    close, midnight ET)."""
    if is_date_stamp(ts):
        return ts.astimezone(UTC).date()
    return ts.astimezone(NEW_YORK).date()


@lru_cache(maxsize=1)
def default_calendar() -> MarketCalendar:
    """A process-wide calendar (read from its cache file, or built in ~0.04 s, see pipeline.core.xnys_rules)."""
    return MarketCalendar()
