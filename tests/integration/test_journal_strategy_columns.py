"""The journal's strategy columns come by migration: a journal written before them opens, gains them, keeps its
rows (strategy empty) and records the version."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from pipeline.core.models import Fill, OrderIntent, Side
from pipeline.record.journal import SCHEMA, SCHEMA_VERSION, Journal
from pipeline.record.trade_journal import ClosedTrade, TradeJournalWriter

TS = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)


def _old_journal(path: Path) -> None:
    """A version-1 journal: the tables as they were before the strategy columns, one fill and one trade."""
    conn = sqlite3.connect(path)
    conn.executescript(SCHEMA)
    conn.execute("INSERT INTO meta VALUES ('schema_version', '1')")
    conn.execute("INSERT INTO fills(fill_id, broker, client_order_id, symbol, side, quantity, price, commission, ts)"
                 " VALUES ('f-old', 'paper', 'og-entry-00000000000000000000', 'AAPL', 'buy', 5, 100, 0, ?)",
                 (TS.isoformat(),))
    conn.execute("INSERT INTO trades(signal_id, ticker, symbol, direction, signal_type, timeframe, entry_time,"
                 " exit_time, entry_price, exit_price, quantity, pnl, r_multiple, exit_type, holding_minutes,"
                 " broker, day) VALUES ('sig-old', 'AAPL', 'AAPL', 'long', 'manual', '5m', ?, ?, 100, 101, 5, 5,"
                 " 0.5, 'profit_target', 10, 'paper', '2026-03-02')", (TS.isoformat(), TS.isoformat()))
    conn.commit()
    conn.close()
    columns = {row[1] for row in sqlite3.connect(path).execute("PRAGMA table_info(fills)")}
    assert "strategy" not in columns


async def test_an_old_journal_gains_the_strategy_columns_and_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    _old_journal(path)
    journal = Journal(path)
    await journal.open()
    try:
        assert journal.condition.state == "empty"  # it holds no orders; nothing was moved aside
        for table in ("signals", "orders", "fills", "trades"):
            names = {r["name"] for r in await journal.query(f"PRAGMA table_info({table})")}
            assert "strategy" in names, table
        assert await journal.query("SELECT value FROM meta WHERE key='schema_version'") == [
            {"value": str(SCHEMA_VERSION)}]
        assert SCHEMA_VERSION == 2
        writer = TradeJournalWriter(journal)
        (old,) = await writer.all_trades()
        assert old.signal_id == "sig-old" and old.strategy == ""
        intent = OrderIntent("og-entry-11111111111111111111", "sig-new", "MSFT", Side.BUY, 3.0, strategy="breakout")
        assert await journal.record_order_intent(intent, "paper", TS)
        fill = Fill("f-new", intent.client_order_id, "MSFT", Side.BUY, 3.0, 50.0, TS, "paper")
        assert await journal.record_fill(fill, intent.strategy)
        await writer.record(ClosedTrade("sig-new", "MSFT", "MSFT", "long", "breakout_long", "1d", TS, TS, 50.0,
                                        52.0, 3.0, 6.0, 1.0, "profit_target", 0.0, "paper", "f-exit",
                                        strategy="breakout"))
        rows = await journal.query("SELECT fill_id, strategy FROM fills ORDER BY seq")
        assert rows == [{"fill_id": "f-old", "strategy": None}, {"fill_id": "f-new", "strategy": "breakout"}]
        assert [t.strategy for t in await writer.all_trades()] == ["", "breakout"]
        assert (await journal.get_order(intent.client_order_id))["strategy"] == "breakout"
    finally:
        await journal.close()
    again = Journal(path)  # a second open changes nothing
    await again.open()
    try:
        assert len(await again.query("SELECT * FROM fills")) == 2
    finally:
        await again.close()
