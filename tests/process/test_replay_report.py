"""Issue 14 on real market data: `ordergate replay` of three liquid US share classes, 2009-2013, with the
shipped defaults trades plausibly, rejects for the expected reasons, and its report's figures match an
independent computation (pandas on the CSVs and on the trade list); the HTML report opens in a headless
browser with the charts drawn; a terminal sees progress.
"""

from __future__ import annotations

import json
import math
import os
import pty
import re
import shutil
import struct
import subprocess
import zlib
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from daemon.replay_report import EQUITY_COLOUR
from tests.daemon_proc import BIN, ROOT, base_env, cli

DATA = Path(__file__).resolve().parents[1] / "data" / "daily"
FILES = [str(DATA / f"{s}.csv") for s in ("MSFT", "GOOG", "GOOGL")]
INITIAL = 100_000.0  # the paper broker's shipped initial_cash


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("real")
    out = cli(tmp, "replay", *FILES, "--json", timeout=180)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_real_daily_bars_trade_plausibly_for_the_expected_reasons(result: dict[str, Any]) -> None:
    years = 944 / 252
    assert 10 * years <= result["total"]["trades"] <= 150 * years  # neither nothing nor every bar
    assert {t["symbol"] for t in result["trades"]} == {"MSFT", "GOOG", "GOOGL"}
    assert len(result["total"]["by_exit_type"]) >= 3
    kinds = {(r["stage"], r["kind"]) for r in result["top_rejections"]}
    # GOOG and GOOGL are one company: the correlation check sees it; nothing is stale, in the future or VaR-capped
    assert ("unified_risk", "correlation") in kinds
    assert not [k for k in kinds if k[1] in ("freshness", "var")]
    assert "signal_guard" not in result["stages"]


def _closes(name: str) -> pd.Series:
    frame = pd.read_csv(DATA / f"{name}.csv")
    return frame.set_index(frame.columns[0])["Close"]


def test_buy_and_hold_matches_pandas_on_the_csvs(result: dict[str, Any]) -> None:
    growth = {s: _closes(s).iloc[-1] / _closes(s).iloc[0] for s in ("MSFT", "GOOG", "GOOGL")}
    hold = result["buy_and_hold"]
    for symbol, g in growth.items():
        assert hold["symbols"][symbol] == pytest.approx(g - 1.0, abs=1e-6)
    assert hold["total_return"] == pytest.approx(sum(growth.values()) / 3 - 1.0, abs=1e-6)
    assert hold["final_equity"] == pytest.approx(INITIAL * sum(growth.values()) / 3, abs=0.01)


def test_performance_figures_match_pandas_and_the_trade_list(result: dict[str, Any]) -> None:
    curve = pd.Series({d: v for d, v in result["equity_curve"]})
    values = pd.concat([pd.Series([INITIAL]), curve.reset_index(drop=True)])
    returns = values.pct_change().dropna()
    perf = result["performance"]
    assert perf["total_return"] == pytest.approx(curve.iloc[-1] / INITIAL - 1.0, abs=1e-6)
    assert perf["sharpe"] == pytest.approx(returns.mean() / returns.std() * math.sqrt(252), abs=1e-3)
    assert perf["max_drawdown"] == pytest.approx((1 - values / values.cummax()).max(), abs=1e-6)
    days = (pd.Timestamp(curve.index[-1]) - pd.Timestamp(curve.index[0])).days
    assert perf["annualised_return"] == pytest.approx((1 + perf["total_return"]) ** (365.25 / days) - 1, abs=1e-5)
    # on every day with no position open, equity is the initial cash plus the P&L of the trades closed so far
    trades = pd.DataFrame(result["trades"])
    trades["entry_day"], trades["exit_day"] = trades.entry_time.str[:10], trades.exit_time.str[:10]
    cum = trades.groupby("exit_day").pnl.sum().cumsum()
    matched, unmatched = [], []
    for day, equity in curve.items():
        if ((trades.entry_day <= day) & (trades.exit_day > day)).any():
            continue
        closed = cum[cum.index <= day]
        expected = INITIAL + (closed.iloc[-1] if len(closed) else 0.0)
        (matched if abs(equity - expected) <= 1.0 else unmatched).append(day)
    assert len(matched) > 300
    # the only exceptions: the days after the entry of the position still open at the end
    assert not unmatched or (result["open_positions"] > 0 and min(unmatched) > max(matched))
    by_exit = result["total"]["by_exit_type"]
    for exit_type, summary in by_exit.items():
        assert summary["trades"] == (trades.exit_type == exit_type).sum()
        assert summary["gross_pnl"] == pytest.approx(trades.pnl[trades.exit_type == exit_type].sum(), abs=0.05)
    # exposure: the share of day closes with a position held, from the trades' entry and exit days (the still
    # open position adds its last few days)
    held = sum(((trades.entry_day <= day) & (trades.exit_day > day)).any() for day in curve.index)
    assert 0 <= perf["exposure"] * len(curve) - held <= 3
    assert 0.05 < perf["exposure"] < 1.0


