"""One order record per client order id (issue 12, DESIGN invariant 11): the state machine, its fills, its
reservation, and the views (validator, reservations, lifecycle intents and pending exits, router venues) over it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from config.settings import load_settings
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
from pipeline.execution.fill_validator import OrderValidator
from pipeline.execution.order_record import OrderBook, OrderState
from pipeline.execution.reservations import ReservationBook

NOW = datetime(2026, 11, 24, 16, 0, tzinfo=UTC)  # a Tuesday, 11:00 ET


def _intent(name: str = "sig-or1", quantity: float = 100, price: float = 50.0, kind: str = "entry") -> OrderIntent:
    return OrderIntent(client_order_id=client_order_id_for(name), signal_id=name, symbol="AAPL", side=Side.BUY,
                       quantity=quantity, ticker="AAPL", direction=Direction.LONG, reference_price=price, kind=kind)


def _fill(intent: OrderIntent, fill_id: str, quantity: float, price: float = 50.0) -> Fill:
    return Fill(fill_id, intent.client_order_id, intent.symbol, intent.side, quantity, price, NOW, "paper")


# -- the state machine -------------------------------------------------------------------------------------
def test_transitions_only_move_forward() -> None:
    book = OrderBook()
    intent = _intent()
    record = book.add(intent)
    assert record.state == OrderState.CREATED and record.status == OrderStatus.PENDING
    for state in (OrderState.INTENT_JOURNALED, OrderState.SENT):
        assert book.transition(intent.client_order_id, state)
    assert book.apply_status(intent.client_order_id, OrderStatus.NEW, NOW)
    assert record.state == OrderState.ACCEPTED and record.accepted_at == NOW and record.last_contact == NOW
    assert record.acknowledged
    assert book.apply_status(intent.client_order_id, OrderStatus.PARTIALLY_FILLED, NOW)
    assert book.apply_status(intent.client_order_id, OrderStatus.FILLED, NOW)
    assert record.final and record.status == OrderStatus.FILLED
    # a late 'new', 'partially_filled' or 'pending' after 'filled' is ignored
    for late in (OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED, OrderStatus.PENDING):
        assert not book.apply_status(intent.client_order_id, late, NOW)
        assert record.state == OrderState.FILLED
    assert book.working() == []


def test_a_move_between_final_states_is_illegal_logged_and_ignored(capsys: pytest.CaptureFixture[str]) -> None:
    book = OrderBook()
    intent = _intent()
    book.add(intent)
    assert book.apply_status(intent.client_order_id, OrderStatus.CANCELED, NOW)
    assert not book.apply_status(intent.client_order_id, OrderStatus.FILLED, NOW)
    assert book.get(intent.client_order_id).state == OrderState.CANCELLED  # type: ignore[union-attr]
    assert "order_transition_illegal" in capsys.readouterr().out


def test_every_order_status_maps_onto_a_state_and_back() -> None:
    for status in OrderStatus:
        state = OrderState.of(status)
        assert state.status == status
        assert state.is_final == status.is_final


def test_a_late_new_update_does_not_reopen_a_filled_order_in_the_validator() -> None:
    validator = OrderValidator()
    intent = _intent()
    validator.track(intent)
    validator.validate(intent, _fill(intent, "f1", 100))
    filled = OrderUpdate(intent.client_order_id, OrderStatus.FILLED, "paper", filled_qty=100)
    assert validator.on_update(filled, NOW) == []
    validator.on_update(OrderUpdate(intent.client_order_id, OrderStatus.NEW, "paper"), NOW)
    assert validator.working() == []


# -- fills -------------------------------------------------------------------------------------------------
def test_a_fill_is_counted_once_by_its_fill_id() -> None:
    validator = OrderValidator()
    intent = _intent()
    validator.track(intent)
    assert validator.validate(intent, _fill(intent, "f1", 60)) == []
    assert validator.validate(intent, _fill(intent, "f1", 60)) == []  # a redelivery: no overfill either
    assert validator.filled(intent.client_order_id) == 60
    assert validator.book.has_fill(_fill(intent, "f1", 60)) and not validator.book.has_fill(_fill(intent, "f2", 1))
    validator.validate(intent, _fill(intent, "f2", 40))
    assert validator.filled(intent.client_order_id) == 100
    assert validator.book.get(intent.client_order_id).fill_ids == {"f1", "f2"}  # type: ignore[union-attr]


# -- the reservation -----------------------------------------------------------------------------------------
def test_the_reservation_shrinks_with_fills_and_is_released_on_final() -> None:
    book = OrderBook()
    reservations = ReservationBook(book=book)
    intent = _intent()
    reservations.reserve(intent)
    record = book.get(intent.client_order_id)
    assert record is not None and record.reserved == 100
    reservations.filled(intent.client_order_id, 30)
    assert record.reserved == 70 and reservations.reserved_notional() == pytest.approx(70 * 50.0)
    view = reservations.account_view(AccountState(equity=1e5, cash=1e5, buying_power=1e5))
    assert [p.shares for p in view.open_positions] == [70]
    book.apply_status(intent.client_order_id, OrderStatus.CANCELED, NOW)
    released = reservations.release(intent.client_order_id, 30.0, now=NOW)
    assert released is not None and released.remaining == 70
    assert record.reserved is None and len(reservations) == 0 and not book.reserved()
    assert book.get(intent.client_order_id) is record  # the record itself stays: the order is known, final


def test_never_reached_is_final_and_frees_the_reservation() -> None:
    book = OrderBook()
    validator = OrderValidator(book=book)
    intent = _intent()
    book.reserve(intent)
    book.transition(intent.client_order_id, OrderState.INTENT_JOURNALED)
    assert not book.get(intent.client_order_id).acknowledged  # type: ignore[union-attr]
    validator.on_update(OrderUpdate(intent.client_order_id, OrderStatus.NEVER_REACHED, "paper"), NOW)
    book.release(intent.client_order_id, None, False, NOW)
    record = book.get(intent.client_order_id)
    assert record is not None and record.state == OrderState.NEVER_REACHED and record.final
    assert validator.working() == [] and not book.reserved()
    # a late answer from the broker cannot move it back
    assert not book.apply_status(intent.client_order_id, OrderStatus.NEW, NOW)


def test_prune_keeps_working_reserved_and_pending_exit_records() -> None:
    book = OrderBook()
    done, working, awaiting = _intent("sig-a"), _intent("sig-b"), _intent("sig-c")
    exit_ = _intent("sig-d", kind="exit")
    for intent in (done, working, awaiting, exit_):
        book.add(intent)
    book.apply_status(done.client_order_id, OrderStatus.FILLED)
    book.reserve(awaiting)
    book.apply_status(awaiting.client_order_id, OrderStatus.FILLED)
    book.release(awaiting.client_order_id, 100.0, True, NOW)  # its fills are still on their way
    book.apply_status(exit_.client_order_id, OrderStatus.FILLED)
    book.exits["AAPL"] = exit_.client_order_id
    assert book.prune(keep=0) == 1
    assert [r.client_order_id for r in book] == [working.client_order_id, awaiting.client_order_id,
                                                  exit_.client_order_id]


# -- one store: the daemon's components share it -------------------------------------------------------------
@pytest.fixture
async def core(tmp_path: Path) -> AsyncIterator[Core]:
    settings = load_settings(state_dir=tmp_path / "state", broker={"primary": "paper", "fallback": None},
                             paper={"persistent": False, "initial_cash": 100_000.0},
                             exits={"broker_stop": False})  # an intent with no stop level: no resting stop
    started = Core(settings, SimulatedClock(NOW))
    await started.start()
    yield started
    await started.stop()


async def test_the_daemon_keeps_each_order_once(core: Core) -> None:
    book = core.book
    assert core.router.book is book and core.orchestrator.book is book and core.lifecycle.book is book
    assert core.orchestrator.validator.book is book and core.orchestrator.reservations.book is book
    intent = _intent(quantity=10, price=100.0)
    core.orchestrator.reservations.reserve(intent)
    core.lifecycle.register_intent(intent)
    core.brokers["paper"].set_price("AAPL", 100.0)  # type: ignore[attr-defined]
    core.router.dispatch(intent)
    await core.settle()
    record = book.get(intent.client_order_id)
    assert record is not None and record.venue == "paper" and core.router.venues[intent.client_order_id] == "paper"
    assert core.lifecycle.intents[intent.client_order_id] is intent
    assert record.state == OrderState.FILLED and record.filled_qty == 10 and len(record.fill_ids) == 1
    assert record.reserved is None and intent.client_order_id not in core.orchestrator.reservations
    assert core.ledger.position("AAPL") is not None and core.ledger.position("AAPL").shares == 10  # type: ignore[union-attr]
    # the same fill delivered again changes nothing: its record knows its id
    (fill_id,) = record.fill_ids
    again = Fill(fill_id, intent.client_order_id, "AAPL", Side.BUY, 10, 100.0, NOW + timedelta(seconds=1), "paper")
    await core.lifecycle.on_broker_event(again)
    assert core.ledger.position("AAPL").shares == 10 and record.filled_qty == 10  # type: ignore[union-attr]


async def test_the_resolver_counts_its_lookups_on_the_order_record() -> None:
    from pipeline.execution.order_resolver import OpenOrder, OrderResolver, Verdict

    class Silent:  # a broker that has never heard of any order
        name = "paper"

        def is_connected(self) -> bool:
            return True

        async def get_order_by_client_id(self, client_order_id: str) -> None:
            return None

    ticks = iter([0.0, 5.0])
    book = OrderBook()
    intent = _intent()
    book.add(intent)
    resolver = OrderResolver({"paper": Silent()}, never_reached_after=1.0, timeout=1.0,  # type: ignore[dict-item]
                             now=lambda: next(ticks), book=book)
    (first,) = await resolver.resolve([OpenOrder(intent, "paper")])
    record = book.get(intent.client_order_id)
    assert first.verdict == Verdict.MISSING and record is not None and record.lookup_misses == 1
    (second,) = await resolver.resolve([OpenOrder(intent, "paper")])
    assert second.verdict == Verdict.NEVER_REACHED and record.lookup_misses == 0  # final: its count is over
