"""Broker events (order updates, fills) applied one at a time in arrival order, the journal before the ledger.

A broker that redelivers a fill until its handler returns (AcknowledgesFills) gets a handler that returns only
once the fill is journaled and applied. While the journal cannot be written (a full disk) every event is held,
in order, and applied again later; nothing is dropped.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import sqlite3
from typing import TYPE_CHECKING, Any

import structlog

from pipeline.core.models import BrokerEvent, Fill, OrderStatus, OrderUpdate
from pipeline.core.ports import AcknowledgesFills, Broker
from pipeline.execution.protective_stops import STOP_KIND

if TYPE_CHECKING:
    from daemon.core import Core

log = structlog.get_logger("ordergate.daemon")
FILL_APPLY_WAIT = 30.0  # s a redelivering broker's fill waits to be journaled and applied before it is taken anyway


class BrokerEvents:
    """The broker-event consumer of a Core: counts what is in flight (for settle) and holds what cannot be written."""

    def __init__(self, core: Core) -> None:
        self.core = core
        self._in = 0
        self._done = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self._queue: asyncio.Queue[BrokerEvent] = core.bus.broker_events.subscribe()
        self._applied: dict[int, asyncio.Future[None]] = {}  # fills whose broker waits for them to be applied
        self._held: collections.deque[BrokerEvent] = collections.deque()  # journal writes failing
        self._held_lock = asyncio.Lock()  # one pass over the held events at a time (timer, next event, stop)

    def start(self) -> None:
        """Begin applying the events queued so far (after the book is rebuilt from the journal) and every later one."""
        self._task = asyncio.create_task(self._consume(), name="broker-events")

    async def stop(self) -> None:
        """Apply what is held if the journal takes it now, then stop consuming."""
        if self._held:
            await self.apply_held()
        if self._held:
            log.error("broker_events_unapplied_at_shutdown", held=len(self._held),
                      reason="the journal still cannot be written; the brokers are asked again at the next start")
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def pending(self) -> int:
        """Events published and not yet applied (or failed)."""
        return self._in - self._done

    def held(self) -> int:
        """Events held because the journal could not take them (applied by `apply_held` once it can)."""
        return len(self._held)

    def consuming(self) -> bool:
        """Whether the consumer task runs."""
        return self._task is not None and not self._task.done()

    async def wait_idle(self, timeout: float) -> None:
        """Until every published event is applied, or `timeout` s."""
        if self._idle.is_set():  # nothing in flight: no wait_for (a task of its own) to find that out
            return
        await asyncio.sleep(0)  # events applied without waiting on anything are done within a turn of the loop
        if self._idle.is_set():
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout)

    async def deliver(self, event: BrokerEvent, *, until_applied: bool = False) -> None:
        """Take one event from a broker onto the bus (with `until_applied`, a fill returns once it is applied)."""
        self._in += 1
        self._idle.clear()
        if self.core.event_observer is not None:
            self.core.event_observer(event)
        if not (until_applied and isinstance(event, Fill)):
            await self.core.bus.broker_events.publish(event)
            return
        # the broker takes the fill as delivered when this returns: only once it is journaled and applied (or
        # FILL_APPLY_WAIT s have passed: the timer answers the future itself; one future and one timer per fill,
        # not wait_for's waiter and shield's outer future on top)
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        self._applied[id(event)] = done
        timer = loop.call_later(FILL_APPLY_WAIT, self._not_applied_in_time, event, done)
        try:
            await self.core.bus.broker_events.publish(event)
            await done
        finally:
            timer.cancel()
            self._applied.pop(id(event), None)

    @staticmethod
    def _not_applied_in_time(event: Fill, done: asyncio.Future[None]) -> None:
        if not done.done():
            log.error("fill_not_applied_in_time", fill_id=event.fill_id, client_order_id=event.client_order_id,
                      waited=FILL_APPLY_WAIT)
            done.set_result(None)

    def handler_for(self, broker: Broker) -> Any:
        """The event handler a broker gets: one that returns only once a fill is applied, for a broker that
        redelivers until its handler returns (AcknowledgesFills)."""
        if isinstance(broker, AcknowledgesFills) and broker.acknowledges_fills:
            return functools.partial(self.deliver, until_applied=True)
        return self.deliver

    def _mark_applied(self, event: BrokerEvent) -> None:
        done = self._applied.get(id(event))
        if done is not None and not done.done():
            done.set_result(None)

    async def _consume(self) -> None:
        queue = self._queue
        while True:
            event = await queue.get()
            try:
                await self._apply_event(event)
            except Exception:
                log.exception("broker_event_failed", client_order_id=getattr(event, "client_order_id", None))
                self._mark_applied(event)  # a fill that cannot be applied is not waited for (it would fail again)
            finally:
                self._done += 1
                if self._done == self._in:
                    self._idle.set()

    async def _apply_event(self, event: BrokerEvent) -> None:
        """Apply one broker event; while the journal cannot be written (a full disk) hold it, and every later one
        in order: the journal comes before the ledger, and nothing is dropped."""
        if self._held:
            self._held.append(event)
            await self.apply_held()
            return
        try:
            await self.core.lifecycle.on_broker_event(event)
        except (sqlite3.Error, OSError) as exc:
            self._held.append(event)
            log.error("broker_event_held", client_order_id=getattr(event, "client_order_id", None),
                      event_type=type(event).__name__, reason="journal write failed", error=str(exc))
            return
        self._mark_applied(event)

    async def apply_held(self) -> int:
        """Apply the events held while the journal could not be written, oldest first; stops at the first that
        still cannot be journaled. Returns how many were applied."""
        async with self._held_lock:
            return await self._apply_held_events()

    async def _apply_held_events(self) -> int:
        applied = 0
        while self._held:
            event = self._held[0]
            try:
                await self.core.lifecycle.on_broker_event(event)
            except (sqlite3.Error, OSError):
                break
            except Exception:  # not a journal problem: as for a live event, logged and not retried
                log.exception("broker_event_failed", client_order_id=getattr(event, "client_order_id", None))
            self._held.popleft()
            self._mark_applied(event)
            applied += 1
            record = self.core.book.get(event.client_order_id)
            intent = record.intent if record is not None else None
            if isinstance(event, OrderUpdate) and event.status == OrderStatus.NEVER_REACHED and intent is not None \
                    and intent.kind not in ("entry", STOP_KIND):
                self.core.lifecycle.resend_exit(intent, f"exit {intent.client_order_id} never reached {event.broker}")
        if applied:
            log.warning("held_broker_events_applied", applied=applied, still_held=len(self._held))
        return applied
