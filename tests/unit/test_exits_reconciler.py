"""PositionReconciler: matches, ghosts, orphans and quantity mismatches, from dicts and from objects."""

from __future__ import annotations

import pytest

from pipeline.core.models import BrokerPosition, Position
from pipeline.positions.reconciler import PositionReconciler


def pos(symbol: str, shares: float, direction: str = "long", price: float = 100.0) -> Position:
    return Position(ticker=symbol, direction=direction, entry_price=price, current_price=price, shares=shares,
                    stop_loss=price * (0.9 if direction == "long" else 1.1))


def test_spec_example_with_dicts():
    report = PositionReconciler().reconcile(
        internal_positions=[
            {"symbol": "AAPL", "shares": 100, "direction": "long"},
            {"symbol": "MSFT", "shares": 50, "direction": "long"},
        ],
        broker_positions=[
            {"symbol": "AAPL", "shares": 100},
            {"symbol": "GOOGL", "shares": 25},
        ],
    )
    assert report.matches == 1
    kinds = {m.symbol: m.mismatch_type for m in report.mismatches}
    assert kinds == {"GOOGL": "ghost", "MSFT": "orphan"}
    ghost = report.of_type("ghost")[0]
    assert (ghost.internal_qty, ghost.broker_qty) == (0.0, 25.0)
    orphan = report.of_type("orphan")[0]
    assert (orphan.internal_qty, orphan.broker_qty) == (50.0, 0.0)
    assert all(m.description for m in report.mismatches)


def test_shorts_are_compared_signed_with_dicts():
    reconciler = PositionReconciler()
    internal = [{"symbol": "TSLA", "shares": 30, "direction": "short"}]
    assert reconciler.reconcile(internal, [{"symbol": "TSLA", "shares": -30}]).matches == 1
    flipped = reconciler.reconcile(internal, [{"symbol": "TSLA", "shares": 30}])
    assert flipped.matches == 0
    (m,) = flipped.mismatches
    assert m.mismatch_type == "quantity_mismatch" and (m.internal_qty, m.broker_qty) == (-30.0, 30.0)
    assert "opposite" in m.description
    smaller = reconciler.reconcile(internal, [{"symbol": "TSLA", "shares": -20}])
    assert smaller.mismatches[0].mismatch_type == "quantity_mismatch"
    assert smaller.mismatches[0].difference == pytest.approx(10.0)


def test_objects_long_and_short_with_notional():
    reconciler = PositionReconciler(notional_threshold=5_000.0)
    internal = [pos("AAPL", 100), pos("NVDA", 10, "short", price=800.0), pos("JPM", 40, price=200.0),
                pos("XOM", 5, price=110.0)]
    broker = [
        BrokerPosition("AAPL", 100, avg_price=99.0, market_price=101.0),
        BrokerPosition("NVDA", -10, avg_price=800.0),
        BrokerPosition("JPM", 25, avg_price=200.0, market_price=210.0),     # 15 short of the book
        BrokerPosition("AMD", -60, avg_price=150.0),                        # ghost short
    ]
    report = reconciler.reconcile(internal, broker)
    assert report.matches == 2
    by_symbol = {m.symbol: m for m in report.mismatches}
    assert set(by_symbol) == {"JPM", "AMD", "XOM"}
    jpm, amd, xom = by_symbol["JPM"], by_symbol["AMD"], by_symbol["XOM"]
    assert jpm.mismatch_type == "quantity_mismatch" and jpm.notional == pytest.approx(15 * 210.0)
    assert amd.mismatch_type == "ghost" and amd.broker_qty == -60 and amd.notional == pytest.approx(9_000.0)
    assert xom.mismatch_type == "orphan" and xom.internal_qty == 5 and xom.notional == pytest.approx(550.0)
    assert report.unexplained_notional == pytest.approx(12_700.0)
    assert report.severe()                          # 12,700 in total exceeds 5,000
    assert [m.symbol for m in report.severe_mismatches()] == ["AMD", "JPM", "XOM"]  # all of them, largest first
    assert not report.severe(12_700.0)              # exceeds, not equals
    assert report.severe(12_699.99)
    assert report.severe_mismatches(12_700.0) == []


def test_notional_is_judged_in_total_not_per_position():
    """Four gaps of $4.9k each, each below a $10k threshold: $19.6k unexplained in total is severe."""
    internal = [pos(s, 100, price=49.0) for s in ("AAA", "BBB", "CCC", "DDD")]
    report = PositionReconciler(notional_threshold=10_000.0).reconcile(internal, [])
    assert all(m.notional == pytest.approx(4_900.0) for m in report.mismatches)
    assert report.unexplained_notional == pytest.approx(19_600.0)
    assert report.severe() and len(report.severe_mismatches()) == 4
    assert not PositionReconciler(notional_threshold=10_000.0).reconcile(internal[:2], []).severe()


def test_mixed_shapes_and_symbol_normalisation():
    internal = [{"symbol": "AAPL  261218C00200000", "shares": 2, "direction": "long", "price": 5.0}]
    broker = [BrokerPosition("AAPL261218C00200000", 3, avg_price=5.0)]
    report = PositionReconciler().reconcile(internal, broker)
    (m,) = report.mismatches
    assert m.mismatch_type == "quantity_mismatch"
    assert m.notional == pytest.approx(1 * 5.0 * 100)    # OCC option: 100 multiplier


def test_several_internal_lots_are_summed_and_flat_broker_rows_ignored():
    internal = [pos("AAPL", 60), pos("AAPL", 40)]
    broker = [{"symbol": "AAPL", "quantity": 100}, {"symbol": "MSFT", "qty": 0}]
    report = PositionReconciler().reconcile(internal, broker)
    assert report.matches == 1 and report.ok


def test_empty_books_match_trivially():
    report = PositionReconciler().reconcile([], [])
    assert report.matches == 0 and report.ok and not report.severe(0.0)


@pytest.mark.parametrize(("internal", "broker", "field"), [
    ([{"shares": 1}], [], "internal_positions[0].symbol"),
    ([{"symbol": "AAPL"}], [], "internal_positions[0].shares"),
    ([{"symbol": "AAPL", "shares": 1, "direction": "up"}], [], "internal_positions[0].direction"),
    ([], [{"symbol": "AAPL", "shares": "lots"}], "broker_positions[0].shares"),
    ([], [{"symbol": "AAPL", "shares": float("nan")}], "broker_positions[0].shares"),
    ([], [42], "broker_positions[0]"),
])
def test_bad_rows_name_the_field(internal, broker, field):
    with pytest.raises(ValueError, match=field.replace("[", r"\[").replace("]", r"\]")):
        PositionReconciler().reconcile(internal, broker)
