"""Issue 13 with the real daemon on the persistent paper broker: SIGKILL it with a position open, let the market
fall through the resting stop in the paper book while it is down (as a real broker would), restart: the ledger
has the exit once, as `stop_loss (broker)`, and no stop is left for a position that is gone."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from adapters.paper import PaperBroker
from config.settings import PaperSettings
from pipeline.core.clock import SimulatedClock
from pipeline.core.models import Bar, OrderStatus, OrderType
from pipeline.execution.protective_stops import BROKER_STOP_EXIT
from tests.daemon_proc import DaemonProcess, base_env, cli
from tests.daemon_proc import status as daemon_status
from tests.protective_audit import oversold, protection_gaps

pytestmark = pytest.mark.timeout(150)


def _book(state_dir: Path) -> PaperBroker:
    return PaperBroker(PaperSettings(), SimulatedClock(), state_path=state_dir / "paper_book.json")


def _open_stops(book: PaperBroker) -> list[Any]:
    return [o for o in book._orders.values()
            if o.order_type == OrderType.STOP and o.status in (OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED)]


def _trades(state_dir: Path) -> list[tuple[str, str, float]]:
    with sqlite3.connect(state_dir / "journal.db") as conn:
        return list(conn.execute("SELECT symbol, exit_type, quantity FROM trades"))


def test_stop_fills_in_the_paper_book_while_the_daemon_is_down(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    env = base_env(state_dir, ORDERGATE_DATA__TICKERS='["AAPL"]', ORDERGATE_DATA__BARS_PER_SECOND="2",
                   ORDERGATE_STRATEGY__ENABLED="false")
    first = DaemonProcess(state_dir, env=env).start()
    try:
        first.wait_for("daemon_ready")
        first.wait_for("bars_flowing")
        out = cli(state_dir, "buy", "AAPL", "--shares", "10", "--json", env=env)
        assert out.returncode == 0, (out.stdout, out.stderr)
        deadline = time.monotonic() + 30
        shown = None
        while time.monotonic() < deadline and shown is None:
            positions = _status_positions(state_dir, env)
            shown = next((p["resting_stop"] for p in positions if p["symbol"] == "AAPL" and p["resting_stop"]), None)
            time.sleep(0.05)
        assert shown is not None and shown["quantity"] == 10, first.text()[-3000:]
    finally:
        first.kill9()
        first.stop()
    book = _book(state_dir)
    assert protection_gaps(book) == []  # the position rests its stop across the kill
    (stop,) = _open_stops(book)
    assert stop.client_order_id == shown["client_order_id"]
    level = stop.stop_price
    # the market while nobody watches: a bar through the stop; the book triggers it and saves itself
    book.on_bars([Bar("AAPL", SimulatedClock().now(), level * 0.995, level * 0.995, level * 0.99, level * 0.99, 1.0)])
    asyncio.run(book.close())
    book = _book(state_dir)
    assert book.position("AAPL")[0] == 0.0 and _open_stops(book) == []
    assert _trades(state_dir) == []

    second = DaemonProcess(state_dir, env=env).start()
    try:
        second.wait_for("daemon_ready")
        assert [p for p in _status_positions(state_dir, env) if p["symbol"] == "AAPL"] == []
        assert _trades(state_dir) == [("AAPL", BROKER_STOP_EXIT, 10.0)]
        assert _open_stops(_book(state_dir)) == [] and oversold(_book(state_dir)) == []
    finally:
        assert second.stop() == 0
    assert _trades(state_dir) == [("AAPL", BROKER_STOP_EXIT, 10.0)]


def _status_positions(state_dir: Path, env: dict[str, str]) -> list[dict[str, Any]]:
    return daemon_status(state_dir, env)["positions"]
