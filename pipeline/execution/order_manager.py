"""OrderManager and SmartOrderRouter: the spec's execution-module names, thin over OrderRouter / SmartRouter.

Neither holds order state of its own: `OrderRouter` is the one place that submits (idempotent client order ids,
retries, primary -> fallback), `SmartRouter` the one place that scores venues and splits orders.

    manager = OrderManager(router)            # router: an OrderRouter
    result = await manager.submit(intent)     # one intent, through the router's safe submission
    await manager.cancel(intent.client_order_id)

    smart = SmartOrderRouter(smart_router, router)
    decision = smart.route(intent)            # venue, every venue's score, the child slices
    task = smart.send(intent)                 # routed and dispatched (the router's smart path)
"""

from __future__ import annotations

import asyncio
import dataclasses

from pipeline.core.models import OrderIntent, OrderKind, OrderResult
from pipeline.execution.order_router import OrderRouter
from pipeline.execution.smart_router import RoutingDecision, SmartRouter


class OrderManager:
    """Submit, dispatch and cancel orders through an `OrderRouter` (the spec's OrderManager)."""

    def __init__(self, router: OrderRouter) -> None:
        self.router = router

    async def submit(self, order: OrderIntent) -> OrderResult:
        """Send one order and wait for the broker's answer (retries and fallback as the router does them)."""
        return await self.router.submit(order)

    def dispatch(self, order: OrderIntent) -> asyncio.Task[OrderResult]:
        """Send one order in a task of its own; the router reports the result to its `on_result`."""
        return self.router.dispatch(order)

    async def cancel(self, order_id: str, broker: str | None = None) -> None:
        """Cancel by client order id at the broker it went to (or `broker`)."""
        await self.router.cancel(order_id, broker)

    def in_flight(self) -> int:
        """Orders being submitted now."""
        return self.router.in_flight()


class SmartOrderRouter:
    """Multi-venue routing (the spec's SmartOrderRouter): SmartRouter's decision, OrderRouter's submission."""

    def __init__(self, smart: SmartRouter, router: OrderRouter | None = None) -> None:
        self.smart = smart
        self.router = router
        if router is not None and router.smart is None:
            router.smart = smart  # the router's dispatch then scores and splits entries itself

    def route(self, order: OrderIntent) -> RoutingDecision:
        """Where `order` should go, with every venue's score and the TWAP child orders (no I/O)."""
        return self.smart.route(order)

    def send(self, order: OrderIntent) -> asyncio.Task[OrderResult]:
        """Route and dispatch `order`: entries through the router's smart path, others to the chosen venue."""
        if self.router is None:
            raise RuntimeError("router: SmartOrderRouter.send needs an OrderRouter")
        if order.kind is not OrderKind.ENTRY and not order.broker:
            order = dataclasses.replace(order, broker=self.route(order).venue)
        return self.router.dispatch(order)

    def record_result(self, venue: str, *, filled: bool) -> None:
        """Teach the venue scores an outcome (the router does this itself for the orders it sends)."""
        self.smart.record_result(venue, filled=filled)
