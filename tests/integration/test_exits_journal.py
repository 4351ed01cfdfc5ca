"""TradeJournalWriter and summarize(): closed trades in the real journal, daily figures incl. max drawdown."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from pipeline.core.calendar import NEW_YORK
from pipeline.core.clock import SimulatedClock
from pipeline.core.models import Position
from pipeline.record.trade_journal import ClosedTrade, TradeJournalWriter, max_drawdown, summarize, summarize_by


def et(month: int, day: int, hour: int, minute: int) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=NEW_YORK)


def trade(exit_time: datetime, pnl: float, r: float, *, signal_type: str = "cloud_cross_bullish",
          exit_type: str = "profit_target", ticker: str = "AAPL") -> ClosedTrade:
    entry_time = exit_time - timedelta(minutes=30)
    return ClosedTrade(
        signal_id=f"sig-{ticker}-{exit_time:%d%H%M}", ticker=ticker, symbol=ticker, direction="long",
        signal_type=signal_type, timeframe="5m", entry_time=entry_time, exit_time=exit_time, entry_price=100.0,
        exit_price=100.0 + pnl / 10, quantity=10, pnl=pnl, r_multiple=r, exit_type=exit_type, holding_minutes=30.0,
        broker="paper",
    )


# Day 2026-11-24 in exit order: +100, -50, -80, +30 -> cumulative 100, 50, -30, 0: drawdown 130
DAY = [
    trade(et(11, 24, 10, 0), 100.0, 2.0, exit_type="profit_target"),
    trade(et(11, 24, 11, 0), -50.0, -1.0, exit_type="stop_loss", signal_type="trend_aligned_long"),
    trade(et(11, 24, 12, 0), -80.0, -1.6, exit_type="stop_loss"),
    trade(et(11, 24, 15, 55), 30.0, 0.6, exit_type="eod_close", signal_type="trend_aligned_long"),
]
OTHER_DAY = trade(et(11, 25, 10, 0), 500.0, 3.0, exit_type="time_stop")


@pytest.fixture
def journal(any_journal):
    """Each test on both backends: a SQLite file, and an instance schema on a real PostgreSQL server."""
    return any_journal


def test_max_drawdown_is_peak_to_trough_from_zero():
    assert max_drawdown([100, -50, -80, 30]) == 130
    assert max_drawdown([-20, -30, 100]) == 50          # from the starting zero
    assert max_drawdown([10, 20]) == 0
    assert max_drawdown([]) == 0


def test_summarize_fixture_sorts_into_exit_order():
    shuffled = [DAY[2], DAY[0], DAY[3], DAY[1]]
    summary = summarize(shuffled)
    assert summary["trades"] == 4 and summary["wins"] == 2 and summary["losses"] == 2
    assert summary["win_rate"] == 0.5
    assert summary["gross_pnl"] == 0.0
    assert summary["avg_r"] == pytest.approx(0.0)
    assert summary["max_drawdown"] == 130.0
    by_type = summary["by_signal_type"]
    assert by_type["cloud_cross_bullish"]["trades"] == 2 and by_type["cloud_cross_bullish"]["gross_pnl"] == 20.0
    assert by_type["cloud_cross_bullish"]["max_drawdown"] == 80.0
    assert by_type["trend_aligned_long"]["win_rate"] == 0.5
    by_exit = summary["by_exit_type"]
    assert by_exit["stop_loss"] == {"trades": 2, "wins": 0, "losses": 2, "win_rate": 0.0, "gross_pnl": -130.0,
                                    "avg_r": -1.3, "max_drawdown": 130.0}
    assert set(by_exit) == {"profit_target", "stop_loss", "eod_close"}


def test_summarize_empty_and_by_period():
    empty = summarize([])
    assert empty["trades"] == 0 and empty["win_rate"] == 0.0 and empty["by_exit_type"] == {}
    per_day = summarize_by([*DAY, OTHER_DAY], "day")
    assert list(per_day) == ["2026-11-24", "2026-11-25"] and per_day["2026-11-25"]["gross_pnl"] == 500.0
    assert summarize_by([*DAY, OTHER_DAY], "month")["2026-11"]["trades"] == 5
    with pytest.raises(ValueError, match="period"):
        summarize_by(DAY, "week")


async def test_daily_summary_from_the_journal(journal):
    writer = TradeJournalWriter(journal)
    for t in [DAY[3], OTHER_DAY, DAY[1], DAY[0], DAY[2]]:      # recorded out of exit order
        assert await writer.record(t) > 0
    summary = await writer.daily_summary(date(2026, 11, 24))
    assert summary["day"] == "2026-11-24"
    assert (summary["trades"], summary["wins"], summary["losses"]) == (4, 2, 2)
    assert summary["gross_pnl"] == 0.0 and summary["max_drawdown"] == 130.0
    assert summary["by_exit_type"]["eod_close"]["gross_pnl"] == 30.0
    assert (await writer.daily_summary(date(2026, 11, 25)))["gross_pnl"] == 500.0
    assert (await writer.daily_summary(date(2026, 11, 26)))["trades"] == 0
    assert (await writer.daily_summary())["day"] == "2026-11-25"        # no clock: the latest day with trades
    both = await writer.summary_between(date(2026, 11, 24), date(2026, 11, 25))
    assert both["trades"] == 5 and both["gross_pnl"] == 500.0 and both["max_drawdown"] == 130.0
    rows = await journal.query("SELECT day, exit_type, pnl FROM trades ORDER BY id")
    assert rows[0] == {"day": "2026-11-24", "exit_type": "eod_close", "pnl": 30.0}


async def test_day_is_the_new_york_date_of_the_exit(journal):
    clock = SimulatedClock(datetime(2026, 11, 25, 2, 0, tzinfo=UTC))        # 21:00 ET on the 24th
    writer = TradeJournalWriter(journal, clock)
    late = trade(datetime(2026, 11, 25, 0, 30, tzinfo=UTC), 10.0, 0.2)     # 19:30 ET on the 24th
    assert late.day == date(2026, 11, 24)
    await writer.record(late)
    summary = await writer.daily_summary()
    assert summary["day"] == "2026-11-24" and summary["trades"] == 1
    (back,) = await writer.trades_between(date(2026, 11, 24), date(2026, 11, 24))
    assert back.exit_time == late.exit_time and back.entry_time == late.entry_time and back.pnl == 10.0


async def test_empty_journal_summary(journal):
    summary = await TradeJournalWriter(journal).daily_summary()
    assert summary["day"] is None and summary["trades"] == 0


async def test_malformed_trade_is_rejected_naming_the_field(journal):
    bad = trade(et(11, 24, 10, 0), float("nan"), 1.0)
    with pytest.raises(ValueError, match="pnl"):
        await TradeJournalWriter(journal).record(bad)
    naive = trade(et(11, 24, 10, 0), 1.0, 1.0)
    naive.exit_time = naive.exit_time.replace(tzinfo=None)
    with pytest.raises(ValueError, match="exit_time"):
        await TradeJournalWriter(journal).record(naive)


def test_closed_trade_from_a_short_position():
    entered = et(11, 24, 10, 0)
    position = Position(ticker="TSLA", direction="short", entry_price=200.0, current_price=190.0, shares=10,
                        stop_loss=205.0, entry_time=entered, signal_type="trend_aligned_short", signal_id="s1")
    closed = ClosedTrade.from_position(position, exit_price=190.0, exit_time=entered + timedelta(minutes=45),
                                       exit_type="profit_target", commission=1.0)
    assert closed.pnl == pytest.approx(99.0) and closed.r_multiple == pytest.approx(2.0)
    assert closed.holding_minutes == 45.0 and closed.quantity == 10 and closed.direction == "short"
