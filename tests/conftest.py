"""Shared test builders and fixtures.

- `SESSION`: 11:00 ET on Tuesday 2026-11-24, a regular NYSE session (most tests trade at it).
- `until(predicate, timeout, what)`: poll a sync or async predicate without blocking the loop.
- `make_signal(...)`: a well-formed long entry signal (AAPL at 100, stop 98, 5m, conviction 80, stamped SESSION).
- fixtures: `clock` (a SimulatedClock at SESSION), `paper_core` (a started Core on a non-persistent paper broker in
  tmp_path, stopped after the test; call it with settings overrides).

Markers: `slow` marks the long tests (real daemon subprocesses, chaos, breaks, live-SDK end-to-end runs); the list
is SLOW_MODULES below plus any test marked in its own file. `make test-fast` runs `-m "not slow"`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from pipeline.core.clock import SimulatedClock
from pipeline.core.models import TradeSignal

SESSION = datetime(2026, 11, 24, 16, 0, tzinfo=UTC)  # 11:00 ET, a regular session

# modules whose tests are long: each starts real `ordergate` processes or runs crash/fault/fuzz campaigns
SLOW_MODULES = frozenset({
    "test_alpaca_daemon", "test_chaos_breaks", "test_chaos_faults", "test_chaos_fuzz", "test_chaos_short",
    "test_cli_bad_input", "test_cli_daemon", "test_daemon_operations", "test_daemon_process", "test_journal_lost_core",
    "test_kill_switch_burst", "test_kill_switch_durable", "test_lifecycle_restart", "test_live_means_live",
    "test_metrics_daemon", "test_process_control", "test_process_crash", "test_process_journal_lost",
    "test_process_logging", "test_process_single_instance", "test_process_state", "test_process_systemd",
    "test_process_unit", "test_replay_cli", "test_secrets_and_modes", "test_simulated_resume", "test_state_file_input",
    "test_webhook_flood",
})


# single tests of otherwise quick modules that take seconds each (measured: >= 1.5 s under load)
SLOW_TESTS = frozenset({
    "tests.integration.test_replay_columns::test_replay_trades_are_the_same_on_both_paths",
    "test_order_limbo::test_daemon_ten_sends_hung_at_shutdown_do_not_block_entries_after_restart",
    "test_order_limbo::test_ordergate_run_is_ready_only_after_alpaca_answered_and_sigterm_ends_the_wait",
    "test_order_limbo::test_alpaca_ten_unsent_entries_do_not_block_entries_after_restart",
    "test_replay_report::test_html_report_is_self_contained_and_draws_its_charts",
    "test_replay_report::test_progress_is_shown_on_a_terminal",
    "test_replay_report::test_real_daily_bars_trade_plausibly_for_the_expected_reasons",
    "test_trade_row_recovery::test_a_trade_row_cut_off_by_a_crash_is_booked_at_restart",
    "test_external_positions::test_hand_placed_fill_is_external_never_traded_and_blocks_a_duplicate",
    "test_external_positions::test_external_at_start_is_counted_not_traded_and_adopt_gives_a_visible_stop",
    "test_bad_input_fuzz::test_cli_arguments_answer_in_one_line",
    "test_bad_input_fuzz::test_toml_value_is_accepted_or_named",
    "test_lifecycle_reconcile::test_startup_reconciliation_runs_before_ready",
    "test_alpaca_broker::test_router_retries_429_and_resolves_a_hang_with_one_order",
    "test_alpaca_broker::test_429_backs_off_until_reset_then_succeeds",
    "test_multibroker::test_both_up_every_order_at_exactly_one_venue_then_primary_refused_falls_back",
    "test_minute_sessions::test_minute_bars_across_dst_an_early_close_and_a_holiday",
    "test_reconcile_confirm::test_positions_endpoint_lagging_behind_a_fill_trips_nothing",
    "test_routing_priced::test_both_falls_back_to_the_stock_when_the_etf_has_no_price",
})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark SLOW_MODULES and SLOW_TESTS `slow` (one list to keep, instead of a marker in each file)."""
    for item in items:
        module = Path(str(item.fspath)).stem
        if module in SLOW_MODULES or f"{module}::{item.originalname}" in SLOW_TESTS:
            item.add_marker(pytest.mark.slow)


async def until(
    predicate: Callable[[], Any], timeout: float = 15.0, what: str = "condition", interval: float = 0.02,
) -> None:
    """Poll `predicate` (sync, or returning an awaitable) until it is truthy; AssertionError after `timeout` s."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = predicate()
        if isinstance(value, Awaitable):
            value = await value
        if value:
            return
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(interval)


def make_signal(
    ticker: str = "AAPL",
    entry: float = 100.0,
    stop: float | None = None,
    *,
    at: datetime | None = SESSION,
    direction: str = "long",
    signal_type: str = "cloud_cross_bullish",
    timeframe: str = "5m",
    conviction: float = 80,
    source: str = "test",
    **fields: Any,
) -> TradeSignal:
    """A well-formed entry signal; the stop defaults to 2% on the losing side of `entry`."""
    if stop is None:
        stop = entry * (0.98 if direction == "long" else 1.02)
    return TradeSignal(signal_type=signal_type, direction=direction, ticker=ticker, timeframe=timeframe,
                       conviction=conviction, entry_price=entry, stop_loss=stop, timestamp=at, source=source,
                       **fields)


@pytest.fixture
def clock() -> SimulatedClock:
    """A simulated clock at SESSION."""
    return SimulatedClock(SESSION)


@pytest.fixture
async def paper_core(tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[Any]]]:
    """`await paper_core(**settings)`: a started Core on a non-persistent paper broker at SESSION (stopped after)."""
    from config.settings import load_settings
    from daemon.app import Core

    started: list[Any] = []

    async def build(**overrides: Any) -> Any:
        values: dict[str, Any] = {"broker": {"primary": "paper"}, "paper": {"persistent": False}, **overrides}
        core = Core(load_settings(state_dir=tmp_path / f"state{len(started)}", **values), SimulatedClock(SESSION))
        await core.start()
        started.append(core)
        return core

    yield build
    for core in started:
        await core.stop()
