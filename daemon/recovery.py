"""Recovery at start (and after a late connect): the book rebuilt from the journal, orders an earlier run left
open asked after at their brokers, the brokers' clocks measured, brokers down at start-up connected later."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import datetime
from typing import TYPE_CHECKING

import structlog

from pipeline.core.ports import AdoptsOrders, MeasuresClock
from pipeline.execution.order_resolver import Verdict
from pipeline.execution.protective_stops import STOP_KIND
from pipeline.positions.external import JOURNAL_KEY as EXTERNAL_KEY
from pipeline.positions.splits import SplitsInOrder

if TYPE_CHECKING:
    from daemon.core import Core

log = structlog.get_logger("ordergate.daemon")


class Recovery:
    """What a Core does before it trades: rebuild, recover, measure; and connecting late what was down."""

    def __init__(self, core: Core) -> None:
        self.core = core

    async def connect_unstarted(self) -> list[str]:
        """Try again to connect the brokers that were down at start-up; returns those now connected.

        Until then the router does not consider them at all (not even as a half-open probe), since their event
        streams were never started and fills sent there could not be seen.
        """
        connected = []
        for name in self.core.router.unstarted_brokers():
            try:
                await asyncio.wait_for(self.core.brokers[name].connect(),
                                       self.core.settings.broker.request_timeout_seconds)
            except Exception as exc:
                log.info("broker_still_down", broker=name, error=str(exc))
                continue
            self.core.router.started(name)
            connected.append(name)
            log.warning("broker_connected_late", broker=name)
        if connected:
            await self.core.settle()
            await self.recover_open_orders(until_answered=False)  # from the gauges loop: never wait there
        return connected

    async def recover_open_orders(self, *, until_answered: bool = True) -> None:
        """Orders the journal still calls open were sent by an earlier run: ask their broker what became of them.

        A broker that can adopt orders (`track`: Alpaca) is first told how much of each the journal already holds,
        so it emits only what happened while we were down. Then every order not final, at every connected broker,
        is looked up by client order id (`resolve_orders`), with retries until each broker has answered.
        """
        if self.core.journal is None:
            return
        for order in await self.core.journal.unfinished_orders():
            broker = self.core.brokers.get(order.broker or "")
            if not isinstance(broker, AdoptsOrders):  # local bookkeeping: connected or not
                continue
            broker.track(order.client_order_id, filled_qty=order.filled_qty, filled_notional=order.filled_notional,
                         symbol=order.symbol, side=order.side, submitted_at=order.created_at)
        # every broker, by client order id, asking again with backoff until each has answered (READY only after)
        resolutions = await self.core.limbo.resolve_orders(until_answered=until_answered)
        log.info("open_orders_recovered", orders=len(resolutions),
                 found=sum(1 for r in resolutions if r.verdict == Verdict.FOUND))

    async def measure_clock_offsets(self) -> dict[str, float]:
        """Each connected broker's clock against ours, logged; a skew above [broker] max_clock_skew_seconds is an
        alert (orders are caught up by identity, so a skew hides nothing, but it skews every timestamp)."""
        limit = self.core.settings.broker.max_clock_skew_seconds
        for name, broker in self.core.brokers.items():
            if not isinstance(broker, MeasuresClock) or not broker.is_connected():
                continue
            try:
                offset = float(await asyncio.wait_for(broker.clock_offset(),
                                                      self.core.settings.broker.request_timeout_seconds))
            except Exception as exc:
                log.warning("broker_clock_unmeasured", broker=name, error=str(exc))
                continue
            self.core.clock_offsets[name] = offset
            log.info("broker_clock_offset", broker=name, offset_seconds=round(offset, 3))
            if abs(offset) > limit:
                await self.core.alert("broker_clock_skew", f"{name}'s clock is {offset:+.1f}s from ours "
                                 f"(limit {limit:g}s)", "warning", broker=name, offset_seconds=round(offset, 3))
        return self.core.clock_offsets

    async def rebuild(self) -> None:
        """The order book, open positions and working orders from the journal: every journaled order's record
        (its state from its journaled status, its venue, its fills by id), each open entry reserving its unfilled
        rest and each open exit its symbol's pending exit; the external positions the last reconciliation
        confirmed."""
        if self.core.journal is not None:
            for intent, status, broker in await self.core.journal.order_records():
                self.core.book.restore(intent, status, broker if broker in self.core.brokers else None)
            applied: dict[str, float] = {}
            closed = []
            splits = SplitsInOrder(await self.core.journal.split_records())
            for fill in await self.core.journal.fill_records():
                for split in splits.before_fill(fill.symbol):  # a split applied after the fills before this one
                    self.core.ledger.rescale(split.symbol, split.ratio, split.whole)
                record = self.core.book.get(fill.client_order_id)
                if record is not None:
                    self.core.book.add_fill(record, fill)  # journaled: a redelivery is recognised by its fill id
                intent = record.intent if record is not None else None
                if intent is None:
                    # a ghost fill (an id of ours, no order journaled: the journal was lost before it): it was
                    # counted as external, not traded; the start-up reconciliation takes the broker's quantity
                    log.warning("rebuild_fill_without_order", client_order_id=fill.client_order_id,
                                fill_id=fill.fill_id, symbol=fill.symbol, quantity=fill.quantity)
                    continue
                if intent.reduce_only and self.core.ledger.position_at(intent.key) is None:
                    # a manual exit journaled before exits named their position's strategy: the one position it
                    # reduces (and only then) is that symbol's only one on the side it closes
                    held = self.core.ledger.positions_in(fill.symbol)
                    if len(held) == 1 and held[0].closing_side == fill.side and not intent.strategy:
                        intent = dataclasses.replace(intent, strategy=held[0].strategy)
                if intent.reduce_only and self.core.ledger.position_at(intent.key) is None:
                    # the exit of a position that was not in the journal (adopted from the broker): it closed
                    # that position, it must not open one the other way
                    log.warning("rebuild_exit_without_position", client_order_id=fill.client_order_id,
                                symbol=fill.symbol, quantity=fill.quantity)
                    continue
                trip = self.core.ledger.apply_fill(fill, intent, intent.exit_type)
                if trip is not None:
                    closed.append((trip, fill))
                applied[fill.client_order_id] = applied.get(fill.client_order_id, 0.0) + fill.quantity
            for split in splits.rest():  # applied after the symbol's last fill
                self.core.ledger.rescale(split.symbol, split.ratio, split.whole)
            await self.core.lifecycle.record_missing_trades(closed)
            for record in self.core.book.working():
                intent = record.intent
                if intent.kind == "entry":
                    # what already filled is in the ledger: the reservation holds the rest only
                    self.core.book.reserve(intent, filled=applied.get(intent.client_order_id, 0.0))
                elif intent.kind != STOP_KIND:  # a resting protective stop is not a working exit
                    self.core.book.exits[intent.key] = intent.client_order_id
            await self.core.stops.rebuild()
            await self._restore_external()
            for split in splits.records:  # a stop journaled before a split (its move not journaled yet) moves
                self.core.stops.rescale(split.symbol, float(split.ratio), datetime.fromisoformat(split.at))
        self.core.lifecycle.rebuild_index()

    async def _restore_external(self) -> None:
        """The external positions the last reconciliation confirmed (kv `external`), with the broker time their
        figures hold every fill up to; the start-up reconciliation then judges them against the broker again."""
        assert self.core.journal is not None
        items = await self.core.journal.get_kv(EXTERNAL_KEY, []) or []
        if not isinstance(items, list):
            log.error("journal_external_unreadable", value=str(items)[:200])
            return
        for problem in self.core.external.restore(items):
            log.error("journal_external_unreadable", problem=problem)
