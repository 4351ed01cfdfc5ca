"""The NYSE calendar built from the holidays of its own range only (pipeline.core.xnys_rules._XNYS, read back
from its cache file once built) answers every day of the daemon's default range exactly as exchange_calendars'
own XNYS does: sessions, opens, closes (early closes included), and no session on the days between them."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import exchange_calendars as xcals

from pipeline.core.calendar import MarketCalendar


def test_every_day_of_the_default_range_matches_exchange_calendars() -> None:
    ours = MarketCalendar()
    start, end = date(2000, 1, 1), date(datetime.now(UTC).year + 2, 12, 31)
    reference = xcals.get_calendar("XNYS", start=start.isoformat(), end=end.isoformat())
    schedule = reference.schedule
    expected = {label.date(): (o.to_pydatetime(), c.to_pydatetime())
                for label, o, c in zip(schedule.index, schedule["open"], schedule["close"], strict=True)}
    early = 0
    day = start
    while day <= end:
        assert ours.session(day) == expected.get(day), day
        if day in expected:
            early += (expected[day][1] - expected[day][0]) < timedelta(hours=6)
        day += timedelta(days=1)
    assert len(expected) > 7000 and early > 40  # the half days (July 3, Black Friday, Christmas Eve) are in


def test_an_order_accepted_while_the_market_is_closed_can_first_fill_at_the_next_open() -> None:
    calendar = MarketCalendar(start="2026-11-01", end="2026-12-31")
    during = datetime(2026, 12, 4, 15, 0, tzinfo=UTC)
    assert calendar.tradable_from(during) == during
    monday_open = datetime(2026, 12, 7, 14, 30, tzinfo=UTC)
    for closed in (datetime(2026, 12, 4, 21, 0, tzinfo=UTC), datetime(2026, 12, 6, 12, 0, tzinfo=UTC),
                   datetime(2026, 12, 7, 9, 0, tzinfo=UTC)):  # at Friday's close, on Sunday, before Monday's open
        assert calendar.tradable_from(closed) == monday_open
    # Thanksgiving: Friday's (early-closing) session opens as usual
    assert calendar.tradable_from(datetime(2026, 11, 26, 15, 0, tzinfo=UTC)) == datetime(2026, 11, 27, 14, 30,
                                                                                        tzinfo=UTC)
