"""Loss limits through the real pipeline: daily loss trips the kill switch, losses in a row open the breaker."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from config.settings import load_settings
from daemon.core import Core
from pipeline.core.clock import SimulatedClock
from pipeline.core.models import Bar, TradeSignal

OPEN = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)  # 10:00 ET


async def _core(tmp_path: Path, **executor) -> Core:
    settings = load_settings(
        state_dir=tmp_path / "state", broker={"primary": "paper"}, paper={"persistent": False},
        exits={"broker_stop": False},  # these are the daemon's own exits
        pipeline={"enable_unified_risk": False, "retry_backoff_base": 0.01},
        executor={"max_single_stock_exposure": 0.2, **executor},
    )
    core = Core(settings, SimulatedClock(OPEN))
    await core.start()
    return core


def _signal(core: Core, ticker: str, price: float = 100.0) -> TradeSignal:
    return TradeSignal("cloud_cross_bullish", "long", ticker, "5m", 80, price, price - 2.0,
                       timestamp=core.clock.now(), source="test")


async def _bar(core: Core, ticker: str, price: float, minutes: int = 1) -> None:
    core.clock.advance(60 * minutes)
    ts = core.clock.now() - timedelta(minutes=1)
    await core.engine.on_batch([Bar(ticker, ts, price, price, price, price, 1000.0)])


async def _open(core: Core, ticker: str) -> None:
    core.brokers["paper"].set_price(ticker, 100.0)
    result = await core.engine.submit_signal(_signal(core, ticker))
    assert result, f"entry for {ticker} refused"
    await core.settle()
    assert core.ledger.position(ticker) is not None


async def test_daily_loss_trips_persisted_kill_switch_and_exits_still_go_out(tmp_path: Path) -> None:
    # 100k equity, 0.5% daily loss limit = 500; each stop-out below loses ~ 2.5 x shares
    core = await _core(tmp_path, daily_loss_limit=0.005, consecutive_loss_threshold=50)
    try:
        for ticker in ("AAA", "BBB", "CCC"):
            await _open(core, ticker)
        await _bar(core, "AAA", 97.0)  # stop loss at 98 -> exit fills at ~97
        await _bar(core, "BBB", 97.0)
        await core.settle()
        assert core.state.is_kill_switch_active()
        info = core.state.kill_switch_info()
        assert "daily loss" in info["reason"] and info["source"] == "daily_loss"
        on_disk = json.loads((core.state_dir / "state.json").read_text())
        assert on_disk["kill_switch"]["active"] is True
        # entries refused
        core.brokers["paper"].set_price("DDD", 100.0)
        assert not await core.engine.submit_signal(_signal(core, "DDD"))
        # the position still open exits through the kill switch
        await _bar(core, "CCC", 97.0)
        await core.settle()
        assert core.ledger.position("CCC") is None
        exits = [r for r in core.brokers["paper"].request_log if r.method == "submit_order"]
        assert len(exits) == 6  # 3 entries + 3 exits, nothing for DDD
        trades = await core.trades.all_trades()
        assert {t.exit_type for t in trades} == {"stop_loss"} and len(trades) == 3
    finally:
        await core.stop()


async def test_three_losses_open_breaker_until_next_session(tmp_path: Path) -> None:
    core = await _core(tmp_path, daily_loss_limit=0.5, consecutive_loss_threshold=3,
                       circuit_breaker_cooldown_minutes=10_000)
    try:
        for ticker in ("AAA", "BBB", "CCC"):
            await _open(core, ticker)
        for ticker in ("AAA", "BBB"):
            await _bar(core, ticker, 97.0)
        await core.settle()
        assert not core.state.is_circuit_breaker_open()
        await _bar(core, "CCC", 97.0)
        await core.settle()
        assert core.state.is_circuit_breaker_open()
        assert core.state.get_circuit_breaker_status()["consecutive_losses"] == 3
        core.brokers["paper"].set_price("DDD", 100.0)
        refused = await core.orchestrator.process_signal(_signal(core, "DDD"))
        assert not refused.success and refused.pipeline_stage == "circuit_breaker"
        # the next session's rollover closes it
        core.clock.advance_to(datetime(2026, 11, 25, 14, 31, tzinfo=UTC))
        assert core.state.check_day_rollover()
        assert not core.state.is_circuit_breaker_open()
        assert core.state.get_daily_pnl() == 0.0
        ok = await core.orchestrator.process_signal(_signal(core, "DDD"))
        assert ok.success, ok.rejection_reason
    finally:
        await core.stop()


async def test_a_win_resets_the_loss_count(tmp_path: Path) -> None:
    core = await _core(tmp_path, daily_loss_limit=0.5, consecutive_loss_threshold=3)
    try:
        for ticker in ("AAA", "BBB", "CCC"):
            await _open(core, ticker)
        await _bar(core, "AAA", 97.0)
        await _bar(core, "BBB", 104.5)  # profit target 2R = 104
        await _bar(core, "CCC", 97.0)
        await core.settle()
        trades = {t.ticker: t for t in await core.trades.all_trades()}
        assert trades["BBB"].exit_type == "profit_target" and trades["BBB"].pnl > 0
        assert core.state.get_circuit_breaker_status()["consecutive_losses"] == 1
        assert not core.state.is_circuit_breaker_open()
    finally:
        await core.stop()


async def test_no_adding_to_a_position_while_its_exit_is_working(tmp_path: Path) -> None:
    core = await _core(tmp_path, daily_loss_limit=0.5)
    try:
        await _open(core, "AAA")
        paper = core.brokers["paper"]
        paper.faults.drop_updates = True          # the exit's fill is held back: the exit stays working
        await _bar(core, "AAA", 97.0)
        assert core.lifecycle.exiting("AAA")
        add = await core.orchestrator.process_signal(_signal(core, "AAA", 97.0))
        assert not add.success and add.pipeline_stage == "exit_pending"
        paper.redeliver()
        await core.settle()
        assert core.ledger.position("AAA") is None and not core.lifecycle.pending_exits
    finally:
        await core.stop()


async def test_prune_forgets_finished_orders_but_keeps_working_ones(tmp_path: Path) -> None:
    core = await _core(tmp_path, daily_loss_limit=0.5, consecutive_loss_threshold=50)
    try:
        for ticker in ("AAA", "BBB", "CCC"):
            await _open(core, ticker)
        await _bar(core, "AAA", 97.0)
        await core.settle()
        core.brokers["paper"].faults.drop_updates = True
        await _bar(core, "BBB", 97.0)              # BBB's exit is working, its updates held back
        assert len(core.lifecycle.intents) == 5     # 3 entries, 2 exits
        dropped = core.lifecycle.prune(keep=1)
        working = core.lifecycle.pending_exits[core.ledger.position("BBB").key]
        assert dropped == 4 and list(core.lifecycle.intents) == [working]
        core.brokers["paper"].redeliver()
        await core.settle()
        assert core.ledger.position("BBB") is None  # the working exit still completes after the prune
    finally:
        await core.stop()


async def test_accepted_market_order_without_fill_is_looked_up_and_alerted(tmp_path: Path) -> None:
    core = await _core(tmp_path, daily_loss_limit=0.5)
    alerts: list[tuple[str, str]] = []

    async def hook(kind: str, message: str, severity: str = "warning", **_fields) -> None:
        alerts.append((kind, message))

    core.alerts.attach(hook)
    paper = core.brokers["paper"]
    try:
        paper.set_price("AAA", 100.0)
        paper.faults.drop_updates = True            # the fill happens at the broker but never reaches us
        assert await core.engine.submit_signal(_signal(core, "AAA"))
        await core.settle()
        coid = next(iter(core.lifecycle.intents))
        assert await core.check_overdue() == []     # not yet overdue
        core.clock.advance(core.config.fill_timeout_seconds + 1)
        assert await core.check_overdue() == [coid]
        assert any(r.method == "get_order_by_client_id" and r.client_order_id == coid for r in paper.request_log)
        assert alerts and alerts[0][0] == "fill_missing" and coid in alerts[0][1]
        assert await core.check_overdue() == []     # once per timeout period
        paper.redeliver()
        await core.settle()
        assert core.ledger.position("AAA") is not None
        core.clock.advance(core.config.fill_timeout_seconds + 1)
        assert await core.check_overdue() == []     # filled now: nothing to look up
    finally:
        await core.stop()


async def test_shutdown_cancels_working_entries_when_configured(tmp_path: Path) -> None:
    from pipeline.core.models import OrderIntent, OrderType, Side

    core = await _core(tmp_path)
    paper = core.brokers["paper"]
    paper.set_price("AAA", 100.0)
    resting = OrderIntent("og-entry-resting", "sig-resting", "AAA", Side.BUY, 5, order_type=OrderType.LIMIT,
                          limit_price=90.0, ticker="AAA", reference_price=90.0)
    core.lifecycle.register_intent(resting)
    core.router.dispatch(resting)
    await core.settle()
    assert [o.status for o in paper.all_orders()] == ["new"]
    await core.stop()
    assert [o.status for o in paper.all_orders()] == ["canceled"]
