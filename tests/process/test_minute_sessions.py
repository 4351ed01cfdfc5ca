"""Minute bars around a holiday, an early close and both DST changes, through `ordergate replay` (issue 14).

REAL bars for the holiday: MSFT 1-minute bars of the sessions either side of Memorial Day 2022
(tests/data/minute/memorial-day-2022/MSFT.csv, cut unchanged from the `market-prices` PyPI package; see
tests/data/minute/README.md). Every signal is fresh, every entry is inside a session and before that day's
15:55 ET cutoff, every day trade is flat by it, nothing happens on the holiday, and the trades are the
data's own: each fill is the close of the 1-minute bar that ends at the fill, moved by the paper broker's
slippage, and each P&L is (exit - entry) x shares, all computed here from the CSV.

SYNTHETIC bars for the early close and the DST changes: no real, redistributable minute bars of those were
found (where we looked: tests/data/minute/README.md), so these are the seeded random-walk minute bars of
`adapters.synthetic` on the NYSE calendar's real sessions (2012-11-01..06 across the end of DST,
2012-11-20..26 around Thanksgiving and its 13:00 ET early close, 2013-03-07..11 across the start of DST),
held to the same rules with *that day's* cutoff (12:55 ET on the early close).
"""

from __future__ import annotations

import csv
import json
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from adapters.synthetic import write_csv
from config.settings import ExecutorConfig, PaperSettings
from pipeline.core.calendar import NEW_YORK, MarketCalendar, default_calendar
from tests.daemon_proc import cli

REAL = Path(__file__).resolve().parents[1] / "data" / "minute" / "memorial-day-2022" / "MSFT.csv"
MEMORIAL_DAY = date(2022, 5, 30)
TICKERS = ["AAPL", "MSFT", "NVDA", "AMD", "JPM", "XOM"]
WINDOWS = {"dst-end": date(2012, 11, 1), "thanksgiving": date(2012, 11, 20), "dst-start": date(2013, 3, 7)}
MINUTE = timedelta(minutes=1)
# the rejections a replay of one liquid stock's minute bars with the shipped defaults may give, by stage
EXPECTED_REJECTIONS = {"circuit_breaker": None,
                       "risk_gate": {"exposure", "duplicate_ticker", "conflicting_signal", "market_hours"}}


def _replay(tmp_path: Path, *files: str) -> dict[str, Any]:
    out = cli(tmp_path, "replay", *files, "--json", timeout=240)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def _day_trades_keep_the_session(trades: list[dict[str, Any]], cal: MarketCalendar) -> set[date]:
    """Every entry inside its session and before that day's end-of-day cutoff; every exit the same day, by
    the cutoff (an eod_close on the first bar at or after it). Returns the ET dates that traded."""
    minutes = ExecutorConfig().eod_minutes_before_close
    days = set()
    for t in trades:
        entry, exit_ = datetime.fromisoformat(t["entry_time"]), datetime.fromisoformat(t["exit_time"])
        day = entry.astimezone(NEW_YORK).date()
        days.add(day)
        session = cal.session(day)
        assert session is not None, f"a trade on {day}, which has no session"
        cutoff = session[1] - timedelta(minutes=minutes)
        assert session[0] <= entry < cutoff, t
        assert exit_.astimezone(NEW_YORK).date() == day and entry < exit_ <= cutoff + MINUTE, t
        if t["exit_type"] == "eod_close":
            assert cutoff <= exit_, t
    return days


def _bars(path: Path) -> dict[datetime, tuple[float, float, float, float]]:
    with path.open(encoding="utf-8", newline="") as fh:
        return {datetime.fromisoformat(r["date"]): (float(r["open"]), float(r["high"]), float(r["low"]),
                                                   float(r["close"])) for r in csv.DictReader(fh)}


def test_real_msft_minute_bars_either_side_of_memorial_day(tmp_path: Path) -> None:
    result = _replay(tmp_path, str(REAL))
    assert result["timeframe"] == "1m" and result["bars"] == 1950 and result["problems"] == []
    assert [(f["symbol"], f["symbol_origin"]) for f in result["files"]] == [("MSFT", "the file name")]
    stages = result["stages"]
    assert "signal_guard" not in stages, result["top_rejections"]  # nothing stale, nothing "in the future"
    assert set(stages) <= {"approved", *EXPECTED_REJECTIONS}, stages
    for r in result["top_rejections"]:
        kinds = EXPECTED_REJECTIONS[r["stage"]]
        assert kinds is None or r["kind"] in kinds, r
    trades = result["trades"]
    assert len(trades) >= 10 and result["entries"] == len(trades) + result["open_positions"]
    days = _day_trades_keep_the_session(trades, default_calendar())
    assert MEMORIAL_DAY not in days
    assert {date(2022, 5, 27), date(2022, 5, 31)} <= days  # the sessions either side of the holiday traded

    # the trades are the data's own: a fill is the close of the 1-minute bar ending at it, +- slippage
    bars = _bars(REAL)
    slip = PaperSettings().slippage_bps / 10_000.0
    for t in trades:
        long = t["direction"] == "long"
        for side, buy in (("entry", long), ("exit", not long)):
            at = datetime.fromisoformat(t[f"{side}_time"])
            bar = bars.get(at - MINUTE)
            assert bar is not None, f"{side} at {at} follows no bar of the file: {t}"
            expected = bar[3] * (1.0 + slip if buy else 1.0 - slip)
            assert abs(t[f"{side}_price"] - expected) <= 1e-6 * expected, (side, expected, t)
        pnl = (t["exit_price"] - t["entry_price"]) * t["quantity"] * (1 if long else -1)
        assert abs(pnl - t["pnl"]) <= 0.01, (pnl, t)


def test_synthetic_minute_bars_across_dst_and_an_early_close(tmp_path: Path) -> None:
    files = []
    for name, start in WINDOWS.items():
        path = tmp_path / f"{name}.csv"
        write_csv(path, TICKERS, seed=11, days=4, start=start)
        files.append(str(path))
    result = _replay(tmp_path, *files)
    assert result["timeframe"] == "1m" and result["problems"] == []
    assert "signal_guard" not in result["stages"], result["top_rejections"]  # nothing stale, nothing in the future
    trades = result["trades"]
    assert len(trades) >= 10
    days = _day_trades_keep_the_session(trades, default_calendar())
    assert date(2012, 11, 22) not in days  # Thanksgiving
    # the sessions either side of both DST changes and the early close all traded
    assert {date(2012, 11, 2), date(2012, 11, 5), date(2012, 11, 23), date(2013, 3, 8), date(2013, 3, 11)} <= days
    early = [t for t in trades if t["entry_time"].startswith("2012-11-23")]
    assert early and all(datetime.fromisoformat(t["exit_time"]) <= datetime.fromisoformat("2012-11-23T17:56:00+00:00")
                         for t in early)
    # DST never shifts a signal: each session's entries keep to its ET hours whichever UTC offset it has
    for t in trades:
        local = datetime.fromisoformat(t["entry_time"]).astimezone(NEW_YORK)
        assert (9, 30) <= (local.hour, local.minute) < (15, 55), t
