"""`ordergate journal` with the daemon down defaults to the New York trading day, as the running daemon does."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from daemon.commands import offline_journal
from pipeline.core.calendar import NEW_YORK
from pipeline.record.journal import Journal
from pipeline.record.trade_journal import ClosedTrade, TradeJournalWriter

EXIT = datetime(2026, 11, 24, 15, 55, tzinfo=NEW_YORK)  # the 24th's EOD close (20:55 UTC)


def _trade() -> ClosedTrade:
    return ClosedTrade(
        signal_id="sig-eod", ticker="AAPL", symbol="AAPL", direction="long", signal_type="cloud_cross_bullish",
        timeframe="5m", entry_time=EXIT - timedelta(minutes=30), exit_time=EXIT, entry_price=100.0,
        exit_price=103.0, quantity=10, pnl=30.0, r_multiple=1.5, exit_type="eod_close", holding_minutes=30.0,
        broker="paper",
    )


async def test_evening_in_new_york_is_still_that_trading_day(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    journal = Journal(state_dir / "journal.db")
    await journal.open()
    await TradeJournalWriter(journal).record(_trade())
    await journal.close()
    evening = datetime(2026, 11, 25, 2, 30, tzinfo=UTC)  # 21:30 ET on the 24th; the UTC date is the 25th
    summary = offline_journal(state_dir, None, now=evening)
    assert summary["trades"] == 1 and summary["gross_pnl"] == 30.0
    assert offline_journal(state_dir, "2026-11-25")["trades"] == 0  # an explicit day still wins
