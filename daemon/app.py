"""The assembled daemon: builds the adapters, the engine and the process services, and runs them.

Start-up order: state file (kill switch fails closed) -> journal -> brokers connected -> ledger rebuilt from
the journal -> first reconciliation -> READY=1 -> bars flow. Shutdown: stop intake, finish or cancel
in-flight entries, flush journal and state, STOPPING=1, exit 0.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import math
import os
import signal as os_signal
import sqlite3
from collections import deque
from collections.abc import Callable
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import structlog

from config.settings import ConfigError, Settings, scrub_secrets
from daemon.control import ControlServer, socket_path
from daemon.journal_guard import fail_closed_if_journal_lost
from daemon.live_rule import live_rule_problem
from daemon.ready import ready_summary
from daemon.reconciliation import FILL_GRACE, Reconciliation  # noqa: F401 (FILL_GRACE: re-exported)
from daemon.reload import log_reloaded, read_reload
from daemon.systemd import SystemdNotifier, watchdog_interval, watchdog_loop
from pipeline.core.bus import Bus
from pipeline.core.calendar import MarketCalendar, default_calendar
from pipeline.core.clock import Clock, LiveClock, SimulatedClock
from pipeline.core.models import (
    AccountState,
    Bar,
    BrokerEvent,
    Fill,
    OrderIntent,
    OrderResult,
    OrderStatus,
    OrderUpdate,
    Position,
)
from pipeline.core.ports import AcknowledgesFills, Broker, BrokerUnavailable, MarketDataFeed
from pipeline.engine import TradingEngine
from pipeline.entry.strategy_budget import StrategyBudgets
from pipeline.execution.order_record import OrderBook, OrderState
from pipeline.execution.order_resolver import OpenOrder, OrderResolver, Resolution, Verdict
from pipeline.execution.order_router import OrderRouter
from pipeline.execution.protective_stops import STOP_KIND, ProtectiveStops
from pipeline.orchestrator import BotOrchestrator
from pipeline.positions.external import ExternalBook
from pipeline.positions.ledger import Ledger
from pipeline.positions.lifecycle import LifecycleManager
from pipeline.positions.reconciler import PositionReconciler, ReconciliationReport
from pipeline.record.feedback import FeedbackTracker
from pipeline.record.journal import Journal
from pipeline.record.trade_journal import TradeJournalWriter
from pipeline.safety.kill_switch import KillSwitch
from pipeline.safety.state_manager import PersistentStateManager

log = structlog.get_logger("ordergate.daemon")
SESSION_MINUTES = 390
WARM_UP_MAX_SESSIONS = 10  # 1m history for the clouds at start: enough for 5m-1h; a daily timeframe warms partly
FILL_APPLY_WAIT = 30.0  # s a redelivering broker's fill waits to be journaled and applied before it is taken anyway
RESUME_KEY = "simulated_feed_position"  # journal kv: the last bar time a simulated run traded
RESUME_EVERY_BATCHES = 50
RESUME_WARM_BATCHES = 400  # bars before the resume point that warm the strategy again (its slowest cloud: 50x5m)


def make_broker(name: str, settings: Settings, clock: Clock, state_dir: Path) -> Broker:
    """The broker adapter called `name`, configured from settings."""
    if name == "paper":
        from adapters.paper import PaperBroker

        path = state_dir / "paper_book.json" if settings.paper.persistent else None
        return PaperBroker(settings.paper, clock, state_path=path)
    if name == "alpaca":
        from adapters.alpaca import AlpacaBroker

        return AlpacaBroker(settings.alpaca, clock)
    if name == "ibkr":
        from adapters.ibkr import IBKRBroker

        broker = IBKRBroker(settings.ibkr, clock)
        broker.attach_stops = settings.exits.broker_stop  # the entry's protective STP rides with it as a child
        return broker
    raise ValueError(f"unknown broker {name!r}")


def make_feed(settings: Settings, clock: Clock, calendar: MarketCalendar) -> MarketDataFeed:
    """The bar source of settings.data."""
    data = settings.data
    if data.source == "alpaca":
        from adapters.alpaca_data import AlpacaBarFeed

        return AlpacaBarFeed(settings.alpaca, data.tickers, clock)
    if data.source == "replay":
        from adapters.replay import ReplayFeed

        if data.replay_file is None:
            raise ValueError("data.replay_file must be set when data.source = 'replay'")
        return ReplayFeed(data.replay_file, clock, pace_bars_per_s=data.bars_per_second)
    from adapters.synthetic import SyntheticFeed

    return SyntheticFeed(data.tickers, clock, calendar, seed=data.synthetic_seed, days=data.synthetic_days,
                         pace_bars_per_s=data.bars_per_second)


class Core:
    """Everything that trades: journal, state, brokers, ledger, orchestrator, lifecycle, engine.

    Shared by the daemon and by `ordergate replay`.
    """

    def __init__(self, settings: Settings, clock: Clock, *, state_dir: Path | None = None,
                 calendar: MarketCalendar | None = None) -> None:
        self.settings = settings
        self.clock = clock
        self.state_dir = Path(state_dir or settings.state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.calendar = calendar or default_calendar()
        self.config = settings.pipeline
        # a replay (simulated clock, NORMAL journal: replay_settings) trades in a throwaway directory: no fsync
        # and no disk thread; the live daemon keeps both
        throwaway = clock.simulated and settings.journal.synchronous == "NORMAL"
        self.state = PersistentStateManager(self.state_dir, clock, self.calendar, durable=not throwaway)
        self._alert_tasks: set[asyncio.Task[None]] = set()
        self.kill_switch = KillSwitch(self.state, alert=self._alert_soon)  # every trip goes through it
        self.journal: Journal | None = (
            Journal(self.state_dir / "journal.db", synchronous=settings.journal.synchronous, inline=throwaway)
            if settings.journal.enabled else None
        )
        names = [settings.broker.primary] + ([settings.broker.fallback] if settings.broker.fallback else [])
        self.brokers: dict[str, Broker] = {n: make_broker(n, settings, clock, self.state_dir) for n in names}
        for broker in self.brokers.values():
            broker.set_send_guard(self.kill_switch.guard)  # checked by the adapter right before the wire
        self.bus = Bus()
        self.ledger = Ledger(cash=0.0)
        self.external = ExternalBook(self.ledger.last_prices.get)  # positions at the broker that are not ours
        self.starting_equity = 0.0
        # one record per client order id (pipeline.execution.order_record): the router, the validator, the reservations,
        # the lifecycle and the resolver read and move orders through it
        self.book = OrderBook()
        self.router = OrderRouter(self.brokers, self.journal, clock, self.config, settings.broker,
                                  on_result=self._on_order_result, kill_switch=self.kill_switch, book=self.book)
        self.feedback = FeedbackTracker(self.config)
        self.strategy = self._strategy()
        self.budgets = StrategyBudgets(settings.effective_strategies(), settings.executor,
                                       one_per_symbol=bool(settings.strategies))
        self.orchestrator = BotOrchestrator(
            self.config, self.account_state, clock=clock, calendar=self.calendar, state=self.state,
            journal=self.journal, router=self.router, routing=settings.routing, options=settings.options,
            feedback=self.feedback, price_lookup=self.market_price,
            chain_provider=self._chain_provider(), slippage=settings.entry_slippage(),
            kill_switch=self.kill_switch, book=self.book, budgets=self.budgets,
        )
        self.lifecycle = LifecycleManager(
            self.config, ledger=self.ledger, state=self.state, clock=clock, calendar=self.calendar,
            router=self.router, journal=self.journal, validator=self.orchestrator.validator,
            feedback=self.feedback, clouds=self.strategy, release=self.orchestrator.release,
            entry_filled=self.orchestrator.entry_filled,
            alert=self.alert, starting_equity=lambda: self.starting_equity, kill_switch=self.kill_switch,
            on_external_fill=self._on_external_fill, exit_cap=self.external.exit_cap,
            on_trade=self.budgets.record_trade,
        )
        self.stops = ProtectiveStops(
            settings.exits, brokers=self.brokers, router=self.router, ledger=self.ledger, clock=clock,
            register=self.lifecycle.register_intent, journal=self.journal, alert=self.alert,
            timeout=settings.broker.request_timeout_seconds, exit_cap=self.external.exit_cap,
        )
        self.lifecycle.stops = self.stops
        listeners = [b.on_bars for b in self.brokers.values() if hasattr(b, "on_bars")]
        self.engine = TradingEngine(self.orchestrator, self.lifecycle, self.strategy, bar_listeners=listeners,
                                    settle=self.settle if clock.simulated else None)
        self.engine.pruners = [b.prune for b in self.brokers.values() if hasattr(b, "prune")]
        self.reconciler = PositionReconciler(settings.reconcile.kill_notional_threshold)
        self.reconciliation = Reconciliation(self)
        self.resolver = OrderResolver(self.brokers, never_reached_after=settings.broker.never_reached_after_seconds,
                                      timeout=settings.broker.request_timeout_seconds, book=self.book)
        self.clock_offsets: dict[str, float] = {}
        self.stop_requested: Callable[[], bool] = lambda: False  # the daemon's SIGTERM ends start-up's retries
        if settings.smart_router.enabled:
            from pipeline.execution.smart_router import SmartRouter, Venue

            self.router.smart = SmartRouter(settings.smart_router, [Venue(n) for n in self.brokers], clock)
            self.router.on_split = self._on_split
        self.trades = TradeJournalWriter(self.journal) if self.journal is not None else None
        self._events_in = 0
        self._events_done = 0
        self._events_idle = asyncio.Event()
        self._events_idle.set()
        self._event_task: asyncio.Task[None] | None = None
        self._event_queue: asyncio.Queue[BrokerEvent] = self.bus.broker_events.subscribe()
        self._applied: dict[int, asyncio.Future[None]] = {}  # fills whose broker waits for them to be applied
        self._held_events: collections.deque[BrokerEvent] = collections.deque()  # journal writes failing
        self._held_lock = asyncio.Lock()  # one pass over the held events at a time (timer, next event, stop)
        self.alert_hook: Any = None
        self.event_observer: Any = None
        self._signal_queue: asyncio.Queue[Any] | None = self.bus.signals.subscribe()
        self.last_reconciliation: dict[str, Any] | None = None

    def _strategy(self) -> Any:
        from pipeline.strategy.registry import build_strategies

        # [[strategies]] (or the one EMA-cloud strategy); built even when disabled: the exits read its cloud states
        return build_strategies(self.settings, self.calendar)

    def market_price(self, symbol: str) -> float | None:
        """The price entries are sized on: the primary broker's own (the paper broker's, what it fills at), else
        the data feed's last bar (the ledger's marks); None when neither has one."""
        own = getattr(self.brokers[self.settings.broker.primary], "last_price", None)
        price = own(symbol) if own is not None else None
        return price if price is not None else self.ledger.last_prices.get(symbol)

    def _chain_provider(self) -> Any:
        """The primary broker's option chain; a broker without one gets none (never the synthetic chain)."""
        from pipeline.instruments.options import NoOptionChain

        name = self.settings.broker.primary
        primary = self.brokers[name]
        return primary if hasattr(primary, "chain") else NoOptionChain(f"the {name} broker")

    def reconfigure(self, settings: Settings) -> None:
        """Hand reloaded settings to every trading component (a SIGHUP): risk gate, sizing, routing, guard and
        unified risk (through the orchestrator), exits and time stops (the lifecycle), feedback, reconciliation.
        Restart-only fields arrive unchanged (config/reload.py), so the parts built from them stay valid."""
        self.settings = settings
        self.config = settings.pipeline
        self.feedback.reconfigure(self.config)
        self.orchestrator.reconfigure(self.config, settings.routing, settings.options)
        self.lifecycle.reconfigure(self.config)
        self.reconciler.notional_threshold = settings.reconcile.kill_notional_threshold
        self.reconciliation.confirmer.reconfigure(settings.reconcile.grace_seconds)

    # -- lifecycle ------------------------------------------------------------------------------------
    async def start(self) -> None:
        if self.state.load_error:
            log.error("state_file_unreadable", path=str(self.state.path), error=self.state.load_error,
                      kill_switch="active")
        if self.journal is not None:
            await self.journal.open()
            stored = await self.journal.get_kv("feedback")
            if stored:
                self.feedback = FeedbackTracker.from_dict(stored, self.config)
                self.orchestrator.feedback = self.feedback
                self.lifecycle.feedback = self.feedback
            await self.budgets.restore_from(self.journal, self.calendar.trading_day(self.clock.now()))
        down: list[BrokerUnavailable] = []
        for name, broker in self.brokers.items():
            broker.set_event_handler(self._handler_for(broker))
            try:
                await broker.connect()
            except BrokerUnavailable as exc:
                # start anyway with this broker marked down: entries go to the other one meanwhile
                down.append(exc)
                self.router.health[name].mark_down(str(exc))
                self.router.unstarted.add(name)
                log.error("broker_down_at_start", broker=name, error=str(exc))
        if len(down) == len(self.brokers):
            raise down[0]
        # events the brokers (re)deliver on connect wait in the bus queue until the book is rebuilt from the
        # journal; only then are they applied (a fill already journaled is recognised and skipped)
        await self.rebuild()
        self._event_task = asyncio.create_task(self._consume_events(), name="broker-events")
        await self.settle()
        await self.measure_clock_offsets()
        await self.recover_open_orders()
        await self.stops.check_at_start()  # every open position has its resting stop; orphans are cancelled
        await self.settle()
        await self.sync_account()

    async def stop(self) -> None:
        """Finish submissions under way, cancel working entries if so configured, flush, disconnect."""
        await self.router.drain(self.settings.shutdown.timeout_seconds / 2)
        self.router.cancel_scheduled()  # TWAP slices not yet due are not sent
        await self.settle()
        if self.settings.shutdown.cancel_inflight_entries:
            await self.cancel_working_entries()
        if self._held_events:
            await self.apply_held_events()
        if self._held_events:
            log.error("broker_events_unapplied_at_shutdown", held=len(self._held_events),
                      reason="the journal still cannot be written; the brokers are asked again at the next start")
        if self._event_task is not None:
            self._event_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._event_task
        for broker in self.brokers.values():
            with contextlib.suppress(Exception):
                await broker.close()
        if self.journal is not None:
            await self.journal.close()
        self.state.flush()

    async def sync_account(self) -> None:
        """Cash and starting equity from the primary broker (the broker's cash already reflects every fill)."""
        name = self.settings.broker.primary
        if not self.brokers[name].is_connected():  # primary down at start-up: the broker that trades meanwhile
            name = next((n for n, b in self.brokers.items() if b.is_connected()), name)
        account = await self.brokers[name].get_account()
        self.ledger.cash = account.cash
        self.external.reset_cash()  # the broker's cash already reflects every hand trade so far
        self.starting_equity = account.equity
        log.info("book_rebuilt", positions=len(self.ledger.holdings), cash=round(account.cash, 2),
                 equity=round(account.equity, 2), open_orders=len(self.book.working()))

    async def cancel_working_entries(self) -> list[str]:
        """Cancel entry orders still working at a broker (shutdown with [shutdown] cancel_inflight_entries)."""
        cancelled = []
        for record in self.book.working():
            intent = record.intent
            if intent.kind != "entry":
                continue
            try:
                await asyncio.wait_for(self.router.cancel(intent.client_order_id, intent.broker),
                                       self.settings.broker.request_timeout_seconds)
                cancelled.append(intent.client_order_id)
                log.info("entry_cancelled_at_shutdown", signal_id=intent.signal_id,
                         client_order_id=intent.client_order_id)
            except Exception as exc:  # filled meanwhile, or the broker is gone: the journal and reconcile tell
                log.warning("entry_cancel_failed", client_order_id=intent.client_order_id, error=str(exc))
        if cancelled:
            await self.settle()
        return cancelled

    async def check_overdue(self) -> list[str]:
        """Accepted market orders that saw no fill in time are looked up at their broker (issue: lost fills).

        A broker that can re-fetch missed events (`resync`) is asked to; otherwise the finding is alerted. Returns
        the client order ids looked up.
        """
        checked = []
        timeout = timedelta(seconds=self.config.fill_timeout_seconds)
        for intent in [r.intent for r in self.book.overdue(self.clock.now(), timeout)]:
            name = self.book.venue(intent.client_order_id) or intent.broker or self.settings.broker.primary
            broker = self.brokers.get(name)
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
                if hasattr(broker, "resync"):
                    await broker.resync()  # type: ignore[attr-defined]
                else:
                    await self.alert("fill_missing", f"{name} reports {filled:g} filled for "
                                     f"{intent.client_order_id} but no fill has arrived", "critical",
                                     client_order_id=intent.client_order_id)
        await self.apply_held_events()
        await self.retry_unjournaled()
        await self.resolve_orders()
        return checked

    async def connect_unstarted(self) -> list[str]:
        """Try again to connect the brokers that were down at start-up; returns those now connected.

        Until then the router does not consider them at all (not even as a half-open probe), since their event
        streams were never started and fills sent there could not be seen.
        """
        connected = []
        for name in sorted(self.router.unstarted):
            try:
                await asyncio.wait_for(self.brokers[name].connect(), self.settings.broker.request_timeout_seconds)
            except Exception as exc:
                log.info("broker_still_down", broker=name, error=str(exc))
                continue
            self.router.unstarted.discard(name)
            self.router.health[name].record_success()
            connected.append(name)
            log.warning("broker_connected_late", broker=name)
        if connected:
            await self.settle()
            await self.recover_open_orders(until_answered=False)  # from the gauges loop: never wait there
        return connected

    async def recover_open_orders(self, *, until_answered: bool = True) -> None:
        """Orders the journal still calls open were sent by an earlier run: ask their broker what became of them.

        A broker that can adopt orders (`track`: Alpaca) is first told how much of each the journal already holds,
        so it emits only what happened while we were down. Then every order not final, at every connected broker,
        is looked up by client order id (`resolve_orders`), with retries until each broker has answered.
        """
        if self.journal is None:
            return
        rows = await self.journal.query(
            "SELECT o.client_order_id, o.broker, o.symbol, o.side, o.created_ts,"
            " COALESCE(SUM(f.quantity), 0) AS qty, COALESCE(SUM(f.quantity * f.price), 0) AS notional"
            " FROM orders o LEFT JOIN fills f ON f.client_order_id = o.client_order_id"
            " WHERE o.status IN ('pending','new','partially_filled') GROUP BY o.client_order_id")
        for row in rows:
            broker = self.brokers.get(row["broker"] or "")
            if broker is None or not hasattr(broker, "track"):  # local bookkeeping: connected or not
                continue
            from pipeline.core.models import Side

            broker.track(row["client_order_id"], filled_qty=row["qty"], filled_notional=row["notional"],
                         symbol=row["symbol"], side=Side(row["side"]),
                         submitted_at=_parse_ts(row["created_ts"]) if row["created_ts"] else None)
        # every broker, by client order id, asking again with backoff until each has answered (READY only after)
        resolutions = await self.resolve_orders(until_answered=until_answered)
        log.info("open_orders_recovered", orders=len(resolutions),
                 found=sum(1 for r in resolutions if r.verdict == Verdict.FOUND))

    # -- no order in limbo (issue 12) ------------------------------------------------------------------
    def open_orders(self) -> list[OpenOrder]:
        """Every order not final that no submission task of this process is sending now, exits first."""
        sending = self.router.sending()
        out = []
        for record in self.book.working():
            intent = record.intent
            if record.client_order_id in sending:
                continue
            broker = record.venue or intent.broker or self.settings.broker.primary
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
        orders = self.resolver.due(self.open_orders())
        if until_answered:
            orders = [o for o in orders if o.broker in self.brokers and self.brokers[o.broker].is_connected()]

            def retrying(unanswered: list[Resolution], delay: float) -> None:
                log.warning("open_orders_lookup_retry", orders=len(unanswered), delay=delay,
                            error=unanswered[0].error, broker=unanswered[0].order.broker)

            resolutions = await self.resolver.resolve_until_answered(orders, on_retry=retrying,
                                                                     stop=self.stop_requested)
        else:
            resolutions = await self.resolver.resolve(orders)
        for resolution in resolutions:
            await self._apply_resolution(resolution)
        if resolutions:
            await self.settle()
            await self._finish_found(resolutions)
        return resolutions

    async def _finish_found(self, resolutions: list[Resolution]) -> None:
        """A final status the broker reports but no event has brought (a broker without `resolve_order`, or one
        whose adapter had already reported it before a restart): applied here, once. Not while fills it claims
        are still missing: those are check_overdue's (resync, else a fill_missing alert)."""
        finished = False
        for r in resolutions:
            result = r.result
            record = self.book.get(r.client_order_id)
            if r.verdict != Verdict.FOUND or result is None or not result.status.is_final \
                    or record is None or record.final or result.filled_qty > record.filled_qty + 1e-9:
                continue
            intent = r.order.intent
            finished = True
            await self._on_broker_event(OrderUpdate(
                result.client_order_id, result.status, r.order.broker, result.broker_order_id,
                result.symbol or intent.symbol, result.side or intent.side, filled_qty=result.filled_qty,
                filled_avg_price=result.filled_avg_price, reason=result.reason, timestamp=self.clock.now()))
        if finished:
            await self.settle()

    async def _apply_resolution(self, resolution: Resolution) -> None:
        order = resolution.order
        if resolution.verdict == Verdict.NEVER_REACHED:
            await self.order_never_reached(order, "not found at the broker on repeated lookups")
        elif resolution.verdict == Verdict.MISSING and order.acknowledged and \
                self.resolver.misses(order.intent.client_order_id) == self.resolver.lookups_required:
            await self.alert("order_missing_at_broker", f"{order.broker} no longer knows "
                             f"{order.intent.client_order_id}, which it acknowledged", "critical",
                             client_order_id=order.intent.client_order_id)

    async def order_never_reached(self, order: OpenOrder, why: str) -> None:
        """The order never got to its broker: final `never_reached`, its reservation freed, an alert, and for an
        exit a fresh exit (the position is never left without one)."""
        intent = order.intent
        coid = intent.client_order_id
        self.resolver.forget(coid)
        log.error("order_never_reached", signal_id=intent.signal_id, client_order_id=coid, broker=order.broker,
                  kind=intent.kind, symbol=intent.symbol, reason=why)
        await self._on_broker_event(OrderUpdate(
            coid, OrderStatus.NEVER_REACHED, order.broker, None, intent.symbol, intent.side,
            reason=f"never reached {order.broker}: {why}", timestamp=self.clock.now()))
        await self.settle()
        await self.alert("order_never_reached", f"{intent.kind} {coid} ({intent.symbol}) never reached "
                         f"{order.broker}: {why}", "critical", client_order_id=coid)
        if intent.kind == STOP_KIND:
            self.stops.request_sync(intent.symbol)  # a protective stop is placed again, never turned into an exit
        elif intent.kind != "entry":
            fresh = self.lifecycle.resend_exit(intent, f"exit {coid} never reached {order.broker}")
            if fresh is not None:
                log.warning("exit_resent", signal_id=intent.signal_id, client_order_id=fresh.client_order_id,
                            replaces=coid, symbol=intent.symbol)

    async def retry_unjournaled(self) -> list[str]:
        """Orders whose intent never made it into the journal (a full disk): dispatched again, exits first, so the
        write is retried once the disk has room. Nothing was sent for them (the journal comes before the send).
        An entry older than [pipeline] max_signal_age_seconds is given up instead (released, alerted)."""
        if self.journal is None:
            return []
        sending = self.router.sending()
        candidates = {r.client_order_id: r.intent for r in self.book.working() if r.client_order_id not in sending}
        if not candidates:
            return []
        marks = ",".join("?" * len(candidates))
        try:
            rows = await self.journal.query(f"SELECT client_order_id FROM orders WHERE client_order_id IN ({marks})",
                                            tuple(candidates))
        except Exception as exc:
            log.warning("journal_unreadable", error=str(exc))
            return []
        for row in rows:
            candidates.pop(row["client_order_id"], None)
        retried = sorted(candidates.values(), key=lambda i: i.kind == "entry")
        max_age = timedelta(seconds=self.config.max_signal_age_seconds)
        now = self.clock.now()
        for intent in [i for i in retried if i.kind == "entry" and i.created_at and now - i.created_at > max_age]:
            # decided on a market that is gone: an entry is never sent late (an exit always is)
            retried.remove(intent)
            coid = intent.client_order_id
            self.book.transition(coid, OrderState.CANCELLED)  # never journaled, never sent
            self.orchestrator.release(coid)
            log.error("entry_not_sent", signal_id=intent.signal_id, client_order_id=coid, symbol=intent.symbol,
                      reason="its journal write failed until it was older than max_signal_age_seconds")
            await self.alert("entry_not_sent", f"entry {coid} ({intent.symbol}) not sent: the journal could not "
                             "record it before it went stale", "warning", client_order_id=coid)
        for intent in retried:
            log.warning("order_intent_retried", signal_id=intent.signal_id, client_order_id=intent.client_order_id,
                        kind=intent.kind, reason="its journal write failed")
            self.router.dispatch(intent)
        if retried:
            await self.settle()
        return [i.client_order_id for i in retried]

    async def measure_clock_offsets(self) -> dict[str, float]:
        """Each connected broker's clock against ours, logged; a skew above [broker] max_clock_skew_seconds is an
        alert (orders are caught up by identity, so a skew hides nothing, but it skews every timestamp)."""
        limit = self.settings.broker.max_clock_skew_seconds
        for name, broker in self.brokers.items():
            measure = getattr(broker, "clock_offset", None)
            if measure is None or not broker.is_connected():
                continue
            try:
                offset = float(await asyncio.wait_for(measure(), self.settings.broker.request_timeout_seconds))
            except Exception as exc:
                log.warning("broker_clock_unmeasured", broker=name, error=str(exc))
                continue
            self.clock_offsets[name] = offset
            log.info("broker_clock_offset", broker=name, offset_seconds=round(offset, 3))
            if abs(offset) > limit:
                await self.alert("broker_clock_skew", f"{name}'s clock is {offset:+.1f}s from ours "
                                 f"(limit {limit:g}s)", "warning", broker=name, offset_seconds=round(offset, 3))
        return self.clock_offsets

    async def flatten(self, reason: str = "flatten") -> dict[str, Any]:
        """Close every position now, including those whose exit is stuck (journaled, never acknowledged, not being
        sent): each is looked up first; one its broker does not hold ends never_reached and is replaced."""
        stuck = [o for o in self.open_orders() if o.intent.kind != "entry" and not o.acknowledged]
        replaced, unanswered = [], []
        for resolution in await self.resolver.resolve(stuck):
            coid = resolution.client_order_id
            if resolution.verdict in (Verdict.MISSING, Verdict.NEVER_REACHED):
                await self.order_never_reached(resolution.order, f"not found at the broker by {reason}")
                replaced.append(coid)
            elif resolution.verdict == Verdict.UNANSWERED:
                unanswered.append(coid)
        exits = self.book.exits
        resent = [exits[o.intent.symbol] for o in stuck
                  if o.intent.client_order_id in replaced and o.intent.symbol in exits]
        intents = await self.lifecycle.emergency_close_all(reason)
        working = sorted(set(exits.values()) - {i.client_order_id for i in intents}
                         - set(resent))
        report = {"exit_orders": resent + [i.client_order_id for i in intents], "stuck_exits": replaced,
                  "exits_working": working, "exits_unanswered": unanswered,
                  "ok": not unanswered}  # a stuck exit its broker could not be asked about: not done
        log.warning("flatten", reason=reason, **report)
        return report

    async def rebuild(self) -> None:
        """The order book, open positions and working orders from the journal: every journaled order's record
        (its state from its journaled status, its venue, its fills by id), each open entry reserving its unfilled
        rest and each open exit its symbol's pending exit."""
        if self.journal is not None:
            for row in await self.journal.query("SELECT client_order_id, intent, status, broker FROM orders"):
                intent = _intent_from_json(row["intent"])
                if intent is not None:
                    venue = row["broker"] if row["broker"] in self.brokers else None
                    self.book.restore(intent, _status_of(row["status"]), venue)
            from pipeline.core.models import Side

            applied: dict[str, float] = {}
            closed = []
            for row in await self.journal.fills():
                fill = Fill(row["fill_id"], row["client_order_id"], row["symbol"], Side(row["side"]),
                            row["quantity"], row["price"], _parse_ts(row["ts"]), row["broker"],
                            row["broker_order_id"], row["commission"] or 0.0)
                record = self.book.get(fill.client_order_id)
                if record is not None:
                    self.book.add_fill(record, fill)  # journaled: a redelivery is recognised by its fill id
                intent = record.intent if record is not None else None
                if intent is not None and intent.reduce_only and fill.symbol not in self.ledger.holdings:
                    # the exit of a position that was not in the journal (adopted from the broker): it closed
                    # that position, it must not open one the other way
                    log.warning("rebuild_exit_without_position", client_order_id=fill.client_order_id,
                                symbol=fill.symbol, quantity=fill.quantity)
                    continue
                trip = self.ledger.apply_fill(fill, intent, intent.exit_type if intent else "")
                if trip is not None:
                    closed.append((trip, fill))
                applied[fill.client_order_id] = applied.get(fill.client_order_id, 0.0) + fill.quantity
            await self.lifecycle.record_missing_trades(closed)
            for record in self.book.working():
                intent = record.intent
                if intent.kind == "entry":
                    # what already filled is in the ledger: the reservation holds the rest only
                    self.book.reserve(intent, filled=applied.get(intent.client_order_id, 0.0))
                elif intent.kind != STOP_KIND:  # a resting protective stop is not a working exit
                    self.book.exits[intent.symbol] = intent.client_order_id
            await self.stops.rebuild()
        self.lifecycle.rebuild_index()

    # -- account view ---------------------------------------------------------------------------------
    def account_state(self) -> AccountState:
        """The book as the risk gate sees it, external positions included (they are real risk)."""
        equity = self.ledger.equity()
        # a short sale's proceeds are cash but not buying power, and the short itself needs as much again: no
        # broker (paper: cash - shorts; Alpaca: margin) funds more than cash - 2 x shorts
        buying_power = max(0.0, self.ledger.cash - 2.0 * self.ledger.short_market_value())
        return self.external.account_view(AccountState(
            equity=equity, cash=self.ledger.cash, buying_power=buying_power,
            open_positions=self.ledger.positions(), daily_pnl=self.state.get_daily_pnl(),
            starting_equity=self.starting_equity or equity))

    # -- broker events --------------------------------------------------------------------------------
    async def _on_broker_event(self, event: BrokerEvent, *, until_applied: bool = False) -> None:
        self._events_in += 1
        self._events_idle.clear()
        if self.event_observer is not None:
            self.event_observer(event)
        if not (until_applied and isinstance(event, Fill)):
            await self.bus.broker_events.publish(event)
            return
        # the broker takes the fill as delivered when this returns: only once it is journaled and applied
        done = asyncio.get_running_loop().create_future()
        self._applied[id(event)] = done
        await self.bus.broker_events.publish(event)
        try:
            await asyncio.wait_for(asyncio.shield(done), FILL_APPLY_WAIT)
        except TimeoutError:
            log.error("fill_not_applied_in_time", fill_id=event.fill_id, client_order_id=event.client_order_id,
                      waited=FILL_APPLY_WAIT)
        finally:
            self._applied.pop(id(event), None)

    def _handler_for(self, broker: Broker) -> Any:
        """The event handler a broker gets: one that returns only once a fill is applied, for a broker that
        redelivers until its handler returns (AcknowledgesFills)."""
        if isinstance(broker, AcknowledgesFills) and broker.acknowledges_fills:
            return functools.partial(self._on_broker_event, until_applied=True)
        return self._on_broker_event

    def _mark_applied(self, event: BrokerEvent) -> None:
        done = self._applied.get(id(event))
        if done is not None and not done.done():
            done.set_result(None)

    async def _consume_events(self) -> None:
        queue = self._event_queue
        while True:
            event = await queue.get()
            try:
                await self._apply_event(event)
            except Exception:
                log.exception("broker_event_failed", client_order_id=getattr(event, "client_order_id", None))
                self._mark_applied(event)  # a fill that cannot be applied is not waited for (it would fail again)
            finally:
                self._events_done += 1
                if self._events_done == self._events_in:
                    self._events_idle.set()

    async def _apply_event(self, event: BrokerEvent) -> None:
        """Apply one broker event; while the journal cannot be written (a full disk) hold it, and every later one
        in order: the journal comes before the ledger, and nothing is dropped."""
        if self._held_events:
            self._held_events.append(event)
            await self.apply_held_events()
            return
        try:
            await self.lifecycle.on_broker_event(event)
        except (sqlite3.Error, OSError) as exc:
            self._held_events.append(event)
            log.error("broker_event_held", client_order_id=getattr(event, "client_order_id", None),
                      event_type=type(event).__name__, reason="journal write failed", error=str(exc))
            return
        self._mark_applied(event)

    async def apply_held_events(self) -> int:
        """Apply the events held while the journal could not be written, oldest first; stops at the first that
        still cannot be journaled. Returns how many were applied."""
        async with self._held_lock:
            return await self._apply_held_events()

    async def _apply_held_events(self) -> int:
        applied = 0
        while self._held_events:
            event = self._held_events[0]
            try:
                await self.lifecycle.on_broker_event(event)
            except (sqlite3.Error, OSError):
                break
            except Exception:  # not a journal problem: as for a live event, logged and not retried
                log.exception("broker_event_failed", client_order_id=getattr(event, "client_order_id", None))
            self._held_events.popleft()
            self._mark_applied(event)
            applied += 1
            record = self.book.get(event.client_order_id)
            intent = record.intent if record is not None else None
            if isinstance(event, OrderUpdate) and event.status == OrderStatus.NEVER_REACHED and intent is not None \
                    and intent.kind not in ("entry", STOP_KIND):
                self.lifecycle.resend_exit(intent, f"exit {intent.client_order_id} never reached {event.broker}")
        if applied:
            log.warning("held_broker_events_applied", applied=applied, still_held=len(self._held_events))
        return applied

    def _on_split(self, parent: OrderIntent, children: list[OrderIntent]) -> None:
        """The parent's reservation passes to its child orders, each tracked as an order of its own."""
        self.orchestrator.release(parent.client_order_id)
        self.book.transition(parent.client_order_id, OrderState.REPLACED)  # never sent itself: nothing to resolve
        for child in children:
            self.book.reserve(child)
            self.lifecycle.register_intent(child)

    async def consume_signals(self) -> None:
        """External signals (webhook, CLI) published on the bus, decided one at a time."""
        queue = self.bus.signals.subscribe() if self._signal_queue is None else self._signal_queue
        self._signal_queue = queue
        while True:
            signal = await queue.get()
            try:
                await self.engine.submit_signal(signal)
            except Exception:
                log.exception("signal_failed", signal_id=getattr(signal, "signal_id", None))

    async def _on_order_result(self, intent: OrderIntent, result: OrderResult) -> None:
        # rejections decided by the router (nothing reached a broker, or a final 4xx) and entries the kill switch
        # stopped before the wire produce no broker event
        withheld = result.status == OrderStatus.CANCELED and not result.found_existing
        if result.status == OrderStatus.REJECTED or withheld:
            await self.lifecycle.on_broker_event(OrderUpdate(
                intent.client_order_id, result.status, result.broker, result.broker_order_id,
                intent.symbol, intent.side, reason=result.reason, timestamp=self.clock.now(),
            ))
        elif result.status in (OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED, OrderStatus.FILLED):
            self.book.accepted(intent.client_order_id, self.clock.now())
        if result.found_existing and result.status.is_final and intent.kind == "entry":
            # a resend after a restart found it already final at the broker: no event will come to release it
            self.orchestrator.release(intent.client_order_id)

    async def settle(self, timeout: float = 10.0) -> None:
        """Wait until in-flight orders and the broker events they caused have been applied.

        Used in simulated time after each step that sent an order (so a replay is deterministic) and at start
        and stop. Event-driven: the router's tasks, each broker's own delivery queue, then our consumer.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            if self.router.in_flight():
                await self.router.drain(max(0.0, deadline - loop.time()))
            for broker in self.brokers.values():
                flush = getattr(broker, "drain", None) or getattr(broker, "flush_events", None)
                if flush is not None and broker.is_connected():
                    with contextlib.suppress(Exception):
                        await flush(timeout=max(0.01, deadline - loop.time()))
            if self._event_task is not None and not self._event_task.done():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._events_idle.wait(), max(0.01, deadline - loop.time()))
            else:
                await asyncio.sleep(0)
            if not self.router.in_flight() and self._events_in == self._events_done:
                return
        log.warning("settle_timed_out", in_flight=self.router.in_flight(),
                    events_pending=self._events_in - self._events_done)

    async def alert(self, kind: str, message: str, severity: str = "warning", **fields: Any) -> None:
        if self.alert_hook is not None:
            await self.alert_hook(kind, message, severity, **fields)
        else:
            log.warning("alert", kind=kind, message=message, severity=severity, **fields)

    def _alert_soon(self, kind: str, message: str, severity: str = "warning") -> None:
        """Fire-and-forget alert from synchronous code (a kill switch trip in a signal handler)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            log.warning("alert", kind=kind, message=message, severity=severity)
            return
        task = loop.create_task(self.alert(kind, message, severity))
        self._alert_tasks.add(task)
        task.add_done_callback(self._alert_tasks.discard)

    # -- reconciliation -------------------------------------------------------------------------------
    async def reconcile(self) -> ReconciliationReport:
        """One reconciliation pass over every connected broker (see `daemon.reconciliation`)."""
        report = await self.reconciliation.run()
        self.stops.refresh()  # the resting stops follow what it learned (someone else's trades cap them)
        return report

    def _on_external_fill(self, fill: Any) -> bool:
        """Someone else's fill: counted as external; a resting stop of ours on that symbol never sells more than
        the account still holds of ours."""
        fresh = self.external.apply_fill(fill)
        self.stops.request_sync(fill.symbol)
        return fresh

    async def reconcile_at_start(self) -> ReconciliationReport:
        """The start-up reconciliation before READY: a difference the first check sees is checked once more."""
        return await self.reconciliation.at_start()

    # -- views ----------------------------------------------------------------------------------------
    def positions(self) -> list[dict[str, Any]]:
        """ordergate's own positions (`adopted`: taken over from the broker, managed with a visible stop)."""
        return [self._position_row(p) for p in self.ledger.positions()]

    def external_positions(self) -> list[dict[str, Any]]:
        """Positions at the broker that ordergate did not open: counted as risk, never traded (no stop of ours)."""
        rows = [self._position_row(p) for p in self.external.positions()]
        for row in rows:
            row["stop_loss"] = None
        return rows

    def _position_row(self, p: Position) -> dict[str, Any]:
        return {"ticker": p.ticker, "symbol": p.symbol, "direction": str(p.direction), "shares": p.shares,
                "entry_price": round(p.entry_price, 4), "current_price": round(p.current_price, 4),
                "stop_loss": p.stop_loss, "target_price": p.target_price, "unrealized_pnl": round(p.unrealized_pnl, 2),
                "broker": p.broker, "signal_id": p.signal_id, "sector": self.orchestrator.sectors.get(p.ticker),
                "strategy": p.strategy,
                "entry_time": p.entry_time.isoformat() if p.entry_time else None,
                "external": p.origin == "external", "adopted": p.origin == "adopted",
                "resting_stop": self.stops.view(p.symbol) if p.origin != "external" else None}

    async def daily_summary(self, day: date | None = None) -> dict[str, Any]:
        if self.trades is None:
            return {}
        return await self.trades.daily_summary(day)


