"""Smart order routing: score venues, pick the cheapest likely fill, split large orders into TWAP slices.

Pure logic, no I/O: `SmartRouter.route()` returns a `RoutingDecision` carrying everything the caller journals
(the chosen venue, every venue's score, the child orders). Time comes from the injected Clock.

- `RouteScorer.score(venues, order)`: per venue, the fill probability is the posterior mean of a Beta prior
  updated with the venue's recorded fills (filled / submitted); the cost is the commission model plus the
  half-spread on the order's notional; the latency is the venue's. `total` = weighted fill probability minus
  weighted normalised cost (bps of notional) minus weighted normalised latency. Higher is better.
- `CostOptimizer.optimize(scores)`: the best route (highest total; ties: lower cost, lower latency,
  then the venues' given order — the daemon gives the primary first, so equal venues keep the primary).
- `SmartRouter.split_order(order)`: orders above `split_notional_threshold` become `slices` children with whole
  quantities that sum exactly to the parent's, ids derived from the parent's (`<parent>-c<i>`, at most 48
  characters), `parent_id` set and `created_at` = now + i * `slice_interval_seconds` (the slice's schedule).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from config.settings import SmartRouterSettings
from pipeline.core.clock import Clock
from pipeline.core.digest import sha256_hex
from pipeline.core.models import OrderIntent

MAX_CLIENT_ORDER_ID_LEN = 48


@dataclass(frozen=True, slots=True)
class CommissionModel:
    """Per-share commission with a per-order minimum and an optional cap as a fraction of notional (IB style)."""

    per_share: float = 0.005
    minimum: float = 1.0
    max_fraction_of_notional: float | None = 0.01

    def __post_init__(self) -> None:
        for name in ("per_share", "minimum"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name}: must be a finite non-negative number, got {value!r}")

    def cost(self, quantity: float, notional: float) -> float:
        """Commission in dollars for an order of `quantity` shares (or contracts) worth `notional`."""
        commission = max(self.minimum, self.per_share * abs(quantity))
        if self.max_fraction_of_notional is not None and notional > 0:
            commission = min(commission, max(self.minimum, self.max_fraction_of_notional * notional))
        return commission


@dataclass(slots=True)
class Venue:
    """A place to send orders, with its cost model, latency and recorded fill history."""

    name: str
    commission: CommissionModel = field(default_factory=CommissionModel)
    half_spread_bps: float = 1.0
    latency_ms: float = 50.0
    submitted: int = 0
    filled: int = 0

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("name: a venue needs a name")
        if not math.isfinite(self.half_spread_bps) or self.half_spread_bps < 0:
            raise ValueError(f"half_spread_bps: must be >= 0, got {self.half_spread_bps!r}")
        if not math.isfinite(self.latency_ms) or self.latency_ms < 0:
            raise ValueError(f"latency_ms: must be >= 0, got {self.latency_ms!r}")
        if self.submitted < 0 or not 0 <= self.filled <= self.submitted:
            raise ValueError(f"filled: must be between 0 and submitted ({self.submitted}), got {self.filled}")

    def record(self, *, filled: bool) -> None:
        """One more order sent here, and whether it filled."""
        self.submitted += 1
        if filled:
            self.filled += 1


@dataclass(frozen=True, slots=True)
class ScoringWeights:
    """How fill probability, cost and latency trade off, and the Beta prior on fill probability."""

    fill_probability: float = 1.0
    cost: float = 1.0
    latency: float = 0.1
    prior_fills: float = 1.0          # Beta alpha
    prior_misses: float = 1.0         # Beta beta
    cost_scale_bps: float = 10.0      # a cost of this many bps of notional weighs `cost` points
    latency_scale_ms: float = 100.0   # a latency of this many ms weighs `latency` points

    def __post_init__(self) -> None:
        for name in ("fill_probability", "cost", "latency"):
            if not math.isfinite(getattr(self, name)) or getattr(self, name) < 0:
                raise ValueError(f"{name}: weight must be a finite non-negative number")
        for name in ("prior_fills", "prior_misses", "cost_scale_bps", "latency_scale_ms"):
            if not math.isfinite(getattr(self, name)) or getattr(self, name) <= 0:
                raise ValueError(f"{name}: must be a finite positive number")


@dataclass(frozen=True, slots=True)
class VenueScore:
    """One venue's score for one order."""

    venue: str
    fill_probability: float
    cost: float        # dollars: commission + half-spread on notional
    latency: float     # milliseconds
    total: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "venue": self.venue, "fill_probability": round(self.fill_probability, 6), "cost": round(self.cost, 6),
            "latency": self.latency, "total": round(self.total, 6),
        }


