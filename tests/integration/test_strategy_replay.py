"""Replay on the real daily bars of tests/data/daily: the breakout strategy alone, and two strategies on one
account whose per-strategy summaries add up to the account's."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from config.settings import load_settings
from daemon.replay import replay
from pipeline.record.strategy_summary import check_sums

DAILY = Path(__file__).resolve().parents[1] / "data" / "daily"
CLOUD_READS = {"momentum_exhaustion", "cloud_flip"}  # the EMA cloud strategy's own exits
BREAKOUT = {"name": "breakout", "kind": "daily_breakout", "timeframes": ["1d"],
            "params": {"channel": 20, "atr_period": 14, "atr_stop": 2.0}}


def _concurrent(trades: list[dict[str, Any]]) -> int:
    """The most positions open at one time among these trades."""
    events = sorted([(t["entry_time"], 1) for t in trades] + [(t["exit_time"], -1) for t in trades],
                    key=lambda e: (e[0], e[1]))
    most = now = 0
    for _, step in events:
        now += step
        most = max(most, now)
    return most


async def test_the_breakout_strategy_alone_trades_the_daily_bars(tmp_path: Path) -> None:
    settings = load_settings(state_dir=tmp_path / "s", strategies=[BREAKOUT])
    result = await replay(settings, [DAILY / "MSFT.csv"], state_dir=tmp_path / "run")
    assert result["timeframe"] == "1d" and result["bars"] == 944
    trades = result["trades"]
    assert len(trades) >= 10, result["stages"]
    assert {t["strategy"] for t in trades} == {"breakout"}
    assert set(result["strategies"]) == {"breakout"}
    # its signals are breakouts: the journal of the run says so
    import sqlite3

    conn = sqlite3.connect(tmp_path / "run" / "journal.db")
    try:
        kinds = {row[0] for row in conn.execute("SELECT DISTINCT signal_type FROM signals")}
        strategies = {row[0] for row in conn.execute("SELECT DISTINCT strategy FROM signals")}
    finally:
        conn.close()
    assert kinds <= {"breakout_long", "breakout_short"} and kinds and strategies == {"breakout"}


async def test_two_strategies_on_one_account_add_up_to_the_account(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    settings = load_settings(state_dir=tmp_path / "s", strategies=[
        {"name": "clouds", "kind": "ema_cloud", "equity_share": 0.5},
        {**BREAKOUT, "equity_share": 0.5, "max_positions": 1},
    ])
    files = [DAILY / "MSFT.csv", DAILY / "GOOGL.csv"]
    result = await replay(settings, files, state_dir=tmp_path / "run")
    strategies, account = result["strategies"], result["account"]
    assert set(strategies) == {"clouds", "breakout"}
    assert all(line["trades"] > 0 for line in strategies.values()), strategies
    assert check_sums(result) == []
    # the account's line is the run's own figures: every trade, the realized P&L, the equity's return
    assert account["trades"] == result["total"]["trades"] == len(result["trades"])
    assert sum(line["trades"] for line in strategies.values()) == account["trades"]
    assert math.isclose(sum(line["pnl"] for line in strategies.values()), account["pnl"], abs_tol=1e-4)
    assert math.isclose(sum(line["return"] for line in strategies.values()), account["return"], abs_tol=1e-6)
    assert math.isclose(account["realized_pnl"], result["total"]["gross_pnl"], abs_tol=1e-4)
    perf = result["performance"]
    assert math.isclose(account["pnl"], perf["final_equity"] - perf["initial_equity"], abs_tol=0.02)
    assert math.isclose(account["return"], perf["total_return"], abs_tol=1e-6)
    # each strategy kept its own budget: breakout never held more than one position at a time
    breakout = [t for t in result["trades"] if t["strategy"] == "breakout"]
    assert _concurrent(breakout) <= 1
    assert {t["strategy"] for t in result["trades"]} == {"clouds", "breakout"}
    # the summary printed and the HTML report show the same lines
    from daemon.replay_report import render_report
    from daemon.replay_summary import print_human

    page = render_report(result)
    assert "<h2>By strategy</h2>" in page and ">breakout<" in page and ">account<" in page
    print_human(result)
    printed = capsys.readouterr().out
    assert f"{'account':<16} {account['trades']:>6}" in printed and "breakout" in printed
    # each strategy's trades closed by its own exits: the breakout's never by the EMA clouds' reads
    assert not {t["exit_type"] for t in breakout} & CLOUD_READS


async def test_two_strategies_long_one_symbol_hold_their_own_positions_and_still_add_up(tmp_path: Path) -> None:
    settings = load_settings(state_dir=tmp_path / "s", strategies=[
        {"name": "clouds", "kind": "ema_cloud", "equity_share": 0.5}, {**BREAKOUT, "equity_share": 0.5}])
    result = await replay(settings, [DAILY / "MSFT.csv"], state_dir=tmp_path / "run")
    trades = result["trades"]
    clouds = [t for t in trades if t["strategy"] == "clouds"]
    breakout = [t for t in trades if t["strategy"] == "breakout"]
    # both held MSFT at the same time, each its own position (own entry, own exit), in the same direction
    both = [(a, b) for a in clouds for b in breakout
            if a["entry_time"] < b["exit_time"] and b["entry_time"] < a["exit_time"]]
    assert both, "the two strategies never held MSFT together"
    assert all(a["direction"] == b["direction"] for a, b in both)
    assert any(a["entry_price"] != b["entry_price"] or a["exit_time"] != b["exit_time"] for a, b in both)
    assert check_sums(result) == []
    strategies, account = result["strategies"], result["account"]
    assert sum(line["trades"] for line in strategies.values()) == account["trades"] == len(trades)
    assert math.isclose(sum(line["pnl"] for line in strategies.values()), account["pnl"], abs_tol=1e-4)
    perf = result["performance"]
    assert math.isclose(account["pnl"], perf["final_equity"] - perf["initial_equity"], abs_tol=0.02)
    # per-strategy exits: the breakout's positions never closed by the clouds' momentum exhaustion or flip
    assert not {t["exit_type"] for t in breakout} & CLOUD_READS
    assert {t["exit_type"] for t in clouds} & CLOUD_READS  # while the clouds' own positions are
