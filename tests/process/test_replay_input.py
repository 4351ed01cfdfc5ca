"""Issue 14.4 / 14.5: `ordergate replay` reads what a trader has and says where the signals went.

Run as a subprocess on the real daily bars of tests/data/daily (Stooq, pandas and Yahoo layouts, one symbol
per file): several files at once, `--symbol`, date-only rows, the format it read; the summary gives the
signals by stage and outcome and the top rejection reasons.
"""

from __future__ import annotations

import fcntl
import json
import shutil
import struct
import subprocess
import termios
import time
from pathlib import Path

from tests.daemon_proc import BIN, ROOT, base_env, cli
from tests.daily_bars import canonical_daily

DATA = Path(__file__).resolve().parents[1] / "data" / "daily"
FILES = [str(DATA / f"{s}.csv") for s in ("MSFT", "GOOG", "GOOGL")]


def test_three_real_files_in_three_layouts_replay_together(tmp_path: Path) -> None:
    out = cli(tmp_path, "replay", *FILES, "--json", timeout=120)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["timeframe"] == "1d" and result["bars"] == 3 * 944 and result["problems"] == []
    layouts = {f["file"]: (f["layout"], f["symbol"], f["symbol_origin"]) for f in result["files"]}
    assert layouts["MSFT.csv"][0].startswith("Stooq") and layouts["MSFT.csv"][1:] == ("MSFT", "the file name")
    assert layouts["GOOGL.csv"][0].startswith("Yahoo") and layouts["GOOG.csv"][1] == "GOOG"
    # where every signal went: the final outcomes add up to the signals
    stages = result["stages"]
    assert sum(n for outcomes in stages.values() for n in outcomes.values()) == result["signals"]
    assert stages["intent"]["approved"] == result["entries"] > 0  # the decision records that made an intent
    top = result["top_rejections"]
    assert top and sum(r["count"] for r in top) <= result["signals"] - result["entries"]
    assert all(r["example"] and r["stage"] for r in top)


def test_human_summary_names_the_format_and_the_stages(tmp_path: Path) -> None:
    copy = tmp_path / "prices.csv"
    shutil.copy(DATA / "GOOGL.csv", copy)
    out = cli(tmp_path, "replay", str(copy), "--symbol", "googl", timeout=120)
    assert out.returncode == 0, out.stderr
    assert "prices.csv: Yahoo" in out.stdout and "symbol GOOGL from --symbol" in out.stdout
    assert "signals by stage" in out.stdout and "top rejection reasons" in out.stdout


def test_one_symbol_file_without_a_symbol_is_a_clear_error(tmp_path: Path) -> None:
    copy = tmp_path / "stocks_googl_2009.csv"
    shutil.copy(DATA / "GOOGL.csv", copy)
    out = cli(tmp_path, "replay", str(copy))
    assert out.returncode == 2
    assert len(out.stderr.strip().splitlines()) == 1 and "give --symbol" in out.stderr
    mismatch = cli(tmp_path, "replay", *FILES, "--symbol", "MSFT")
    assert mismatch.returncode == 2 and "one per file" in mismatch.stderr


def test_date_only_rows_in_an_intraday_file_are_reported(tmp_path: Path) -> None:
    path = tmp_path / "mixed.csv"
    lines = ["timestamp,symbol,open,high,low,close,volume"]
    lines += [f"2013-01-04T14:{m:02d}:00Z,AAA,10,11,9,10.5,100" for m in range(30, 40)]
    lines.append("2013-01-04,AAA,10,11,9,10.5,100")
    path.write_text("\n".join(lines) + "\n")
    out = cli(tmp_path, "replay", str(path), "--json")
    assert out.returncode == 0, out.stderr
    problems = json.loads(out.stdout)["problems"]
    assert [p["line"] for p in problems] == [12] and "only daily bars" in problems[0]["reason"]


def test_summary_says_where_the_signals_went_on_a_file_every_version_reads(tmp_path: Path) -> None:
    """Issue 14.5 as met: '276 signals, 0 entries' and nothing more. On a canonical-layout file (real MSFT daily
    bars, stamped 16:00 ET) the human summary gives every signal's stage and outcome, adding up to the signals,
    and the top rejection reasons with an example each."""
    path = canonical_daily("MSFT", tmp_path / "msft.csv", "T16:00:00-05:00")
    human = cli(tmp_path, "replay", str(path), timeout=120)
    assert human.returncode == 0, human.stderr
    assert "signals by stage" in human.stdout and "top rejection reasons" in human.stdout, human.stdout
    result = json.loads(cli(tmp_path, "replay", str(path), "--json", timeout=120).stdout)
    stages = result["stages"]
    assert sum(n for outcomes in stages.values() for n in outcomes.values()) == result["signals"] > 0
    line = next(x for x in human.stdout.splitlines() if x.startswith("signals by stage: "))
    shown = line.removeprefix("signals by stage: ").split(", ")
    assert shown == [f"{stage} {n}" if stage == outcome else f"{stage} {outcome} {n}"
                     for stage, outcomes in stages.items() for outcome, n in outcomes.items()], line
    assert result["top_rejections"]
    for r in result["top_rejections"]:
        assert f"{r['count']:>5}  {r['stage']}/{r['kind']}: e.g. {r['example'][:150]}" in human.stdout, r


def _unread(fd: int) -> int:
    """Bytes waiting in the pipe at `fd`."""
    return struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0]


def test_json_longer_than_the_pipe_reaches_a_slow_reader_whole(tmp_path: Path) -> None:
    """Seen once under load in `make test`: the replay's JSON cut at 128 KB. With PYTHONUNBUFFERED (the unit files
    and the tests set it) stdout's text layer writes straight to the file descriptor and drops what a short write
    leaves (after the event loop has run, a write to a full pipe returns short), so a reader slower than the
    writer got the first pipe-full and a newline. Output goes through a buffer that finishes every write."""
    env = {**base_env(tmp_path), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([str(BIN), "replay", *FILES, "--json"], env=env, cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 120
        while _unread(proc.stdout.fileno()) < 65536 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)  # a slow reader: nothing is read until the JSON (~160 KB) has filled the pipe (64 KB)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err.decode()[-2000:]
    result = json.loads(out)
    assert len(out) > 2 * 65536 and result["bars"] == 3 * 944
