"""Stock splits as the broker's positions show them (pipeline.positions.splits), and the book rebased by them."""

from __future__ import annotations

from datetime import UTC, datetime
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.core.models import Fill, OrderIntent, Side
from pipeline.positions.external import ExternalBook
from pipeline.positions.ledger import Ledger
from pipeline.positions.splits import SplitRecord, SplitsInOrder, describe, split_ratio

T0 = datetime(2026, 11, 24, 16, 0, tzinfo=UTC)


@pytest.mark.parametrize(("before", "after", "ratio"), [
    ((10, 100.0), (20, 50.0), Fraction(2)),                 # 2-for-1
    ((11, 90.0), (16, 60.0), Fraction(3, 2)),               # 3-for-2: 16.5 shares, the half paid as cash
    ((155, 1.23), (15, 12.3), Fraction(1, 10)),             # 1-for-10: 15.5 shares
    ((-40, 20.0), (-80, 10.0), Fraction(2)),                # a short splits too
    ((100, 105.0), (105, 100.0), Fraction(21, 20)),         # a 5 % stock dividend
    ((7, 187.1234), (70, 18.7123), Fraction(10)),           # the average rounded to 4 decimals
    ((3.5, 80.0), (14.0, 20.0), Fraction(4)),               # fractional shares: exact
    ((1000, 3000.0), (20000, 150.0), Fraction(20)),         # 20-for-1
])
def test_a_split_is_seen_in_the_quantity_and_the_average(before: tuple[float, float], after: tuple[float, float],
                                                         ratio: Fraction) -> None:
    assert split_ratio(before[0], before[1], after[0], after[1]) == ratio


@pytest.mark.parametrize(("before", "after"), [
    ((10, 100.0), (20, 100.0)),      # a hand buy of 10 at 100: the average stays
    ((10, 100.0), (20, 75.0)),       # a hand buy of 10 at 50
    ((10, 100.0), (5, 100.0)),       # a hand sale: the average stays
    ((10, 100.0), (10, 100.0)),      # nothing moved
    ((10, 100.0), (21, 50.0)),       # more shares than the split gives
    ((10, 100.0), (19, 50.0)),       # a share short of it: not cash in lieu (10 x 2 is whole)
    ((1000, 100.0), (1010, 99.0099)),  # 1 % more at 1 % less: a small add, not a 101-for-100 split
    ((10, 100.0), (14, 71.28)),      # 7-for-5 would be 71.43: 0.2 % off, more than rounding or a commission
    ((10, 100.0), (-20, 50.0)),      # the other side
    ((10, 100.0), (20, 0.0)),        # no average
    ((0, 100.0), (20, 50.0)),        # nothing held before
    ((10, float("nan")), (20, 50.0)),
    ((10, 100.0), (20_000, 0.05)),   # 2000-for-1: a broken figure, not a split
])
def test_what_a_trade_or_a_broken_figure_does_is_not_a_split(before: tuple[float, float],
                                                             after: tuple[float, float]) -> None:
    assert split_ratio(before[0], before[1], after[0], after[1]) is None


@given(qty=st.integers(1, 10_000), avg=st.floats(1.0, 5_000.0), bought=st.integers(1, 10_000),
       price=st.floats(1.0, 5_000.0))
def test_no_hand_buy_at_a_real_price_looks_like_a_split(qty: int, avg: float, bought: int, price: float) -> None:
    """Adding shares adds their cost: a split keeps the cost, so a buy at 3 % of the average price or more is
    never read as one."""
    if price < 0.03 * avg:
        return
    after = qty + bought
    assert split_ratio(qty, avg, after, (qty * avg + bought * price) / after) is None


def _ledger_with(qty: float, price: float, stop: float, target: float | None = None) -> Ledger:
    ledger = Ledger(cash=100_000.0)
    intent = OrderIntent("og-entry-1", "sig-1", "AAPL", Side.BUY, qty, stop_loss=stop, target_price=target)
    ledger.apply_fill(Fill("f1", "og-entry-1", "AAPL", Side.BUY, qty, price, T0, "alpaca"), intent)
    return ledger


