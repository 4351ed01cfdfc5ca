"""In-flight entry reservations: a fill moves its part from the reservation to the ledger, so between a fill and
its order's final status the same shares are never counted twice (that double count once sized a rebalance's
last buy down to a single share)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from config.settings import Settings, load_settings
from daemon.core import Core
from pipeline.core.clock import SimulatedClock
from pipeline.core.models import (
    AccountState,
    Direction,
    Fill,
    OrderIntent,
    OrderStatus,
    OrderUpdate,
    Side,
    client_order_id_for,
)
from pipeline.execution.reservations import ReservationBook
from tests.pg import backend_settings

NOW = datetime(2026, 11, 24, 16, 0, tzinfo=UTC)


def _intent(quantity: float = 100, price: float = 50.0, name: str = "sig-r1") -> OrderIntent:
    return OrderIntent(client_order_id=client_order_id_for(name), signal_id=name, symbol="AAPL", side=Side.BUY,
                       quantity=quantity, ticker="AAPL", direction=Direction.LONG, reference_price=price)


def test_fills_shrink_the_reservation_until_it_is_gone() -> None:
    book = ReservationBook()
    intent = _intent()
    book.reserve(intent)
    assert book.reserved_notional() == pytest.approx(5_000.0)
    book.filled(intent.client_order_id, 40)
    assert book.reserved_notional() == pytest.approx(3_000.0)
    (reserved,) = [p for p in book.account_view(_account()).open_positions if p.ticker == "AAPL"]
    assert reserved.shares == 60
    book.filled(intent.client_order_id, 60)
    assert intent.client_order_id not in book and book.reserved_notional() == 0.0
    book.filled(intent.client_order_id, 10)  # a late duplicate: nothing to shrink
    assert book.release(intent.client_order_id) is None


def _account() -> AccountState:
    return AccountState(equity=100_000.0, cash=100_000.0, buying_power=100_000.0)


def _settings(tmp_path: Path, **journal: Any) -> Settings:
    return load_settings(state_dir=tmp_path / "state", broker={"primary": "paper", "fallback": None},
                         paper={"persistent": False, "initial_cash": 100_000.0}, **journal)


@pytest.fixture
async def core(tmp_path: Path) -> AsyncIterator[Core]:
    started = Core(_settings(tmp_path), SimulatedClock(NOW))
    await started.start()
    yield started
    await started.stop()


def _in_flight(core: Core) -> OrderIntent:
    """An entry of 100 AAPL at 50 the orchestrator approved and sent: reserved and tracked."""
    intent = _intent()
    core.orchestrator.reservations.reserve(intent)
    core.lifecycle.register_intent(intent)
    return intent


async def test_a_filled_entry_is_counted_once_before_its_final_status_arrives(core: Core) -> None:
    cash_before = core.orchestrator.account_state().cash
    hold = 1.0 + core.orchestrator.slippage  # in flight, an entry also holds the slippage its fill may pay
    intent = _in_flight(core)
    assert core.orchestrator.account_state().cash == pytest.approx(cash_before - 5_000.0 * hold)
    filled = 0
    for n, quantity in enumerate((30, 70)):
        await core.lifecycle.on_broker_event(Fill(
            fill_id=f"f-{n}", client_order_id=intent.client_order_id, symbol="AAPL", side=Side.BUY,
            quantity=quantity, price=50.0, timestamp=NOW, broker="paper", broker_order_id="b-1"))
        # the ledger holds what filled, the reservation the rest: together the order, once
        filled += quantity
        seen = core.orchestrator.account_state()
        assert seen.cash == pytest.approx(cash_before - filled * 50.0 - (100 - filled) * 50.0 * hold)
        assert sum(p.shares for p in seen.open_positions if p.ticker == "AAPL") == 100
    assert intent.client_order_id not in core.orchestrator.reservations


def test_a_final_status_ahead_of_its_fills_keeps_their_part_reserved() -> None:
    book = ReservationBook()
    intent = _intent()
    book.reserve(intent)
    book.filled(intent.client_order_id, 20)
    # FILLED (100) arrives while 80 are still on their way: those 80 stay reserved until they are applied
    assert book.release(intent.client_order_id, 100.0, fully_filled=True) is None
    assert book.reserved_notional() == pytest.approx(80 * 50.0)
    book.filled(intent.client_order_id, 80)
    assert intent.client_order_id not in book
    # canceled after 30 filled, none applied yet: 30 stay, the 70 never filled are released
    other = _intent(name="sig-r2")
    book.reserve(other)
    book.release(other.client_order_id, 30.0)
    assert book.reserved_notional() == pytest.approx(30 * 50.0)
    book.filled(other.client_order_id, 30)
    assert len(book) == 0
    # a status with no quantity: FILLED means all of it, anything else what was applied
    third = _intent(name="sig-r3")
    book.reserve(third)
    book.release(third.client_order_id, None, fully_filled=True)
    assert book.reserved_notional() == pytest.approx(5_000.0)
    fourth = _intent(name="sig-r4")
    book.reserve(fourth)
    assert book.release(fourth.client_order_id) is not None and fourth.client_order_id not in book


async def test_a_filled_status_before_its_fill_never_frees_the_buying_power_early(core: Core) -> None:
    cash_before = core.orchestrator.account_state().cash
    intent = _in_flight(core)
    await core.lifecycle.on_broker_event(OrderUpdate(
        intent.client_order_id, OrderStatus.FILLED, "paper", "b-1", "AAPL", Side.BUY, filled_qty=100,
        filled_avg_price=50.0, timestamp=NOW))
    hold = 1.0 + core.orchestrator.slippage
    assert core.orchestrator.account_state().cash == pytest.approx(cash_before - 5_000.0 * hold)
    await core.lifecycle.on_broker_event(Fill(
        fill_id="f-1", client_order_id=intent.client_order_id, symbol="AAPL", side=Side.BUY, quantity=100,
        price=50.0, timestamp=NOW, broker="paper", broker_order_id="b-1"))
    assert core.orchestrator.account_state().cash == pytest.approx(cash_before - 5_000.0)
    assert intent.client_order_id not in core.orchestrator.reservations


async def test_rebuilt_from_the_journal_a_partly_filled_entry_reserves_only_its_rest(
    tmp_path: Path, journal_backend: str, request: pytest.FixtureRequest,
) -> None:
    from daemon.journal_backend import make_journal

    settings = _settings(tmp_path, **backend_settings(journal_backend, request))  # on SQLite and on PostgreSQL
    journal = make_journal(settings, tmp_path / "state")
    await journal.open()
    intent = _intent()
    await journal.record_order_intent(intent, "paper", NOW)
    await journal.update_order(intent.client_order_id, OrderStatus.PARTIALLY_FILLED, ts=NOW, filled_qty=40)
    await journal.record_fill(Fill(fill_id="f-1", client_order_id=intent.client_order_id, symbol="AAPL",
                                   side=Side.BUY, quantity=40, price=50.0, timestamp=NOW, broker="paper"))
    await journal.close()
    core = Core(settings, SimulatedClock(NOW))
    assert core.journal is not None
    await core.journal.open()
    try:
        await core.rebuild()
        (reservation,) = core.orchestrator.reservations.items()
        assert reservation.remaining == 60 and reservation.notional == pytest.approx(3_000.0)
        held = [p for p in core.orchestrator.account_state().open_positions if p.ticker == "AAPL"]
        assert sorted(p.shares for p in held) == [40, 60]  # the ledger's 40 and the reservation's 60, once each
    finally:
        await core.journal.close()


def test_fills_that_never_arrive_are_given_up_after_the_grace() -> None:
    book = ReservationBook()
    intent, working = _intent(), _intent(name="sig-w")
    book.reserve(intent)
    book.reserve(working)
    book.release(intent.client_order_id, 100.0, fully_filled=True, now=NOW)
    assert book.expire(NOW + timedelta(minutes=4), timedelta(minutes=5)) == []
    (gone,) = book.expire(NOW + timedelta(minutes=5), timedelta(minutes=5))
    assert gone.client_order_id == intent.client_order_id and gone.remaining == 100
    assert working.client_order_id in book  # still working at the broker: never expired


async def test_reconciliation_gives_up_on_fills_that_never_came(core: Core) -> None:
    intent = _in_flight(core)
    await core.lifecycle.on_broker_event(OrderUpdate(
        intent.client_order_id, OrderStatus.FILLED, "paper", "b-1", "AAPL", Side.BUY, filled_qty=100,
        timestamp=NOW))
    await core.reconcile()
    assert intent.client_order_id in core.orchestrator.reservations
    core.clock.advance(300)  # type: ignore[attr-defined]
    await core.reconcile()
    assert intent.client_order_id not in core.orchestrator.reservations
