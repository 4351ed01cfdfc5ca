"""Reconciliation of the ledger with the broker: ghost, orphan, quantity mismatch, per policy."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from adapters.paper import PaperBroker
from config.settings import PaperSettings, load_settings
from daemon.core import Core
from pipeline.core.clock import SimulatedClock
from pipeline.core.models import OrderIntent, Position, Side
from tests.daemon_proc import DaemonProcess

NOW = datetime(2026, 11, 24, 16, 0, tzinfo=UTC)


async def _core(tmp_path: Path, policy: str, threshold: float = 1_000_000.0) -> Core:
    settings = load_settings(state_dir=tmp_path / "state", broker={"primary": "paper"}, paper={"persistent": False},
                             reconcile={"policy": policy, "kill_notional_threshold": threshold})
    core = Core(settings, SimulatedClock(NOW))
    await core.start()
    alerts: list[tuple[str, str]] = []

    async def hook(kind: str, message: str, severity: str = "warning", **_fields) -> None:
        alerts.append((kind, message))

    core.alerts.attach(hook)
    core.test_alerts = alerts  # type: ignore[attr-defined]
    return core


async def _broker_buys(core: Core, symbol: str, qty: float, price: float = 50.0) -> None:
    """A position at the broker that the daemon never booked (a manual trade in the broker's app)."""
    paper: PaperBroker = core.brokers["paper"]  # type: ignore[assignment]
    paper.set_price(symbol, price)
    paper.set_event_handler(_ignore)
    await paper.submit_order(OrderIntent(f"manual-{symbol}-{qty}", "manual", symbol, Side.BUY, qty,
                                         reference_price=price))
    await paper.flush_events()
    paper.set_event_handler(core.events.deliver)


async def _ignore(_event) -> None:
    return None


def _book(core: Core, symbol: str, qty: float, price: float = 50.0) -> None:
    core.ledger.adopt(Position(symbol, "long", price, price, qty, price * 0.98, symbol=symbol), qty)


@pytest.mark.parametrize("policy", ["alert", "adopt"])
async def test_ghost_orphan_and_quantity_mismatch(tmp_path: Path, policy: str) -> None:
    core = await _core(tmp_path, policy)
    try:
        await _broker_buys(core, "GHST", 10)          # broker only, no order of ours: external
        _book(core, "ORPH", 5)                       # daemon only
        await _broker_buys(core, "QTY", 10)
        _book(core, "QTY", 7)                        # the broker holds 3 more, no order of ours: external
        await _broker_buys(core, "SAME", 4)
        _book(core, "SAME", 4)
        first = await core.reconcile()
        assert first.mismatches == [] and core.test_alerts == []  # first sighting: pending, not yet counted
        assert {p["symbol"] for p in core.last_reconciliation["pending"]} == {"GHST", "ORPH", "QTY"}
        assert core.last_reconciliation["ok"] is False
        report = await core.reconcile()
        assert {m.symbol: m.mismatch_type for m in report.mismatches} == {"ORPH": "orphan"}
        assert report.matches == 1
        assert {p.symbol: p.shares for p in core.external.positions()} == {"GHST": 10, "QTY": 3}
        assert sorted(k for k, _ in core.test_alerts) == ["external_position", "external_position",
                                                          "reconciliation_mismatch"]
        held = core.ledger.signed_quantities()
        if policy == "alert":
            assert held == {"ORPH": 5, "QTY": 7, "SAME": 4}
        else:
            assert held == {"QTY": 7, "SAME": 4}
            again = await core.reconcile()
            assert again.mismatches == [] and again.matches == 3 and core.last_reconciliation["ok"] is True
        assert not core.state.is_kill_switch_active()
    finally:
        await core.stop()


async def test_mismatch_above_notional_threshold_trips_kill_switch(tmp_path: Path) -> None:
    core = await _core(tmp_path, "alert", threshold=1_000.0)
    try:
        await _broker_buys(core, "EXT", 100, price=50.0)  # 5,000 notional, not ours: external, never a trip
        _book(core, "BIG", 100, price=50.0)  # 5,000 notional of ours the broker does not hold
        await core.reconcile()
        assert not core.state.is_kill_switch_active()  # once is not enough
        await core.reconcile()
        assert core.state.is_kill_switch_active()
        reason = core.state.kill_switch_info()["reason"]
        assert "BIG" in reason and "EXT" not in reason
    finally:
        await core.stop()


async def test_startup_reconciliation_runs_before_ready(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    clock = SimulatedClock(NOW)
    paper = PaperBroker(PaperSettings(), clock, state_path=state_dir / "paper_book.json")
    paper.set_event_handler(_ignore)  # someone else saw the fill: the daemon's stream never will
    await paper.connect()
    paper.set_price("GHST", 20.0)
    await paper.submit_order(OrderIntent("manual-ghost", "manual", "GHST", Side.BUY, 3, reference_price=20.0))
    await paper.flush_events()
    await paper.close()

    daemon = DaemonProcess(state_dir).start()
    try:
        daemon.wait_for("daemon_ready")
        events = [line.get("event") for line in daemon.lines()]
        assert events.index("external_position") < events.index("daemon_ready")
        line = daemon.wait_for("external_position")
        assert line["symbol"] == "GHST" and line["quantity"] == 3
        assert "reconciliation_mismatch" not in events
    finally:
        daemon.stop()
