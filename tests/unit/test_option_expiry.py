"""expired_by: an option has expired once its last session (on or before the expiry date) has closed."""

from __future__ import annotations

from datetime import UTC, date, datetime

from pipeline.core.calendar import default_calendar
from pipeline.positions.expiry import expired_by, last_session_close

CALL = "NVDA  261204C00100000"  # expires Friday 2026-12-04


def test_an_option_expires_at_its_last_close() -> None:
    session = default_calendar().session
    assert expired_by(CALL, datetime(2026, 12, 4, 20, 59, tzinfo=UTC), session) is None  # 15:59 ET
    assert expired_by(CALL, datetime(2026, 12, 4, 21, 0, tzinfo=UTC), session) == date(2026, 12, 4)
    assert expired_by(CALL, datetime(2026, 12, 7, 14, 30, tzinfo=UTC), session) == date(2026, 12, 4)


def test_a_holiday_expiry_ends_at_the_session_before() -> None:
    session = default_calendar().session
    # Good Friday 2027-03-26: no session; the contract trades last on Thursday the 25th
    close = last_session_close(date(2027, 3, 26), session)
    assert close is not None and close.astimezone(UTC).date() == date(2027, 3, 25)


def test_a_stock_never_expires() -> None:
    assert expired_by("NVDA", datetime(2030, 1, 1, tzinfo=UTC), default_calendar().session) is None
