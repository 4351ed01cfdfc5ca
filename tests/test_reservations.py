"""In-flight entry reservations: a fill moves its part from the reservation to the ledger, so between a fill and
its order's final status the same shares are never counted twice (that double count once sized a rebalance's
last buy down to a single share)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from config.settings import load_settings
from daemon.app import Core
from pipeline.clock import SimulatedClock
from pipeline.models import Direction, Fill, OrderIntent, Side, client_order_id_for
from pipeline.reservations import ReservationBook

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


def _account():
    from pipeline.models import AccountState

    return AccountState(equity=100_000.0, cash=100_000.0, buying_power=100_000.0)


async def test_a_filled_entry_is_counted_once_before_its_final_status_arrives(tmp_path: Path) -> None:
    settings = load_settings(state_dir=tmp_path / "state", broker={"primary": "paper", "fallback": None},
                             paper={"persistent": False, "initial_cash": 100_000.0})
    core = Core(settings, SimulatedClock(NOW))
    await core.start()
    try:
        cash_before = core.orchestrator.account_state().cash
        intent = _intent()
        core.orchestrator.reservations.reserve(intent)
        core.lifecycle.register_intent(intent)
        assert core.orchestrator.account_state().cash == pytest.approx(cash_before - 5_000.0)
        for n, quantity in enumerate((30, 70)):
            await core.lifecycle.on_broker_event(Fill(
                fill_id=f"f-{n}", client_order_id=intent.client_order_id, symbol="AAPL", side=Side.BUY,
                quantity=quantity, price=50.0, timestamp=NOW, broker="paper", broker_order_id="b-1"))
            # the ledger holds what filled, the reservation the rest: together the order, once
            seen = core.orchestrator.account_state()
            assert seen.cash == pytest.approx(cash_before - 5_000.0)
            held = sum(p.shares for p in seen.open_positions if p.ticker == "AAPL")
            assert held == 100
        assert intent.client_order_id not in core.orchestrator.reservations
    finally:
        await core.stop()
