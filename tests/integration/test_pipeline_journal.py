"""Journal rows on a real SQLite file and on a real PostgreSQL server: order status never moves backwards,
buffered rows keep their order, a fill is journaled once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from pipeline.core.models import (
    Direction,
    Fill,
    OrderIntent,
    OrderStatus,
    Side,
    SignalType,
    TradeSignal,
    client_order_id_for,
)
from pipeline.record.journal import Journal

NOW = datetime(2026, 11, 24, 16, 0, tzinfo=UTC)


@pytest.fixture
def journal(any_journal: Journal) -> Journal:
    """Each test on both backends: a SQLite file, and an instance schema on a real PostgreSQL server."""
    return any_journal


def _intent(signal_id: str = "sig-1") -> OrderIntent:
    return OrderIntent(client_order_id=client_order_id_for(signal_id), signal_id=signal_id, symbol="AAPL",
                       side=Side.BUY, quantity=10, ticker="AAPL", reference_price=100.0)


async def test_a_late_status_never_moves_an_order_backwards_but_is_kept_as_an_event(journal: Journal) -> None:
    intent = _intent()
    assert await journal.record_order_intent(intent, "paper", NOW)
    await journal.update_order(intent.client_order_id, OrderStatus.FILLED, ts=NOW, broker_order_id="b-1",
                               filled_qty=10, filled_avg_price=100.5)
    # the submit reply arrives after the fill event
    await journal.update_order(intent.client_order_id, OrderStatus.NEW, ts=NOW + timedelta(seconds=1),
                               broker_order_id="b-1", reason="late reply")
    order = await journal.get_order(intent.client_order_id)
    assert order is not None
    assert order["status"] == "filled"
    assert order["filled_qty"] == 10 and order["filled_avg_price"] == 100.5
    assert order["updated_ts"] == (NOW + timedelta(seconds=1)).isoformat()
    assert order["reason"] == "late reply"
    events = await journal.query("SELECT status FROM order_events WHERE client_order_id=? ORDER BY id",
                                 (intent.client_order_id,))
    assert [e["status"] for e in events] == ["filled", "new"]


async def test_an_order_moves_forward_through_its_states(journal: Journal) -> None:
    intent = _intent()
    await journal.record_order_intent(intent, "paper", NOW)
    for status in (OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED, OrderStatus.CANCELED):
        await journal.update_order(intent.client_order_id, status, ts=NOW)
        order = await journal.get_order(intent.client_order_id)
        assert order is not None and order["status"] == str(status)
    assert await journal.open_orders() == []


async def test_buffered_signals_and_decisions_keep_their_order_when_committed(journal: Journal) -> None:
    stages = []
    for n in range(5):
        signal = TradeSignal(SignalType.CLOUD_CROSS_BULLISH, Direction.LONG, "AAPL", "5m", 80.0, 100.0 + n, 99.0,
                             timestamp=NOW, signal_id=f"sig-{n}")
        journal.record_signal(signal, NOW)
        for stage in ("guard", "risk", "sizing"):
            journal.record_decision(signal.signal_id, stage, "approved", ts=NOW, detail={"n": n})
            stages.append((signal.signal_id, stage))
    # an order intent commits what was buffered before it, in the same transaction
    assert await journal.record_order_intent(_intent("sig-4"), "paper", NOW)
    assert journal.pending_count() == 0
    rows = await journal.query("SELECT signal_id, stage FROM decisions ORDER BY id")
    assert [(r["signal_id"], r["stage"]) for r in rows] == stages
    signals = await journal.query("SELECT signal_id FROM signals ORDER BY rowid")
    assert [s["signal_id"] for s in signals] == [f"sig-{n}" for n in range(5)]


async def test_a_fill_is_journaled_once(journal: Journal) -> None:
    fill = Fill(fill_id="f-1", broker="paper", client_order_id="og-entry-x", broker_order_id="b-1", symbol="AAPL",
                side=Side.BUY, quantity=10, price=100.0, timestamp=NOW)
    assert await journal.record_fill(fill) is True
    assert await journal.record_fill(fill) is False
    assert len(await journal.fills()) == 1
