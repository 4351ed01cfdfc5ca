"""The ledger's books per (strategy, symbol): two strategies in one symbol hold two positions whose net is what the
broker holds; a fill goes to its order's strategy; an exit closes only its strategy's quantity; a shared cap
(what the broker still holds) is shared out oldest first; a restart's replay of the same fills gives the same."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pipeline.core.models import Fill, OrderIntent, OrderKind, Side
from pipeline.positions.ledger import Ledger

T0 = datetime(2026, 11, 24, 16, 0, tzinfo=UTC)


def _intent(strategy: str, side: Side, qty: float, stop: float, kind: OrderKind = OrderKind.ENTRY) -> OrderIntent:
    coid = f"og-{kind}-{strategy}"
    return OrderIntent(coid, f"sig-{strategy}", "AAPL", side, qty, kind=kind, reduce_only=kind is OrderKind.EXIT,
                       ticker="AAPL", stop_loss=stop, strategy=strategy, reference_price=100.0)


def _fill(intent: OrderIntent, price: float, minutes: int) -> Fill:
    return Fill(f"f-{intent.client_order_id}", intent.client_order_id, intent.symbol, intent.side, intent.quantity,
                price, T0 + timedelta(minutes=minutes), "paper")


def _book(fills: list[tuple[OrderIntent, Fill]]) -> tuple[Ledger, list]:
    ledger, trips = Ledger(cash=100_000.0), []
    for intent, fill in fills:
        trips.append(ledger.apply_fill(fill, intent, str(intent.exit_type)))
    return ledger, trips


def test_two_strategies_hold_their_own_positions_and_an_exit_closes_only_its_own() -> None:
    alpha, beta = _intent("alpha", Side.BUY, 40, 98.0), _intent("beta", Side.BUY, 25, 95.0)
    alpha_exit = _intent("alpha", Side.SELL, 40, 98.0, OrderKind.EXIT)
    fills = [(alpha, _fill(alpha, 100.0, 0)), (beta, _fill(beta, 102.0, 1)), (alpha_exit, _fill(alpha_exit, 104.0, 2))]
    ledger, _ = _book(fills[:2])
    a, b = ledger.position("AAPL", "alpha"), ledger.position("AAPL", "beta")
    assert (a.shares, a.entry_price, a.stop_loss) == (40, 100.0, 98.0)  # each its own entry and stop
    assert (b.shares, b.entry_price, b.stop_loss) == (25, 102.0, 95.0)
    assert ledger.net("AAPL") == 65 and ledger.signed_quantities() == {"AAPL": 65} and ledger.count() == 2
    assert [p.strategy for p in ledger.positions_in("AAPL")] == ["alpha", "beta"]
    trip = ledger.apply_fill(fills[2][1], alpha_exit, "stop_loss")
    assert trip is not None and trip.quantity == 40 and trip.pnl == 40 * 4.0 and trip.position.strategy == "alpha"
    assert ledger.position("AAPL", "alpha") is None and ledger.position("AAPL", "beta") is b and b.shares == 25
    assert ledger.net("AAPL") == 25 and ledger.holds("AAPL")
    again, _ = _book(fills)  # the restart's replay of the journal's fills
    held = {k: (h.quantity, h.position.entry_price) for k, h in again.holdings.items()}
    assert held == {("beta", "AAPL"): (25, 102.0)}
    assert again.cash == ledger.cash and again.realized_pnl == ledger.realized_pnl


def test_a_shared_cap_is_shared_out_oldest_first_and_a_net_resize_goes_to_the_newest() -> None:
    alpha, beta = _intent("alpha", Side.BUY, 40, 98.0), _intent("beta", Side.BUY, 25, 95.0)
    ledger, _ = _book([(alpha, _fill(alpha, 100.0, 0)), (beta, _fill(beta, 100.0, 1))])
    a, b = ledger.position("AAPL", "alpha"), ledger.position("AAPL", "beta")
    assert (ledger.share_of(a, 65), ledger.share_of(b, 65)) == (40, 25)
    assert (ledger.share_of(a, 50), ledger.share_of(b, 50)) == (40, 10)  # never more than 50 in all
    assert (ledger.share_of(a, 30), ledger.share_of(b, 30)) == (30, 0)
    assert ledger.resize("AAPL", 60) and (a.shares, b.shares) == (40, 20)  # the broker holds 60: beta's 5 are gone
    assert not ledger.resize("AAPL", 30)  # beta cannot go below nothing: the caller adopts the broker's instead
    assert not ledger.resize("AAPL", -10)  # the other side
    ledger.drop("AAPL")
    assert not ledger.holds("AAPL") and ledger.holdings == {} and ledger.net("AAPL") == 0


def test_a_step_of_marks_is_mark_per_bar() -> None:
    """mark_many (a replay step) marks what mark() per bar marks: every held position in the step's symbols, the
    last prices of all of them, nothing else; a symbol twice in one step marks its positions with its first
    price, as before."""
    alpha, beta = _intent("alpha", Side.BUY, 40, 98.0), _intent("beta", Side.BUY, 25, 95.0)
    stepped, _ = _book([(alpha, _fill(alpha, 100.0, 0)), (beta, _fill(beta, 102.0, 1))])
    per_bar, _ = _book([(alpha, _fill(alpha, 100.0, 0)), (beta, _fill(beta, 102.0, 1))])
    for symbols, prices in ((("MSFT", "AAPL", "GOOG"), [310.0, 101.5, 140.0]), (("MSFT",), [311.0]),
                            (("AAPL", "MSFT", "AAPL"), [103.0, 312.0, 99.0])):
        stepped.mark_many(symbols, prices)
        seen = set()
        for symbol, price in zip(symbols, prices, strict=True):
            if symbol not in seen:  # the first price of a symbol marks its positions
                per_bar.mark(symbol, price)
                seen.add(symbol)
        per_bar.last_prices.update(zip(symbols, prices, strict=True))
        assert [p.current_price for p in stepped.positions()] == [p.current_price for p in per_bar.positions()]
        assert stepped.last_prices == per_bar.last_prices
    assert [p.current_price for p in stepped.positions()] == [103.0, 103.0]
