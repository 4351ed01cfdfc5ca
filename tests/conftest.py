"""Shared test builders and fixtures.

- `SESSION`: 11:00 ET on Tuesday 2026-11-24, a regular NYSE session (most tests trade at it).
- `until(predicate, timeout, what)`: poll a sync or async predicate without blocking the loop.
- `make_signal(...)`: a well-formed long entry signal (AAPL at 100, stop 98, 5m, conviction 80, stamped SESSION).
- `enter(core, ticker, price)`: one long entry through a paper Core, filled and settled.
- `stopped_after(make)`: for a fixture that starts things on demand: yields `build(**overrides)` (= `await
  make(**overrides)`, a started thing) and stops every thing built once the test is over.
- fixtures: `fake` (a started FakeAlpaca), `clock` (a SimulatedClock at SESSION), `paper_core` (a started Core on
  a non-persistent paper broker in tmp_path, stopped after the test; call it with settings overrides).

Markers: `slow` marks the long tests (real daemon subprocesses, chaos, breaks, live-SDK end-to-end runs); the list
is SLOW_MODULES below plus any test marked in its own file. `make test-fast` runs `-m "not slow"`.

Background: the modules of tests/background.py (the chaos breaks, the short chaos run, the kill switch burst)
start their campaigns with the session and have their tests run last (fixture `background`).
"""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest

from pipeline.core.clock import SimulatedClock
from pipeline.core.models import TradeSignal
from tests.background import last_if_background, started
from tests.bytecode import compile_sources

pytest_plugins = ["tests.pg"]  # a real PostgreSQL server for the journal tests; `any_journal` on each backend

SESSION = datetime(2026, 11, 24, 16, 0, tzinfo=UTC)  # 11:00 ET, a regular session

# modules whose tests are long: each starts real `ordergate` processes or runs crash/fault/fuzz campaigns
SLOW_MODULES = frozenset({
    "test_strategies_daemon", "test_strategies_one_symbol",
    "test_alpaca_daemon", "test_chaos_breaks", "test_chaos_faults", "test_chaos_fuzz", "test_chaos_short",
    "test_cli_bad_input", "test_cli_daemon", "test_daemon_operations", "test_daemon_process", "test_journal_crash",
    "test_journal_lost_core", "test_kill_switch_burst", "test_kill_switch_durable", "test_lifecycle_restart",
    "test_live_means_live", "test_metrics_daemon", "test_process_control", "test_process_crash",
    "test_process_journal_lost", "test_process_logging", "test_process_single_instance", "test_process_state",
    "test_process_systemd", "test_process_unit", "test_reload_daemon", "test_replay_cli", "test_replay_report",
    "test_secrets_and_modes", "test_simulated_resume", "test_state_file_input", "test_webhook_flood",
    "test_journal_pg_daemon",
})


# single tests of otherwise quick modules that take seconds each (measured: >= 1.5 s under load)
SLOW_TESTS = frozenset({
    "test_gauges_beat::test_a_long_order_check_does_not_stall_the_heartbeat_or_the_kill_switch_retry",
    "test_strategy_replay::test_two_strategies_on_one_account_add_up_to_the_account",
    "test_replay_columns::test_replay_trades_are_the_same_on_both_paths",
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
    "test_minute_sessions::test_real_msft_minute_bars_either_side_of_memorial_day",
    "test_replay_input::test_summary_says_where_the_signals_went_on_a_file_every_version_reads",
    "test_risk_horizon::test_replay_of_real_daily_bars_with_stamps_rejects_nothing_for_var",
    "test_minute_sessions::test_synthetic_minute_bars_across_dst_and_an_early_close",
    "test_reconcile_confirm::test_positions_endpoint_lagging_behind_a_fill_trips_nothing",
    "test_routing_priced::test_both_falls_back_to_the_stock_when_the_etf_has_no_price",
    # measured with --durations on a loaded 2-core machine (issue 16: make test-fast under 60 s)
    "test_order_limbo::test_a_fill_whose_journal_write_failed_is_applied_once_when_the_disk_recovers",
    "test_sizing_market::test_burst_of_100_near_the_buying_power_limit_gets_no_alpaca_rejection",
    "test_order_record_restart::test_sigkill_then_restart_rebuilds_the_same_open_orders",
    "test_watch::test_watch_prints_one_frame_when_piped",
    "test_protective_stops_alpaca::test_sigkill_then_price_falls_through_the_stop_booked_once_on_restart",
    "test_protective_stops_paper_daemon::test_stop_fills_in_the_paper_book_while_the_daemon_is_down",
    "test_dashboard::test_page_matches_status_and_trips_the_daemon",
    "test_telegram_bot::test_phone_control",
    "test_replay_input::test_human_summary_names_the_format_and_the_stages",
    "test_replay_input::test_three_real_files_in_three_layouts_replay_together",
    "test_replay_input::test_json_longer_than_the_pipe_reaches_a_slow_reader_whole",
    "test_replay_input::test_one_symbol_file_without_a_symbol_is_a_clear_error",
    "test_replay_input::test_date_only_rows_in_an_intraday_file_are_reported",
    "test_examples::test_example_runs_in_a_fresh_interpreter",  # test_example_runs runs them in-process
    "test_dashboard::test_token_and_csrf_rules",
    "test_replay_report::test_buy_and_hold_matches_pandas_on_the_csvs",
    "test_daily_time::test_replay_of_real_daily_bars_stamped_20z_has_no_signal_in_the_future",
    "test_multibroker::test_dropped_ib_connection_during_open_order_fill_journaled_and_applied_once",
    "test_sizing_market::test_a_burst_after_short_sales_gets_no_paper_rejection",
    "test_sizing_market::test_burst_of_100_near_the_buying_power_limit_gets_no_paper_rejection",
    "test_alpaca_broker::test_hanging_submit_times_out_then_lookup_finds_exactly_one_order",
    "test_ibkr_broker::test_client_throttle_stays_on",
    "test_alpaca_broker::test_handler_error_does_not_kill_the_stream",
    "test_feeds_replay::test_fuzzed_rows_never_crash_and_are_accounted_for",
    "test_instances::test_two_instances_side_by_side",
    "test_desk::test_desk_shows_every_instance_from_the_shared_journal",
})


