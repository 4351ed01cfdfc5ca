"""Several strategies on one account, through a real Core (paper broker, SQLite journal): each strategy's own
budget inside the account-wide limits, the conflict check across strategies, and the strategy on every row."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from config.settings import load_settings
from daemon.core import Core
from pipeline.core.clock import SimulatedClock
from pipeline.core.models import Bar, TradeSignal
from pipeline.strategy.strategy_set import StrategySet

OPEN = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)  # 10:00 ET
QUIET = {"enabled": False}  # the EMA strategies emit nothing by themselves here: the tests send the signals


def _settings(tmp_path: Path, beta: dict[str, Any] | None = None, persistent: bool = False,
              broker_stop: bool = False, **executor: Any) -> Any:
    return load_settings(
        state_dir=tmp_path / "state", broker={"primary": "paper"}, paper={"persistent": persistent},
        exits={"broker_stop": broker_stop},
        pipeline={"enable_unified_risk": False, "retry_backoff_base": 0.01},
        executor={"max_single_stock_exposure": 0.2, "consecutive_loss_threshold": 50, **executor},
        strategies=[
            {"name": "alpha", "kind": "ema_cloud", "params": QUIET},
            {"name": "beta", "kind": "ema_cloud", "params": QUIET, **(beta or {})},
        ],
    )


async def _core(tmp_path: Path, beta: dict[str, Any] | None = None, **executor: Any) -> Core:
    core = Core(_settings(tmp_path, beta, **executor), SimulatedClock(OPEN))
    await core.start()
    return core


def _signal(core: Core, ticker: str, strategy: str, direction: str = "long", price: float = 100.0) -> TradeSignal:
    stop = price - 2.0 if direction == "long" else price + 2.0
    kind = "cloud_cross_bullish" if direction == "long" else "cloud_cross_bearish"
    return TradeSignal(kind, direction, ticker, "5m", 80, price, stop, timestamp=core.clock.now(), source="test",
                       strategy=strategy)


async def _enter(core: Core, ticker: str, strategy: str, direction: str = "long") -> Any:
    core.brokers["paper"].set_price(ticker, 100.0)
    result = await core.orchestrator.process_signal(_signal(core, ticker, strategy, direction))
    await core.settle()
    return result


async def _bar(core: Core, ticker: str, price: float) -> None:
    core.clock.advance(60)
    ts = core.clock.now() - timedelta(minutes=1)
    await core.engine.on_batch([Bar(ticker, ts, price, price, price, price, 1000.0)])
    await core.settle()


async def test_two_configured_strategies_run_as_a_set(tmp_path: Path) -> None:
    core = await _core(tmp_path)
    try:
        assert isinstance(core.strategy, StrategySet)
        assert [s.name for s in core.strategy.members] == ["alpha", "beta"]
    finally:
        await core.stop()


async def test_a_long_in_one_strategy_and_a_short_in_another_is_refused_naming_both(tmp_path: Path) -> None:
    core = await _core(tmp_path, max_risk_per_trade=0.001)  # 50 shares: room for a second strategy beside it
    try:
        assert (await _enter(core, "AAA", "alpha")).success
        refused = await _enter(core, "AAA", "beta", "short")
        assert not refused.success and refused.pipeline_stage == "risk_gate"
        assert refused.rejection_reason.startswith("conflicting_signal: short signal of strategy beta")
        assert "held long by strategy alpha" in refused.rejection_reason
        # the same direction beside it is beta's own position: its own entry, stop and exits
        beside = await _enter(core, "AAA", "beta")
        assert beside.success, beside.rejection_reason
        alpha, beta = core.ledger.position("AAA", "alpha"), core.ledger.position("AAA", "beta")
        assert alpha is not None and beta is not None and alpha is not beta
        assert core.ledger.signed_quantities()["AAA"] == alpha.shares + beta.shares  # the broker's one net position
    finally:
        await core.stop()


async def test_strategy_max_positions_inside_the_account_limit(tmp_path: Path) -> None:
    core = await _core(tmp_path, beta={"max_positions": 1}, max_concurrent_positions=3)
    try:
        assert (await _enter(core, "BBB", "beta")).success
        second = await _enter(core, "CCC", "beta")
        assert not second.success
        assert second.rejection_reason.startswith("strategy_max_positions: strategy beta holds 1 tickers")
        assert (await _enter(core, "CCC", "alpha")).success  # alpha's budget is its own
        assert (await _enter(core, "DDD", "alpha")).success
        # the account's limit (3) binds alpha although alpha has no budget of its own
        account = await _enter(core, "EEE", "alpha")
        assert not account.success and account.rejection_reason.startswith("max_positions: 3 open positions")
    finally:
        await core.stop()


async def test_equity_share_caps_the_size_and_then_refuses(tmp_path: Path) -> None:
    core = await _core(tmp_path, beta={"equity_share": 0.05})  # 5% of 100,000: 5,000
    try:
        first = await _enter(core, "BBB", "beta")
        assert first.success
        # sized 200 shares by the account's limits (20% single-stock exposure); the share leaves 5,000 / 100.5
        assert first.intent.quantity == 49
        assert first.intent.strategy == "beta"
        unconstrained = await _enter(core, "CCC", "alpha")
        assert unconstrained.intent.quantity == 200  # the account's own cap (20% single-stock exposure)
        more = await _enter(core, "DDD", "beta")
        assert not more.success and more.rejection_reason.startswith("strategy_equity_share: strategy beta holds")
    finally:
        await core.stop()


async def test_strategy_daily_loss_stops_that_strategy_and_survives_a_restart(tmp_path: Path) -> None:
    core = await _core(tmp_path, beta={"daily_loss": 0.001})  # 100 on 100,000
    try:
        assert (await _enter(core, "BBB", "beta")).success
        await _bar(core, "BBB", 97.0)  # below the stop at 98: the exit fills near 97, a loss of ~600
        assert core.ledger.position("BBB") is None
        trades = await core.trades.all_trades()
        assert [t.strategy for t in trades] == ["beta"] and trades[0].pnl < -100
        refused = await _enter(core, "CCC", "beta")
        assert not refused.success and refused.rejection_reason.startswith("strategy_daily_loss: strategy beta")
        assert (await _enter(core, "DDD", "alpha")).success  # the account and alpha trade on
        assert not core.kill_switch.is_active()
        status = core.budgets.status(core.ledger.positions(), core.calendar.trading_day(core.clock.now()))
        assert status["beta"]["daily_pnl"] == round(trades[0].pnl, 2) and status["beta"]["open_positions"] == 0
        assert status["alpha"]["open_positions"] == 1 and status["alpha"]["daily_pnl"] == 0.0
        assert status["beta"]["daily_loss"] == 0.001
    finally:
        await core.stop()
    again = Core(_settings(tmp_path, {"daily_loss": 0.001}), SimulatedClock(OPEN + timedelta(minutes=5)))
    await again.start()
    try:
        refused = await _enter(again, "EEE", "beta")
        assert not refused.success and refused.rejection_reason.startswith("strategy_daily_loss: strategy beta")
    finally:
        await again.stop()


async def test_signal_order_fill_and_trade_rows_carry_the_strategy(tmp_path: Path) -> None:
    # (the JSON log lines: tests/process/test_strategies_daemon.py reads them from a real daemon)
    core = await _core(tmp_path)
    try:
        assert (await _enter(core, "BBB", "beta")).success
        await _bar(core, "BBB", 97.0)
        await core.journal.flush()
    finally:
        await core.stop()
    conn = sqlite3.connect(tmp_path / "state" / "journal.db")
    try:
        assert conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone() == ("2",)
        for table in ("signals", "orders", "fills", "trades"):
            rows = conn.execute(f"SELECT strategy FROM {table}").fetchall()
            assert rows and {r[0] for r in rows} == {"beta"}, table
        kinds = conn.execute("SELECT kind, strategy FROM orders ORDER BY created_ts").fetchall()
        assert kinds == [("entry", "beta"), ("exit", "beta")]
    finally:
        conn.close()


async def test_a_second_strategy_beside_a_winner_opens_its_own_position(tmp_path: Path) -> None:
    core = await _core(tmp_path, allow_add_to_winner=True, max_risk_per_trade=0.001)  # 50 shares: room to add
    try:
        assert (await _enter(core, "AAA", "alpha")).success
        await _bar(core, "AAA", 101.0)  # alpha's position is a winner
        core.brokers["paper"].set_price("AAA", 101.0)
        beside = await core.orchestrator.process_signal(_signal(core, "AAA", "beta", price=101.0))
        await core.settle()
        assert beside.success, beside.rejection_reason
        alpha_qty = core.ledger.position("AAA", "alpha").shares
        own = await core.orchestrator.process_signal(
            TradeSignal("trend_aligned_long", "long", "AAA", "5m", 80, 101.0, 99.0, timestamp=core.clock.now(),
                        source="test", strategy="alpha"))
        await core.settle()
        assert own.success, own.rejection_reason  # alpha may add to its own winner: to alpha's position only
        beta = core.ledger.position("AAA", "beta")
        alpha = core.ledger.position("AAA", "alpha")
        assert alpha.shares > alpha_qty and beta.shares < alpha.shares and beta.entry_price > 101.0 > alpha.entry_price
        assert core.ledger.net("AAA") == core.ledger.position("AAA", "alpha").shares + beta.shares
    finally:
        await core.stop()


async def test_each_strategy_s_positions_survive_a_restart_and_the_broker_agrees_with_the_book(tmp_path: Path) -> None:
    core = Core(_settings(tmp_path, persistent=True), SimulatedClock(OPEN))
    await core.start()
    try:
        assert (await _enter(core, "AAA", "alpha")).success
        assert (await _enter(core, "BBB", "beta", "short")).success
    finally:
        await core.stop()
    again = Core(_settings(tmp_path, persistent=True), SimulatedClock(OPEN + timedelta(minutes=1)))
    await again.start()
    try:
        held = {p.symbol: (p.strategy, str(p.direction)) for p in again.ledger.positions()}
        assert held == {"AAA": ("alpha", "long"), "BBB": ("beta", "short")}
        assert {r["symbol"]: r["strategy"] for r in again.positions()} == {"AAA": "alpha", "BBB": "beta"}
        report = await again.reconciliation.run()
        assert report.ok and report.matches == 2  # the broker's one position per symbol is the book's
        # the conflict check still knows whose position is whose after the restart
        again.brokers["paper"].set_price("BBB", 100.0)
        refused = await again.orchestrator.process_signal(_signal(again, "BBB", "alpha"))
        assert refused.rejection_reason.startswith("conflicting_signal: long signal of strategy alpha but BBB is "
                                                   "held short by strategy beta")
    finally:
        await again.stop()


async def test_the_equity_share_caps_a_leveraged_etf_entry_too(tmp_path: Path) -> None:
    core = await _core(tmp_path, beta={"equity_share": 0.03}, instrument_mode="leveraged_etf",
                       max_sector_exposure=0.5)
    try:
        core.brokers["paper"].set_price("NVDA", 100.0)
        core.brokers["paper"].set_price("SOXL", 25.0)
        result = await core.orchestrator.process_signal(_signal(core, "NVDA", "beta"))
        assert result.success, result.rejection_reason
        assert result.intent.symbol == "SOXL" and result.intent.strategy == "beta"
        assert result.intent.quantity * 25.0 <= 3_000.0  # 3% of 100,000
        assert result.intent.quantity == 120
    finally:
        await core.stop()


async def test_a_signal_naming_an_unconfigured_strategy_is_refused_the_webhook_default_is_not(tmp_path: Path) -> None:
    core = await _core(tmp_path, beta={"max_positions": 1})
    try:
        typo = await _enter(core, "AAA", "betta")
        assert not typo.success and typo.rejection_reason == ("strategy_unknown: the signal names strategy 'betta', "
                                                              "which is not configured (known: alpha, beta, webhook)")
        assert (await _enter(core, "BBB", "webhook")).success  # the account's limits only
        assert (await _enter(core, "CCC", "")).success         # no strategy named (a manual order): the same
    finally:
        await core.stop()


async def test_a_resting_broker_stop_carries_its_strategy_to_its_fill_and_trade(tmp_path: Path) -> None:
    core = Core(_settings(tmp_path, broker_stop=True), SimulatedClock(OPEN))
    await core.start()
    try:
        assert (await _enter(core, "BBB", "beta")).success
        await _bar(core, "BBB", 97.0)  # through the stop at 98: the paper broker fills the resting stop
        assert core.ledger.position("BBB") is None
        (trade,) = await core.trades.all_trades()
        assert trade.strategy == "beta"
        rows = await core.journal.query("SELECT o.kind, o.strategy AS ostrat, f.strategy AS fstrat FROM fills f "
                                        "JOIN orders o USING (client_order_id) ORDER BY f.seq")
        assert [r["kind"] for r in rows] == ["entry", "stop"], rows
        assert {r["ostrat"] for r in rows} == {"beta"} and {r["fstrat"] for r in rows} == {"beta"}
    finally:
        await core.stop()


async def test_an_exit_journaled_without_its_strategy_still_closes_that_position_on_restart(tmp_path: Path) -> None:
    import json

    core = Core(_settings(tmp_path, persistent=True), SimulatedClock(OPEN))
    await core.start()
    try:
        assert (await _enter(core, "AAA", "alpha")).success
        await _bar(core, "AAA", 97.0)  # through alpha's stop (98): its exit closes it
        assert not core.ledger.holds("AAA")
        await core.journal.flush()
    finally:
        await core.stop()
    conn = sqlite3.connect(tmp_path / "state" / "journal.db")
    try:  # as an older version journaled a manual exit: no strategy on the order
        for coid, intent in conn.execute("SELECT client_order_id, intent FROM orders WHERE kind = 'exit'").fetchall():
            unnamed = {**json.loads(intent), "strategy": ""}
            conn.execute("UPDATE orders SET strategy = '', intent = ? WHERE client_order_id = ?",
                         (json.dumps(unnamed), coid))
        conn.execute("UPDATE fills SET strategy = '' WHERE client_order_id LIKE 'og-exit%'")
        conn.commit()
    finally:
        conn.close()
    again = Core(_settings(tmp_path, persistent=True), SimulatedClock(OPEN + timedelta(minutes=5)))
    await again.start()
    try:
        assert again.ledger.holdings == {}  # alpha's position stays closed, and no short of "" is opened
    finally:
        await again.stop()
