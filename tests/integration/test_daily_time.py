"""Issue 14.1 / 14.4: a daily bar is the NYSE session of its date, whatever its stamp says.

Date-only rows, 20:00Z all year, 00:00Z and 16:00 ET stamps all mean that session's close (early closes
included); the replay clock and the strategy's signal stamp agree on it, so DST can never make a daily signal
"in the future"; the freshness guard measures daily signals against their session close.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from adapters.replay import ReplayFeed, load_bars
from config.settings import PipelineConfig
from pipeline.core.calendar import NEW_YORK, default_calendar
from pipeline.core.clock import SimulatedClock
from pipeline.core.models import TradeSignal
from pipeline.entry.signal_guard import SignalGuard
from pipeline.strategy.ema_cloud import BarAggregator
from tests.daily_bars import canonical_daily

HEADER = "timestamp,symbol,open,high,low,close,volume\n"


def _close(day: date) -> datetime:
    session = default_calendar().session(day)
    assert session is not None, day
    return session[1]


@pytest.mark.parametrize("stamp", ["2012-11-23", "2012-11-23T20:00:00Z", "2012-11-23T00:00:00Z",
                                   "2012-11-23T16:00:00-05:00", "2012-11-23T09:30:00-05:00"])
def test_any_stamp_of_a_daily_row_is_its_session_close_early_close_included(tmp_path: Path, stamp: str) -> None:
    # 2012-11-23, the day after Thanksgiving, closed at 13:00 ET (18:00Z)
    path = tmp_path / "d.csv"
    path.write_text(HEADER + f"2012-11-21,AAA,10,11,9,10.5,100\n{stamp},AAA,10,11,9,10.5,100\n"
                    "2012-11-26,AAA,10,11,9,10.5,100\n")
    clock = SimulatedClock(datetime(2012, 11, 1, tzinfo=UTC))
    feed = ReplayFeed(path, clock, timeframe="1d")
    agg = BarAggregator("1d", default_calendar())

    async def run() -> list[tuple[datetime, datetime]]:
        return [(clock.now(), agg.bar_close_time(b[0])) async for b in feed.batches()]

    seen = asyncio.run(run())
    assert feed.problems == []
    assert seen[1] == (datetime(2012, 11, 23, 18, 0, tzinfo=UTC),) * 2
    assert [c for c, _ in seen] == [_close(date(2012, 11, 21)), _close(date(2012, 11, 23)), _close(date(2012, 11, 26))]


def test_a_daily_row_on_a_day_without_a_session_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text(HEADER + "2013-01-04,AAA,10,11,9,10.5,100\n2013-01-05,AAA,10,11,9,10.5,100\n"
                    "2013-01-07,AAA,10,11,9,10.5,100\n")
    bars, problems = load_bars(path, "1d")
    assert len(bars) == 2
    assert [p.line for p in problems] == [3]
    assert "2013-01-05 is not an NYSE session" in problems[0].reason


def _daily_signal(stamp: datetime) -> TradeSignal:
    return TradeSignal(signal_type="cloud_cross_bullish", direction="long", ticker="MSFT", timeframe="1d",
                       conviction=80, entry_price=30.0, stop_loss=29.0, target_price=32.0, timestamp=stamp)


def test_freshness_of_a_daily_signal_is_measured_from_its_session_close() -> None:
    guard = SignalGuard(PipelineConfig(), calendar=default_calendar())
    winter_close = datetime(2013, 1, 24, 21, 0, tzinfo=UTC)
    for stamp in (datetime(2013, 1, 24, 20, 0, tzinfo=UTC), datetime(2013, 1, 24, 0, 0, tzinfo=UTC), winter_close):
        decision = guard.check(_daily_signal(stamp), winter_close)
        assert decision.approved, decision.reason
        assert decision.adjustments["signal_age_seconds"] == 0.0
        guard.clear()
    # during its session a daily signal is fresh (its bar is forming: a manual trade, an intraday alert)
    during = guard.check(_daily_signal(datetime(2013, 1, 24, 0, 0, tzinfo=UTC)), datetime(2013, 1, 24, 15, 0,
                                                                                        tzinfo=UTC))
    assert during.approved and during.adjustments["signal_age_seconds"] == 0.0
    guard.clear()
    # a daily signal of a session that has not opened yet is in the future
    ahead = guard.check(_daily_signal(datetime(2013, 1, 25, 0, 0, tzinfo=UTC)), winter_close)
    assert not ahead.approved and "in the future" in ahead.reason and "2013-01-25 session" in ahead.reason
    # stamped before the open, at night or at a weekend: the last session's bar (a manual or overnight signal)
    overnight = guard.check(_daily_signal(datetime(2013, 1, 26, 15, 0, tzinfo=UTC)),
                            datetime(2013, 1, 26, 15, 0, 1, tzinfo=UTC))
    assert overnight.approved and overnight.adjustments["signal_age_seconds"] == 18 * 3600 + 1
    guard.clear()
    # a day later it is stale: a day counts from the close, not from the stamp
    stale = guard.check(_daily_signal(datetime(2013, 1, 24, 20, 0, tzinfo=UTC)), winter_close + timedelta(days=1,
                                                                                                        seconds=1))
    assert not stale.approved and "old" in stale.reason
    # an early close: 13:00 ET on the day after Thanksgiving
    early = guard.check(_daily_signal(datetime(2012, 11, 23, 20, 0, tzinfo=UTC)),
                        datetime(2012, 11, 23, 18, 0, 30, tzinfo=UTC))
    assert early.approved and early.adjustments["signal_age_seconds"] == 30.0
    guard.clear()
    # DST: a summer daily signal stamped 20:00Z is the 16:00 EDT close, never an hour ahead of the clock
    summer_close = datetime(2013, 7, 24, 20, 0, tzinfo=UTC)
    summer = guard.check(_daily_signal(summer_close), summer_close)
    assert summer.approved and summer.adjustments["signal_age_seconds"] == 0.0


def test_a_daily_signal_stays_fresh_until_the_next_session_closes_across_a_weekend_and_a_holiday() -> None:
    """A daily bar's signal is acted on until the next daily bar is complete: Friday's until Monday's close (not
    Saturday's afternoon: a Friday signal used to be refused at Monday's open, 65 h after its close, as older than a
    day), Wednesday's before Thanksgiving until Friday's early close."""
    guard = SignalGuard(PipelineConfig(), calendar=default_calendar())
    friday_close = datetime(2026, 12, 4, 21, 0, tzinfo=UTC)
    monday_open, monday_close = datetime(2026, 12, 7, 14, 30, tzinfo=UTC), datetime(2026, 12, 7, 21, 0, tzinfo=UTC)
    for now in (datetime(2026, 12, 6, 21, 0, tzinfo=UTC), monday_open, monday_open + timedelta(minutes=1),
                monday_close - timedelta(seconds=1), monday_close):
        decision = guard.check(_daily_signal(friday_close), now)
        assert decision.approved, (now, decision.reason)
        assert decision.adjustments["signal_age_seconds"] == (now - friday_close).total_seconds()
        guard.clear()
    stale = guard.check(_daily_signal(friday_close), monday_close + timedelta(seconds=1))
    assert not stale.approved and "2026-12-07" in stale.reason, stale.reason  # Monday's bar is complete by then
    wednesday_close, friday_early = datetime(2026, 11, 25, 21, 0, tzinfo=UTC), datetime(2026, 11, 27, 18, 0,
                                                                                      tzinfo=UTC)
    assert guard.check(_daily_signal(wednesday_close), friday_early).approved
    guard.clear()
    assert not guard.check(_daily_signal(wednesday_close), friday_early + timedelta(seconds=1)).approved


def _stamped_file(tmp_path: Path, hour_utc: int) -> Path:
    """MSFT's real daily bars (Stooq) re-stamped at the same UTC hour all year, in the canonical layout."""
    return canonical_daily("MSFT", tmp_path / "msft-20z.csv", f"T{hour_utc:02d}:00:00Z")


def test_replay_of_real_daily_bars_stamped_20z_has_no_signal_in_the_future(tmp_path: Path) -> None:
    from config.settings import load_settings
    from daemon.replay import replay

    state = tmp_path / "state"
    result = asyncio.run(replay(load_settings(None), _stamped_file(tmp_path, 20), state_dir=state))
    assert result["signals"] > 20
    import sqlite3

    with sqlite3.connect(state / "journal.db") as conn:
        reasons = [r for (r,) in conn.execute("SELECT reason FROM decisions WHERE stage='signal_guard' "
                                              "AND outcome='rejected'")]
        stamps = [datetime.fromisoformat(t) for (t,) in conn.execute("SELECT ts FROM signals")]
    assert not [r for r in reasons if "future" in r], reasons[:3]
    # every daily signal is stamped at the close of a real session (winter and summer alike)
    for ts in stamps:
        assert ts == _close(ts.astimezone(NEW_YORK).date())
