"""The NYSE sessions of a date range, worked out by exchange_calendars (XNYS) with pandas.

Building XNYS costs most of its time in pandas' holiday rules: the session offset `day` asks them for every
holiday from 1970 to 2200, and a rule with a start date is dated from that year on whatever range is asked.
`_XNYS` cuts every rule to the calendar's own range (a year of margin each side) and asks for that range only:
the same sessions, opens and closes (tests/unit/test_calendar_sessions.py), at about a third of the cost.

Imported only when a session table is built (pipeline.core.calendar), not when one is read back from its
cache: pandas and exchange_calendars are ~0.4 s of a process's start.
"""

from __future__ import annotations

import copy
from datetime import time
from functools import cached_property

import pandas as pd
from exchange_calendars.exchange_calendar import HolidayCalendar
from exchange_calendars.exchange_calendar_xnys import XNYSExchangeCalendar
from pandas.tseries.offsets import CustomBusinessDay

_MARGIN = pd.Timedelta(days=400)  # holidays this far beyond the range: an observed date never crosses it


class _XNYS(XNYSExchangeCalendar):
    """XNYS whose holiday and early-close rules are cut to its own range (see the module docstring)."""

    def __init__(self, start: str, end: str) -> None:
        self._holiday_range = (pd.Timestamp(start) - _MARGIN, pd.Timestamp(end) + _MARGIN)
        super().__init__(start=start, end=end)

    @property
    def regular_holidays(self) -> HolidayCalendar:
        return _within(super().regular_holidays, *self._holiday_range)

    @property
    def special_closes(self) -> list[tuple[time, HolidayCalendar]]:
        return [(at, _within(rules, *self._holiday_range)) for at, rules in super().special_closes]

    @cached_property
    def day(self) -> CustomBusinessDay:
        lo, hi = self._holiday_range
        return CustomBusinessDay(holidays=[*self.adhoc_holidays, *self.regular_holidays.holidays(lo, hi)],
                                 weekmask=self.weekmask)


def _within(calendar: HolidayCalendar, lo: pd.Timestamp, hi: pd.Timestamp) -> HolidayCalendar:
    """The calendar's rules, each valid only on [lo, hi] (dropped if it never is there): a rule dates its
    holidays from its own first year on (pandas ignores the asked range for a rule with a start date), so a
    rule in force since 1885 would otherwise be evaluated for 140 years. On [lo, hi] the dates are the same."""
    rules = []
    for rule in calendar.rules:
        if rule.year is not None:  # a one-off date
            rules.append(rule)
            continue
        start = lo if rule.start_date is None else max(rule.start_date, lo)
        end = hi if rule.end_date is None else min(rule.end_date, hi)
        if start > end:
            continue
        cut = copy.copy(rule)
        cut.start_date, cut.end_date = start, end
        rules.append(cut)
    return HolidayCalendar(rules)


def session_rows(start: str, end: str) -> list[tuple[int, int, int]]:
    """Every XNYS session from `start` to `end` (ISO dates) as (day ordinal, open, close in UTC epoch seconds)."""
    schedule = _XNYS(start, end).schedule
    rows = []
    for label, opens, closes in zip(schedule.index, schedule["open"], schedule["close"], strict=True):
        rows.append((label.date().toordinal(), int(opens.timestamp()), int(closes.timestamp())))
    return rows
