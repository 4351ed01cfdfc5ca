"""SIGKILL a daemon holding positions on the persistent paper broker, restart it: nothing lost, nothing twice."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tests.crashed_daemon import crash_holding_positions, paper_book
from tests.daemon_proc import DaemonProcess, base_env, status

pytestmark = pytest.mark.timeout(180)


def _journal(state_dir: Path) -> tuple[set[str], list[str], dict[str, float]]:
    with sqlite3.connect(state_dir / "journal.db") as conn:
        orders = {r[0] for r in conn.execute("SELECT client_order_id FROM orders")}
        fills = [r[0] for r in conn.execute("SELECT fill_id FROM fills")]
        net: dict[str, float] = {}
        for symbol, side, qty in conn.execute("SELECT symbol, side, quantity FROM fills"):
            net[symbol] = net.get(symbol, 0.0) + (qty if side == "buy" else -qty)
    return orders, fills, {s: q for s, q in net.items() if abs(q) > 1e-9}


def test_sigkill_with_open_positions_then_restart(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    env = base_env(state_dir, ORDERGATE_DATA__BARS_PER_SECOND="100")
    held = crash_holding_positions(state_dir, env)
    assert held, "the broker holds positions across the crash"

    # restart on the same state dir, slowly, so we can look before much trades
    slow = base_env(state_dir, ORDERGATE_DATA__BARS_PER_SECOND="5")
    second = DaemonProcess(state_dir, env=slow).start()
    try:
        rebuilt = second.wait_for("book_rebuilt")
        second.wait_for("daemon_ready")
        assert rebuilt["positions"] == len(held)
        assert not [line for line in second.lines() if line.get("event") == "reconciliation_mismatch"]
        st = status(state_dir)
        assert {p["symbol"]: (p["shares"] if p["direction"] == "long" else -p["shares"]) for p in st["positions"]} \
            == held or st["stats"]["bars"] > 0
    finally:
        assert second.stop() == 0

    book = paper_book(state_dir)
    broker_orders = [o.client_order_id for o in book.all_orders()]
    broker_fills = [f.fill_id for f in book.all_fills()]
    journal_orders, journal_fills, journal_net = _journal(state_dir)
    assert len(broker_orders) == len(set(broker_orders))          # no duplicate client order id
    assert set(broker_orders) <= journal_orders                      # every order was journaled first
    assert sorted(broker_fills) == sorted(journal_fills)             # every fill journaled, exactly once
    broker_net = {p.symbol: p.quantity for p in book.positions() if abs(p.quantity) > 1e-9}
    assert journal_net == pytest.approx(broker_net)                   # ledger (from fills) == broker
