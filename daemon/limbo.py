"""No order in limbo: every order not final is looked up at its broker by client order id and settled.

At start, after a reconnect and on a timer (`check_overdue`); an order never heard of ends `never_reached` (its
reservation freed, an exit sent afresh); orders whose intent never reached the journal are dispatched again;
`flatten` closes everything, stuck exits included; a shutdown may cancel the entries still working.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import structlog

from pipeline.core.models import OrderStatus, OrderUpdate
from pipeline.core.ports import Resyncs
from pipeline.execution.order_record import OrderState
from pipeline.execution.order_resolver import OpenOrder, Resolution, Verdict
from pipeline.execution.protective_stops import STOP_KIND

if TYPE_CHECKING:
    from daemon.core import Core

log = structlog.get_logger("ordergate.daemon")


class OrderLimbo:
    """The resolution of a Core's open orders (issue 12) through its OrderResolver, book and brokers."""

    def __init__(self, core: Core) -> None:
        self.core = core

    def open_orders(self) -> list[OpenOrder]:
        """Every order not final that no submission task of this process is sending now, exits first."""
        sending = self.core.router.sending()
        out = []
        for record in self.core.book.working():
            intent = record.intent
            if record.client_order_id in sending:
                continue
            broker = record.venue or intent.broker or self.core.settings.broker.primary
            out.append(OpenOrder(intent, broker, acknowledged=record.acknowledged))
        out.sort(key=lambda o: o.intent.kind == "entry")
        return out

    async def resolve_orders(self, *, until_answered: bool = False) -> list[Resolution]:
        """Look every open order up at its broker by client order id and act on what is found.

        A broker with `resolve_order` emits the missed fills and statuses itself; for any other, a final status
        it reports is applied here. An order never heard of for long enough ends `never_reached`. With
        `until_answered` (start-up, reconnect) the lookups are repeated with backoff until every connected
        broker has answered; brokers not connected are left to the timer.
        """
        orders = self.core.resolver.due(self.open_orders())
        if until_answered:
            orders = [o for o in orders if o.broker in self.core.brokers and self.core.brokers[o.broker].is_connected()]

            def retrying(unanswered: list[Resolution], delay: float) -> None:
                log.warning("open_orders_lookup_retry", orders=len(unanswered), delay=delay,
                            error=unanswered[0].error, broker=unanswered[0].order.broker)

            resolutions = await self.core.resolver.resolve_until_answered(orders, on_retry=retrying,
                                                                     stop=self.core.stop_requested)
        else:
            resolutions = await self.core.resolver.resolve(orders)
        for resolution in resolutions:
            await self._apply_resolution(resolution)
        if resolutions:
            await self.core.settle()
            await self._finish_found(resolutions)
        return resolutions

    async def _finish_found(self, resolutions: list[Resolution]) -> None:
        """A final status the broker reports but no event has brought (a broker without `resolve_order`, or one
        whose adapter had already reported it before a restart): applied here, once. Not while fills it claims
        are still missing: those are check_overdue's (resync, else a fill_missing alert)."""
        finished = False
        for r in resolutions:
            result = r.result
            record = self.core.book.get(r.client_order_id)
            if r.verdict != Verdict.FOUND or result is None or not result.status.is_final \
                    or record is None or record.final or result.filled_qty > record.filled_qty + 1e-9:
                continue
            intent = r.order.intent
            finished = True
            await self.core.events.deliver(OrderUpdate(
                result.client_order_id, result.status, r.order.broker, result.broker_order_id,
                result.symbol or intent.symbol, result.side or intent.side, filled_qty=result.filled_qty,
                filled_avg_price=result.filled_avg_price, reason=result.reason, timestamp=self.core.clock.now()))
        if finished:
            await self.core.settle()

    async def _apply_resolution(self, resolution: Resolution) -> None:
        order = resolution.order
        if resolution.verdict == Verdict.NEVER_REACHED:
            await self.order_never_reached(order, "not found at the broker on repeated lookups")
        elif resolution.verdict == Verdict.MISSING and order.acknowledged and \
                self.core.resolver.misses(order.intent.client_order_id) == self.core.resolver.lookups_required:
            await self.core.alert("order_missing_at_broker", f"{order.broker} no longer knows "
                             f"{order.intent.client_order_id}, which it acknowledged", "critical",
                             client_order_id=order.intent.client_order_id)

    async def order_never_reached(self, order: OpenOrder, why: str) -> None:
        """The order never got to its broker: final `never_reached`, its reservation freed, an alert, and for an
        exit a fresh exit (the position is never left without one)."""
        intent = order.intent
        coid = intent.client_order_id
        self.core.resolver.forget(coid)
        log.error("order_never_reached", signal_id=intent.signal_id, client_order_id=coid, broker=order.broker,
                  kind=intent.kind, symbol=intent.symbol, reason=why)
        await self.core.events.deliver(OrderUpdate(
            coid, OrderStatus.NEVER_REACHED, order.broker, None, intent.symbol, intent.side,
            reason=f"never reached {order.broker}: {why}", timestamp=self.core.clock.now()))
        await self.core.settle()
        await self.core.alert("order_never_reached", f"{intent.kind} {coid} ({intent.symbol}) never reached "
                         f"{order.broker}: {why}", "critical", client_order_id=coid)
        if intent.kind == STOP_KIND:
            self.core.stops.request_sync(intent.key)  # a protective stop is placed again, never turned into an exit
        elif intent.kind != "entry":
            fresh = self.core.lifecycle.resend_exit(intent, f"exit {coid} never reached {order.broker}")
            if fresh is not None:
                log.warning("exit_resent", signal_id=intent.signal_id, client_order_id=fresh.client_order_id,
                            replaces=coid, symbol=intent.symbol)

    async def retry_unjournaled(self) -> list[str]:
        """Orders whose intent never made it into the journal (a full disk): dispatched again, exits first, so the
        write is retried once the disk has room. Nothing was sent for them (the journal comes before the send).
        An entry older than [pipeline] max_signal_age_seconds is given up instead (released, alerted)."""
        if self.core.journal is None:
            return []
        sending = self.core.router.sending()
        candidates = {r.client_order_id: r.intent for r in self.core.book.working() if r.client_order_id not in sending}
        if not candidates:
            return []
        try:
            journaled = await self.core.journal.journaled(list(candidates))
        except Exception as exc:
            log.warning("journal_unreadable", error=str(exc))
            return []
        for coid in journaled:
            candidates.pop(coid, None)
        retried = sorted(candidates.values(), key=lambda i: i.kind == "entry")
        max_age = timedelta(seconds=self.core.config.max_signal_age_seconds)
        now = self.core.clock.now()
        for intent in [i for i in retried if i.kind == "entry" and i.created_at and now - i.created_at > max_age]:
            # decided on a market that is gone: an entry is never sent late (an exit always is)
            retried.remove(intent)
            coid = intent.client_order_id
            self.core.book.transition(coid, OrderState.CANCELLED)  # never journaled, never sent
            self.core.orchestrator.release(coid)
            log.error("entry_not_sent", signal_id=intent.signal_id, client_order_id=coid, symbol=intent.symbol,
                      reason="its journal write failed until it was older than max_signal_age_seconds")
            await self.core.alert("entry_not_sent", f"entry {coid} ({intent.symbol}) not sent: the journal could not "
                             "record it before it went stale", "warning", client_order_id=coid)
        for intent in retried:
            log.warning("order_intent_retried", signal_id=intent.signal_id, client_order_id=intent.client_order_id,
                        kind=intent.kind, reason="its journal write failed")
            self.core.router.dispatch(intent)
        if retried:
            await self.core.settle()
        return [i.client_order_id for i in retried]

    async def check_overdue(self) -> list[str]:
        """Accepted market orders that saw no fill in time are looked up at their broker (issue: lost fills).

        A broker that can re-fetch missed events (`resync`) is asked to; otherwise the finding is alerted. Returns
        the client order ids looked up.
        """
        # first the fills held through a journal outage, if it takes them now: an order whose fill the daemon
        # holds is not overdue (and not a 'fill_missing' at its broker)
        await self.core.events.apply_held()
        checked = []
        timeout = timedelta(seconds=self.core.config.fill_timeout_seconds)
        # one accepted while the market is closed waits for the open (a daily entry at the close): not overdue yet
        overdue = self.core.book.overdue(self.core.clock.now(), timeout, fillable_from=self.core.calendar.tradable_from)
        for intent in [r.intent for r in overdue]:
            name = self.core.book.venue(intent.client_order_id) or intent.broker or self.core.settings.broker.primary
            broker = self.core.brokers.get(name)
            if broker is None or not broker.is_connected():
                continue
            checked.append(intent.client_order_id)
            try:
                found = await broker.get_order_by_client_id(intent.client_order_id)
            except Exception as exc:
                log.warning("overdue_lookup_failed", client_order_id=intent.client_order_id, error=str(exc))
                continue
            status = str(found.status) if found else "not found"
            filled = found.filled_qty if found else 0.0
            log.warning("order_overdue", signal_id=intent.signal_id, client_order_id=intent.client_order_id,
                        broker=name, status=status, filled_qty=filled)
            if found is not None and filled > 0:
                if isinstance(broker, Resyncs):
                    await broker.resync()
                else:
                    await self.core.alert("fill_missing", f"{name} reports {filled:g} filled for "
                                     f"{intent.client_order_id} but no fill has arrived", "critical",
                                     client_order_id=intent.client_order_id)
        await self.core.events.apply_held()  # and what arrived meanwhile
        await self.retry_unjournaled()
        await self.resolve_orders()
        return checked

    async def flatten(self, reason: str = "flatten") -> dict[str, Any]:
        """Close every position now, including those whose exit is stuck (journaled, never acknowledged, not being
        sent): each is looked up first; one its broker does not hold ends never_reached and is replaced."""
        stuck = [o for o in self.open_orders() if o.intent.kind != "entry" and not o.acknowledged]
        replaced, unanswered = [], []
        for resolution in await self.core.resolver.resolve(stuck):
            coid = resolution.client_order_id
            if resolution.verdict in (Verdict.MISSING, Verdict.NEVER_REACHED):
                await self.order_never_reached(resolution.order, f"not found at the broker by {reason}")
                replaced.append(coid)
            elif resolution.verdict == Verdict.UNANSWERED:
                unanswered.append(coid)
        exits = self.core.book.exits
        resent = [exits[o.intent.key] for o in stuck
                  if o.intent.client_order_id in replaced and o.intent.key in exits]
        intents = await self.core.lifecycle.emergency_close_all(reason)
        working = sorted(set(exits.values()) - {i.client_order_id for i in intents}
                         - set(resent))
        report = {"exit_orders": resent + [i.client_order_id for i in intents], "stuck_exits": replaced,
                  "exits_working": working, "exits_unanswered": unanswered,
                  "ok": not unanswered}  # a stuck exit its broker could not be asked about: not done
        log.warning("flatten", reason=reason, **report)
        return report

    async def cancel_working_entries(self) -> list[str]:
        """Cancel entry orders still working at a broker (shutdown with [shutdown] cancel_inflight_entries)."""
        cancelled = []
        for record in self.core.book.working():
            intent = record.intent
            if intent.kind != "entry":
                continue
            try:
                await asyncio.wait_for(self.core.router.cancel(intent.client_order_id, intent.broker),
                                       self.core.settings.broker.request_timeout_seconds)
                cancelled.append(intent.client_order_id)
                log.info("entry_cancelled_at_shutdown", signal_id=intent.signal_id,
                         client_order_id=intent.client_order_id)
            except Exception as exc:  # filled meanwhile, or the broker is gone: the journal and reconcile tell
                log.warning("entry_cancel_failed", client_order_id=intent.client_order_id, error=str(exc))
        if cancelled:
            await self.core.settle()
        return cancelled