def _intent_from_json(text: str | None) -> OrderIntent | None:
    import json

    from pipeline.core.models import AssetClass, Direction, InstrumentType, OrderType, Side

    if not text:
        return None
    data = json.loads(text)
    try:
        data["side"] = Side(data["side"])
        data["order_type"] = OrderType(data["order_type"])
        data["asset_class"] = AssetClass(data["asset_class"])
        data["direction"] = Direction(data["direction"])
        data["instrument_type"] = InstrumentType(data["instrument_type"])
        data["created_at"] = _parse_ts(data["created_at"]) if data.get("created_at") else None
        return OrderIntent(**data)
    except (KeyError, ValueError, TypeError) as exc:
        log.error("journal_intent_unreadable", error=str(exc))
        return None


def _status_of(text: str | None) -> OrderStatus | None:
    try:
        return OrderStatus(text) if text else None
    except ValueError:
        return None


def _parse_ts(text: str) -> Any:
    from datetime import datetime

    return datetime.fromisoformat(text)


class Daemon:
    """The process: core + feed + control socket + OS signals + systemd + metrics + webhook."""

    def __init__(self, settings: Settings, config_file: str | None = None, *,
                 overrides: dict[str, Any] | None = None) -> None:
        problem = live_rule_problem(settings)  # `ordergate run` refuses it earlier; nothing may build it anyway
        if problem:
            raise ConfigError(problem)
        self.settings = settings
        self.config_file = config_file
        self.overrides = dict(overrides or {})  # the CLI's settings: a reload applies them again
        self._interval_changed = asyncio.Event()  # a reload changed [reconcile] interval_seconds
        live_data = settings.data.source == "alpaca"
        self.clock: Clock = LiveClock() if live_data else SimulatedClock()
        self.core = Core(settings, self.clock)
        self.notifier = SystemdNotifier()
        self.control = ControlServer(socket_path(self.core.state_dir), self._handlers())
        self._stop = asyncio.Event()
        self.core.stop_requested = self._stop.is_set
        self._tasks: list[asyncio.Task[Any]] = []
        self.ready = False
        self.feed_done = False
        self._heartbeat = 0.0
        self._trading: Any = None
        self.services = Services(self)

    # -- run ------------------------------------------------------------------------------------------
    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig, handler in ((os_signal.SIGUSR1, self._on_sigusr1), (os_signal.SIGTERM, self._on_stop),
                             (os_signal.SIGINT, self._on_stop), (os_signal.SIGHUP, self._on_sighup)):
            loop.add_signal_handler(sig, handler)
        log.info("daemon_starting", pid=os.getpid(), state_dir=str(self.core.state_dir),
                 broker=self.settings.broker.primary, data=self.settings.data.source)
        await self.control.start()
        try:
            await self.services.start_before_core()
            await self.core.start()
            await fail_closed_if_journal_lost(self.core)
            await self.core.reconcile_at_start()
            await self.services.start_after_core()
            self.ready = True
            active = self.core.kill_switch.is_active()
            self.notifier.ready(status="kill switch active" if active else "trading")
            log.info("daemon_ready", kill_switch=active,
                     positions=len(self.core.ledger.holdings), **await ready_summary(self.core, self.clock))
            interval = watchdog_interval()
            if interval:
                self._tasks.append(asyncio.create_task(watchdog_loop(self.notifier, interval), name="watchdog"))
            self._tasks.append(asyncio.create_task(self._pump_bars(), name="bars"))
            self._tasks.append(asyncio.create_task(self._housekeeping(), name="housekeeping"))
            self._tasks.append(asyncio.create_task(self.core.consume_signals(), name="signals"))
            self._tasks.append(asyncio.create_task(self._gauges(), name="gauges"))
            self._tasks.append(asyncio.create_task(self._journal_writer(), name="journal-writer"))
            await self._stop.wait()
        finally:
            await self._shutdown()
            self._hand_over_signals()
        return 0

    async def _pump_bars(self) -> None:
        feed = make_feed(self.settings, self.clock, self.core.calendar)
        engine = self.core.engine
        first = True
        last_log = 0
        resume = await self._resume_point(feed)
        skipped: deque[list[Bar]] = deque(maxlen=RESUME_WARM_BATCHES)
        last_traded: datetime | None = None
        try:
            if not self.clock.simulated:
                try:
                    await self._warm_up(feed)
                except Exception:  # the strategy then warms up on live bars
                    log.exception("warm_up_failed")
            async for batch in feed.batches():
                if self._stop.is_set():
                    break
                if resume is not None:
                    if batch[0].timestamp <= resume:
                        skipped.append(batch)  # traded by an earlier run of this state dir
                        continue
                    self._resumed(resume, skipped)
                    resume = None
                await engine.on_batch(batch)
                last_traded = batch[0].timestamp
                if self.clock.simulated and engine.batches % RESUME_EVERY_BATCHES == 0:
                    await self._save_resume_point(last_traded)
                self.services.bars(len(batch))
                if first:
                    log.info("bars_flowing", symbols=len(batch), bar_time=batch[0].timestamp.isoformat())
                    first = False
                if engine.batches - last_log >= 200:
                    last_log = engine.batches
                    log.info("bars", batches=engine.batches, bars=engine.bars, last=batch[0].timestamp.isoformat(),
                             signals=engine.signals, entries=engine.entries, exits=engine.exits,
                             positions=len(self.core.ledger.holdings), equity=round(self.core.ledger.equity(), 2))
        except Exception:
            log.exception("feed_failed")
        finally:
            await feed.close()
            if self.clock.simulated and last_traded is not None:
                await self._save_resume_point(last_traded)
        self.feed_done = True
        log.info("feed_finished", batches=engine.batches, bars=engine.bars, signals=engine.signals,
                 entries=engine.entries, exits=engine.exits)

    async def _resume_point(self, feed: MarketDataFeed) -> datetime | None:
        """Where a simulated run on this state dir left off (the journal remembers it): the bars up to there were
        traded already, so a restart continues the sessions instead of trading them again."""
        journal = self.core.journal
        if not self.clock.simulated or journal is None:
            return None
        stored = await journal.get_kv(RESUME_KEY)
        if not isinstance(stored, str):
            return None
        try:
            resume = datetime.fromisoformat(stored)
        except ValueError:
            log.error("simulated_feed_position_unreadable", value=stored[:100])
            return None
        feed.unpaced_until = resume  # type: ignore[attr-defined]  # simulated feeds: no pacing while skipping
        return resume

    def _resumed(self, resume: datetime, skipped: deque[list[Bar]]) -> None:
        for batch in skipped:
            self.core.engine.warm_up(batch)
        log.info("simulated_feed_resumed", after=resume.isoformat(), warmed_batches=len(skipped))
        skipped.clear()

    async def _save_resume_point(self, timestamp: datetime) -> None:
        if self.core.journal is not None:
            try:
                await self.core.journal.set_kv(RESUME_KEY, timestamp.isoformat())
            except Exception as exc:  # a full disk: the run goes on, a restart re-trades a few more bars
                log.warning("simulated_feed_position_not_saved", error=str(exc))

    async def _warm_up(self, feed: MarketDataFeed) -> None:
        """A live feed's history before now goes through the strategy's clouds (no signals, no exits), so it
        can trade from the first live bar instead of after warmup_bars bars of its largest timeframe."""
        strategy = self.core.strategy
        sessions = min(WARM_UP_MAX_SESSIONS, math.ceil(strategy.warm_up_minutes() / SESSION_MINUTES) + 1)
        start = self.core.calendar.open_sessions_back(self.clock.now(), sessions)
        batches = await feed.warm_up(start)
        for batch in batches:
            self.core.engine.warm_up(batch)
        warm = sum(strategy.is_warm(s, tf) for s in self.settings.data.tickers for tf in strategy.timeframes)
        log.info("strategy_warmed_up", batches=len(batches), start=start.isoformat(), sessions=sessions,
                 warm=warm, of=len(self.settings.data.tickers) * len(strategy.timeframes))

    async def _housekeeping(self) -> None:
        while not self._stop.is_set():
            await self._reconcile_wait()
            try:
                if self.core.state.check_day_rollover():
                    log.info("day_rollover", day=str(self.core.calendar.trading_day(self.clock.now())))
                await self.core.reconcile()
                self.core.engine.prune()
                if self.core.journal is not None:
                    await self.core.journal.flush()
            except Exception:
                log.exception("housekeeping_failed")

    async def _reconcile_wait(self) -> None:
        """Sleep `[reconcile] interval_seconds`; a reload that changes it starts the wait over at the new value."""
        while True:
            self._interval_changed.clear()
            try:
                await asyncio.wait_for(self._interval_changed.wait(), self.settings.reconcile.interval_seconds)
            except TimeoutError:
                return

    async def _gauges(self) -> None:
        """Once a second: loop heartbeat (for /healthz), gauges, broker-down alerts."""
        ticks = 0
        while True:
            self._heartbeat = asyncio.get_running_loop().time()
            self.core.kill_switch.retry()  # a trip whose write failed is written again until it lands
            await self.services.refresh()
            ticks += 1
            if ticks % 5 == 0:
                if self.core.router.unstarted:
                    await self.core.connect_unstarted()
                await self.core.check_overdue()
            await asyncio.sleep(1.0)

    async def _journal_writer(self) -> None:
        """Commit buffered signal and decision rows every [journal] batch_interval_ms (off the decision path)."""
        journal = self.core.journal
        if journal is None:
            return
        interval = self.settings.journal.batch_interval_ms / 1000.0
        while True:
            await asyncio.sleep(interval)
            if journal.pending_count():
                try:
                    await journal.flush()
                except Exception:
                    log.exception("journal_flush_failed", pending=journal.pending_count())

    def healthy(self) -> tuple[bool, str]:
        """For /healthz: the loop answers and the primary broker is connected."""
        lag = asyncio.get_running_loop().time() - self._heartbeat
        if self._heartbeat and lag > 5.0:
            return False, f"event loop unresponsive for {lag:.1f}s"
        primary = self.settings.broker.primary
        broker = self.core.brokers[primary]
        state = self.core.router.health[primary].state
        if not broker.is_connected() or state == "down":
            return False, f"primary broker {primary} is {'down' if state == 'down' else 'disconnected'}"
        return True, "ok"

    async def _shutdown(self) -> None:
        # OS signals stay handled to the end: SIGUSR1 still trips the kill switch (durably); another SIGTERM or
        # SIGINT, or a SIGHUP, is logged and changes nothing
        loop = asyncio.get_running_loop()
        for sig in (os_signal.SIGTERM, os_signal.SIGINT, os_signal.SIGHUP):
            loop.add_signal_handler(sig, self._on_signal_while_stopping, sig)
        self.notifier.stopping(status="shutting down")
        log.info("daemon_stopping")
        await self.services.stop_intake()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        with contextlib.suppress(Exception):
            await self.core.stop()
        await self.services.stop()
        await self.control.stop()
        log.info("daemon_stopped")

    # -- OS signals -----------------------------------------------------------------------------------
    def _on_signal_while_stopping(self, sig: int) -> None:
        log.warning("signal_ignored_during_shutdown", signal=os_signal.Signals(sig).name)

    def _hand_over_signals(self) -> None:
        """Before the event loop closes (which would put the default actions back: SIGUSR1's kills the process),
        hand the signals to plain handlers that live until the process exits. Blocked meanwhile, so none is lost
        or gets the default action in between."""
        loop = asyncio.get_running_loop()
        handled = {os_signal.SIGUSR1, os_signal.SIGTERM, os_signal.SIGINT, os_signal.SIGHUP}
        previous = os_signal.pthread_sigmask(os_signal.SIG_BLOCK, handled)
        try:
            for sig in handled:
                loop.remove_signal_handler(sig)
            os_signal.signal(os_signal.SIGUSR1, lambda _sig, _frame: self._on_sigusr1())
            for sig in handled - {os_signal.SIGUSR1}:
                os_signal.signal(sig, lambda sig, _frame: self._on_signal_while_stopping(sig))
        finally:
            os_signal.pthread_sigmask(os_signal.SIG_SETMASK, previous)

    def _on_sigusr1(self) -> None:
        self.core.kill_switch.activate("SIGUSR1 received", source="signal")  # logs and alerts the trip
        self.notifier.status("kill switch active" if self.core.kill_switch.durable
                             else "kill switch active (NOT on disk)")

    def request_stop(self) -> None:
        """Stop as SIGTERM would."""
        self._on_stop()

    def _on_stop(self) -> None:
        log.info("shutdown_requested")
        self._stop.set()

    def _on_sighup(self) -> None:
        """Reload the config: a new, validated settings object handed to every component that reads settings
        (daemon/reload.py); an invalid file changes nothing, a restart-only change is named and not applied."""
        plan = read_reload(self.settings, self.config_file, self.overrides)
        if plan is None:
            return
        self.reconfigure(plan.settings)
        if "reconcile.interval_seconds" in plan.applied:
            self._interval_changed.set()
        log_reloaded(plan)

    def reconfigure(self, settings: Settings) -> None:
        """Run with `settings` from now on (validated; restart-only fields equal to the running ones)."""
        self.settings = settings
        self.core.reconfigure(settings)
        self.services.reconfigure(settings)

    # -- control commands -----------------------------------------------------------------------------
    def _handlers(self) -> dict[str, Any]:
        return {
            "status": self._cmd_status,
            "kill": self._cmd_kill,
            "resume": self._cmd_resume,
            "positions": self._cmd_positions,
            "orders": self._cmd_orders,
            "flatten": self._cmd_flatten,
            "reconcile": self._cmd_reconcile,
            "journal": self._cmd_journal,
            "signal": self._cmd_signal,
            "buy": self._cmd_buy,
            "sell": self._cmd_sell,
            "rebalance": self._cmd_rebalance,
            "decisions": self._cmd_decisions,
        }

    async def _cmd_status(self, _args: dict[str, Any]) -> dict[str, Any]:
        core = self.core
        info = core.kill_switch.info()
        equity = core.ledger.equity()
        exposure: dict[str, float] = {}
        for p in core.ledger.positions():
            sector = core.orchestrator.sectors.get(p.ticker) or "unknown"
            exposure[sector] = round(exposure.get(sector, 0.0) + p.market_value, 2)
        return {
            "running": True,
            "pid": os.getpid(),
            "ready": self.ready,
            "kill_switch": {"active": bool(info.get("active")), "reason": info.get("reason"),
                            "since": info.get("since"), "durable": info["durable"],
                            "write_error": info["write_error"]},
            "daily_pnl": core.state.get_daily_pnl(),
            "open_positions": len(core.ledger.holdings),
            "positions": core.positions(),
            "external_positions": core.external_positions(),  # not ordergate's: counted as risk, never traded
            "open_orders": len(core.book.reserved()) + len(core.book.exits),
            "working_orders": sorted({r.client_order_id for r in core.book.reserved()} | set(core.book.exits.values())),
            "order_book": core.book.snapshot(),  # every working order's record (state, fills, reservation, venue)
            "equity": round(equity, 2),
            "cash": round(core.ledger.cash, 2),
            "realized_pnl": round(core.ledger.realized_pnl, 2),
            "unrealized_pnl": round(core.ledger.unrealized_pnl(), 2),
            "exposure_by_sector": exposure,
            "circuit_breaker": core.state.get_circuit_breaker_status(),
            "brokers": {n: h.snapshot() for n, h in core.router.health.items()},
            "stats": {"bars": core.engine.bars, "signals": core.engine.signals, "entries": core.engine.entries,
                      "exits": core.engine.exits, "round_trips": core.lifecycle.round_trips,
                      "feed_done": self.feed_done},
            "clock": self.clock.now().isoformat(),
            "quotes": {t: core.ledger.last_prices.get(t) for t in self.settings.data.tickers},
            "last_reconciliation": core.last_reconciliation,
        }

    async def _cmd_decisions(self, args: dict[str, Any]) -> list[dict[str, Any]]:
        """The newest signals and where each stopped (`ordergate watch`, the dashboard's feed)."""
        from daemon.dashboard import DashboardData

        before = args.get("before")
        return await DashboardData(self, self.settings.dashboard.page_rows).decisions(
            int(before) if before is not None else None, int(args.get("limit") or 50))

    async def _cmd_kill(self, args: dict[str, Any]) -> dict[str, Any]:
        # the reason is logged, alerted and kept in the state file: a pasted credential is blanked out first
        reason = scrub_secrets(str(args.get("reason") or "ordergate kill"), self.settings.secret_values())
        self.core.kill_switch.activate(reason, source="cli")  # logs and alerts; never raises for a failed write
        return self.core.kill_switch.info()

    async def _cmd_resume(self, _args: dict[str, Any]) -> dict[str, Any]:
        self.core.kill_switch.deactivate(source="cli")
        return self.core.kill_switch.info()

    async def _cmd_positions(self, _args: dict[str, Any]) -> list[dict[str, Any]]:
        return self.core.positions() + self.core.external_positions()

    async def _cmd_orders(self, _args: dict[str, Any]) -> list[dict[str, Any]]:
        if self.core.journal is None:
            return []
        return await self.core.journal.query(
            "SELECT client_order_id, signal_id, kind, broker, symbol, side, quantity, status, filled_qty,"
            " filled_avg_price, reason, created_ts FROM orders ORDER BY created_ts DESC LIMIT 200")

    async def _cmd_flatten(self, _args: dict[str, Any]) -> dict[str, Any]:
        return await self.core.flatten("ordergate flatten")

    async def _cmd_reconcile(self, _args: dict[str, Any]) -> dict[str, Any]:
        await self.core.reconcile()
        return self.core.last_reconciliation or {}

    async def _cmd_journal(self, args: dict[str, Any]) -> dict[str, Any]:
        day = date.fromisoformat(args["day"]) if args.get("day") else self.core.calendar.trading_day(self.clock.now())
        return await self.core.daily_summary(day)

    def trading_service(self) -> Any:
        """The high-level buy/sell/rebalance API over this daemon's core (built on first use)."""
        if self._trading is None:
            from pipeline.trading_service import TradingConfig, TradingService

            core = self.core
            self._trading = TradingService(
                TradingConfig.from_settings(self.settings), orchestrator=core.orchestrator, ledger=core.ledger,
                price_lookup=core.orchestrator.market_price, account=core.account_state, clock=self.clock,
                lifecycle=core.lifecycle, settle=core.settle,
            )
        return self._trading

    async def _cmd_buy(self, args: dict[str, Any]) -> dict[str, Any]:
        result = await self.trading_service().buy(str(args.get("ticker", "")), **_trade_size(args))
        return result.to_dict()

    async def _cmd_sell(self, args: dict[str, Any]) -> dict[str, Any]:
        service = self.trading_service()
        result = await service.sell(str(args.get("ticker", "")), short=bool(args.get("short")), **_trade_size(args))
        return result.to_dict()

    async def _cmd_rebalance(self, args: dict[str, Any]) -> dict[str, Any]:
        service = self.trading_service()
        targets = args.get("targets")
        if not isinstance(targets, dict):
            raise ValueError("targets: expected a table of ticker = weight")
        proposal = await service.preview_rebalance({str(k): v for k, v in targets.items()})
        if not args.get("execute"):
            return {"executed": False, "proposal": proposal.to_dict()}
        proposal.approved = True
        result = await service.execute_rebalance(proposal)
        return {"executed": result.executed, "proposal": proposal.to_dict(), "result": result.to_dict()}

    async def _cmd_signal(self, args: dict[str, Any]) -> dict[str, Any]:
        from pipeline.core.models import TradeSignal

        signal = TradeSignal(
            signal_type=args.get("signal_type", "manual"), direction=args.get("direction", ""),
            ticker=str(args.get("ticker", "")).upper(), timeframe=args.get("timeframe", "5m"),
            conviction=float(args.get("conviction", 75)), entry_price=float(args.get("entry_price", 0)),
            stop_loss=float(args.get("stop_loss", 0)),
            target_price=float(args["target_price"]) if args.get("target_price") else None,
            timestamp=self.clock.now(), source="cli",
        )
        result = await self.core.engine.decide_signal(signal)
        accepted = result.success and result.intent is not None
        reply: dict[str, Any] = {"accepted": accepted, "signal_id": signal.signal_id}
        if not accepted:
            reply.update(stage=result.pipeline_stage, reason=result.rejection_reason)
        return reply


