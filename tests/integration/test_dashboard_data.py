"""The dashboard's data with a big journal: 10 000 signals (each with decisions) and 10 000 trades stay one
bounded page and downsampled curves, read in well under a push interval."""

from __future__ import annotations

import sqlite3
import time
from datetime import UTC, date, datetime, timedelta
from types import SimpleNamespace
from typing import Any

from daemon.dashboard import MAX_CURVE_POINTS, DashboardData, downsample
from pipeline.record.journal import Journal

ROWS = 10_000


def _rows() -> list[tuple[str, list[tuple[Any, ...]]]]:
    start = datetime(2026, 1, 2, 15, tzinfo=UTC)
    return [
        ("INSERT INTO signals (signal_id, ts, ticker, direction, signal_type) VALUES (?,?,?,?,?)",
         [(f"s{i}", (start + timedelta(minutes=i)).isoformat(), "AAPL", "long", "manual") for i in range(ROWS)]),
        ("INSERT INTO decisions (signal_id, stage, outcome, reason, ts) VALUES (?,?,?,?,?)",
         [(f"s{i}", stage, outcome, reason, start.isoformat()) for i in range(ROWS)
          for stage, outcome, reason in (("guard", "approved", None),
                                         ("risk_gate", "rejected" if i % 3 else "approved",
                                          "max positions" if i % 3 else None))]),
        ("INSERT INTO trades (signal_id, exit_time, pnl, day) VALUES (?,?,?,?)",
         [(f"s{i}", (start + timedelta(hours=i)).isoformat(), (-1) ** i * 10.0 + 1,
           (date(2026, 1, 2) + timedelta(days=i // 10)).isoformat()) for i in range(ROWS)]),
    ]


async def _fill(journal: Any) -> None:
    """The rows straight into the journal's tables (SQLite file, or the instance's PostgreSQL schema)."""
    if isinstance(journal, Journal):
        conn = sqlite3.connect(journal.path)
        for sql, rows in _rows():
            conn.executemany(sql, rows)
        conn.commit()
        conn.close()
        return
    import asyncpg

    from adapters.journal_pg_schema import quote_ident, to_pg

    conn = await asyncpg.connect(journal.dsn, server_settings={"search_path": quote_ident(journal.schema)})
    try:
        for sql, rows in _rows():
            await conn.executemany(to_pg(sql), rows)
    finally:
        await conn.close()


async def test_snapshot_with_10000_rows_is_bounded(any_journal: Any) -> None:
    journal = any_journal  # on SQLite and on PostgreSQL (the dashboard's SQL, rowid included, on both)
    await _fill(journal)

    async def status(_args):
        return {"equity": 1.0}

    clock = SimpleNamespace(now=lambda: datetime(2026, 1, 5, 15, tzinfo=UTC))
    calendar = SimpleNamespace(trading_day=lambda _now: date(2026, 1, 5))
    daemon = SimpleNamespace(handlers=SimpleNamespace(status=status), clock=clock,
                             core=SimpleNamespace(journal=journal, calendar=calendar))
    data = DashboardData(daemon, page_rows=50)
    started = time.perf_counter()
    snap = await data.snapshot()
    elapsed = time.perf_counter() - started
    assert elapsed < 0.5, elapsed
    assert len(snap["decisions"]) == 50 and snap["decisions"][0]["signal_id"] == f"s{ROWS - 1}"
    assert snap["decisions"][0]["stage"] == "risk_gate"  # where it stopped: the signal's last decision
    assert snap["journal"] == {"signals": ROWS, "trades": ROWS}
    assert len(snap["equity"]["history_curve"]) <= MAX_CURVE_POINTS
    assert snap["equity"]["history_curve"][-1][1] == ROWS * 1.0  # the last point is the whole journal
    older = await data.decisions(before=snap["decisions"][-1]["seq"], limit=50)
    assert len(older) == 50 and older[0]["seq"] == snap["decisions"][-1]["seq"] - 1


def test_downsample_keeps_the_last_point() -> None:
    points = [(str(i), float(i)) for i in range(10_000)]
    out = downsample(points, 100)
    assert len(out) == 100 and out[0] == points[0] and out[-1] == points[-1]
