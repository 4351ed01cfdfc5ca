"""The two clock exits' rule: the time stop and the EOD close — when each is due, and why.

The one owner of both: `ExitMonitor.check_time_stop` / `check_eod_close` ask it whether a position's time is
up, and `LifecycleManager` asks it when to look again (a position's time-stop deadline; today's EOD cutoff)
instead of computing the same instants itself. The session of each New York day is looked up once (cached).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from typing import NamedTuple

from config.settings import ExecutorConfig
from pipeline.core.calendar import NEW_YORK, MarketCalendar
from pipeline.core.models import TIMEFRAME_SECONDS, InstrumentType, Position
from pipeline.instruments.occ import is_occ, try_parse_occ

_DAY_SECONDS = 86_400
_MAX_HOLIDAY_RUN = 10  # days back from an option's expiry to its last session (a weekend and holidays)


def is_intraday(timeframe: str) -> bool:
    """True for day-trade timeframes (EOD close applies); '1d' and longer are swing trades. Unknown = intraday."""
    return TIMEFRAME_SECONDS.get(timeframe, 0) < _DAY_SECONDS


class _Day(NamedTuple):
    """One New York calendar day [start, end) in UTC, its session and its EOD cutoff."""

    start: datetime
    end: datetime
    open: datetime | None
    close: datetime | None
    cutoff: datetime | None


class TimeExits:
    """When a position's time stop and its EOD close are due (`ExecutorConfig.time_stop_minutes`,
    `eod_minutes_before_close`), on the NYSE sessions of `calendar`."""

    def __init__(self, config: ExecutorConfig, calendar: MarketCalendar) -> None:
        self.calendar = calendar
        self._last_sessions: dict[date, date | None] = {}  # option expiry -> its last session on or before it
        self.reconfigure(config)

    def reconfigure(self, config: ExecutorConfig) -> None:
        """New limits (a SIGHUP reload); the cached cutoff is recomputed."""
        self.time_stop_minutes = config.time_stop_minutes
        self._time_stop = timedelta(minutes=config.time_stop_minutes)
        self._eod_minutes = config.eod_minutes_before_close
        self._day: _Day | None = None

    # -- time stop ------------------------------------------------------------------------------------
    def deadline(self, position: Position) -> datetime | None:
        """When the position's time stop is due; None when it never is (no entry time, or a swing trade)."""
        if position.entry_time is None or not is_intraday(position.timeframe):
            return None
        return position.entry_time + self._time_stop

    def time_stop_reason(self, position: Position, now: datetime) -> str | None:
        """Why the time stop fires now (held `time_stop_minutes` or longer), or None."""
        deadline = self.deadline(position)
        if deadline is None or now < deadline:
            return None
        minutes = (now - position.entry_time).total_seconds() / 60.0  # type: ignore[operator]
        return f"held {minutes:.1f} min >= time stop {self.time_stop_minutes} min"

    # -- end of day -----------------------------------------------------------------------------------
    def eod_cutoff(self, now: datetime) -> datetime | None:
        """The EOD cutoff of the session of `now`'s New York day (close minus N minutes); None on a day with no
        session."""
        return self._day_of(now).cutoff

    def eod_reason(self, position: Position, now: datetime) -> str | None:
        """Why the EOD close fires now, or None. Intraday positions close at/after that session's close minus N
        minutes (15:55 ET, 12:55 on early closes); a day trade still held from an earlier session is closed as
        soon as the market is open. Daily and longer timeframes are exempt, except an option on the last session
        before it expires: it closes at that cutoff too (held through expiry, a long call in the money is
        exercised into 100 shares a contract, a long put into a short sale of them)."""
        if not is_intraday(position.timeframe):
            return self._expiry_reason(position, now)
        day = self._day_of(now)
        if day.cutoff is None:
            return None
        if now >= day.cutoff:
            local = day.cutoff.astimezone(NEW_YORK)
            return f"end of day: {local:%H:%M} ET cutoff of the {local:%Y-%m-%d} session"
        entry = position.entry_time
        if entry is not None and entry < day.start and day.open <= now < day.close:  # type: ignore[operator]
            return f"day trade held over from {entry.astimezone(NEW_YORK):%Y-%m-%d}"
        return None

    def _expiry_reason(self, position: Position, now: datetime) -> str | None:
        """The EOD close of an option on its last session on or before its expiry (at/after the cutoff), or None."""
        if position.instrument_type is not InstrumentType.OPTIONS and not is_occ(position.symbol):
            return None  # a stock (an adopted option is known by its symbol)
        contract = try_parse_occ(position.symbol)
        day = self._day_of(now)
        if contract is None or day.cutoff is None or now < day.cutoff:
            return None
        last = self._last_session_by(contract.expiry)
        today = day.start.astimezone(NEW_YORK).date()
        if last is None or today < last:
            return None
        local = day.cutoff.astimezone(NEW_YORK)
        return f"option expires {contract.expiry:%Y-%m-%d}: closed at the {local:%H:%M} ET cutoff of its last session"

    def _last_session_by(self, expiry: date) -> date | None:
        """The last session on or before `expiry` (a holiday expiry trades last the day before); cached."""
        if expiry not in self._last_sessions:
            day = expiry
            for _ in range(_MAX_HOLIDAY_RUN):
                if self.calendar.is_session(day):
                    break
                day -= timedelta(days=1)
            else:
                day = None  # type: ignore[assignment]
            self._last_sessions[expiry] = day
        return self._last_sessions[expiry]

    def day_of(self, when: datetime) -> _Day:
        """`when`'s New York day [start, end), its session's open and close and its EOD cutoff (UTC; None on a day
        without a session): the calendar's session of that day, looked up once per day."""
        day = self._day
        if day is None or not day.start <= when < day.end:
            day = self._day = self._load_day(when)
        return day

    def _day_of(self, when: datetime) -> _Day:
        day = self._day
        if day is None or not day.start <= when < day.end:
            day = self._day = self._load_day(when)
        return day

    def _load_day(self, when: datetime) -> _Day:
        local_day = when.astimezone(NEW_YORK).date()
        start = datetime.combine(local_day, dtime(0), NEW_YORK).astimezone(UTC)
        end = datetime.combine(local_day + timedelta(days=1), dtime(0), NEW_YORK).astimezone(UTC)
        session = self.calendar.session(local_day)
        if session is None:
            return _Day(start, end, None, None, None)
        # plain UTC datetimes: comparisons against a ZoneInfo/pandas tz cost microseconds each
        open_, close = session[0].astimezone(UTC), session[1].astimezone(UTC)
        return _Day(start, end, open_, close, close - timedelta(minutes=self._eod_minutes))