# -- the HTML report in a headless browser ----------------------------------------------------------------------
def _browser() -> str | None:
    return next((p for p in (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")) if p), None)


def _png_pixels(data: bytes) -> tuple[int, int, list[bytes]]:
    """Rows of RGB(A) pixels of an 8-bit non-interlaced PNG (what Chromium writes), decoded with zlib."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width = 8, b"", 0
    height = channels = 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", chunk)
            assert depth == 8 and interlace == 0 and colour in (2, 6)
            channels = 3 if colour == 2 else 4
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    raw, stride, rows, previous = zlib.decompress(idat), width * channels, [], bytearray(width * channels)
    for y in range(height):
        kind, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - channels] if i >= channels else 0
            b, c = previous[i], previous[i - channels] if i >= channels else 0
            if kind == 1:
                line[i] = (line[i] + a) & 255
            elif kind == 2:
                line[i] = (line[i] + b) & 255
            elif kind == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line) if channels == 3 else bytes(v for k, v in enumerate(line) if k % 4 != 3))
        previous = line
    return width, height, rows


def test_html_report_is_self_contained_and_draws_its_charts(tmp_path: Path) -> None:
    report = tmp_path / "report.html"
    out = cli(tmp_path, "replay", *FILES, "--report", str(report), timeout=180)
    assert out.returncode == 0, out.stderr
    page = report.read_text()
    assert not re.search(r"<script[^>]+src=", page), "the report must not load scripts from anywhere"
    assert "Equity: strategy vs buy-and-hold" in page and "MSFT: " in page and page.count("Plotly.newPlot") == 4
    browser = _browser()
    if browser is None:
        pytest.skip("no headless browser: apt-get install chromium (as .ci/run does) to check the report renders")
    shot = tmp_path / "shot.png"
    profile = tmp_path / "profile"
    run = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                          "--disable-background-networking", "--disable-component-update", "--disable-sync",
                          f"--user-data-dir={profile}", "--hide-scrollbars", "--window-size=1280,900",
                          "--virtual-time-budget=10000", f"--screenshot={shot}", report.as_uri()],
                         capture_output=True, text=True, timeout=120)
    assert shot.is_file(), run.stderr[-2000:]
    width, _, rows = _png_pixels(shot.read_bytes())
    red = bytes(int(EQUITY_COLOUR[i:i + 2], 16) for i in (1, 3, 5))
    drawn = [y for y, row in enumerate(rows) if sum(row[x:x + 3] == red for x in range(0, len(row), 3)) >= 3]
    # the strategy's equity line is drawn across the chart: many rows of its colour, and wide
    assert len(drawn) >= 3, "no equity line in the screenshot"
    columns = {x // 3 for y in drawn for x in range(0, len(rows[y]), 3) if rows[y][x:x + 3] == red}
    assert max(columns) - min(columns) > width // 2


def test_progress_is_shown_on_a_terminal(tmp_path: Path) -> None:
    master, slave = pty.openpty()
    proc = subprocess.Popen([str(BIN), "replay", *FILES], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=slave, env=base_env(tmp_path), cwd=ROOT)
    os.close(slave)
    seen = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    stdout, _ = proc.communicate(timeout=180)
    os.close(master)
    assert proc.returncode == 0
    assert b"\rreplay at 20" in seen and b"signals" in seen
    assert b"replay at" not in stdout  # the summary on stdout stays clean
