"""ExitBackoff: refused exits wait 30 s, doubling up to 5 minutes; a new reason is news; a taken exit ends it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pipeline.positions.exit_backoff import ExitBackoff

T0 = datetime(2026, 11, 24, 16, 0, tzinfo=UTC)
KEY = ("", "AAPL")


def test_pauses_double_up_to_the_most() -> None:
    backoff = ExitBackoff()
    pauses = [backoff.refused(KEY, "insufficient qty", T0)[1].total_seconds() for _ in range(6)]
    assert pauses == [30, 60, 120, 240, 300, 300]


def test_holds_until_the_pause_ends() -> None:
    backoff = ExitBackoff()
    assert backoff.holds(KEY, T0) is None
    backoff.refused(KEY, "insufficient qty", T0)
    assert backoff.holds(KEY, T0 + timedelta(seconds=29)) == T0 + timedelta(seconds=30)
    assert backoff.holds(KEY, T0 + timedelta(seconds=30)) is None
    assert backoff.holds(("", "MSFT"), T0) is None


def test_a_reason_is_news_once() -> None:
    backoff = ExitBackoff()
    assert backoff.refused(KEY, "insufficient qty", T0)[0] is True
    assert backoff.refused(KEY, "insufficient qty", T0)[0] is False
    assert backoff.refused(KEY, "account restricted", T0)[0] is True


def test_a_taken_exit_or_a_closed_position_ends_the_pauses() -> None:
    backoff = ExitBackoff()
    backoff.refused(KEY, "insufficient qty", T0)
    backoff.taken(KEY)
    assert backoff.holds(KEY, T0) is None
    assert backoff.refused(KEY, "insufficient qty", T0) == (True, timedelta(seconds=30))
    backoff.keep_only(set())
    assert backoff.refusals == {}