def test_the_ledger_rebased_keeps_cost_risk_and_cash() -> None:
    ledger = _ledger_with(11, 90.0, 87.0, 99.0)
    cash = ledger.cash
    (pos,) = ledger.rescale("AAPL", Fraction(3, 2), whole=True)
    assert ledger.net("AAPL") == 16  # 16.5: the half share is the broker's cash in lieu
    assert (pos.entry_price, pos.stop_loss, pos.target_price) == pytest.approx((60.0, 58.0, 66.0))
    assert pos.shares == 16 and ledger.cash == cash and ledger.last_price("AAPL") == pytest.approx(60.0)
    trip = ledger.apply_fill(Fill("f2", "og-exit-1", "AAPL", Side.SELL, 16, 63.0, T0, "alpaca"),
                             OrderIntent("og-exit-1", "sig-1", "AAPL", Side.SELL, 16))
    assert trip is not None and trip.pnl == pytest.approx(16 * 3.0) and trip.exit_price == pytest.approx(63.0)


def test_a_reverse_split_of_less_than_a_share_closes_the_position() -> None:
    ledger = _ledger_with(5, 2.0, 1.5)
    assert len(ledger.rescale("AAPL", Fraction(1, 10), whole=True)) == 1
    assert not ledger.holds("AAPL") and ledger.count() == 0


def test_the_external_part_is_rebased_too() -> None:
    book = ExternalBook()
    book.set("AAPL", 7, 100.0, "alpaca", T0)
    book.rescale("AAPL", Fraction(2), whole=True)
    assert book.quantity("AAPL") == 14 and book.held()[0].avg_price == pytest.approx(50.0)


def test_a_journaled_split_is_applied_after_the_fills_it_followed() -> None:
    first = SplitRecord("AAPL", Fraction(2), 1, T0.isoformat())
    second = SplitRecord("AAPL", Fraction(1, 4), 3, T0.isoformat())
    other = SplitRecord("MSFT", Fraction(3), 0, T0.isoformat())
    order = SplitsInOrder([first, second, other])
    assert order.before_fill("AAPL") == []           # fill 1: before any split
    assert order.before_fill("AAPL") == [first]      # fill 2 comes after the first split
    assert order.before_fill("MSFT") == [other]      # MSFT's split came before its first fill
    assert order.before_fill("AAPL") == []           # fill 3
    assert order.rest() == [second]                  # after AAPL's last fill
    assert order.rest() == []


def test_a_split_record_reads_back_and_names_what_is_wrong() -> None:
    record = SplitRecord("AAPL", Fraction(3, 2), 4, T0.isoformat(), "alpaca", whole=False)
    assert SplitRecord.from_json(record.to_json()) == record
    assert describe(Fraction(1, 10)) == "1-for-10"
    for bad, field in [({"ratio": "x"}, "ratio"), ({"ratio": "-2"}, "ratio"), ({"fills_before": -1}, "fills_before"),
                       ({"fills_before": True}, "fills_before"), ({"symbol": ""}, "symbol"),
                       ({"at": ""}, "at"), ({"at": "2026-11-24T16:00:00"}, "zone")]:
        with pytest.raises(ValueError, match=field):
            SplitRecord.from_json({**record.to_json(), **bad})


@given(qty=st.integers(1, 100_000), avg=st.floats(0.5, 5_000.0),
       ratio=st.sampled_from([Fraction(2), Fraction(3), Fraction(4), Fraction(10), Fraction(20), Fraction(3, 2),
                              Fraction(5, 4), Fraction(1, 2), Fraction(1, 5), Fraction(1, 10), Fraction(1, 50),
                              Fraction(21, 20), Fraction(11, 10)]))
def test_every_split_the_broker_books_is_found(qty: int, avg: float, ratio: Fraction) -> None:
    """Whole shares after it (the rest paid as cash), the broker's average rounded to 4 decimals."""
    after = int(qty * ratio)
    if after == 0 or after == qty:  # all paid out as cash, or no share more: no difference to judge
        return
    assert split_ratio(qty, avg, after, round(avg / float(ratio), 4)) == ratio


def test_a_sub_dime_average_rounded_to_four_decimals_is_still_a_split() -> None:
    # 0.875 / 20 = 0.04375, shown as 0.0437: 0.11 % off, past the relative slack alone (hypothesis found it)
    assert split_ratio(1, 0.875, 20, 0.0437) == Fraction(20)
    assert split_ratio(300, 0.9, 3000, 0.09) == Fraction(10)
