"""OrderRouter: sends each order intent to exactly one broker, exactly once, with safe retries.

- The intent is journaled (with its deterministic client order id) before anything is sent.
- Retries use tenacity (exponential backoff with jitter, bounded attempts) and only on retryable errors:
  timeouts, connection errors, 429 (honouring its retry-after), 5xx. A rejection is final.
- After an ambiguous failure (a timeout after the request may have arrived) the router asks the broker for
  the client order id before any resend, so one intent never becomes two orders.
- Entries go to the primary broker; to the fallback only while the primary is down and nothing could have
  reached it (every failure was `BrokerUnavailable`): never to both. Exits go to the broker holding the
  position. Each broker has a health state with a circuit breaker.
- `dispatch()` runs one task per order, so a slow broker never blocks the next decision.
- An intent whose journal write fails is not sent; it stays working for the owner to dispatch again once the
  journal takes writes (`OrderLimbo.retry_unjournaled`), except an operator's entry (signal type manual): that
  one is withdrawn (cancelled, nothing sent), since the operator is answered at once that it was refused.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import structlog
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt

from config.settings import BrokerSettings, PipelineConfig
from pipeline.core.clock import Clock, monotonic
from pipeline.core.models import OrderIntent, OrderKind, OrderResult, OrderStatus, SignalType
from pipeline.core.ports import (
    AnswersInProcess,
    Broker,
    BrokerUnavailable,
    DuplicateClientOrderId,
    OrderRejected,
    RetryableBrokerError,
    SendRefused,
)
from pipeline.execution.order_record import OrderBook, OrderState, VenuesView
from pipeline.execution.smart_router import SmartRouter
from pipeline.record.journal import Journal
from pipeline.safety.kill_switch import KillSwitch

log = structlog.get_logger("ordergate.router")
ResultHandler = Callable[[OrderIntent, OrderResult], Awaitable[None]]
_Journaling = tuple[str, Awaitable[bool]]  # an intent's durable write under way: (its broker, the write)


class BrokerHealth:
    """connected / degraded / down, with a circuit breaker that lets a probe through after a cool-down."""

    CONNECTED, DEGRADED, DOWN = "connected", "degraded", "down"

    def __init__(self, name: str, down_after_failures: int = 3, reset_seconds: float = 30.0) -> None:
        self.name = name
        self.down_after_failures = down_after_failures
        self.reset_seconds = reset_seconds
        self.consecutive_failures = 0
        self._down_since: float | None = None
        self.last_error: str | None = None

    @property
    def state(self) -> str:
        if self._down_since is not None:
            return self.DOWN
        return self.DEGRADED if self.consecutive_failures else self.CONNECTED

    def record_success(self) -> None:
        self.consecutive_failures = 0
        self._down_since = None
        self.last_error = None

    def record_failure(self, error: str, *, unreachable: bool = False) -> None:
        self.consecutive_failures += 1
        self.last_error = error
        if unreachable or self.consecutive_failures >= self.down_after_failures:
            self._down_since = monotonic()

    def mark_down(self, error: str) -> None:
        self.last_error = error
        self._down_since = self._down_since or monotonic()

    def probe_failed(self, error: str) -> None:
        """A half-open probe failed: down again, for another cool-down from now."""
        self.last_error = error
        self._down_since = monotonic()

    def probe_due(self) -> bool:
        """Down, and its cool-down is over: one probe may find out whether it is back."""
        return self._down_since is not None and self.available()

    def available(self) -> bool:
        """False while the breaker is open; after the cool-down one attempt is let through (half-open)."""
        if self._down_since is None:
            return True
        return monotonic() - self._down_since >= self.reset_seconds

    def snapshot(self) -> dict[str, Any]:
        return {"state": self.state, "consecutive_failures": self.consecutive_failures, "last_error": self.last_error}


class _BackoffWait:
    """Exponential backoff with full jitter, never shorter than a 429's retry-after.

    `offset`: attempts made before tenacity took over (the first one is made without it), so the n-th wait of
    the whole submission is the same whether tenacity or the router made the attempt before it."""

    def __init__(self, base: float, maximum: float, offset: int = 0) -> None:
        self.base = base
        self.maximum = maximum
        self.offset = offset

    def __call__(self, state: RetryCallState) -> float:
        return self.delay(state.attempt_number + self.offset, state.outcome.exception() if state.outcome else None)

    def delay(self, attempt_number: int, exc: BaseException | None) -> float:
        """The wait after failed attempt `attempt_number` (1-based) of a submission that raised `exc`."""
        exp = min(self.maximum, self.base * (2 ** (attempt_number - 1)))
        delay = exp / 2 + random.uniform(0, exp / 2)
        if isinstance(exc, RetryableBrokerError) and exc.retry_after:
            delay = max(delay, min(exc.retry_after, self.maximum))
        return delay


class _NotJournaled(Exception):
    """The intent's journal write failed (nothing was sent)."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


