"""Minute bars around an early close, a holiday and both DST changes, through `ordergate replay`.

SYNTHETIC data: no real minute bars can be had offline, so these are the seeded random-walk minute bars of
`adapters.synthetic`, laid on the NYSE calendar's real sessions (2012-11-01..06 across the end of DST,
2012-11-20..26 around Thanksgiving and its 13:00 ET early close, 2013-03-07..11 across the start of DST).
Three files replayed together: every signal is fresh (none 'in the future' or stale), every entry is inside
a session before its cutoff, every day trade is flat by 5 minutes before *that day's* close, nothing happens
on the holiday.
"""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta
from pathlib import Path

from adapters.synthetic import write_csv
from pipeline.core.calendar import NEW_YORK, default_calendar
from tests.daemon_proc import cli

TICKERS = ["AAPL", "MSFT", "NVDA", "AMD", "JPM", "XOM"]
WINDOWS = {"dst-end": date(2012, 11, 1), "thanksgiving": date(2012, 11, 20), "dst-start": date(2013, 3, 7)}


def test_minute_bars_across_dst_an_early_close_and_a_holiday(tmp_path: Path) -> None:
    files = []
    for name, start in WINDOWS.items():
        path = tmp_path / f"{name}.csv"
        write_csv(path, TICKERS, seed=11, days=4, start=start)
        files.append(str(path))
    out = cli(tmp_path, "replay", *files, "--json", timeout=240)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["timeframe"] == "1m" and result["problems"] == []
    assert "signal_guard" not in result["stages"], result["top_rejections"]  # nothing stale, nothing in the future
    trades = result["trades"]
    assert len(trades) >= 10
    cal = default_calendar()
    days = set()
    for t in trades:
        entry, exit_ = datetime.fromisoformat(t["entry_time"]), datetime.fromisoformat(t["exit_time"])
        day = entry.astimezone(NEW_YORK).date()
        days.add(day)
        session = cal.session(day)
        assert session is not None, f"a trade on {day}, which has no session"
        cutoff = session[1] - timedelta(minutes=5)
        assert session[0] <= entry < session[1], t
        # flat by that day's cutoff (an entry in the last minutes -- the risk gate admits them until the close --
        # is closed on its next bar)
        assert exit_.astimezone(NEW_YORK).date() == day and exit_ <= max(cutoff, entry) + timedelta(minutes=1), t
        if t["exit_type"] == "eod_close":
            assert cutoff <= exit_ <= max(cutoff, entry) + timedelta(minutes=1), t
    assert date(2012, 11, 22) not in days  # Thanksgiving
    # the sessions either side of both DST changes and the early close all traded
    assert {date(2012, 11, 2), date(2012, 11, 5), date(2012, 11, 23), date(2013, 3, 8), date(2013, 3, 11)} <= days
    early = [t for t in trades if t["exit_time"].startswith("2012-11-23")]
    assert all(datetime.fromisoformat(t["exit_time"]) <= datetime.fromisoformat("2012-11-23T17:56:00+00:00")
               for t in early)

