"""`ordergate journal` with the daemon down defaults to the New York trading day, as the running daemon does."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import pytest

from daemon.commands import offline_journal
from pipeline.core.calendar import NEW_YORK, trading_day
from pipeline.record.journal import Journal
from pipeline.record.trade_journal import ClosedTrade, TradeJournalWriter
from tests.daemon_proc import cli

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


async def test_the_cli_with_the_daemon_down_answers_the_new_york_day(tmp_path: Path) -> None:
    """`ordergate journal` (a real subprocess, no daemon): the default day is the New York day of the wall clock.

    One trade is booked on today's New York day and one on the next day (the UTC date every evening after
    19:00/20:00 ET): only the first is today's."""
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    today = trading_day(datetime.now(UTC))
    journal = Journal(state_dir / "journal.db")
    await journal.open()
    noon = datetime.combine(today, time(12, 0), NEW_YORK)
    for exit_time, pnl in ((noon, 30.0), (noon + timedelta(days=1), 7.0)):
        await TradeJournalWriter(journal).record(replace(_trade(), exit_time=exit_time, pnl=pnl,
                                                         entry_time=exit_time - timedelta(minutes=30)))
    await journal.close()
    out = cli(state_dir, "journal", "--json")
    if trading_day(datetime.now(UTC)) != today:  # the New York midnight passed meanwhile: no verdict possible
        pytest.skip("the New York day changed during the test")
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert (summary["trades"], summary["gross_pnl"]) == (1, 30.0), summary
