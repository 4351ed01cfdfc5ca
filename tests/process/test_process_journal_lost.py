"""Issue 11.6 (start-up): a journal lost beside broker positions starts the daemon with the kill switch active.

A daemon on the persistent paper book (the broker's record, in the state dir) is SIGKILLed while it holds
positions; then its journal is deleted, overwritten with garbage, or its WAL is. The restarted daemon must not
trade on an empty ledger: kill switch active with the reason, no new entry at the broker, the damaged file kept.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import time
from pathlib import Path

import pytest

from adapters.paper import PaperBroker
from config.settings import PaperSettings
from pipeline.core.clock import SimulatedClock
from tests.daemon_proc import DaemonProcess, base_env, cli, status

pytestmark = pytest.mark.timeout(240)
JOURNAL_FILES = ("journal.db", "journal.db-wal", "journal.db-shm")


def _book(state_dir: Path) -> PaperBroker:
    return PaperBroker(PaperSettings(), SimulatedClock(), state_path=state_dir / "paper_book.json")


def _entries(state_dir: Path) -> set[str]:
    return {o.client_order_id for o in _book(state_dir).all_orders() if o.client_order_id.startswith("og-entry-")}


def _book_now(state_dir: Path) -> tuple[set[str], dict[str, float]]:
    """Every order id the broker's book has, and its positions (symbol -> signed quantity)."""
    book = _book(state_dir)
    return ({o.client_order_id for o in book.all_orders()},
            {p.symbol: p.quantity for p in book.positions() if p.quantity})


def _unacknowledge(state_dir: Path) -> None:
    """As if the daemon was killed before it took any of the book's fills: the broker sends every one again at the
    next connect (all of them ours by their ids, none of them of an order the lost journal could name)."""
    path = state_dir / "paper_book.json"
    book = json.loads(path.read_text())
    book["acked_fill_seq"] = 0
    path.write_text(json.dumps(book))


def _external(st: dict) -> dict[str, float]:
    return {p["symbol"]: p["shares"] for p in st["external_positions"]}


def _held(state_dir: Path) -> int:
    """How many positions the paper broker's book (its file, written atomically) holds right now."""
    if not (state_dir / "paper_book.json").exists():
        return 0
    return len([p for p in _book(state_dir).positions() if p.quantity])