class RouteScorer:
    """Scores venues for an order (see the module docstring for the formula)."""

    def __init__(self, weights: ScoringWeights | None = None) -> None:
        self.weights = weights or ScoringWeights()

    def fill_probability(self, venue: Venue) -> float:
        """Posterior mean of Beta(prior_fills + filled, prior_misses + submitted - filled)."""
        w = self.weights
        return (w.prior_fills + venue.filled) / (w.prior_fills + w.prior_misses + venue.submitted)

    @staticmethod
    def cost(venue: Venue, order: OrderIntent) -> float:
        notional = order.notional
        return venue.commission.cost(order.quantity, notional) + venue.half_spread_bps / 10_000.0 * notional

    def score_one(self, venue: Venue, order: OrderIntent) -> VenueScore:
        w = self.weights
        probability = self.fill_probability(venue)
        cost = self.cost(venue, order)
        notional = order.notional
        cost_bps = cost / notional * 10_000.0 if notional > 0 else 0.0
        total = (
            w.fill_probability * probability
            - w.cost * cost_bps / w.cost_scale_bps
            - w.latency * venue.latency_ms / w.latency_scale_ms
        )
        return VenueScore(venue.name, probability, cost, venue.latency_ms, total)

    def score(self, venues: Iterable[Venue], order: OrderIntent) -> list[VenueScore]:
        """Every venue's score, best first."""
        scores = [self.score_one(v, order) for v in venues]
        return sorted(scores, key=_rank_key)  # stable: full ties keep the venues' given order (primary first)


def _rank_key(score: VenueScore) -> tuple[float, float, float]:
    """Best first: higher total, then lower cost, then lower latency; never the name (a tie keeps the given
    order, so two identical venues leave an entry at the primary instead of the alphabetically first)."""
    return (-score.total, score.cost, score.latency)


class CostOptimizer:
    """Picks the best route; venues below `min_fill_probability` are used only when no venue reaches it."""

    def __init__(self, min_fill_probability: float = 0.0) -> None:
        if not 0 <= min_fill_probability <= 1:
            raise ValueError(f"min_fill_probability: must be within 0..1, got {min_fill_probability!r}")
        self.min_fill_probability = min_fill_probability

    def optimize(self, routes: Sequence[VenueScore]) -> VenueScore:
        if not routes:
            raise ValueError("routes: nothing to choose from")
        eligible = [r for r in routes if r.fill_probability >= self.min_fill_probability] or list(routes)
        return min(eligible, key=_rank_key)


@dataclass(slots=True)
class RoutingDecision:
    """Where an order goes and why: the caller journals `as_dict()` and sends `children` (or the order itself)."""

    venue: str
    scores: list[VenueScore]
    children: list[OrderIntent]
    parent_client_order_id: str = ""
    reason: str = ""
    decided_at: datetime | None = None

    @property
    def is_split(self) -> bool:
        return len(self.children) > 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "venue": self.venue,
            "parent_client_order_id": self.parent_client_order_id,
            "reason": self.reason,
            "decided_at": self.decided_at.isoformat() if self.decided_at else None,
            "scores": [s.as_dict() for s in self.scores],
            "children": [
                {"client_order_id": c.client_order_id, "quantity": c.quantity,
                 "scheduled_at": c.created_at.isoformat() if c.created_at else None}
                for c in self.children
            ],
        }


