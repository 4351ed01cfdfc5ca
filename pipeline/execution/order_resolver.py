"""OrderResolver: what became of every order not final, asked of its broker by client order id.

No order is left in limbo (DESIGN invariant 11): at start (until every broker has answered), after a reconnect and
on a timer, each order the daemon still holds open is looked up by its client order id (never by a time window,
so a skewed clock cannot hide it). A broker that can catch up (`resolve_order`) emits the fills and status
changes it finds through its event handler; the caller applies the rest.

An order its broker has never heard of — not found on `lookups_required` lookups, the first at least
`never_reached_after` seconds before the last — is `never_reached`: the caller frees its reservation, alerts,
and resends an exit. An order its broker once acknowledged is never `never_reached` (only MISSING, alerted).
The bound is measured on a monotonic clock: it waits for the broker's own consistency (wall time), not for
market time, which a replay's simulated clock may race through or stop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from pipeline.core.clock import Clock, monotonic
from pipeline.core.models import OrderIntent, OrderKind, OrderResult
from pipeline.core.ports import Broker, BrokerError, ResolvesOrders
from pipeline.execution.order_record import OrderBook, OrderRecord


class Verdict(StrEnum):
    """The outcome of one lookup."""

    FOUND = "found"                  # the broker holds it (its events, if any were missed, are on their way)
    MISSING = "missing"              # not found, not long enough to say it never got there
    NEVER_REACHED = "never_reached"  # not found, for long enough: it never reached the broker
    UNANSWERED = "unanswered"        # the broker could not be asked (down, 5xx, timeout): ask again


@dataclass(slots=True)
class OpenOrder:
    """One order not final, as the resolver sees it."""

    intent: OrderIntent
    broker: str
    acknowledged: bool = False  # the broker answered for it in this process (a status or a fill)


@dataclass(slots=True)
class Resolution:
    """What one lookup found."""

    order: OpenOrder
    verdict: Verdict
    result: OrderResult | None = None
    error: str | None = None

    @property
    def client_order_id(self) -> str:
        return self.order.intent.client_order_id


class OrderResolver:
    """Looks up orders by client order id and keeps count, on each order's record, of the lookups that did not
    find it (and when its broker last reported holding it)."""

    def __init__(
        self,
        brokers: Mapping[str, Broker],
        *,
        never_reached_after: float,
        timeout: float,
        lookups_required: int = 2,
        recheck_acknowledged_after: float = 60.0,
        now: Callable[[], float] = monotonic,
        book: OrderBook | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.brokers = brokers
        self.never_reached_after = never_reached_after
        self.timeout = timeout
        self.lookups_required = lookups_required
        self.recheck_acknowledged_after = recheck_acknowledged_after
        self.now = now
        self.book = book if book is not None else OrderBook()  # the order records (the daemon's own book)
        self.clock = clock  # the daemon's: how old an order an earlier process made is

    def due(self, orders: Iterable[OpenOrder]) -> list[OpenOrder]:
        """The orders to look up now: every one the broker has not answered for in this process, and the
        acknowledged ones not looked up for `recheck_acknowledged_after` seconds (bounded REST use)."""
        now = self.now()
        out = []
        for order in orders:
            record = self.book.get(order.intent.client_order_id)
            last = record.found_at if record is not None else None
            if order.acknowledged and last is not None and now - last < self.recheck_acknowledged_after:
                continue
            out.append(order)
        return out

    async def resolve(self, orders: Iterable[OpenOrder]) -> list[Resolution]:
        """Look each order up once (exits first); returns one resolution per order.

        A broker that fails to answer is not asked about its other orders in the same pass (they are
        UNANSWERED too), so one hung broker costs a pass at most one timeout, not one per order."""
        ordered = sorted(orders, key=lambda o: o.intent.kind is OrderKind.ENTRY)
        silent: dict[str, str] = {}
        out = []
        for order in ordered:
            if order.broker in silent:
                out.append(Resolution(order, Verdict.UNANSWERED, error=silent[order.broker]))
                continue
            resolution = await self._resolve_one(order)
            if resolution.verdict == Verdict.UNANSWERED:
                silent[order.broker] = resolution.error or "no answer"
            out.append(resolution)
        return out

    async def resolve_until_answered(
        self, orders: Iterable[OpenOrder], *, backoff: tuple[float, float] = (0.5, 30.0),
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        on_retry: Callable[[list[Resolution], float], None] | None = None,
        stop: Callable[[], bool] = lambda: False,
    ) -> list[Resolution]:
        """Look every order up, asking again with exponential backoff while its broker cannot answer.

        Returns early (the unanswered ones included, as such) only when `stop()` says the process is stopping."""
        waiting = list(orders)
        answered: list[Resolution] = []
        delay = backoff[0]
        while True:
            unanswered = []
            for resolution in await self.resolve(waiting):
                (unanswered if resolution.verdict == Verdict.UNANSWERED else answered).append(resolution)
            if not unanswered or stop():
                return answered + unanswered
            if on_retry is not None:
                on_retry(unanswered, delay)
            slept = 0.0
            while slept < delay and not stop():  # a stop request is seen within a quarter second
                step = min(0.25, delay - slept)
                await sleep(step)
                slept += step
            delay = min(backoff[1], delay * 2)
            waiting = [r.order for r in unanswered]

    def forget(self, client_order_id: str) -> None:
        """The order is final: drop its lookup bookkeeping."""
        record = self.book.get(client_order_id)
        if record is not None:
            record.lookup_misses, record.first_miss_at, record.found_at = 0, None, None

    def misses(self, client_order_id: str) -> int:
        """How many lookups in a row did not find this order."""
        record = self.book.get(client_order_id)
        return record.lookup_misses if record is not None else 0

    def _made_long_ago_by_an_earlier_life(self, record: OrderRecord) -> bool:
        """The intent was made before this process started and at least `never_reached_after` ago on the daemon's
        clock. Its journal row came before any send, and the process that could send it is gone, so a broker that
        still does not know it never got it. The misses counted in this process's memory start again at every
        restart: without this rule, a daemon restarted more often than never_reached_after kept such an order
        pending for ever."""
        made = record.intent.created_at
        if self.clock is None or not record.recovered or made is None:
            return False
        return (self.clock.now() - made).total_seconds() >= self.never_reached_after

    async def _resolve_one(self, order: OpenOrder) -> Resolution:
        broker = self.brokers.get(order.broker)
        if broker is None:
            return Resolution(order, Verdict.UNANSWERED, error=f"unknown broker {order.broker!r}")
        if not broker.is_connected():
            return Resolution(order, Verdict.UNANSWERED, error=f"{order.broker} is not connected")
        coid = order.intent.client_order_id
        lookup = broker.resolve_order if isinstance(broker, ResolvesOrders) else broker.get_order_by_client_id
        try:
            async with asyncio.timeout(self.timeout):
                result = await lookup(coid)
        except TimeoutError:
            return Resolution(order, Verdict.UNANSWERED, error=f"no answer from {order.broker} within {self.timeout}s")
        except BrokerError as exc:
            return Resolution(order, Verdict.UNANSWERED, error=str(exc))
        now = self.now()
        record = self.book.add(order.intent)
        if result is not None:
            record.lookup_misses, record.first_miss_at, record.found_at = 0, None, now
            return Resolution(order, Verdict.FOUND, result)
        if record.first_miss_at is None:
            record.first_miss_at = now
        record.lookup_misses += 1
        if order.acknowledged:
            return Resolution(order, Verdict.MISSING)  # the broker answered for it once: it did reach it
        if self._made_long_ago_by_an_earlier_life(record):
            while record.lookup_misses < self.lookups_required:  # confirm at once: the count began this life
                try:
                    async with asyncio.timeout(self.timeout):
                        if await lookup(coid) is not None:
                            return Resolution(order, Verdict.MISSING)  # it showed up: judged on the next pass
                except (TimeoutError, BrokerError) as exc:
                    return Resolution(order, Verdict.UNANSWERED, error=str(exc) or type(exc).__name__)
                record.lookup_misses += 1
            self.forget(coid)
            return Resolution(order, Verdict.NEVER_REACHED)
        if record.lookup_misses >= self.lookups_required and now - record.first_miss_at >= self.never_reached_after:
            self.forget(coid)
            return Resolution(order, Verdict.NEVER_REACHED)
        return Resolution(order, Verdict.MISSING)