def _trade_size(args: dict[str, Any]) -> dict[str, float | None]:
    dollars, shares = args.get("dollars"), args.get("shares")
    return {"dollars": float(dollars) if dollars is not None else None,
            "shares": float(shares) if shares is not None else None}




class Services:
    """The operator surface around the core: alerts, metrics endpoint, webhook intake."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.settings = daemon.settings
        self.alerts: Any = None
        self.metrics: Any = None
        self.metrics_server: Any = None
        self.webhook: Any = None
        self.broker_monitor: Any = None
        self.metrics_port: int | None = None
        self.webhook_port: int | None = None
        self.dashboard: Any = None
        self.telegram: Any = None
        self.dashboard_port: int | None = None

    async def start_before_core(self) -> None:
        from adapters.alerts import AlertDispatcher, BrokerDownMonitor, build_alert_sinks
        from daemon.metrics import Metrics

        core = self.daemon.core
        wall = LiveClock()
        # [pipeline] enable_alerting=false: alerts are only logged (no journal row, no webhook)
        sinks = build_alert_sinks(self.settings.alerts, core.journal) if self.settings.pipeline.enable_alerting else []
        self.alerts = AlertDispatcher(self.settings.alerts, wall, sinks)
        self.alerts.start()
        self.broker_monitor = BrokerDownMonitor(self.alerts, wall, self.settings.alerts.broker_down_alert_seconds)

        async def hook(kind: str, message: str, severity: str = "warning", **fields: Any) -> None:
            await self.alerts.alert(kind, message, severity, **fields)

        core.alert_hook = hook
        self.metrics = metrics = Metrics()
        core.orchestrator._observer = self._observe_stage
        core.event_observer = self._observe_event
        for topic in core.bus.topics():
            metrics.watch_queue_depth(topic.name, topic.depth)

    async def start_after_core(self) -> None:
        from adapters.webhook import WebhookServer
        from daemon.metrics import MetricsServer

        if self.settings.metrics.port:
            self.metrics_server = MetricsServer(self.settings.metrics, self.metrics, self.daemon.healthy)
            self.metrics_port = await self.metrics_server.start()  # it logs metrics_listening
        if self.settings.webhook.token is not None and self.settings.webhook.token.get_secret_value():
            self.webhook = WebhookServer(self.settings.webhook, self._submit_external, self.daemon.clock,
                                         secrets=self.settings.secret_values())
            self.webhook_port = await self.webhook.start()  # it logs webhook_listening
        if self.settings.dashboard.token is not None and self.settings.dashboard.token.get_secret_value():
            from daemon.dashboard import DashboardData, DashboardServer

            self.dashboard = DashboardServer(self.settings.dashboard,
                                             DashboardData(self.daemon, self.settings.dashboard.page_rows),
                                             self.daemon.core.kill_switch)
            self.dashboard_port = await self.dashboard.start()  # it logs dashboard_listening
        if self.settings.telegram.token is not None and self.settings.telegram.token.get_secret_value().strip():
            from daemon.telegram_bot import TelegramBot

            self.telegram = TelegramBot(self.settings.telegram, self.daemon)
            self.telegram.start()  # it logs telegram_listening once the Bot API answers

    async def _submit_external(self, signal: Any) -> str:
        """Webhook intake: id and journal row first (so a 202 is never lost), then the pipeline's queue."""
        from pipeline.record.recorder import signal_id_for

        core = self.daemon.core
        if not signal.signal_id:
            signal.signal_id = signal_id_for(signal)
        if core.journal is not None:
            core.journal.record_signal(signal, self.daemon.clock.now())
            core.journal.record_decision(signal.signal_id, "intake", "accepted", str(signal.source),
                                         self.daemon.clock.now())
            await core.journal.flush()
        await core.bus.signals.publish(signal)
        return signal.signal_id

    def _observe_stage(self, stage: str, outcome: str, seconds: float) -> None:
        self.metrics.signal(stage, outcome)
        self.metrics.observe_latency("decision", seconds)

    def _observe_event(self, event: Any) -> None:
        from pipeline.core.models import Fill

        if isinstance(event, Fill):
            self.metrics.fill(event.broker)
        else:
            self.metrics.order(event.broker, str(event.status))

    def reconfigure(self, settings: Settings) -> None:
        """Reloaded settings for the operator surface: alert repeat interval and broker-down threshold, the
        webhook's rate limit."""
        self.settings = settings
        if self.alerts is not None:
            self.alerts.reconfigure(settings.alerts)
        if self.broker_monitor is not None:
            self.broker_monitor.reconfigure(settings.alerts.broker_down_alert_seconds)
        if self.webhook is not None:
            self.webhook.reconfigure(settings.webhook)

    def bars(self, count: int) -> None:
        if self.metrics is not None:
            self.metrics.bars(count)

    def alert_nowait(self, kind: str, message: str, severity: str = "warning") -> None:
        if self.alerts is not None:
            self.alerts.alert_nowait(kind, message, severity)

    async def refresh(self) -> None:
        core = self.daemon.core
        metrics = self.metrics
        if metrics is None:
            return
        metrics.set_kill_switch(core.kill_switch.is_active())
        metrics.set_daily_pnl(core.state.get_daily_pnl())
        metrics.set_open_positions(len(core.ledger.holdings))
        for name, health in core.router.health.items():
            broker = core.brokers[name]
            state = health.state if broker.is_connected() else "down"
            metrics.set_broker_health(name, state)
            await self.broker_monitor.check(name, state != "down")

    async def stop_intake(self) -> None:
        if self.webhook is not None:
            self.webhook.begin_shutdown()

    async def stop(self) -> None:
        for service in (self.telegram, self.dashboard, self.webhook, self.metrics_server):
            if service is not None:
                with contextlib.suppress(Exception):
                    await service.stop()
        if self.alerts is not None:
            with contextlib.suppress(Exception):
                await self.alerts.stop()
