"""Issue 11.1: a real broker runs only on live data and the live clock; READY says what it trades on.

`ordergate run` as a subprocess against the Alpaca fake (alpaca-py's own clients) and the TWS fake (ib_async's).
Both fakes run on the test's event loop, so the subprocess is driven through `asyncio.to_thread`.
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.daemon_proc import DaemonProcess, base_env
from tests.fakes.alpaca_server import FakeAlpaca
from tests.fakes.tws_server import FakeTWS

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
async def tws() -> AsyncIterator[FakeTWS]:
    async with FakeTWS() as server:
        server.add_stock("AAPL", 190.0)
        yield server


def _ibkr_env(tws: FakeTWS) -> dict[str, str]:
    return {"ORDERGATE_BROKER__PRIMARY": "ibkr", "ORDERGATE_IBKR__HOST": "127.0.0.1",
            "ORDERGATE_IBKR__PORT": str(tws.port), "ORDERGATE_IBKR__CLIENT_ID": "7",
            "ORDERGATE_IBKR__REQUEST_TIMEOUT_SECONDS": "5"}


async def _refused(state_dir: Path, env: dict[str, str]) -> tuple[int | None, str]:
    """Run the daemon; it must exit by itself (today's bug: it trades instead). Returns (status, stderr)."""
    daemon = DaemonProcess(state_dir, env=env).start()
    assert daemon.proc is not None
    try:
        code = await asyncio.to_thread(daemon.wait, 30.0)
    except subprocess.TimeoutExpired:
        code = None
    finally:
        daemon.stop()
    return code, daemon.text()


async def _refusal_line(state_dir: Path, env: dict[str, str]) -> str:
    """Run the daemon: it must exit 2 by itself, saying why in one line (returned)."""
    code, out = await _refused(state_dir, env)
    assert code == 2, out[-3000:]
    return _one_line(out)


async def _ready_line(state_dir: Path, env: dict[str, str]) -> dict[str, Any]:
    """Start the daemon, take its one daemon_ready line, stop it (it must exit 0)."""
    daemon = DaemonProcess(state_dir, env=env).start()
    try:
        ready = await asyncio.to_thread(daemon.wait_for, "daemon_ready", 45.0)
    finally:
        code = await asyncio.to_thread(daemon.stop)
    assert code == 0, daemon.text()[-3000:]
    assert sum(1 for line in daemon.lines() if line.get("event") == "daemon_ready") == 1
    return ready


def _one_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in text, text[-3000:]
    return lines[0]


async def test_alpaca_with_synthetic_data_exits_2_before_any_request(tmp_path: Path, fake: FakeAlpaca) -> None:
    state_dir = tmp_path / "state"
    env = base_env(state_dir, **fake.env(), ORDERGATE_DATA__BARS_PER_SECOND="400")  # data left at its default
    line = await _refusal_line(state_dir, env)
    assert fake.submits() == [], f"{len(fake.submits())} orders reached the account"
    for needle in ("broker.primary='alpaca'", "data.source='synthetic'", 'data.source = "alpaca"',
                   "ORDERGATE_DATA__SOURCE=alpaca", 'broker.primary = "paper"'):
        assert needle in line, line
    assert fake.requests == []  # not even the account was asked: nothing was connected
    assert not (state_dir / "journal.db").exists()


async def test_ibkr_with_synthetic_data_exits_2_before_connecting(tmp_path: Path, tws: FakeTWS) -> None:
    state_dir = tmp_path / "state"
    env = base_env(state_dir, **_ibkr_env(tws), ORDERGATE_DATA__BARS_PER_SECOND="400")
    line = await _refusal_line(state_dir, env)
    assert tws.place_requests == [], f"{len(tws.place_requests)} placeOrder messages reached TWS"
    assert "broker.primary='ibkr'" in line and "data.source='synthetic'" in line, line
    assert tws.connect_count == 0


async def test_real_fallback_broker_with_replay_data_exits_2(tmp_path: Path, fake: FakeAlpaca) -> None:
    state_dir = tmp_path / "state"
    bars = tmp_path / "bars.csv"
    bars.write_text("timestamp,symbol,open,high,low,close,volume\n2026-11-24T14:31:00Z,AAPL,1,1,1,1,1\n")
    env = base_env(state_dir, **{**fake.env(), "ORDERGATE_BROKER__PRIMARY": "paper",
                                 "ORDERGATE_BROKER__FALLBACK": "alpaca", "ORDERGATE_DATA__SOURCE": "replay",
                                 "ORDERGATE_DATA__REPLAY_FILE": str(bars)})
    line = await _refusal_line(state_dir, env)
    assert fake.submits() == []
    assert "broker.fallback='alpaca'" in line and "data.source='replay'" in line, line
    assert fake.requests == []


async def test_real_broker_without_the_journal_exits_2(tmp_path: Path, fake: FakeAlpaca) -> None:
    state_dir = tmp_path / "state"
    env = base_env(state_dir, **fake.env(tickers=["AAPL"]), ORDERGATE_JOURNAL__ENABLED="false")
    line = await _refusal_line(state_dir, env)
    assert "journal.enabled=False" in line and "ORDERGATE_JOURNAL__ENABLED=true" in line, line
    assert fake.requests == []


async def test_ready_line_names_broker_account_data_and_limits_alpaca(tmp_path: Path, fake: FakeAlpaca) -> None:
    state_dir = tmp_path / "state"
    env = base_env(state_dir, **fake.env(tickers=["AAPL"]), ORDERGATE_EXECUTOR__MAX_RISK_PER_TRADE="0.02",
                   ORDERGATE_EXECUTOR__MAX_CONCURRENT_POSITIONS="4",
                   ORDERGATE_RECONCILE__KILL_NOTIONAL_THRESHOLD="2500")
    ready = await _ready_line(state_dir, env)
    assert (ready["broker"], ready["account"], ready["account_id"]) == ("alpaca", "paper", "PA0FAKE0001")
    assert (ready["data"], ready["clock"], ready["fallback"]) == ("alpaca", "live", None)
    limits = ready["risk_limits"]
    assert limits["max_risk_per_trade"] == 0.02 and limits["max_concurrent_positions"] == 4
    assert limits["kill_notional_threshold"] == 2500.0
    for name in ("daily_loss_limit", "max_single_stock_exposure", "max_sector_exposure", "min_account_equity",
                 "var_limit", "max_correlation", "consecutive_loss_threshold"):
        assert name in limits, limits


async def test_ready_line_for_ibkr_on_live_data(tmp_path: Path, fake: FakeAlpaca, tws: FakeTWS) -> None:
    state_dir = tmp_path / "state"
    env = base_env(state_dir, **{**fake.env(tickers=["AAPL"]), **_ibkr_env(tws)})
    ready = await _ready_line(state_dir, env)
    assert (ready["broker"], ready["account"], ready["account_id"]) == ("ibkr", "paper", "DU1234567")
    assert (ready["data"], ready["clock"]) == ("alpaca", "live")
    assert fake.submits() == []  # the Alpaca fake served the bars only


def test_ready_line_for_paper_on_synthetic_data(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    daemon = DaemonProcess(state_dir, env=base_env(state_dir, ORDERGATE_DATA__BARS_PER_SECOND="5")).start()
    try:
        ready = daemon.wait_for("daemon_ready")
    finally:
        assert daemon.stop() == 0, daemon.text()[-3000:]
    assert (ready["broker"], ready["account"], ready["account_id"]) == ("paper", "paper", "paper")
    assert (ready["data"], ready["clock"]) == ("synthetic", "simulated")
    assert ready["risk_limits"]["max_risk_per_trade"] == 0.05
