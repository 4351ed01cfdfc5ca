"""Every CLI command against a running daemon subprocess (status/kill/resume offline are in test_daemon_process)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.daemon_proc import DaemonProcess, base_env, cli, status

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory):
    state_dir = tmp_path_factory.mktemp("cli") / "state"
    env = base_env(state_dir, ORDERGATE_DATA__BARS_PER_SECOND="20",
                   ORDERGATE_EXECUTOR__MAX_SINGLE_STOCK_EXPOSURE="0.5",
                   ORDERGATE_EXECUTOR__MAX_SECTOR_EXPOSURE="1.0")
    proc = DaemonProcess(state_dir, env=env).start()
    proc.wait_for("daemon_ready")
    proc.wait_for("bars_flowing")
    time.sleep(0.5)  # a few bars so every ticker has a price
    yield proc
    assert proc.stop() == 0


def _json(daemon: DaemonProcess, *args: str) -> object:
    out = cli(daemon.state_dir, *args, "--json", env=daemon.env)
    assert out.returncode == 0, (args, out.stdout, out.stderr)
    return json.loads(out.stdout)


def test_status_human_and_json(daemon: DaemonProcess) -> None:
    st = _json(daemon, "status")
    assert st["running"] and st["pid"] == daemon.proc.pid
    for key in ("kill_switch", "daily_pnl", "open_positions", "exposure_by_sector", "brokers", "stats", "equity"):
        assert key in st
    human = cli(daemon.state_dir, "status", env=daemon.env)
    assert human.returncode == 0 and "kill switch:" in human.stdout and "broker paper:" in human.stdout


def test_buy_then_positions_orders_and_sell(daemon: DaemonProcess) -> None:
    bought = _json(daemon, "buy", "JPM", "--shares", "10")
    assert bought["ok"] and bought["shares"] == 10
    positions = _json(daemon, "positions")
    assert any(p["symbol"] == "JPM" and p["shares"] >= 10 for p in positions)
    orders = _json(daemon, "orders")
    assert any(o["client_order_id"] == bought["client_order_id"] for o in orders)
    sold = _json(daemon, "sell", "JPM", "--shares", "4")
    assert sold["ok"], sold
    human = cli(daemon.state_dir, "positions", env=daemon.env)
    assert human.returncode == 0 and "symbol" in human.stdout


def test_oversell_is_refused_with_exit_1(daemon: DaemonProcess) -> None:
    out = cli(daemon.state_dir, "sell", "XOM", "--shares", "100000", "--json", env=daemon.env)
    assert out.returncode == 1
    assert json.loads(out.stdout)["ok"] is False


def test_manual_signal_goes_through_the_pipeline(daemon: DaemonProcess) -> None:
    st = _json(daemon, "status")
    assert st["running"]
    # no market price for ZZZZ, and AAPL trades far above 1.00: `ordergate signal` sizes on the market too
    for ticker, needles in (("ZZZZ", ["no market price for ZZZZ"]), ("AAPL", ["entry_price 1.00", "market price"])):
        out = cli(daemon.state_dir, "signal", "--ticker", ticker, "--direction", "long", "--entry", "1.0",
                  "--stop", "0.5", "--timeframe", "1d", "--json", env=daemon.env)
        assert out.returncode == 1, (out.stdout, out.stderr)
        reply = json.loads(out.stdout)
        assert reply["signal_id"].startswith("sig-") and reply["accepted"] is False
        assert reply["stage"] == "market_price" and all(n in reply["reason"] for n in needles), reply


def test_rebalance_preview_lists_trades(daemon: DaemonProcess, tmp_path: Path) -> None:
    targets = tmp_path / "targets.toml"
    targets.write_text('AAPL = 0.1\nMSFT = 0.1\n')
    preview = _json(daemon, "rebalance", str(targets))
    assert preview["executed"] is False
    assert {t["ticker"] for t in preview["proposal"]["trades"]} == {"AAPL", "MSFT"}
    human = cli(daemon.state_dir, "rebalance", str(targets), env=daemon.env)
    assert human.returncode == 0 and "estimated cost" in human.stdout and "preview only" in human.stdout
    bad = tmp_path / "bad.toml"
    bad.write_text('AAPL = "lots"\n')
    refused = cli(daemon.state_dir, "rebalance", str(bad), env=daemon.env)
    assert refused.returncode == 2 and "AAPL" in refused.stderr


def test_journal_and_reconcile(daemon: DaemonProcess) -> None:
    summary = _json(daemon, "journal")
    assert "trades" in summary and "win_rate" in summary
    report = _json(daemon, "reconcile")
    assert "matches" in report and report["mismatches"] == []


def test_kill_resume_and_flatten(daemon: DaemonProcess) -> None:
    killed = _json(daemon, "kill", "--reason", "cli test")
    assert killed["active"] and killed["reason"] == "cli test"
    refused = cli(daemon.state_dir, "buy", "AAPL", "--shares", "1", "--json", env=daemon.env)
    assert refused.returncode == 1 and "kill switch" in json.loads(refused.stdout)["reason"]
    flat = _json(daemon, "flatten", "--yes")
    assert "exit_orders" in flat
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and status(daemon.state_dir)["open_positions"]:
        time.sleep(0.1)
    assert status(daemon.state_dir)["open_positions"] == 0
    resumed = _json(daemon, "resume")
    assert resumed["active"] is False