def pytest_sessionstart(session: pytest.Session) -> None:
    if os.environ.get("PYTEST_XDIST_WORKER") is None:  # once, in the run's first process (xdist's controller)
        compile_sources()  # tests/bytecode.py: each daemon subprocess loads bytecode instead of compiling the repo


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """With `-m "not slow"` (make test-fast) the SLOW_MODULES are not even imported (their collection is the
    price of a test run too)."""
    if config.getoption("markexpr", "") == "not slow" and collection_path.stem in SLOW_MODULES:
        return True
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark SLOW_MODULES and SLOW_TESTS `slow` (one list to keep, instead of a marker in each file)."""
    for item in items:
        module = Path(str(item.fspath)).stem
        if module in SLOW_MODULES or f"{module}::{item.originalname}" in SLOW_TESTS:
            item.add_marker(pytest.mark.slow)
    last_if_background(items)


@pytest.fixture(scope="session", autouse=True)
def background(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The campaigns of tests/background.py's modules, started with the session (they overlap the other tests)."""
    with started(request.session.items, tmp_path_factory) as campaigns:
        yield campaigns


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
async def fake() -> AsyncIterator[Any]:
    """A started FakeAlpaca (tests/fakes/alpaca_server.py): Alpaca's REST and websocket APIs on loopback."""
    from tests.fakes.alpaca_server import FakeAlpaca

    async with FakeAlpaca() as server:
        yield server


async def enter(core: Any, ticker: str = "AAPL", price: float = 100.0) -> Any:
    """One long entry through a paper Core's pipeline at `price` (the paper market set to it), filled and settled;
    the PipelineResult."""
    core.brokers["paper"].set_price(ticker, price)
    result = await core.orchestrator.process_signal(make_signal(ticker, price, at=core.clock.now()))
    assert result.success, result.rejection_reason
    await result.order_task
    await core.settle()
    return result


@pytest.fixture
def clock() -> SimulatedClock:
    """A simulated clock at SESSION."""
    return SimulatedClock(SESSION)


T = TypeVar("T")


async def stopped_after(make: Callable[..., Awaitable[T]]) -> AsyncIterator[Callable[..., Awaitable[T]]]:
    """Yields `build(**overrides)`: `await make(**overrides)` (a started thing with an async `stop()`), kept; every
    thing built is stopped, in the order built, once the test is over. A fixture delegates: `async for b in ...`."""
    started: list[Any] = []

    async def build(**overrides: Any) -> T:
        thing = await make(**overrides)
        started.append(thing)
        return thing

    yield build
    for thing in started:
        await thing.stop()


@pytest.fixture
async def paper_core(tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[Any]]]:
    """`await paper_core(**settings)`: a started Core on a non-persistent paper broker at SESSION (stopped after)."""
    from config.settings import load_settings
    from daemon.core import Core

    n = itertools.count()

    async def make(**overrides: Any) -> Any:
        values: dict[str, Any] = {"broker": {"primary": "paper"}, "paper": {"persistent": False}, **overrides}
        core = Core(load_settings(state_dir=tmp_path / f"state{next(n)}", **values), SimulatedClock(SESSION))
        await core.start()
        return core

    async for build in stopped_after(make):
        yield build


@pytest.fixture
async def paper_daemon(tmp_path: Path) -> AsyncIterator[Any]:
    """A `Daemon` on a non-persistent paper broker with its Core started (the Core stopped after): for tests of
    its loops without the whole run."""
    from config.settings import load_settings
    from daemon.process import Daemon

    settings = load_settings(state_dir=tmp_path / "state", broker={"primary": "paper"}, paper={"persistent": False})
    daemon = Daemon(settings)
    await daemon.core.start()
    try:
        yield daemon
    finally:
        await daemon.core.stop()
