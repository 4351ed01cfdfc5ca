"""Reconciliation without false alarms (issue 12.4) and unexplained notional judged in total (issue 11.6).

Through the real alpaca-py client against FakeAlpaca: a positions endpoint that lags behind a fill trips
nothing; a difference that persists across two checks, with no order activity on the symbol within the grace
period, alerts and trips; four orphans each below the threshold trip when their sum is above it.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from daemon.core import Core
from pipeline.core.clock import SimulatedClock
from pipeline.core.models import OrderIntent, Position, Side
from tests.alpaca_core import SESSION, alpaca_core, entry_signal, held_quantity, until
from tests.fakes.alpaca_server import FakeAlpaca

pytestmark = pytest.mark.timeout(120)


def _alerts(core: Core) -> list[tuple[str, str]]:
    seen: list[tuple[str, str]] = []

    async def hook(kind: str, message: str, severity: str = "warning", **_fields: Any) -> None:
        seen.append((kind, message))

    core.alerts.attach(hook)
    return seen


async def _bought(core: Core, fake: FakeAlpaca, ticker: str) -> float:
    fake.next_submit_fills(100.0)
    result = await core.orchestrator.process_signal(entry_signal(ticker))
    assert result.success, result
    await until(lambda: held_quantity(core, ticker) > 0, what=f"{ticker} in the ledger")
    return held_quantity(core, ticker)


async def test_positions_endpoint_lagging_behind_a_fill_trips_nothing(tmp_path: Path, fake: FakeAlpaca) -> None:
    core = await alpaca_core(tmp_path, fake, reconcile={"kill_notional_threshold": 100.0})
    alerts = _alerts(core)
    try:
        fake.positions_lag = 2.0
        qty = await _bought(core, fake, "AAPL")
        first = await core.reconcile()  # the endpoint does not show the fill yet: an "orphan" by lag only
        assert {p["symbol"]: p["shares"] for p in await _positions(fake)} == {}
        assert not core.state.is_kill_switch_active(), core.state.kill_switch_info()
        assert first.mismatches == [] and not alerts
        await asyncio.sleep(2.2)  # the endpoint catches up
        assert {p["symbol"]: p["shares"] for p in await _positions(fake)} == {"AAPL": qty}
        second = await core.reconcile()
        assert second.mismatches == [] and second.matches == 1
        assert core.last_reconciliation is not None and core.last_reconciliation["ok"] is True
        assert not core.state.is_kill_switch_active() and not alerts
    finally:
        await core.stop()


async def _positions(fake: FakeAlpaca) -> list[dict[str, Any]]:
    return [{"symbol": p["symbol"], "shares": float(p["qty"])} for p in fake._positions_seen()]


async def test_persistent_mismatch_alerts_and_trips_at_the_second_check(tmp_path: Path, fake: FakeAlpaca) -> None:
    clock = SimulatedClock(SESSION)
    core = await alpaca_core(tmp_path, fake, clock=clock, reconcile={"kill_notional_threshold": 100.0})
    alerts = _alerts(core)
    try:
        await _bought(core, fake, "AAPL")
        fake.set_position("AAPL", 0, 100.0)  # gone at the broker with no event: a real orphan
        first = await core.reconcile()  # order activity on AAPL just now: within the grace period
        assert first.mismatches == [] and not core.state.is_kill_switch_active()
        assert core.last_reconciliation["ok"] is False  # not silently OK: it is pending
        assert [p["symbol"] for p in core.last_reconciliation["pending"]] == ["AAPL"]
        clock.advance(core.settings.reconcile.grace_seconds + 1)
        second = await core.reconcile()  # first sighting outside the grace period: still only pending
        assert second.mismatches == [] and not core.state.is_kill_switch_active()
        third = await core.reconcile()  # the same difference, checked twice: it counts
        assert [(m.symbol, m.mismatch_type) for m in third.mismatches] == [("AAPL", "orphan")]
        assert core.state.is_kill_switch_active()
        assert "AAPL" in core.state.kill_switch_info()["reason"]
        assert [k for k, _ in alerts].count("reconciliation_mismatch") == 1
        assert core.last_reconciliation["ok"] is False
        fourth = await core.reconcile()  # it persists: reported again, never "OK"
        assert [m.symbol for m in fourth.mismatches] == ["AAPL"] and core.last_reconciliation["ok"] is False
    finally:
        await core.stop()


async def test_unexplained_notional_is_judged_in_total(tmp_path: Path, fake: FakeAlpaca) -> None:
    clock = SimulatedClock(SESSION)
    core = await alpaca_core(tmp_path, fake, clock=clock, reconcile={"kill_notional_threshold": 10_000.0})
    _alerts(core)
    try:
        for symbol in ("AAA", "BBB"):  # ours in the book, ~$4.9k each, not at the broker
            core.ledger.adopt(Position(symbol, "long", 49.0, 49.0, 100, 48.0, symbol=symbol, broker="alpaca"), 100)
        assert core.journal is not None
        for symbol in ("CCC", "DDD"):  # at the broker from entries of ours the journal has not seen finish
            intent = OrderIntent(f"og-entry-{symbol.lower()}456789abcdef0123", f"sig-{symbol}", symbol, Side.BUY,
                                 100, reference_price=49.0, ticker=symbol, created_at=SESSION)
            await core.journal.record_order_intent(intent, "alpaca", SESSION)
            fake.set_position(symbol, 100, 49.0)
        clock.advance(core.settings.reconcile.grace_seconds + 1)
        await core.reconcile()
        assert not core.state.is_kill_switch_active()
        report = await core.reconcile()
        assert sorted((m.symbol, m.mismatch_type) for m in report.mismatches) == [
            ("AAA", "orphan"), ("BBB", "orphan"), ("CCC", "ghost"), ("DDD", "ghost")]
        assert all(m.notional < 10_000.0 for m in report.mismatches)
        assert report.unexplained_notional == pytest.approx(19_600.0)
        assert core.state.is_kill_switch_active()
        assert "19,600" in core.state.kill_switch_info()["reason"]
    finally:
        await core.stop()


async def test_broker_position_from_our_own_unfinished_order_is_unexplained(tmp_path: Path, fake: FakeAlpaca) -> None:
    """The journal says we sent an order on the symbol that has not finished: a broker position there is ours
    (a lost fill), not external."""
    clock = SimulatedClock(SESSION)
    core = await alpaca_core(tmp_path, fake, clock=clock, reconcile={"kill_notional_threshold": 1_000.0})
    _alerts(core)
    try:
        intent = OrderIntent("og-entry-0123456789abcdef0123", "sig-lost", "LOST", Side.BUY, 50,
                             reference_price=100.0, ticker="LOST", created_at=SESSION)
        assert core.journal is not None
        await core.journal.record_order_intent(intent, "alpaca", SESSION)
        core.lifecycle.register_intent(intent)
        fake.set_position("LOST", 50, 100.0)
        clock.advance(core.settings.reconcile.grace_seconds + 1)
        await core.reconcile()
        report = await core.reconcile()
        assert [(m.symbol, m.mismatch_type) for m in report.mismatches] == [("LOST", "ghost")]
        assert core.external.positions() == []
        assert core.state.is_kill_switch_active()
    finally:
        await core.stop()


async def test_a_positions_endpoint_failing_after_the_orders_read_skips_that_broker_for_the_check(
    tmp_path: Path, fake: FakeAlpaca,
) -> None:
    """GET /v2/orders answers, GET /v2/positions keeps failing (5xx past the retries): the check goes on without
    that broker, as when its orders cannot be read (nothing judged, nothing tripped, no exception out of the
    pass that also prunes and saves marks), and judges it again once the endpoint is back."""
    core = await alpaca_core(tmp_path, fake, reconcile={"kill_notional_threshold": 100.0})
    alerts = _alerts(core)
    try:
        qty = await _bought(core, fake, "AAPL")
        fake.fail_requests("GET", "/v2/positions", status=503, times=50)
        report = await core.reconcile()
        assert report.mismatches == [] and not core.state.is_kill_switch_active()
        assert core.last_reconciliation is not None and core.last_reconciliation["ok"] is False
        assert core.last_reconciliation["unread_brokers"] == ["alpaca"]  # not OK: nothing was checked there
        assert not alerts
        fake._failures.clear()  # the endpoint is back
        again = await core.reconcile()
        assert again.mismatches == [] and again.matches == 1 and held_quantity(core, "AAPL") == qty
        assert core.last_reconciliation["ok"] is True
    finally:
        await core.stop()
