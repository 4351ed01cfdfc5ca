"""Order kind, exit type and direction are enums in memory and the same plain strings on disk and in the logs.

One entry and its exit go through a real Core (paper broker, real SQLite journal, JSON logging): the journal's
orders and trades rows and a JSON log line carry exactly the strings they carried before the enums.
"""

from __future__ import annotations

import io
import json
import sqlite3
from datetime import UTC, datetime
from typing import Any

import structlog

from daemon.logging import configure_logging
from pipeline.core.models import Direction, ExitType, OrderIntent, OrderKind, Side
from tests.conftest import enter

NOW = datetime(2026, 11, 24, 16, 0, tzinfo=UTC)


def test_intents_take_the_plain_strings_and_hold_enums() -> None:
    intent = OrderIntent("c", "s", "AAPL", Side.SELL, 1, kind="exit", direction="short", exit_type="eod_close")
    assert intent.kind is OrderKind.EXIT and intent.direction is Direction.SHORT
    assert intent.exit_type is ExitType.EOD_CLOSE and intent.exit_type == "eod_close"
    assert json.dumps({"kind": intent.kind}) == '{"kind": "exit"}'


async def test_journal_rows_and_json_log_lines_keep_the_string_values(paper_core: Any) -> None:
    out = io.StringIO()
    configure_logging("INFO", "json", out)
    core = await paper_core(pipeline={"enable_unified_risk": False})
    try:
        result = await enter(core)
        assert result.intent.direction is Direction.LONG
        await core.flatten()
        await core.settle()
        await core.journal.flush()
        path = core.journal.path
    finally:
        structlog.reset_defaults()
    with sqlite3.connect(path) as db:
        orders = db.execute("SELECT kind, typeof(kind), intent FROM orders ORDER BY created_ts").fetchall()
        trade = db.execute("SELECT direction, typeof(direction), exit_type, typeof(exit_type) FROM trades").fetchone()
        sig = db.execute("SELECT direction, typeof(direction) FROM signals").fetchone()
    assert [(kind, kind_type) for kind, kind_type, _ in orders] == [("entry", "text"), ("stop", "text"),
                                                                     ("exit", "text")]  # stop: the protective one
    entry, stop, exit_ = (json.loads(intent) for _, _, intent in orders)
    assert (stop["kind"], stop["direction"], stop["exit_type"]) == ("stop", "long", "stop_loss (broker)")
    assert (entry["kind"], entry["direction"], entry["exit_type"]) == ("entry", "long", "")
    assert (exit_["kind"], exit_["direction"], exit_["exit_type"]) == ("exit", "long", "flatten")
    assert trade == ("long", "text", "flatten", "text")
    assert sig == ("long", "text")
    lines = [json.loads(line) for line in out.getvalue().splitlines() if line.startswith("{")]
    exit_line = next(line for line in lines if line.get("event") == "exit_signal")
    assert exit_line["exit_type"] == "flatten" and exit_line["symbol"] == "AAPL"
    assert '"exit_type": "flatten"' in next(x for x in out.getvalue().splitlines() if '"exit_signal"' in x)
