"""ReplayFeed: timestamp formats, interval inference, bad rows reported by line, clock advance."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.replay import ReplayError, ReplayFeed, infer_timeframe, load_bars, timeframe_for_gap
from adapters.synthetic import SyntheticFeed, write_csv
from pipeline.core.calendar import default_calendar
from pipeline.core.clock import SimulatedClock
from pipeline.core.ports import MarketDataFeed

HEADER = "timestamp,symbol,open,high,low,close,volume\n"
T0 = datetime(2026, 11, 17, 14, 30, tzinfo=UTC)


def write(tmp_path: Path, body: str, name: str = "bars.csv") -> Path:
    path = tmp_path / name
    path.write_text(body)
    return path


def rows(start: datetime, step: timedelta, n: int, symbols: tuple[str, ...] = ("AAA", "BBB"),
         epoch: bool = False) -> str:
    lines = []
    for i in range(n):
        ts = start + step * i
        stamp = str(int(ts.timestamp())) if epoch else ts.isoformat().replace("+00:00", "Z")
        for k, sym in enumerate(symbols):
            p = 100 + i + k
            lines.append(f"{stamp},{sym},{p},{p + 1},{p - 1},{p + 0.5},{1000 + i}\n")
    return "".join(lines)


async def collect(feed: ReplayFeed) -> list[list]:
    return [batch async for batch in feed.batches()]


async def test_iso_timestamps_batches_and_clock(tmp_path: Path) -> None:
    path = write(tmp_path, HEADER + rows(T0, timedelta(minutes=1), 5))
    clock = SimulatedClock(datetime(2026, 1, 1, tzinfo=UTC))
    feed = ReplayFeed(path, clock)
    assert isinstance(feed, MarketDataFeed)
    seen_clock: list[datetime] = []
    batches = []
    async for batch in feed.batches():
        seen_clock.append(clock.now())
        batches.append(batch)
    assert [len(b) for b in batches] == [2] * 5
    assert [b.symbol for b in batches[0]] == ["AAA", "BBB"]
    assert batches[0][0].timestamp == T0 and batches[0][0].timeframe == "1m"
    assert seen_clock == [T0 + timedelta(minutes=i + 1) for i in range(5)]  # the bar's close, before yield
    assert feed.problems == []
    assert feed.bars_read == 10


async def test_epoch_and_offset_timestamps(tmp_path: Path) -> None:
    epoch = write(tmp_path, HEADER + rows(T0, timedelta(minutes=5), 4, epoch=True), "epoch.csv")
    bars, problems = load_bars(epoch)
    assert problems == [] and bars[0].timestamp == T0 and bars[0].timeframe == "5m"
    offset = write(tmp_path, HEADER + "2026-11-17T09:30:00-05:00,AAA,10,11,9,10.5,100\n"
                   "2026-11-17T09:31:00-05:00,AAA,10,11,9,10.5,100\n", "offset.csv")
    bars, problems = load_bars(offset)
    assert problems == [] and bars[0].timestamp == T0


@pytest.mark.parametrize(
    ("step", "expected"),
    [(timedelta(minutes=1), "1m"), (timedelta(minutes=5), "5m"), (timedelta(hours=1), "1h"),
     (timedelta(days=1), "1d")],
)
def test_interval_inference(tmp_path: Path, step: timedelta, expected: str) -> None:
    path = write(tmp_path, HEADER + rows(T0, step, 30))
    assert infer_timeframe(path) == expected
    assert ReplayFeed(path, None).timeframe == expected


def test_daily_bars_with_weekends_infer_1d(tmp_path: Path) -> None:
    days = [d for d in (date(2026, 11, 2) + timedelta(days=i) for i in range(40)) if d.weekday() < 5]
    body = "".join(f"{d.isoformat()}T21:00:00+00:00,AAA,10,11,9,10,5\n" for d in days)
    assert infer_timeframe(write(tmp_path, HEADER + body)) == "1d"


def test_gap_mapping() -> None:
    assert timeframe_for_gap(60) == "1m"
    assert timeframe_for_gap(900) == "15m"
    assert timeframe_for_gap(3 * 86400) == "1d"
    assert timeframe_for_gap(290) == "5m"


async def test_given_timeframe_overrides_inference(tmp_path: Path) -> None:
    path = write(tmp_path, HEADER + rows(T0, timedelta(minutes=1), 3))
    clock = SimulatedClock(T0)
    feed = ReplayFeed(path, clock, timeframe="5m")
    batches = await collect(feed)
    assert batches[0][0].timeframe == "5m"
    assert clock.now() == T0 + timedelta(minutes=2 + 5)
    with pytest.raises(ReplayError, match="timeframe"):
        ReplayFeed(path, clock, timeframe="7m")


async def test_bad_rows_are_reported_with_line_numbers_and_skipped(tmp_path: Path) -> None:
    body = HEADER + (
        "2026-11-17T14:30:00Z,AAA,10,11,9,10.5,100\n"      # 2 ok
        "not-a-time,AAA,10,11,9,10.5,100\n"                 # 3 unparseable timestamp
        "2026-11-17T14:31:00Z,AAA,10,9,11,10,100\n"         # 4 high < low
        "2026-11-17T14:31:00Z,AAA,12,11,9,10,100\n"         # 5 open outside range
        "2026-11-17T14:31:00Z,AAA,10,11,9,8,100\n"          # 6 close outside range
        "2026-11-17T14:31:00Z,AAA,-1,11,-2,10,100\n"        # 7 non-positive price
        "2026-11-17T14:31:00Z,AAA,10,11,9,10,-5\n"          # 8 negative volume
        "2026-11-17T14:31:00Z,AAA,10,eleven,9,10,5\n"       # 9 not a number
        "2026-11-17T14:31:00,AAA,10,11,9,10,5\n"            # 10 no zone
        "2026-11-17T14:31:00Z,AAA,10,11,9,10\n"             # 11 too few fields
        "2026-11-17T14:32:00Z,AAA,10,11,9,10,5\n"           # 12 ok
        "2026-11-17T14:32:00Z,AAA,10,11,9,10,5\n"           # 13 duplicate
        "2026-11-17T14:31:00Z,AAA,10,11,9,10,5\n"           # 14 out of order for AAA
        "2026-11-17T14:33:00Z,AAA,10,11,9,nan,5\n"          # 15 not finite
        "\n"                                                # 16 blank: ignored
        "2026-11-17T14:33:00Z,AAA,10,11,9,10.5,5\n"         # 17 ok
    )
    path = write(tmp_path, body)
    clock = SimulatedClock(T0)
    feed = ReplayFeed(path, clock)
    batches = await collect(feed)
    assert [b[0].timestamp.minute for b in batches] == [30, 32, 33]
    reasons = {p.line: p.reason for p in feed.problems}
    assert sorted(reasons) == [3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15]
    assert "timestamp" in reasons[3]
    assert "high < low" in reasons[4]
    assert "open" in reasons[5] and "close" in reasons[6]
    assert "non-positive" in reasons[7]
    assert "volume" in reasons[8]
    assert "high" in reasons[9]
    assert "time zone" in reasons[10]
    assert "fields" in reasons[11]
    assert "duplicate" in reasons[13]
    assert "out of order" in reasons[14]
    assert "not finite" in reasons[15]
    assert clock.now() == datetime(2026, 11, 17, 14, 34, tzinfo=UTC)
    bars, problems = load_bars(path)
    assert len(bars) == 3 and problems == feed.problems


async def test_file_grouped_by_symbol_is_replayed_in_time_order(tmp_path: Path) -> None:
    body = HEADER + rows(T0, timedelta(minutes=1), 4, symbols=("AAA",)) + rows(T0, timedelta(minutes=1), 4,
                                                                                 symbols=("BBB",))
    feed = ReplayFeed(write(tmp_path, body), SimulatedClock(T0))
    batches = await collect(feed)
    assert [[b.symbol for b in batch] for batch in batches] == [["AAA", "BBB"]] * 4
    assert [batch[0].timestamp for batch in batches] == sorted(batch[0].timestamp for batch in batches)
    assert feed.problems == []


def test_file_level_errors(tmp_path: Path) -> None:
    with pytest.raises(ReplayError, match="does not exist"):
        ReplayFeed(tmp_path / "missing.csv", None)
    no_header = write(tmp_path, rows(T0, timedelta(minutes=1), 2), "noheader.csv")
    with pytest.raises(ReplayError, match="header"):
        load_bars(no_header)
    missing_col = write(tmp_path, "timestamp,symbol,open,high,low,close\n", "cols.csv")
    with pytest.raises(ReplayError, match="missing volume"):
        load_bars(missing_col)
    empty = write(tmp_path, "", "empty.csv")
    with pytest.raises(ReplayError, match="empty"):
        load_bars(empty)


async def test_close_stops_the_feed(tmp_path: Path) -> None:
    feed = ReplayFeed(write(tmp_path, HEADER + rows(T0, timedelta(minutes=1), 50)), None)
    count = 0
    async for _ in feed.batches():
        count += 1
        if count == 3:
            await feed.close()
    assert count == 3


async def test_synthetic_csv_replays_to_the_same_bars(tmp_path: Path) -> None:
    calendar = default_calendar()
    path = tmp_path / "syn.csv"
    written = write_csv(path, ["AAPL", "MSFT"], seed=3, days=1, calendar=calendar)
    assert written == 2 * 390
    synthetic = [b for batch in SyntheticFeed(["AAPL", "MSFT"], None, calendar, seed=3, days=1).bar_batches()
                 for b in batch]
    replayed, problems = load_bars(path)
    assert problems == []
    assert replayed == synthetic


_fields = st.one_of(
    st.sampled_from(["", "nan", "inf", "-1", "0", "1e309", "abc", "2026-11-17T14:30:00Z", "1763389800", "AAA"]),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n\"'"), max_size=8),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.lists(_fields, min_size=0, max_size=8), max_size=12))
def test_fuzzed_rows_never_crash_and_are_accounted_for(tmp_path: Path, junk: list[list[str]]) -> None:
    good = "2026-11-17T14:28:00Z,ZZZ,10,11,9,10,1\n2026-11-17T14:29:00Z,ZZZ,10,11,9,10,1\n"
    lines = [",".join(row).replace("\x00", "") for row in junk]
    path = tmp_path / "fuzz.csv"
    path.write_text(HEADER + good + "".join(line + "\n" for line in lines), encoding="utf-8")
    bars, problems = load_bars(path)
    assert [b.symbol for b in bars[:2]] == ["ZZZ", "ZZZ"]
    for bar in bars:
        assert 0 < bar.low <= min(bar.open, bar.close) <= max(bar.open, bar.close) <= bar.high
        assert math.isfinite(bar.high) and bar.volume >= 0
    assert all(p.line >= 4 and p.reason for p in problems)
    blank = sum(1 for line in lines if "," not in line and not line.strip())
    assert len(bars) - 2 + len(problems) == len(lines) - blank  # every row is a bar or a reported problem


def test_live_clock_is_refused(tmp_path: Path) -> None:
    from pipeline.core.clock import LiveClock

    with pytest.raises(ReplayError, match="SimulatedClock"):
        ReplayFeed(write(tmp_path, HEADER + rows(T0, timedelta(minutes=1), 2)), LiveClock())  # type: ignore[arg-type]
