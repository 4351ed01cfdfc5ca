"""`ordergate replay`: deterministic summaries with wins, losses and several exit types; bad rows by line."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.daemon_proc import BIN, ROOT, base_env


def _replay(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN), "replay", *args], env=base_env(tmp_path / "state"), capture_output=True,
                          text=True, timeout=120, cwd=ROOT)


def test_embedded_replay_is_deterministic_with_wins_losses_and_exit_variety(tmp_path: Path) -> None:
    first = _replay(tmp_path, "embedded", "--json")
    second = _replay(tmp_path, "embedded", "--json")
    assert first.returncode == 0, first.stderr
    assert first.stdout == second.stdout
    result = json.loads(first.stdout)
    total = result["total"]
    assert total["wins"] > 0 and total["losses"] > 0
    assert len(total["by_exit_type"]) >= 4
    assert result["period"] == "day" and all("trades" in s for s in result["periods"].values())
    assert sum(s["trades"] for s in result["periods"].values()) == total["trades"]
    human = _replay(tmp_path, "embedded")
    assert human.returncode == 0 and "total" in human.stdout and "trades by exit type:" in human.stdout


def test_bad_rows_are_reported_with_line_numbers(tmp_path: Path) -> None:
    csv = tmp_path / "bars.csv"
    rows = ["timestamp,symbol,open,high,low,close,volume"]
    for i in range(120):
        minute = f"2026-11-24T{14 + (30 + i) // 60:02d}:{(30 + i) % 60:02d}:00+00:00"
        rows.append(f"{minute},AAA,100,101,99,100.5,1000")
    rows[10] = "not-a-time,AAA,100,101,99,100,1000"
    rows[20] = rows[20].replace(",101,99,", ",98,99,")          # high < low
    rows[30] = rows[30].replace(",100,101,", ",-5,101,")        # negative price
    csv.write_text("\n".join(rows) + "\n")
    out = _replay(tmp_path, str(csv), "--json")
    assert out.returncode == 0, out.stderr
    problems = {p["line"]: p["reason"] for p in json.loads(out.stdout)["problems"]}
    assert {11, 21, 31} <= set(problems)
    assert json.loads(out.stdout)["bars"] == 117


def test_daily_bars_summarise_per_month(tmp_path: Path) -> None:
    import random
    from datetime import date, timedelta

    rng = random.Random(3)
    csv = tmp_path / "daily.csv"
    lines = ["timestamp,symbol,open,high,low,close,volume"]
    day, price = date(2025, 1, 2), 100.0
    while len(lines) < 400:
        if day.weekday() < 5:
            drift = 0.004 if (len(lines) // 60) % 2 == 0 else -0.004
            close = price * (1 + drift + rng.gauss(0, 0.01))
            hi, lo = max(price, close) * 1.005, min(price, close) * 0.995
            lines.append(f"{day.isoformat()}T21:00:00+00:00,SPY,{price:.2f},{hi:.2f},{lo:.2f},{close:.2f},1000000")
            price = close
        day += timedelta(days=1)
    csv.write_text("\n".join(lines) + "\n")
    out = _replay(tmp_path, str(csv), "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["timeframe"] == "1d" and result["period"] == "month"
    assert result["total"]["trades"] >= 5 and result["entries"] == result["exits"] + result["open_positions"]
    # weekdays without a session (Carter's day of mourning, MLK day, Christmas...) are reported, not traded
    reasons = {p["reason"] for p in result["problems"]}
    assert all(r.endswith("is not an NYSE session (weekend or holiday)") for r in reasons)
    assert {"timestamp: 2025-01-09 is not an NYSE session (weekend or holiday)",
            "timestamp: 2025-12-25 is not an NYSE session (weekend or holiday)"} <= reasons
    assert all(len(key) == 7 for key in result["periods"])  # YYYY-MM
    assert "time_stop" not in result["total"]["by_exit_type"]  # the 120-minute time stop is for intraday trades


def test_missing_file_is_one_clear_line(tmp_path: Path) -> None:
    out = _replay(tmp_path, str(tmp_path / "nope.csv"))
    assert out.returncode == 2 and "no such file" in out.stderr
