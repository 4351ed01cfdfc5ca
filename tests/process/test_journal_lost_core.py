"""Issue 11.6 with alpaca-py against the Alpaca fake: the start-up journal check of the assembled Core.

`daemon.journal_guard.fail_closed_if_journal_lost` is what the daemon calls once its brokers are connected (see
test_process_journal_lost.py for the daemon subprocess on the paper book).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from config.settings import load_settings
from daemon.core import Core
from daemon.journal_guard import fail_closed_if_journal_lost
from pipeline.core.clock import SimulatedClock
from tests.alpaca_core import SESSION
from tests.fakes.alpaca_server import FakeAlpaca

pytestmark = pytest.mark.timeout(60)


def _settings(tmp_path: Path, fake: FakeAlpaca) -> Any:
    alpaca = {"api_key": fake.api_key, "secret_key": fake.secret_key, "paper": True, "base_url": fake.base_url,
              "trading_stream_url": fake.trading_stream_url, "data_stream_url": fake.data_stream_url("iex"),
              "request_timeout_seconds": 3.0}
    return load_settings(state_dir=tmp_path / "state", broker={"primary": "alpaca"}, alpaca=alpaca,
                         reconcile={"kill_notional_threshold": 1e9})


async def _started(tmp_path: Path, fake: FakeAlpaca) -> Core:
    core = Core(_settings(tmp_path, fake), SimulatedClock(SESSION))
    await core.start()
    return core


async def test_positions_at_alpaca_with_no_journal_halt_until_resumed_and_only_once(
    tmp_path: Path, fake: FakeAlpaca,
) -> None:
    for symbol in ("AAPL", "MSFT", "NVDA", "AMD"):
        fake.set_position(symbol, 26, 187.5)  # ~$4.9k each, each far below the reconciliation's threshold
    core = await _started(tmp_path, fake)
    try:
        reason = await fail_closed_if_journal_lost(core)
        assert reason is not None and "journal missing" in reason and "4 positions" in reason, reason
        info = core.state.kill_switch_info()
        assert info["active"] and info["reason"] == reason and info["source"] == "journal"
        core.state.deactivate_kill_switch()  # the operator has looked at the account: ordergate resume
    finally:
        await core.stop()

    # the journal begun then still has no orders (nothing traded the held tickers): no second halt
    await _starts_clean(tmp_path, fake, "empty")
    assert fake.submits() == []


async def test_no_journal_and_nothing_at_the_broker_starts_clean(tmp_path: Path, fake: FakeAlpaca) -> None:
    await _starts_clean(tmp_path, fake, "missing")


async def _starts_clean(tmp_path: Path, fake: FakeAlpaca, journal_state: str) -> None:
    """A Core whose journal is in `journal_state` starts without halting."""
    core = await _started(tmp_path, fake)
    try:
        assert core.journal is not None and core.journal.condition.state == journal_state
        assert await fail_closed_if_journal_lost(core) is None
        assert not core.state.is_kill_switch_active()
    finally:
        await core.stop()


async def test_an_open_order_at_alpaca_with_no_journal_halts(tmp_path: Path, fake: FakeAlpaca) -> None:
    fake.next_submit_accepts()
    core = await _started(tmp_path, fake)
    try:
        from pipeline.core.models import OrderIntent, OrderType, Side

        broker = core.brokers["alpaca"]
        await broker.submit_order(OrderIntent(client_order_id="og-entry-handmade", signal_id="x", symbol="AAPL",
                                              side=Side.BUY, quantity=1, ticker="AAPL", reference_price=100.0,
                                              order_type=OrderType.LIMIT, limit_price=50.0))
    finally:
        await core.stop()
    (tmp_path / "state" / "journal.db").unlink()
    for suffix in ("-wal", "-shm"):
        (tmp_path / "state" / f"journal.db{suffix}").unlink(missing_ok=True)
    core = await _started(tmp_path, fake)
    try:
        reason = await fail_closed_if_journal_lost(core)
        assert reason is not None and "1 open orders" in reason and "0 positions" in reason, reason
        assert core.state.is_kill_switch_active()
    finally:
        await core.stop()
