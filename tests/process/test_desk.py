"""`ordergate desk`: two instances (two accounts) trade into one PostgreSQL journal; the desk shows each one's
positions (as its broker holds them) and realised P&L (as its daemon booked the closed trades), each row naming
its instance."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from adapters.journal_pg_desk import open_positions
from adapters.paper import PaperBroker
from config.settings import PaperSettings
from pipeline.core.clock import SimulatedClock
from pipeline.record.marks import snapshot, unrealized
from tests.daemon_proc import BIN, ROOT, DaemonProcess, base_env
from tests.pg import PgServer, instance_name

pytestmark = pytest.mark.timeout(240)


def test_average_cost_positions_from_fills() -> None:
    fills = [
        {"symbol": "AAPL", "side": "buy", "quantity": 10, "price": 100.0},
        {"symbol": "AAPL", "side": "buy", "quantity": 10, "price": 110.0},   # adds: average 105
        {"symbol": "AAPL", "side": "sell", "quantity": 5, "price": 120.0},   # reduces: average kept
        {"symbol": "MSFT", "side": "sell", "quantity": 3, "price": 400.0},   # a short
        {"symbol": "MSFT", "side": "buy", "quantity": 5, "price": 390.0},    # through zero: long 2 at 390
        {"symbol": "NVDA", "side": "buy", "quantity": 4, "price": 50.0},
        {"symbol": "NVDA", "side": "sell", "quantity": 4, "price": 55.0},    # flat: not shown
        {"symbol": "AAPL", "side": "buy", "quantity": 3, "price": 90.0, "strategy": "beta"},  # beta's own position
    ]
    assert open_positions(fills) == [
        {"symbol": "AAPL", "strategy": "", "direction": "long", "shares": 15.0, "avg_price": 105.0},
        {"symbol": "AAPL", "strategy": "beta", "direction": "long", "shares": 3.0, "avg_price": 90.0},
        {"symbol": "MSFT", "strategy": "", "direction": "long", "shares": 2.0, "avg_price": 390.0},
    ]


def test_unrealized_from_a_mark_and_without_one() -> None:
    assert unrealized("long", 10, 100.0, [104.5, 1.0]) == 45.0
    assert unrealized("short", 2, 3.0, [2.5, 100.0]) == 100.0        # an option short: x its multiplier
    for bad in (None, [], [0.0, 1.0], ["x", 1.0], [101.0, -1.0], {"price": 1}):  # no mark, or one it cannot use
        assert unrealized("long", 10, 100.0, bad) is None
    assert snapshot([], datetime(2026, 1, 2, 15, 0, tzinfo=UTC)) == {"at": "2026-01-02T15:00:00+00:00", "prices": {}}


def _status(env: dict[str, str], name: str) -> dict:
    out = subprocess.run([str(BIN), "--instance", name, "status", "--json"], env=env, capture_output=True, text=True,
                         timeout=60, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def _desk_holders(env: dict[str, str]) -> set[str]:
    out = _desk(env, "--json")
    assert out.returncode == 0, out.stderr
    return {p["instance"] for p in json.loads(out.stdout)["positions"]}


def _desk(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN), "desk", *args], env=env, capture_output=True, text=True, timeout=60, cwd=ROOT)


def test_desk_without_a_dsn_is_one_line(tmp_path: Path) -> None:
    out = _desk(base_env(tmp_path / "s"))
    assert out.returncode == 2 and "[journal] dsn" in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_desk_shows_every_instance_from_the_shared_journal(tmp_path: Path, pg_server: PgServer) -> None:
    dsn = pg_server.create_database(f"desk_{instance_name('d').replace('-', '_')}")
    config_dir, state_root = tmp_path / "etc", tmp_path / "var"
    config_dir.mkdir()
    for name in ("alpha", "beta"):  # two accounts, each its own seed so they trade differently
        seed = 11 if name == "alpha" else 23
        (config_dir / f"{name}.toml").write_text(f"[data]\nbars_per_second = 150\nsynthetic_seed = {seed}\n")
    env = base_env(tmp_path / "unused", ORDERGATE_INSTANCE_CONFIG_DIR=str(config_dir),
                   ORDERGATE_INSTANCE_STATE_ROOT=str(state_root), ORDERGATE_JOURNAL__BACKEND="postgresql",
                   ORDERGATE_JOURNAL__DSN=dsn)
    daemons = {n: DaemonProcess(state_root / n, "--instance", n, env=env) for n in ("alpha", "beta")}
    try:
        for d in daemons.values():
            d.start()
        for d in daemons.values():
            d.wait_for("daemon_ready", timeout=60)
        for name, d in daemons.items():
            d.wait_for("position_closed", timeout=90)
            deadline = time.monotonic() + 90  # frozen while holding something, so the desk has positions to show
            while time.monotonic() < deadline:
                if _status(env, name)["open_positions"]:
                    d.signal(signal.SIGSTOP)
                    if name in _desk_holders(env):
                        break
                    d.signal(signal.SIGCONT)  # closed just before it froze: try again
                time.sleep(0.05)
            else:
                raise AssertionError(f"{name} never froze holding a position")
        # while they run: the desk reads beside them (it takes no instance's lock)
        live = _desk(env, "--json")
        assert live.returncode == 0, live.stderr
        frozen = json.loads(live.stdout)
        assert [i["instance"] for i in frozen["instances"]] == ["alpha", "beta"]
        # each was frozen holding what its ledger had applied (journaled first): the desk shows it
        assert {p["instance"] for p in frozen["positions"]} == {"alpha", "beta"}
        for d in daemons.values():
            d.signal(signal.SIGCONT)
    finally:
        codes = [d.stop() for d in daemons.values()]
    assert codes == [0, 0]
    time.sleep(0.2)
    out = _desk(env, "--json", "--day", "2026-01-01")
    assert out.returncode == 0, out.stderr
    view = json.loads(out.stdout)
    by_instance = {i["instance"]: i for i in view["instances"]}
    assert set(by_instance) == {"alpha", "beta"}
    for name, daemon in daemons.items():
        book = PaperBroker(PaperSettings(), SimulatedClock(), state_path=state_root / name / "paper_book.json")
        held = {p.symbol: p.quantity for p in book.positions() if abs(p.quantity) > 1e-9}
        shown = {p["symbol"]: p["shares"] * (1 if p["direction"] == "long" else -1)
                 for p in view["positions"] if p["instance"] == name}
        assert shown == pytest.approx(held), name                      # the account's broker holds these
        closed = [line["pnl"] for line in daemon.lines() if line.get("event") == "position_closed"]
        assert closed and by_instance[name]["trades"] == len(closed), name
        # the log rounds each trade's P&L to the cent
        assert by_instance[name]["realized_total"] == pytest.approx(sum(closed), abs=0.01 + 0.005 * len(closed)), name
    assert view["desk"]["realized_total"] == pytest.approx(sum(i["realized_total"] for i in view["instances"]))
    # each daemon journaled its marks at shutdown: every open position is valued at its symbol's last mark
    for p in view["positions"]:
        assert p["mark"] is not None and abs(p["mark"] / p["avg_price"] - 1) < 0.2, p
        sign = 1 if p["direction"] == "long" else -1
        assert p["unrealized"] == pytest.approx(sign * (p["mark"] - p["avg_price"]) * p["shares"], abs=0.01), p
    for name, row in by_instance.items():
        mine = [p["unrealized"] for p in view["positions"] if p["instance"] == name]
        assert row["unmarked_positions"] == 0 and row["marked_at"], name
        assert row["unrealized"] == pytest.approx(sum(mine), abs=0.01 * (len(mine) + 1)), name
    assert view["desk"]["unrealized"] == pytest.approx(sum(i["unrealized"] for i in view["instances"]), abs=0.02)
    text = _desk(env)
    assert text.returncode == 0 and "alpha" in text.stdout and "beta" in text.stdout and "desk " in text.stdout
    assert "unrealized" in text.stdout
