"""ExternalBook: a fill the broker's figures already held when they were read is counted once, not twice."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pipeline.core.models import Fill, Side
from pipeline.positions.external import ExternalBook, held_by

T = datetime(2026, 11, 24, 16, 0, tzinfo=UTC)


def _fill(fill_id: str, qty: float, at: datetime, side: Side = Side.BUY, symbol: str = "AAPL") -> Fill:
    return Fill(fill_id, "hand-1", symbol, side, qty, 100.0, at, "alpaca")


def test_a_fill_the_confirmed_quantity_holds_moves_nothing_a_later_one_is_added() -> None:
    book = ExternalBook()
    book.set("AAPL", 10, 100.0, "alpaca", T, fills_through=T)
    assert book.apply_fill(_fill("x1", 10, T - timedelta(minutes=3)))  # new to us, but the 10 hold it
    assert book.quantity("AAPL") == 10
    assert not book.apply_fill(_fill("x1", 10, T - timedelta(minutes=3)))  # and once only
    assert book.apply_fill(_fill("x2", 5, T + timedelta(seconds=1)))  # after the figures were read: on top
    assert book.quantity("AAPL") == 15
    assert book.apply_fill(_fill("x3", 5, T, side=Side.SELL))  # stamped at `through` itself: held
    assert book.quantity("AAPL") == 15


def test_without_a_through_time_every_new_fill_is_counted() -> None:
    book = ExternalBook()
    book.set("AAPL", 10, 100.0, "alpaca", T)
    book.apply_fill(_fill("x1", 10, T - timedelta(minutes=3)))
    assert book.quantity("AAPL") == 20  # nothing says the 10 held it: the cautious side
    other = ExternalBook()
    other.set("AAPL", 10, 100.0, "alpaca", T, fills_through=T)
    other.set("AAPL", 10, 100.0, "alpaca", T)  # a later truth without a time: the earlier time no longer holds
    other.apply_fill(_fill("x1", 10, T - timedelta(minutes=3)))
    assert other.quantity("AAPL") == 20


def test_a_quantity_confirmed_gone_is_not_brought_back_by_an_old_fill() -> None:
    book = ExternalBook()
    book.set("AAPL", 0, 0.0, "alpaca", T, fills_through=T)  # sold by hand: the broker holds none
    book.apply_fill(_fill("old-buy", 10, T - timedelta(hours=1)))
    assert book.quantity("AAPL") == 0 and "AAPL" not in book
    book.remove("MSFT", fills_through=T)  # adopted into the ledger, which holds it now
    book.apply_fill(_fill("old-msft", 7, T - timedelta(hours=1), symbol="MSFT"))
    assert book.quantity("MSFT") == 0
    book.apply_fill(_fill("new-msft", 7, T + timedelta(seconds=5), symbol="MSFT"))
    assert book.quantity("MSFT") == 7


def test_the_cash_taken_from_the_broker_holds_the_fills_before_it() -> None:
    book = ExternalBook()
    book.reset_cash(fills_through=T)
    book.apply_fill(_fill("before", 10, T - timedelta(seconds=30)))
    assert book.cash_adjustment == 0.0 and book.quantity("AAPL") == 10  # no confirmed quantity: counted
    book.apply_fill(_fill("after", 10, T + timedelta(seconds=30)))
    assert book.cash_adjustment == -1000.0 and book.quantity("AAPL") == 20
    book.reset_cash()  # taken again, its time not known: every later fill moves the cash
    book.apply_fill(_fill("old", 1, T - timedelta(days=1)))
    assert book.cash_adjustment == -100.0


def test_times_that_cannot_be_compared_hold_nothing() -> None:
    assert held_by(T, T) and held_by(T - timedelta(microseconds=1), T) and not held_by(T + timedelta(seconds=1), T)
    assert not held_by(None, T) and not held_by(T, None)
    assert not held_by(T.replace(tzinfo=None) - timedelta(days=1), T)  # naive against aware: counted


def test_the_journal_copy_reads_back_and_names_what_is_wrong() -> None:
    from datetime import UTC, datetime

    from pipeline.positions.external import ExternalBook

    t0 = datetime(2026, 11, 24, 16, 0, tzinfo=UTC)
    book = ExternalBook()
    book.set("AAPL", 10, 100.0, "alpaca", t0, fills_through=t0)
    book.set("TSLA", -5, 200.0, "ibkr", t0)
    saved = book.to_json()
    again = ExternalBook()
    assert again.restore(saved) == [] and again.to_json() == saved
    assert [(p.symbol, p.quantity, p.avg_price, p.broker) for p in again.held()] == \
        [("AAPL", 10, 100.0, "alpaca"), ("TSLA", -5, 200.0, "ibkr")]
    bad = [{"symbol": "", "quantity": 1, "avg_price": 1}, {"symbol": "X", "quantity": "nan", "avg_price": 1},
           {"symbol": "Y", "quantity": 1, "avg_price": -1}, {"symbol": "Z", "quantity": 1},
           {"symbol": "W", "quantity": 1, "avg_price": 1, "through": "2026-11-24T16:00:00"}, "junk"]
    third = ExternalBook()
    problems = third.restore([*bad, saved[0]])
    assert len(problems) == len(bad) and third.quantity("AAPL") == 10 and len(third.held()) == 1
    for problem, word in zip(problems, ["symbol", "quantity", "avg_price", "avg_price", "zone", ""], strict=True):
        assert problem.startswith("external position ") and word in problem
