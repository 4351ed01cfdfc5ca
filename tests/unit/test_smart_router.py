"""SmartRouter, RouteScorer and CostOptimizer: venue scores from fill histories, TWAP splitting."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from config.settings import SmartRouterSettings
from pipeline.core.clock import SimulatedClock
from pipeline.core.models import OrderIntent, Side
from pipeline.execution.smart_router import (
    CommissionModel,
    CostOptimizer,
    RouteScorer,
    ScoringWeights,
    SmartRouter,
    Venue,
    VenueScore,
    child_client_order_id,
    split_quantities,
)

START = datetime(2026, 1, 5, 15, 0, tzinfo=UTC)


def order(qty: float = 100, price: float = 100.0, cid: str = "og-entry-abc", **kw) -> OrderIntent:  # type: ignore[no-untyped-def]
    return OrderIntent(client_order_id=cid, signal_id="sig-1", symbol="AAPL", side=Side.BUY, quantity=qty,
                       reference_price=price, **kw)


def fixture_venues() -> list[Venue]:
    """good: fills well and is cheap; slow: fills well but slow; poor: rarely fills; pricey: wide spread."""
    return [
        Venue("poor", CommissionModel(0.005, 1.0), half_spread_bps=1.0, latency_ms=20, submitted=50, filled=10),
        Venue("good", CommissionModel(0.003, 0.5), half_spread_bps=1.0, latency_ms=20, submitted=50, filled=48),
        Venue("pricey", CommissionModel(0.005, 1.0), half_spread_bps=15.0, latency_ms=20, submitted=50, filled=48),
        Venue("slow", CommissionModel(0.003, 0.5), half_spread_bps=1.0, latency_ms=900, submitted=50, filled=48),
    ]


def router(**settings) -> tuple[SmartRouter, SimulatedClock]:  # type: ignore[no-untyped-def]
    clock = SimulatedClock(START)
    config = SmartRouterSettings(enabled=True, **settings)
    return SmartRouter(config, fixture_venues(), clock), clock


def test_fill_probability_uses_beta_prior() -> None:
    scorer = RouteScorer(ScoringWeights(prior_fills=1, prior_misses=1))
    assert scorer.fill_probability(Venue("new")) == pytest.approx(0.5)          # no history: the prior
    assert scorer.fill_probability(Venue("v", submitted=8, filled=8)) == pytest.approx(9 / 10)
    assert scorer.fill_probability(Venue("v", submitted=8, filled=0)) == pytest.approx(1 / 10)


def test_cost_is_commission_plus_half_spread_on_notional() -> None:
    venue = Venue("v", CommissionModel(per_share=0.005, minimum=1.0, max_fraction_of_notional=None),
                  half_spread_bps=2.0)
    big = order(qty=1000, price=50.0)  # notional 50,000
    assert RouteScorer.cost(venue, big) == pytest.approx(5.0 + 10.0)
    small = order(qty=10, price=50.0)  # commission floor applies
    assert RouteScorer.cost(venue, small) == pytest.approx(1.0 + 0.1)


def test_scores_for_a_fixture_of_venue_histories() -> None:
    scores = RouteScorer().score(fixture_venues(), order(qty=200, price=100.0))
    by_name = {s.venue: s for s in scores}
    assert scores[0].venue == "good"
    assert by_name["good"].fill_probability == pytest.approx(49 / 52)
    assert by_name["poor"].fill_probability == pytest.approx(11 / 52)
    assert by_name["good"].cost == pytest.approx(0.6 + 2.0)     # 200 * 0.003 + 1 bp of 20,000
    assert by_name["pricey"].cost == pytest.approx(1.0 + 30.0)
    # better fills beat worse fills at equal cost / latency; lower cost beats higher; lower latency beats higher
    assert by_name["good"].total > by_name["poor"].total
    assert by_name["good"].total > by_name["pricey"].total
    assert by_name["good"].total > by_name["slow"].total
    assert [s.total for s in scores] == sorted((s.total for s in scores), reverse=True)


def test_weights_change_the_ranking() -> None:
    latency_blind = RouteScorer(ScoringWeights(latency=0.0))
    scores = latency_blind.score([v for v in fixture_venues() if v.name in ("good", "slow")], order())
    assert scores[0].total == pytest.approx(scores[1].total)
    fills_only = RouteScorer(ScoringWeights(cost=0.0, latency=0.0))
    best = fills_only.score(fixture_venues(), order())
    assert best[-1].venue == "poor"


def test_cost_optimizer_picks_best_and_respects_minimum_fill_probability() -> None:
    routes = [VenueScore("a", 0.2, 1.0, 10, 0.5), VenueScore("b", 0.9, 2.0, 10, 0.4),
              VenueScore("c", 0.9, 1.5, 10, 0.4)]
    assert CostOptimizer().optimize(routes).venue == "a"
    assert CostOptimizer(min_fill_probability=0.5).optimize(routes).venue == "c"   # tie on total: lower cost
    assert CostOptimizer(min_fill_probability=0.99).optimize(routes).venue == "a"  # none eligible: all are
    with pytest.raises(ValueError, match="routes"):
        CostOptimizer().optimize([])


def test_route_picks_the_venue_with_better_fills_and_lower_cost() -> None:
    smart, _ = router()
    decision = smart.route(order(qty=100, price=100.0))
    assert decision.venue == "good"
    assert decision.scores[0].venue == "good" and len(decision.scores) == 4
    assert decision.children == [order(qty=100, price=100.0)] and not decision.is_split
    journal = decision.as_dict()
    assert journal["venue"] == "good" and len(journal["scores"]) == 4 and journal["decided_at"] == START.isoformat()


def test_recorded_history_moves_the_choice() -> None:
    smart, _ = router()
    assert smart.route(order()).venue == "good"
    for _ in range(200):
        smart.record_result("good", filled=False)
        smart.record_result("poor", filled=True)
    assert smart.venues["good"].submitted == 250 and smart.venues["poor"].filled == 210
    assert smart.route(order()).venue == "poor"
    with pytest.raises(KeyError, match="venue"):
        smart.record_result("nowhere", filled=True)


def test_forced_broker_wins() -> None:
    smart, _ = router()
    decision = smart.route(order(broker="poor"))
    assert decision.venue == "poor" and "forced" in decision.reason and decision.scores


def test_large_order_is_split_into_twap_children() -> None:
    smart, _ = router(split_notional_threshold=50_000, slices=4, slice_interval_seconds=30)
    parent = order(qty=1003, price=100.0)  # notional 100,300 > 50,000
    decision = smart.route(parent)
    children = decision.children
    assert decision.is_split and len(children) == 4
    assert sum(c.quantity for c in children) == parent.quantity
    assert all(c.quantity == int(c.quantity) for c in children)
    assert [c.quantity for c in children] == [251, 251, 251, 250]
    assert [c.client_order_id for c in children] == [f"og-entry-abc-c{i}" for i in range(4)]
    assert all(c.parent_id == "og-entry-abc" for c in children)
    assert [c.created_at for c in children] == [START + timedelta(seconds=30 * i) for i in range(4)]
    assert all(c.symbol == parent.symbol and c.side == parent.side and c.signal_id == parent.signal_id
               for c in children)
    assert parent.quantity == 1003 and parent.parent_id is None  # the parent is untouched
    # deterministic: the same parent gives the same children
    again = smart.split_order(parent)
    assert [(c.client_order_id, c.quantity, c.created_at) for c in again] == [
        (c.client_order_id, c.quantity, c.created_at) for c in children]


def test_small_order_is_not_split() -> None:
    smart, _ = router(split_notional_threshold=50_000, slices=5)
    small = order(qty=100, price=100.0)   # 10,000
    assert smart.split_order(small) == [small]
    assert smart.split_order(order(qty=2.5, price=100_000.0)) == [order(qty=2.5, price=100_000.0)]  # fractional


def test_child_ids_fit_48_characters_and_stay_unique() -> None:
    parent = "x" * 47
    ids = [child_client_order_id(parent, i) for i in range(12)]
    assert all(len(i) <= 48 for i in ids) and len(set(ids)) == 12
    assert ids == [child_client_order_id(parent, i) for i in range(12)]
    assert child_client_order_id("short", 3) == "short-c3"


def test_split_quantities_sum_exactly() -> None:
    for qty in (2, 7, 10, 999, 1001):
        for slices in (1, 2, 3, 7):
            parts = split_quantities(qty, slices)
            assert sum(parts) == qty and len(parts) == slices and max(parts) - min(parts) <= 1


def test_disabled_router_passes_the_order_through() -> None:
    clock = SimulatedClock(START)
    smart = SmartRouter(SmartRouterSettings(enabled=False), fixture_venues(), clock)
    big = order(qty=10_000, price=100.0)
    decision = smart.route(big)
    assert decision.children == [big] and decision.venue == "poor" and decision.scores == []


def test_bad_configuration_names_the_field() -> None:
    with pytest.raises(ValueError, match="venues"):
        SmartRouter(SmartRouterSettings(), [], SimulatedClock(START))
    with pytest.raises(ValueError, match="filled"):
        Venue("v", submitted=1, filled=2)
    with pytest.raises(ValueError, match="half_spread_bps"):
        Venue("v", half_spread_bps=-1)