def child_client_order_id(parent_id: str, index: int) -> str:
    """`<parent>-c<index>`; when that exceeds 48 characters the parent part is shortened with a hash of it."""
    suffix = f"-c{index}"
    candidate = parent_id + suffix
    if len(candidate) <= MAX_CLIENT_ORDER_ID_LEN:
        return candidate
    digest = sha256_hex(parent_id.encode())[:10]
    keep = MAX_CLIENT_ORDER_ID_LEN - len(suffix) - len(digest) - 1
    return f"{parent_id[:keep]}-{digest}{suffix}"


def split_quantities(quantity: int, slices: int) -> list[int]:
    """`slices` whole quantities (the first ones larger by one when it does not divide) summing to `quantity`."""
    if quantity < 0 or slices < 1:
        raise ValueError(f"quantity / slices: need quantity >= 0 and slices >= 1, got {quantity}, {slices}")
    base, remainder = divmod(quantity, slices)
    return [base + (1 if i < remainder else 0) for i in range(slices)]


class SmartRouter:
    """Chooses a venue for each order and splits large orders into TWAP child slices."""

    def __init__(
        self,
        settings: SmartRouterSettings,
        venues: Sequence[Venue],
        clock: Clock,
        *,
        scorer: RouteScorer | None = None,
        optimizer: CostOptimizer | None = None,
    ) -> None:
        if not venues:
            raise ValueError("venues: the smart router needs at least one venue")
        names = [v.name for v in venues]
        if len(set(names)) != len(names):
            raise ValueError(f"venues: names must be unique, got {names}")
        self.settings = settings
        self.venues = {v.name: v for v in venues}
        self.clock = clock
        self.scorer = scorer or RouteScorer()
        self.optimizer = optimizer or CostOptimizer()

    @property
    def enabled(self) -> bool:
        return self.settings.enabled

    def record_result(self, venue: str, *, filled: bool) -> None:
        """Feed the fill history: one order sent to `venue`, filled or not."""
        if venue not in self.venues:
            raise KeyError(f"venue: unknown {venue!r}; known: {', '.join(self.venues)}")
        self.venues[venue].record(filled=filled)

    def route(self, order: OrderIntent) -> RoutingDecision:
        """The venue for `order` (a forced `order.broker` wins), the scores, and the child orders to send."""
        now = self.clock.now()
        if not self.settings.enabled:
            venue = order.broker or next(iter(self.venues))
            return RoutingDecision(venue, [], [order], order.client_order_id, "smart routing disabled", now)
        scores = self.scorer.score(self.venues.values(), order)
        children = self.split_order(order)
        split_note = f"; split into {len(children)} slices" if len(children) > 1 else ""
        if order.broker:
            return RoutingDecision(order.broker, scores, children, order.client_order_id,
                                   f"forced to {order.broker}{split_note}", now)
        best = self.optimizer.optimize(scores)
        reason = f"best total {best.total:.4f} (fill p {best.fill_probability:.3f}, cost ${best.cost:.2f}){split_note}"
        return RoutingDecision(best.venue, scores, children, order.client_order_id, reason, now)

    def split_order(self, order: OrderIntent) -> list[OrderIntent]:
        """TWAP children when the order's notional exceeds the threshold; otherwise [order]."""
        qty = order.quantity
        if (
            order.notional <= self.settings.split_notional_threshold
            or self.settings.slices < 2
            or qty != math.floor(qty)
            or qty < 2
        ):
            return [order]
        quantities = split_quantities(int(qty), min(self.settings.slices, int(qty)))
        start = self.clock.now()
        interval = timedelta(seconds=self.settings.slice_interval_seconds)
        return [
            dataclasses.replace(
                order,
                client_order_id=child_client_order_id(order.client_order_id, i),
                parent_id=order.client_order_id,
                quantity=float(q),
                created_at=start + i * interval,
            )
            for i, q in enumerate(quantities)
        ]
