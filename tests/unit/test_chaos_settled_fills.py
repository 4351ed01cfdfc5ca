"""The chaos run's check at READY reads the broker's book and the journal while the daemon trades: a fill booked
by the broker a moment before is still on its way to the journal. A fill made since the start counts as missing
only if a second read, after a settle, still lacks it; one the broker had before the start counts at once (the
start journals those before READY). tests/chaos_daemon.settled_missing_fills."""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path

from tests.chaos_daemon import Snapshot, book_fill_ids, settled_missing_fills

FILL = {"fill_id": "paper-fill-70", "quantity": 5.0, "price": 100.0, "commission": 0.0}


def _state(tmp_path: Path) -> Path:
    book = {"orders": [{"client_order_id": "og-exit-1", "symbol": "AAPL", "side": "sell", "status": "filled",
                        "fills": [FILL]}], "positions": {}, "cash": 1e6}
    (tmp_path / "paper_book.json").write_text(json.dumps(book))
    with sqlite3.connect(tmp_path / "journal.db") as conn:
        conn.execute("CREATE TABLE orders (client_order_id, signal_id, kind, symbol, side, quantity, status,"
                     " filled_qty, reason)")
        conn.execute("CREATE TABLE fills (fill_id, client_order_id, symbol, side, quantity, price, commission,"
                     " strategy)")
        conn.execute("CREATE TABLE trades (id)")
    return tmp_path


def _journal_the_fill(state_dir: Path) -> None:
    with sqlite3.connect(state_dir / "journal.db") as conn:
        conn.execute("INSERT INTO fills VALUES (?,?,?,?,?,?,?,?)",
                     (FILL["fill_id"], "og-exit-1", "AAPL", "sell", 5.0, 100.0, 0.0, ""))


def test_a_fill_that_reaches_the_journal_during_the_settle_is_not_missing(tmp_path: Path) -> None:
    state_dir = _state(tmp_path)
    first = Snapshot.read(state_dir)
    timer = threading.Timer(0.2, _journal_the_fill, (state_dir,))
    timer.start()
    try:
        assert settled_missing_fills(state_dir, first, set(), settle=1.0) == set()
    finally:
        timer.join()


def test_a_fill_never_journaled_is_missing(tmp_path: Path) -> None:
    state_dir = _state(tmp_path)
    assert settled_missing_fills(state_dir, Snapshot.read(state_dir), set(), settle=0.1) == {"paper-fill-70"}


def test_a_fill_the_broker_had_before_the_start_counts_at_once(tmp_path: Path) -> None:
    state_dir = _state(tmp_path)
    before = book_fill_ids(state_dir)
    first = Snapshot.read(state_dir)
    _journal_the_fill(state_dir)  # journaled after READY: too late, whatever the settle
    assert settled_missing_fills(state_dir, first, before, settle=0.1) == {"paper-fill-70"}