class _IntentLog:
    """The router's logger bound to one intent's ids, bound only when something is logged (an order that goes
    out without a word costs no bound logger)."""

    __slots__ = ("intent",)

    def __init__(self, intent: OrderIntent) -> None:
        self.intent = intent

    def __getattr__(self, level: str) -> Any:
        return getattr(log.bind(signal_id=self.intent.signal_id, client_order_id=self.intent.client_order_id), level)


@dataclass(slots=True)
class _Attempts:
    """What happened across the attempts of one intent."""

    ambiguous: bool = False
    reached_broker: bool = False
    errors: list[str] = field(default_factory=list)


class OrderRouter:
    """Submits intents safely to the primary or fallback broker."""

    def __init__(
        self,
        brokers: dict[str, Broker],
        journal: Journal | None,
        clock: Clock,
        config: PipelineConfig,
        broker_settings: BrokerSettings,
        on_result: ResultHandler | None = None,
        kill_switch: KillSwitch | None = None,
        book: OrderBook | None = None,
        smart: SmartRouter | None = None,
    ) -> None:
        self.brokers = brokers
        self.book = book if book is not None else OrderBook()  # each order's record: its venue, sent or not
        self.kill_switch = kill_switch  # checked before every send and resend (entries only)
        self.journal = journal
        self.clock = clock
        self.config = config
        self.primary = broker_settings.primary
        self.fallback = broker_settings.fallback if broker_settings.fallback in brokers else None
        self.timeout = config.order_timeout_seconds
        self.health = {
            name: BrokerHealth(name, broker_settings.down_after_failures, broker_settings.breaker_reset_seconds)
            for name in brokers
        }
        self.on_result = on_result
        self._tasks: set[asyncio.Task[OrderResult]] = set()
        self.sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
        self.venues = VenuesView(self.book)  # client order id -> the broker it was sent to (for cancels)
        self.unstarted: set[str] = set()  # brokers whose connect() never succeeded: never routed to
        self.smart = smart  # venue scores and TWAP splits of entries ([smart_router] enabled)
        self._scheduled = 0
        self._parents = 0
        self._outcomes: set[str] = set()  # client order ids whose outcome the smart router has learnt
        self._in_process: dict[str, tuple[Broker, bool]] = {}  # broker name -> (that broker, an AnswersInProcess)

    def record_outcome(self, client_order_id: str, *, filled: bool) -> None:
        """An order reached a final state: teach the smart router's venue scores whether it filled.

        Only orders this router sent to a scored venue count, each once (a restart's re-release is ignored)."""
        smart = self.smart
        venue = self.venues.get(client_order_id)
        if smart is None or venue is None or venue not in smart.venues or client_order_id in self._outcomes:
            return
        self._outcomes.add(client_order_id)
        if len(self._outcomes) > 10_000:
            self._outcomes.clear()
        smart.record_result(venue, filled=filled)

    def send_results_to(self, handler: ResultHandler | None) -> None:
        """Every submission's result goes to `handler` from now on (the lifecycle: rejections the router decided,
        accepted orders, entries found final after a restart)."""
        self.on_result = handler

    # -- each broker's health as the router sees it ------------------------------------------------------
    def mark_unstarted(self, name: str, error: str) -> None:
        """`name`'s connect() failed at start-up: down, and never routed to (not even as a half-open probe: its
        event stream never started) until `started(name)`."""
        self.health[name].mark_down(error)
        self.unstarted.add(name)

    def started(self, name: str) -> None:
        """A broker down at start-up has connected: routed to again."""
        self.unstarted.discard(name)
        self.health[name].record_success()

    def unstarted_brokers(self) -> list[str]:
        """The brokers whose start-up connect has not succeeded yet, by name."""
        return sorted(self.unstarted)

    async def probe_down_brokers(self) -> list[str]:
        """Each started broker whose breaker is open past its cool-down is asked for its account (a call that sends
        nothing); an answer closes the breaker, so a broker that is back counts as up without waiting for the next
        order. Returns the brokers found back."""
        back = []
        for name, health in self.health.items():
            if name in self.unstarted or not health.probe_due():
                continue
            broker = self.brokers[name]
            try:
                async with asyncio.timeout(self.timeout):
                    await broker.get_account()
            except Exception as exc:  # any failure keeps it down; the error is kept in its health
                health.probe_failed(f"probe: {type(exc).__name__}: {str(exc)[:200]}")
                log.info("broker_probe_failed", broker=name, error=health.last_error)
                continue
            health.record_success()
            log.info("broker_recovered", broker=name)
            back.append(name)
        return back

    def broker_state(self, name: str) -> str:
        """up, degraded or down (the circuit breaker's view of `name`)."""
        return self.health[name].state

    def broker_health(self) -> dict[str, dict[str, Any]]:
        """Every broker's health snapshot (state, failures, last error), by name."""
        return {name: health.snapshot() for name, health in self.health.items()}

    # -- public ---------------------------------------------------------------------------------------
    def dispatch(self, intent: OrderIntent) -> asyncio.Task[OrderResult]:
        """Submit in a task of its own; the result goes to `on_result`.

        With the smart router on, an entry without a forced venue is first scored across the healthy venues (the
        decision journaled with its scores) and, above the split threshold, sent as TWAP child orders.
        """
        if self.smart is not None and self.smart.enabled and intent.kind is OrderKind.ENTRY and not intent.broker:
            intent, children = self._smart_route(intent)
            if len(children) > 1:
                self._split(intent, children)
                tasks = [self._spawn(self._submit_and_report(c, at=c.created_at), c) for c in children]
                return self._spawn(self._all_children(intent, tasks), intent)
        return self._spawn(self._submit_and_report(intent, journaling=self._start_journal(intent)), intent)

    def _start_journal(self, intent: OrderIntent) -> _Journaling | None:
        """Start the intent's durable write now, as the decision hands it over, so its commit runs while the
        order's task is scheduled (the task awaits it before anything is sent): (the broker it is journaled for,
        the write's awaitable)."""
        if self.journal is None:
            return None
        name = self.choose_broker(intent)
        self.book.add(intent)
        return name, self.journal.start_order_intent(intent, name, self.clock.now())

    def dispatch_after(
        self, intent: OrderIntent, prepare: Callable[[OrderIntent], Awaitable[OrderIntent | str]]
    ) -> asyncio.Task[OrderResult]:
        """Like `dispatch`, but `prepare(intent)` runs first in the order's task (a daemon exit releasing the
        position's protective stop): it returns the intent to send, or the reason nothing is sent (the order is
        then journaled as cancelled with that reason and reported to `on_result`)."""
        return self._spawn(self._prepared(intent, prepare), intent)

    def spawn(self, coro: Any, name: str) -> asyncio.Task[Any]:
        """Run order work that is not a submission (placing or moving a protective stop) as a task that
        `drain` and `in_flight` count like an order's."""
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _prepared(
        self, intent: OrderIntent, prepare: Callable[[OrderIntent], Awaitable[OrderIntent | str]]
    ) -> OrderResult:
        try:
            ready = await prepare(intent)
        except Exception as exc:  # never send an exit whose preparation failed half way
            log.exception("order_prepare_failed", signal_id=intent.signal_id, client_order_id=intent.client_order_id)
            ready = f"preparation failed: {exc!r}"
        if isinstance(ready, OrderIntent):
            return await self._submit_and_report(ready)
        result = OrderResult(intent.client_order_id, OrderStatus.CANCELED, self.choose_broker(intent),
                             reason=f"not sent: {ready}")
        log.info("order_not_sent", signal_id=intent.signal_id, client_order_id=intent.client_order_id, reason=ready)
        if self.journal is not None:
            await self.journal.record_order_intent(intent, result.broker, self.clock.now())
            await self._journal_result(intent, result)
        if self.on_result is not None:
            await self.on_result(intent, result)
        return result

    def _split(self, parent: OrderIntent, children: list[OrderIntent]) -> None:
        """The parent's reservation passes to its child orders, each an order of its own in the order record; the
        parent is never sent itself (replaced: nothing to resolve)."""
        now = self.clock.now()
        self.book.release(parent.client_order_id, now=now)
        self.book.transition(parent.client_order_id, OrderState.REPLACED)
        for child in children:
            self.book.reserve(child)
            self.book.touch(child.symbol, now)

    def _spawn(self, coro: Any, intent: OrderIntent) -> asyncio.Task[OrderResult]:
        # the running loop's own create_task (what asyncio.create_task calls, without its Python frame)
        task = asyncio.get_running_loop().create_task(coro, name=f"order-{intent.client_order_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _smart_route(self, intent: OrderIntent) -> tuple[OrderIntent, list[OrderIntent]]:
        assert self.smart is not None
        decision = self.smart.route(intent)
        venue = decision.venue if self.health.get(decision.venue, None) and self.health[decision.venue].available() \
            else self.choose_broker(intent)
        routed = dataclasses.replace(intent, broker=venue)
        children = [dataclasses.replace(c, broker=venue) for c in decision.children]
        if self.journal is not None:
            self.journal.record_decision(intent.signal_id, "smart_router", "routed", decision.reason,
                                         self.clock.now(), {**decision.as_dict(), "venue": venue})
        log.info("smart_route", signal_id=intent.signal_id, client_order_id=intent.client_order_id, venue=venue,
                 children=len(children), reason=decision.reason)
        return routed, children

    async def _all_children(self, parent: OrderIntent, tasks: list[asyncio.Task[OrderResult]]) -> OrderResult:
        """The parent's task: done when every child order has been submitted."""
        self._parents += 1
        try:
            results = await asyncio.gather(*tasks)
        finally:
            self._parents -= 1
        rejected = sum(1 for r in results if r.status == OrderStatus.REJECTED)
        status = OrderStatus.REJECTED if rejected == len(results) else OrderStatus.NEW
        return OrderResult(parent.client_order_id, status, parent.broker or self.primary,
                           reason=f"{len(results)} child orders, {rejected} rejected")

    def prune(self, keep: int = 2_000) -> None:
        """Nothing of its own to forget: the venue lives on the order's record, which the book prunes."""

    def cancel_scheduled(self) -> int:
        """Drop TWAP slices still waiting for their time (shutdown); returns how many."""
        waiting = [t for t in self._tasks if not t.done()] if self._scheduled or self._parents else []
        for task in waiting:
            task.cancel()
        return len(waiting)

    def sending(self) -> set[str]:
        """Client order ids whose submission task is running now (a resolver must not call them missing)."""
        return {t.get_name().removeprefix("order-") for t in self._tasks if not t.done()}

    def in_flight(self) -> int:
        """Orders being submitted now (scheduled TWAP slices and their parents are not counted; a task that has
        finished is not, though its done callback has yet to drop it from the set)."""
        running = sum(1 for task in self._tasks if not task.done())
        return max(0, running - self._scheduled - self._parents)

    async def drain(self, timeout: float) -> None:
        """Wait for in-flight submissions (shutdown); scheduled slices are not waited for."""
        deadline = asyncio.get_running_loop().time() + timeout
        if self.in_flight():
            await asyncio.sleep(0)  # a submission that waits on nothing is done within a turn of the loop
        while self.in_flight() and asyncio.get_running_loop().time() < deadline:
            await asyncio.wait(set(self._tasks), timeout=min(0.05, timeout), return_when=asyncio.FIRST_COMPLETED)

    def choose_broker(self, intent: OrderIntent) -> str:
        """The venue for this intent: forced (exits), else primary unless it is down and a fallback is up."""
        if intent.broker:
            return intent.broker
        primary_up = self.primary not in self.unstarted and self.health[self.primary].available()
        fallback_up = self.fallback is not None and self.fallback not in self.unstarted \
            and self.health[self.fallback].available()
        if not primary_up and fallback_up:
            return self.fallback  # type: ignore[return-value]
        return self.primary

    async def submit(self, intent: OrderIntent, journaling: _Journaling | None = None) -> OrderResult:
        """Journal, then send with retries; returns the broker's answer or a final rejection. `journaling`: the
        intent's durable write already started (`dispatch`), with the broker it names."""
        name = self.choose_broker(intent) if journaling is None else journaling[0]
        logger = _IntentLog(intent)
        record = self.book.add(intent)
        if self.journal is not None:
            try:
                fresh = await (journaling[1] if journaling is not None
                               else self.journal.record_order_intent(intent, name, self.clock.now()))
            except Exception as exc:  # nothing was sent: the order stays unjournaled, to be dispatched again
                if intent.kind == OrderKind.ENTRY and intent.signal_type == SignalType.MANUAL:
                    # ...unless it is an operator's entry: they are answered "refused" now, so it is withdrawn here
                    # (never sent later behind their back; they decide again)
                    self.book.transition(intent.client_order_id, OrderState.CANCELLED)
                raise _NotJournaled(exc) from exc
            self.book.transition(intent.client_order_id, OrderState.INTENT_JOURNALED)
            if not fresh:
                # journaled before (restart, or a retry of the same signal): the broker it went to may hold it
                name = record.venue or await self._journaled_broker(intent.client_order_id) or name
                record.venue = name
                try:
                    existing = await self._lookup(name, intent.client_order_id)
                except RetryableBrokerError as exc:
                    # cannot tell whether that broker holds it: ask again before every send, never fall back
                    logger.warning("order_lookup_failed", broker=name, error=str(exc))
                    resent = True
                else:
                    if existing is not None:
                        logger.info("order_already_at_broker", broker=name, status=str(existing.status))
                        existing.found_existing = True
                        return existing
                    resent = False
                if resent:
                    result, _ = await self._send_with_retries(name, intent, logger, may_exist=True)
                    await self._journal_result(intent, result)
                    return result
        record.venue = name
        result, attempts = await self._send_with_retries(name, intent, logger)
        unreachable = result.status == OrderStatus.REJECTED and attempts.errors and not attempts.reached_broker
        if unreachable and not intent.broker and name == self.primary and self.fallback:
            # nothing reached the primary: the fallback takes the same client order id
            logger.warning("order_fallback", primary=name, fallback=self.fallback, reason=result.reason)
            if self.journal is not None:
                await self.journal.update_order(
                    intent.client_order_id, OrderStatus.PENDING, ts=self.clock.now(), broker=self.fallback,
                    reason=f"fallback from {name}: {result.reason}",
                )
            record.venue = self.fallback
            result, _ = await self._send_with_retries(self.fallback, intent, logger)
        await self._journal_result(intent, result)
        return result

    async def cancel(self, client_order_id: str, broker: str | None = None) -> None:
        name = broker or self.book.venue(client_order_id) or self.primary
        await self.brokers[name].cancel_order(client_order_id)

    # -- internals ------------------------------------------------------------------------------------
    async def _submit_and_report(self, intent: OrderIntent, at: Any = None,
                                 journaling: _Journaling | None = None) -> OrderResult:
        if at is not None:
            delay = (at - self.clock.now()).total_seconds()
            if delay > 0:
                self._scheduled += 1  # waiting for its time is not "in flight": settle() must not wait for it
                try:
                    await self.clock.sleep(delay)  # a TWAP slice waits for its time
                finally:
                    self._scheduled -= 1
        try:
            result = await self.submit(intent, journaling)
        except _NotJournaled as failed:
            # not a rejection: its record stays working and unjournaled, and the owner retries it (a full disk)
            log.error("order_intent_not_journaled", signal_id=intent.signal_id,
                      client_order_id=intent.client_order_id, error=str(failed.error))
            raise failed.error from None
        except Exception as exc:  # never lose an intent silently
            log.exception("order_submit_crashed", signal_id=intent.signal_id, client_order_id=intent.client_order_id)
            result = OrderResult(intent.client_order_id, OrderStatus.REJECTED, intent.broker or self.primary,
                                 reason=f"internal error: {exc!r}")
            await self._journal_result(intent, result)
        if self.on_result is not None:
            await self.on_result(intent, result)
        return result

    async def _journaled_broker(self, client_order_id: str) -> str | None:
        assert self.journal is not None
        rows = await self.journal.query("SELECT broker FROM orders WHERE client_order_id=?", (client_order_id,))
        broker = rows[0]["broker"] if rows else None
        return broker if broker in self.brokers else None

    async def _lookup(self, name: str, client_order_id: str) -> OrderResult | None:
        try:
            async with asyncio.timeout(self.timeout):
                return await self.brokers[name].get_order_by_client_id(client_order_id)
        except (TimeoutError, RetryableBrokerError):
            raise RetryableBrokerError(f"lookup of {client_order_id} at {name} failed", ambiguous=True) from None

    async def _send_with_retries(
        self, name: str, intent: OrderIntent, logger: Any, may_exist: bool = False
    ) -> tuple[OrderResult, _Attempts]:
        broker = self.brokers[name]
        health = self.health[name]
        # may_exist: an earlier run may have placed it, so every attempt asks the broker first
        attempts = _Attempts(ambiguous=may_exist, reached_broker=may_exist)
        try:
            try:  # the first attempt goes straight out: no retry machinery on the path to the send
                return await self._attempt(broker, health, intent, attempts, logger), attempts
            except RetryableBrokerError as first:
                retries = self.config.max_order_retries
                if retries < 1:
                    raise
                wait = _BackoffWait(self.config.retry_backoff_base, self.config.retry_backoff_max, offset=1)
                await self.sleep(wait.delay(1, first))
            retrying = AsyncRetrying(  # the retries: `retries` more attempts, waits continuing the same backoff
                stop=stop_after_attempt(retries), wait=wait, retry=retry_if_exception_type(RetryableBrokerError),
                sleep=self.sleep, reraise=True,
            )
            async for attempt in retrying:
                with attempt:
                    return await self._attempt(broker, health, intent, attempts, logger), attempts
        except SendRefused as exc:
            # the kill switch stopped it before it left the process; if an earlier try may have reached the
            # broker it stays pending, to be looked up, instead of being called cancelled
            logger.warning("order_withheld", broker=name, reason=exc.reason, may_be_at_broker=attempts.ambiguous)
            status = OrderStatus.PENDING if attempts.ambiguous else OrderStatus.CANCELED
            return OrderResult(intent.client_order_id, status, name, reason=f"not sent: {exc.reason}"), attempts
        except OrderRejected as exc:
            logger.warning("order_rejected", broker=name, reason=exc.reason)
            return OrderResult(intent.client_order_id, OrderStatus.REJECTED, name, reason=exc.reason), attempts
        except RetryableBrokerError as exc:
            kind = "unreachable" if not attempts.reached_broker else "unconfirmed"
            reason = f"{kind} after {len(attempts.errors)} attempts: {exc}"
            logger.error("order_submit_failed", broker=name, reason=reason, ambiguous=attempts.ambiguous)
            status = OrderStatus.PENDING if attempts.ambiguous else OrderStatus.REJECTED
            return OrderResult(intent.client_order_id, status, name, reason=reason), attempts
        raise AssertionError("unreachable")  # pragma: no cover

    async def _attempt(
        self, broker: Broker, health: BrokerHealth, intent: OrderIntent, attempts: _Attempts, logger: Any
    ) -> OrderResult:
        name = broker.name
        if attempts.ambiguous:
            # the previous try may have reached the broker: ask before sending again
            existing = await self._lookup(name, intent.client_order_id)
            if existing is not None:
                logger.info("order_found_after_ambiguous_failure", broker=name, status=str(existing.status))
                health.record_success()
                return existing
        if self.kill_switch is not None:
            self.kill_switch.guard(intent)  # every send and resend; the adapter checks again at the wire
        self.book.transition(intent.client_order_id, OrderState.SENT)
        try:
            if self._answers_in_process(broker):  # it cannot hang: no timer to arm
                result = await broker.submit_order(intent)
            else:
                async with asyncio.timeout(self.timeout):  # in this task: no task per send (wait_for makes one)
                    result = await broker.submit_order(intent)
        except TimeoutError:
            attempts.ambiguous = attempts.reached_broker = True
            attempts.errors.append("timeout")
            health.record_failure("timeout")
            logger.warning("order_submit_timeout", broker=name, attempt=len(attempts.errors))
            raise RetryableBrokerError(f"no answer from {name} within {self.timeout}s", ambiguous=True) from None
        except DuplicateClientOrderId:
            existing = await self._lookup(name, intent.client_order_id)
            if existing is None:
                raise OrderRejected(f"{name} reports a duplicate client order id it cannot find") from None
            health.record_success()
            return existing
        except BrokerUnavailable as exc:
            attempts.errors.append(str(exc))
            health.record_failure(str(exc), unreachable=True)
            logger.warning("broker_unavailable", broker=name, error=str(exc))
            raise
        except RetryableBrokerError as exc:
            attempts.reached_broker = True
            attempts.ambiguous = attempts.ambiguous or exc.ambiguous
            attempts.errors.append(str(exc))
            health.record_failure(str(exc))
            logger.warning("order_submit_retryable", broker=name, error=str(exc), attempt=len(attempts.errors))
            raise
        except SendRefused:
            raise
        except OrderRejected:
            health.record_success()
            raise
        health.record_success()
        return result

    def _answers_in_process(self, broker: Broker) -> bool:
        """Whether `broker` answers this call inside the process (AnswersInProcess, true now); the Protocol check
        (~10 us) is made once per broker object."""
        known = self._in_process.get(broker.name)
        if known is None or known[0] is not broker:
            known = self._in_process[broker.name] = (broker, isinstance(broker, AnswersInProcess))
        return known[1] and broker.answers_in_process  # type: ignore[attr-defined]

    async def _journal_result(self, intent: OrderIntent, result: OrderResult) -> None:
        if self.journal is None:
            return
        await self.journal.update_order(
            intent.client_order_id, result.status, ts=self.clock.now(), broker=result.broker,
            broker_order_id=result.broker_order_id, reason=result.reason,
        )

