"""One signal = one decision record: every stage outcome in one journaled row, still queryable stage by stage
(the decision_stages view, `ordergate journal`, the dashboard feed, the replay's stage counts)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from daemon.commands import offline_journal
from daemon.dashboard import DashboardData
from pipeline.entry.risk_gate import RISK_CHECKS
from pipeline.record.decision import DecisionRecord, decode_stages, encode_stages
from tests.conftest import make_signal

GATE = [f"risk_gate.{name}" for name, _ in RISK_CHECKS]
APPROVED_PATH = ["kill_switch", "signal_guard", "market_price", *GATE, "risk_gate", "unified_risk",
                 "instrument_router", "sizing", "intent"]


async def _records(core: Any, signal_id: str) -> list[dict[str, Any]]:
    return await core.journal.query("SELECT * FROM decisions WHERE signal_id=?", (signal_id,))


async def test_an_approved_signal_is_one_decision_row_holding_every_stage(paper_core: Any) -> None:
    core = await paper_core(exits={"broker_stop": False})
    core.brokers["paper"].set_price("AAPL", 100.0)
    result = await core.orchestrator.process_signal(make_signal("AAPL"))
    assert result.success and result.intent is not None, result.rejection_reason
    await result.order_task

    rows = await _records(core, result.signal_id)
    assert len(rows) == 1, rows  # one row, not one per stage
    row = rows[0]
    assert (row["stage"], row["outcome"], row["client_order_id"]) == \
        ("intent", "approved", result.intent.client_order_id)
    stages = decode_stages(row["stages"])
    assert [s.stage for s in stages] == APPROVED_PATH
    assert all(s.outcome == "approved" for s in stages)
    by_name = {s.stage: s for s in stages}
    assert by_name["market_price"].detail["market_price"] == 100.0
    assert by_name["sizing"].detail["quantity"] == result.intent.quantity
    assert by_name["instrument_router"].detail == {"instrument": "stock", "symbol": "AAPL"}

    # stage by stage through the view, in order
    view = await core.journal.decision_stages(result.signal_id)
    assert [v["stage"] for v in view] == APPROVED_PATH and {v["decision_id"] for v in view} == {row["id"]}
    # the dashboard's feed shows the record (its end and its stages)
    feed = await DashboardData(SimpleNamespace(core=core), 50).decisions()
    mine = next(f for f in feed if f["signal_id"] == result.signal_id)
    assert (mine["stage"], mine["client_order_id"]) == ("intent", result.intent.client_order_id)
    assert [s["stage"] for s in json.loads(mine["stages"])] == APPROVED_PATH
    # `ordergate journal` (running daemon) counts the day's decisions
    summary = await core.daily_summary(core.calendar.trading_day(core.clock.now()))
    assert summary["decisions"] == {"intent": {"approved": 1}}


async def test_a_rejected_signal_names_each_risk_check_and_stops_there(paper_core: Any) -> None:
    core = await paper_core(exits={"broker_stop": False}, executor={"min_account_equity": 10_000_000.0})
    core.brokers["paper"].set_price("MSFT", 100.0)
    result = await core.orchestrator.process_signal(make_signal("MSFT"))
    assert not result.success and result.pipeline_stage == "risk_gate"

    rows = await _records(core, result.signal_id)
    assert len(rows) == 1
    row = rows[0]
    assert (row["stage"], row["outcome"], row["reason"]) == ("risk_gate", "rejected", result.rejection_reason)
    assert json.loads(row["detail"]) == {"check": "min_equity"}
    outcomes = {s.stage: s.outcome for s in decode_stages(row["stages"])}
    names = [name for name, _ in RISK_CHECKS]
    failed = names.index("min_equity")
    assert [outcomes[f"risk_gate.{n}"] for n in names] == \
        ["approved"] * failed + ["rejected"] + ["not_run"] * (len(names) - failed - 1)
    assert "sizing" not in outcomes and "intent" not in outcomes  # never reached
    await core.journal.flush()
    # `ordergate journal` with the daemon down reads the same records from the file
    offline = offline_journal(core.state_dir, row["day"])
    assert offline["decisions"] == {"risk_gate": {"rejected": 1}}


async def test_every_signal_of_a_burst_has_exactly_one_record(paper_core: Any) -> None:
    core = await paper_core(exits={"broker_stop": False}, paper={"initial_cash": 1_000_000.0},
                            executor={"max_single_stock_exposure": 0.05, "max_concurrent_positions": 5})
    tickers = [f"B{i:02d}" for i in range(12)]
    for ticker in tickers:
        core.brokers["paper"].set_price(ticker, 50.0)
    results = [await core.orchestrator.process_signal(make_signal(t, 50.0)) for t in tickers]
    await core.settle()
    rows = await core.journal.query("SELECT signal_id, stage, outcome FROM decisions WHERE stages IS NOT NULL")
    assert sorted(r["signal_id"] for r in rows) == sorted(r.signal_id for r in results)
    approved = [r for r in rows if r["outcome"] == "approved"]
    assert len(approved) == sum(r.success for r in results) == 5
    assert {r["stage"] for r in rows if r["outcome"] == "rejected"} == {"risk_gate"}  # max_positions
    stages = await core.journal.query("SELECT COUNT(*) AS n FROM decision_stages WHERE stage='risk_gate.max_positions'"
                                      " AND outcome='rejected'")
    assert stages[0]["n"] == 7


def test_a_record_round_trips_through_its_json() -> None:
    record = DecisionRecord("sig-1", None)
    record.passed("kill_switch")
    record.reject("risk_gate", "exposure: too much", {"check": "exposure", "odd": Path("/x")})
    stages = decode_stages(encode_stages(record.stages))
    assert [(s.stage, s.outcome) for s in stages] == [("kill_switch", "approved"), ("risk_gate", "rejected")]
    assert stages[1].detail == {"check": "exposure", "odd": "/x"}  # an odd value is kept as text, not raised


def test_a_journal_from_before_the_records_still_reads_stage_by_stage(tmp_path: Path) -> None:
    """Old per-stage rows are migrated in place: the view shows each of them as one stage."""
    import asyncio

    from pipeline.record.journal import Journal

    db = tmp_path / "journal.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE decisions (id INTEGER PRIMARY KEY AUTOINCREMENT, signal_id TEXT, stage TEXT,"
                     " outcome TEXT, reason TEXT, ts TEXT, detail TEXT)")
        conn.executemany("INSERT INTO decisions(signal_id, stage, outcome, reason, ts) VALUES (?,?,?,?,?)",
                         [("old", "kill_switch", "approved", "", None), ("old", "risk_gate", "rejected", "x", None)])

    async def read() -> list[dict[str, Any]]:
        journal = Journal(db)
        await journal.open()
        try:
            return await journal.decision_stages("old")
        finally:
            await journal.close()

    rows = asyncio.run(read())
    assert [(r["stage"], r["outcome"]) for r in rows] == [("kill_switch", "approved"), ("risk_gate", "rejected")]
