"""A real daemon on the PostgreSQL journal: SIGKILLed while holding positions and restarted, it loses nothing and
duplicates nothing; the PostgreSQL server restarted under it mid-run, no order reaches the broker without its
intent committed, and after the server is back it trades on and nothing is lost."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import asyncpg
import pytest

from adapters.journal_pg_schema import quote_ident, schema_name
from tests.crashed_daemon import crash_holding_positions, paper_book
from tests.daemon_proc import DaemonProcess, base_env, cli
from tests.pg import PgServer, instance_name

pytestmark = pytest.mark.timeout(240)


def _journal(dsn: str, instance: str) -> tuple[set[str], list[str], dict[str, float]]:
    async def read() -> tuple[set[str], list[str], dict[str, float]]:
        conn = await asyncpg.connect(dsn, server_settings={"search_path": quote_ident(schema_name(instance))})
        try:
            orders = {r[0] for r in await conn.fetch("SELECT client_order_id FROM orders")}
            fills = [r[0] for r in await conn.fetch("SELECT fill_id FROM fills")]
            net: dict[str, float] = {}
            for symbol, side, qty in await conn.fetch("SELECT symbol, side, quantity FROM fills"):
                net[symbol] = net.get(symbol, 0.0) + (qty if side == "buy" else -qty)
        finally:
            await conn.close()
        return orders, fills, {s: q for s, q in net.items() if abs(q) > 1e-9}

    return asyncio.run(read())


def _env(state_dir: Path, dsn: str, instance: str, rate: str, **extra: str) -> dict[str, str]:
    return base_env(state_dir, ORDERGATE_DATA__BARS_PER_SECOND=rate, ORDERGATE_JOURNAL__BACKEND="postgresql",
                    ORDERGATE_JOURNAL__DSN=dsn, ORDERGATE_INSTANCE__NAME=instance,
                    ORDERGATE_JOURNAL__CONNECT_TIMEOUT_SECONDS="2", **extra)


# the strategy trades every [data] ticker but MSFT: MSFT has bars (a price) and only the test's manual orders, so
# the `buy MSFT` during the outage is always a new entry that needs its intent journaled (never a cover of a short
# the strategy opened, nor refused as pending_exit because the strategy happens to be exiting MSFT then)
_NOT_MSFT = json.dumps([{"name": "ema_cloud", "kind": "ema_cloud",
                         "tickers": ["AAPL", "NVDA", "AMD", "JPM", "XOM", "GOOGL", "TSLA"]}])
# and room for it: the strategy's AAPL/NVDA/AMD/GOOGL/TSLA can fill the 30 % technology cap by then (seen: the buy
# refused by the risk gate instead of by the journal), and three losses in a row would pause entries
_ROOM = {"ORDERGATE_EXECUTOR__MAX_SECTOR_EXPOSURE": "1.0", "ORDERGATE_EXECUTOR__CONSECUTIVE_LOSS_THRESHOLD": "1000"}


def _assert_nothing_lost_nothing_twice(state_dir: Path, dsn: str, instance: str) -> None:
    book = paper_book(state_dir)
    broker_orders = [o.client_order_id for o in book.all_orders()]
    broker_fills = [f.fill_id for f in book.all_fills()]
    journal_orders, journal_fills, journal_net = _journal(dsn, instance)
    assert broker_orders, "the daemon traded"
    assert len(broker_orders) == len(set(broker_orders))          # no duplicate client order id
    assert set(broker_orders) <= journal_orders                      # every order was journaled before it was sent
    assert sorted(broker_fills) == sorted(journal_fills)             # every fill journaled, exactly once
    broker_net = {p.symbol: p.quantity for p in book.positions() if abs(p.quantity) > 1e-9}
    assert journal_net == pytest.approx(broker_net)                   # ledger (from fills) == broker
    assert not (state_dir / "journal.db").exists()                   # it was the PostgreSQL journal


def test_sigkill_on_the_postgresql_journal_then_restart(tmp_path: Path, pg_server: PgServer) -> None:
    dsn, instance = pg_server.create_database(f"crash_{instance_name('d').replace('-', '_')}"), "crash"
    state_dir = tmp_path / "state"
    held = crash_holding_positions(state_dir, _env(state_dir, dsn, instance, "100"))
    assert held, "the broker holds positions across the crash"

    second = DaemonProcess(state_dir, env=_env(state_dir, dsn, instance, "5")).start()
    try:
        rebuilt = second.wait_for("book_rebuilt")  # the crashed session's instance lock went with it
        second.wait_for("daemon_ready")
        assert rebuilt["positions"] == len(held)
        assert not [line for line in second.lines() if line.get("event") == "reconciliation_mismatch"]
    finally:
        assert second.stop() == 0
    _assert_nothing_lost_nothing_twice(state_dir, dsn, instance)
    # with the daemon down, status and journal read the instance's PostgreSQL schema (not a journal.db)
    env = _env(state_dir, dsn, instance, "5")
    down = cli(state_dir, "status", "--json", env=env)
    assert down.returncode == 0, down.stderr
    held_now = [p for p in paper_book(state_dir).positions() if abs(p.quantity) > 1e-9]
    assert json.loads(down.stdout)["running"] is False
    assert json.loads(down.stdout)["open_positions"] == len(held_now)
    day = cli(state_dir, "journal", "--json", "--day", "2026-01-01", env=env)
    assert day.returncode == 0 and json.loads(day.stdout)["trades"] == 0, day.stderr


def test_postgresql_restart_mid_run(tmp_path: Path, pg_server: PgServer) -> None:
    dsn, instance = pg_server.create_database(f"restart_{instance_name('d').replace('-', '_')}"), "restart"
    state_dir = tmp_path / "state"
    daemon = DaemonProcess(state_dir, env=_env(state_dir, dsn, instance, "100",
                                               ORDERGATE_STRATEGIES=_NOT_MSFT, **_ROOM)).start()
    try:
        daemon.wait_for("daemon_ready")
        daemon.wait_for("fill_applied", timeout=60)
        before = len(_journal(dsn, instance)[0])
        pg_server.stop()  # every session ended, nothing accepted for a few seconds
        try:
            bought = cli(state_dir, "buy", "MSFT", "--dollars", "2000", "--json", env=daemon.env)
            time.sleep(1)
        finally:
            pg_server.start()
        # refused, nothing sent: the intent could not be made durable (the broker-vs-journal check below holds it)
        assert bought.returncode == 1 and "JournalUnavailable" in bought.stdout + bought.stderr, \
            f"exit {bought.returncode}: {bought.stdout} {bought.stderr} log: {daemon.text()[-4000:]}"
        deadline = time.monotonic() + 60  # it trades on: new intents are journaled after the server is back
        while time.monotonic() < deadline and len(_journal(dsn, instance)[0]) <= before + 2:
            time.sleep(0.2)
        assert len(_journal(dsn, instance)[0]) > before + 2, daemon.text()[-3000:]
        assert daemon.proc is not None and daemon.proc.poll() is None, "the daemon survived the outage"
        felt = {line.get("event") for line in daemon.lines()} & {"journal_flush_failed", "order_submit_crashed",
                                                                 "broker_event_held", "housekeeping_failed"}
        assert felt, "the outage reached the daemon's journal writes"
    finally:
        assert daemon.stop() == 0
    # a restart applies whatever the broker still holds unacknowledged; then the broker and the journal agree
    again = DaemonProcess(state_dir, env=_env(state_dir, dsn, instance, "5", ORDERGATE_STRATEGIES=_NOT_MSFT,
                                                **_ROOM)).start()
    try:
        again.wait_for("daemon_ready")
    finally:
        assert again.stop() == 0
    _assert_nothing_lost_nothing_twice(state_dir, dsn, instance)


def test_a_second_daemon_of_one_instance_elsewhere_is_refused(tmp_path: Path, pg_server: PgServer) -> None:
    """Two hosts (here: two state directories, so no local lock is shared) configured with one instance name would
    both write its schema: the second is refused at start by the instance's advisory lock."""
    dsn, instance = pg_server.create_database(f"dup_{instance_name('d').replace('-', '_')}"), "dup"
    first = DaemonProcess(tmp_path / "a", env=_env(tmp_path / "a", dsn, instance, "5")).start()
    try:
        first.wait_for("daemon_ready")
        second = cli(tmp_path / "b", "run", env=_env(tmp_path / "b", dsn, instance, "5"), timeout=60)
        assert second.returncode == 2, second.stdout + second.stderr
        assert "instance 'dup' is in use by another ordergate" in second.stderr
        assert "Traceback" not in second.stderr
    finally:
        assert first.stop() == 0