@pytest.fixture(scope="module")
def crashed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A state dir whose daemon was SIGKILLed while the paper broker held positions (made once, copied per test).

    Watched on the broker's own book file, not through `ordergate status` (a subprocess per look, which on a loaded
    machine could miss every moment positions were open before the 5-day feed ran out); each attempt starts on a
    fresh dir, so a retry never resumes a feed that has already ended."""
    root = tmp_path_factory.mktemp("crashed")
    for attempt in range(5):  # positions come and go: crash until two are caught open
        state_dir = root / f"state-{attempt}"
        env = base_env(state_dir, ORDERGATE_DATA__BARS_PER_SECOND="200")
        daemon = DaemonProcess(state_dir, env=env).start()
        try:
            daemon.wait_for("daemon_ready")
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and _held(state_dir) < 2:
                time.sleep(0.01)
            daemon.kill9()
        finally:
            daemon.stop()
        if _held(state_dir) >= 1:
            break
    assert _held(state_dir), "the broker holds positions across the crash"
    assert (state_dir / "journal.db").exists()
    return state_dir


def _copy(crashed: Path, tmp_path: Path) -> Path:
    state_dir = tmp_path / "state"
    shutil.copytree(crashed, state_dir, ignore=shutil.ignore_patterns("control.sock"))
    return state_dir


def _restart_and_look(state_dir: Path, halted: bool = True) -> tuple[dict, DaemonProcess, set[str], set[str]]:
    """Restart on the dir, let bars flow for a while, stop. Returns (status while up, daemon, entries before/after).

    `halted`: the restart must start halted, and a halted daemon sends nothing at all: the positions the broker
    holds without a journal behind them are not sold (their fills, redelivered, are ours by prefix but of orders
    no journal knows: counted as external, not traded, until the user adopts them)."""
    before = _entries(state_dir)
    orders_before, positions_before = _book_now(state_dir)
    # each position below the reconciliation's kill threshold (the issue's ~$4.9k each), so that check stays quiet
    env = base_env(state_dir, ORDERGATE_DATA__BARS_PER_SECOND="200", ORDERGATE_RECONCILE__KILL_NOTIONAL_THRESHOLD="1e9")
    daemon = DaemonProcess(state_dir, env=env).start()
    try:
        daemon.wait_for("daemon_ready")
        daemon.wait_for("bars_flowing")
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline and status(state_dir)["stats"]["bars"] < 2_000:
            time.sleep(0.05)
        if halted:  # the reconciliation judges the broker's positions in two checks: external, not ordergate's
            want = {s: abs(q) for s, q in positions_before.items()}
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and _external(status(state_dir)) != want:
                time.sleep(0.2)
        st = status(state_dir)
    finally:
        assert daemon.stop() == 0, daemon.text()[-3000:]
    if halted:
        orders_after, positions_after = _book_now(state_dir)
        assert orders_after == orders_before, f"a halted daemon sent orders: {sorted(orders_after - orders_before)}"
        assert positions_after == positions_before
        assert st["kill_switch"]["active"] is True, st["kill_switch"]
        assert not st["positions"], st["positions"]  # none of them is traded as ordergate's
        assert _external(st) == {s: abs(q) for s, q in positions_before.items()}, st["external_positions"]
    return st, daemon, before, _entries(state_dir)


def _assert_halted(st: dict, daemon: DaemonProcess, before: set[str], after: set[str], why: str) -> None:
    ks = st["kill_switch"]
    assert ks["active"] is True, st
    assert "journal" in ks["reason"] and why in ks["reason"], ks["reason"]
    assert "position" in ks["reason"], ks["reason"]
    assert st["stats"]["bars"] > 0  # bars flowed: the strategy had every chance to enter
    assert after == before, f"new entries reached the broker: {sorted(after - before)}"
    lost = [line for line in daemon.lines() if line.get("event") == "journal_lost"]
    assert len(lost) == 1 and lost[0]["level"] == "error", lost
    tripped = [line for line in daemon.lines() if line.get("event") == "kill_switch_tripped"]
    assert tripped and tripped[0]["source"] == "journal", tripped
    ready = next(line for line in daemon.lines() if line.get("event") == "daemon_ready")
    assert ready["kill_switch"] is True


def test_deleted_journal_with_broker_positions_starts_halted(crashed: Path, tmp_path: Path) -> None:
    state_dir = _copy(crashed, tmp_path)
    for name in JOURNAL_FILES:
        (state_dir / name).unlink(missing_ok=True)
    _unacknowledge(state_dir)
    st, daemon, before, after = _restart_and_look(state_dir)
    _assert_halted(st, daemon, before, after, "missing")
    ghosts = [line for line in daemon.lines() if line.get("event") == "unknown_own_fill_external"]
    assert ghosts, "every fill was redelivered: each is of an order the lost journal cannot name"
    # the status offline says so too, until `ordergate resume`
    down = status(state_dir)
    assert down["running"] is False and down["kill_switch"]["active"] is True
    # once resumed, a restart on the journal begun then does not halt again (the Alpaca case of a journal that
    # stays without orders is in test_journal_lost_core.py)
    assert cli(state_dir, "resume").returncode == 0
    st, daemon, _before, _after = _restart_and_look(state_dir, halted=False)
    assert st["kill_switch"]["active"] is False, st["kill_switch"]
    assert not [line for line in daemon.lines() if line.get("event") == "journal_lost"]
    # but deleting it again is a new loss, with the broker holding positions again (the resumed run above trades:
    # the crash's book is put back so that the broker holds the positions whatever that run did)
    shutil.copy2(crashed / "paper_book.json", state_dir / "paper_book.json")
    assert _held(state_dir)
    for name in JOURNAL_FILES:
        (state_dir / name).unlink(missing_ok=True)
    st, daemon, before, after = _restart_and_look(state_dir)
    _assert_halted(st, daemon, before, after, "missing")


def test_garbage_journal_is_kept_aside_and_starts_halted(crashed: Path, tmp_path: Path) -> None:
    state_dir = _copy(crashed, tmp_path)
    for name in JOURNAL_FILES[1:]:
        (state_dir / name).unlink(missing_ok=True)
    garbage = b"this is not a database\x00" * 300
    (state_dir / "journal.db").write_bytes(garbage)
    st, daemon, before, after = _restart_and_look(state_dir)
    _assert_halted(st, daemon, before, after, "damaged")
    kept = sorted(state_dir.glob("journal.db.damaged*"))
    assert [p.name for p in kept] == ["journal.db.damaged-1"], kept
    assert kept[0].read_bytes() == garbage  # preserved byte for byte, never overwritten
    assert str(kept[0]) in st["kill_switch"]["reason"]


def test_garbage_wal_is_kept_aside_and_starts_halted(crashed: Path, tmp_path: Path) -> None:
    state_dir = _copy(crashed, tmp_path)
    wal = state_dir / "journal.db-wal"
    if not wal.exists() or wal.stat().st_size == 0:  # everything was checkpointed: put a WAL there to damage
        wal.write_bytes(b"")
    size = max(wal.stat().st_size, 4096)
    damaged = b"\xde\xad\xbe\xef" * (size // 4)
    wal.write_bytes(damaged)
    main = (state_dir / "journal.db").read_bytes()
    st, daemon, before, after = _restart_and_look(state_dir)
    _assert_halted(st, daemon, before, after, "damaged")
    assert (state_dir / "journal.db.damaged-1").read_bytes() == main
    assert (state_dir / "journal.db.damaged-1-wal").read_bytes() == damaged


def test_intact_journal_after_a_crash_does_not_halt(crashed: Path, tmp_path: Path) -> None:
    state_dir = _copy(crashed, tmp_path)
    with sqlite3.connect(state_dir / "journal.db") as conn:
        assert conn.execute("SELECT COUNT(*) FROM orders").fetchone()[0] > 0
    st, daemon, _before, _after = _restart_and_look(state_dir, halted=False)
    assert st["kill_switch"]["active"] is False, st["kill_switch"]
    assert not [line for line in daemon.lines() if line.get("event") == "journal_lost"]
    assert not list(state_dir.glob("journal.db.damaged*"))
