"""The Core: everything that trades, assembled from settings (journal, state, brokers, ledger, orchestrator,
lifecycle, engine), and its own run: start (recovery first), stop, settle, the account view.

Start-up order: state file (kill switch fails closed) -> journal -> brokers connected -> ledger rebuilt from
the journal -> first reconciliation -> READY=1 -> bars flow. Shutdown: stop intake, finish or cancel
in-flight entries, flush journal and state, STOPPING=1, exit 0. Shared by the daemon and `ordergate replay`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import structlog

from config.settings import Settings
from daemon.broker_events import BrokerEvents
from daemon.broker_time import fills_through
from daemon.journal_backend import make_journal
from daemon.limbo import OrderLimbo
from daemon.reconciliation import Reconciliation
from daemon.recovery import Recovery
from daemon.wiring import make_broker
from daemon.working_entries import WorkingEntries
from pipeline.core.bus import Bus
from pipeline.core.calendar import MarketCalendar, default_calendar
from pipeline.core.clock import Clock
from pipeline.core.models import AccountState, Position
from pipeline.core.ports import (
    Broker,
    BrokerUnavailable,
    ChainVenue,
    FlushesEvents,
    OptionChainProvider,
    Prunable,
    WatchesBars,
)
from pipeline.engine import TradingEngine
from pipeline.entry.price_source import MarketPrices
from pipeline.entry.strategy_budget import StrategyBudgets
from pipeline.execution.fill_validator import OrderValidator
from pipeline.execution.order_record import OrderBook
from pipeline.execution.order_resolver import OrderResolver
from pipeline.execution.order_router import OrderRouter
from pipeline.execution.protective_stops import ProtectiveStops
from pipeline.instruments.catalog import load_sectors
from pipeline.instruments.chains import chain_tickers
from pipeline.orchestrator import BotOrchestrator
from pipeline.positions.account import AccountBook
from pipeline.positions.external import ExternalBook
from pipeline.positions.ledger import Ledger
from pipeline.positions.lifecycle import LifecycleManager
from pipeline.positions.reconciler import PositionReconciler, ReconciliationReport
from pipeline.record.alerting import AlertRelay
from pipeline.record.feedback import FeedbackTracker
from pipeline.record.journal import Journal
from pipeline.record.marks import MARKS_KEY, snapshot
from pipeline.record.strategy_pnl import StrategyPnL
from pipeline.record.trade_journal import TradeJournalWriter, TradeList
from pipeline.safety.kill_switch import KillSwitch
from pipeline.safety.state_manager import PersistentStateManager

log = structlog.get_logger("ordergate.daemon")


class Core:
    """Everything that trades: journal, state, brokers, ledger, orchestrator, lifecycle, engine.

    Shared by the daemon and by `ordergate replay`. Recovery (`recovery`), the open orders' resolution (`limbo`),
    the broker events (`events`) and reconciliation (`reconciliation`) are its parts, each in a module of its own.
    """

    def __init__(self, settings: Settings, clock: Clock, *, state_dir: Path | None = None,
                 calendar: MarketCalendar | None = None, replay: bool = False) -> None:
        """`replay`: a backtest in a throwaway state dir (simulated clock only): no fsync, no journal thread."""
        if replay and not clock.simulated:
            raise ValueError("a replay runs on a simulated clock")
        self.settings = settings
        self.clock = clock
        self.state_dir = Path(state_dir or settings.state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.calendar = calendar or default_calendar()
        self.config = settings.pipeline
        # a replay trades in a throwaway directory: no fsync and no disk thread; the daemon keeps both
        self.replay = replay
        self.state = PersistentStateManager(self.state_dir, clock, self.calendar, durable=not replay)
        self.alerts = AlertRelay()  # the daemon's services attach their dispatcher
        self.kill_switch = KillSwitch(self.state, alert=self.alerts.alert_soon)  # every trip goes through it
        # SQLite or PostgreSQL ([journal] backend); batched (no fsync) for a replay, or on simulated time where the
        # setting asks for it; live is full
        self.journal: Journal | None = make_journal(
            settings, self.state_dir,
            durability="batched" if replay else settings.journal.durability if clock.simulated else "full",
            replay=replay)
        names = [settings.broker.primary] + ([settings.broker.fallback] if settings.broker.fallback else [])
        self.brokers: dict[str, Broker] = {n: make_broker(n, settings, clock, self.state_dir) for n in names}
        for broker in self.brokers.values():
            broker.set_send_guard(self.kill_switch.guard)  # checked by the adapter right before the wire
        self.bus = Bus()
        self.ledger = Ledger(cash=0.0)
        self.external = ExternalBook(self.ledger.last_price)  # positions at the broker that are not ours
        self.account = AccountBook(self.ledger, self.external, self.state)
        self.prices = MarketPrices(self.brokers[settings.broker.primary], self.ledger)
        # one record per client order id (pipeline.execution.order_record): the router, the validator, the
        # reservations, the lifecycle and the resolver read and move orders through it
        self.book = OrderBook()
        self.router = OrderRouter(self.brokers, self.journal, clock, self.config, settings.broker,
                                  kill_switch=self.kill_switch, book=self.book, smart=self._smart_router())
        self.feedback = FeedbackTracker(self.config)
        self.strategy = self._strategy()
        self.sectors = load_sectors()  # ticker -> sector (shipped), for the risk gate and the views
        validator = OrderValidator(self.config.fill_slippage_tolerance, self.config.fill_timeout_seconds, self.book)
        # each strategy's closed P&L per day (pipeline.record) and its own limits inside the account's (entry)
        self.strategy_pnl = StrategyPnL()
        self.budgets = StrategyBudgets(settings.effective_strategies(), settings.executor, self.strategy_pnl,
                                       also_known=[settings.webhook.strategy])
        # closed trades: the journal's table; a replay without a journal keeps them in memory (it reports them)
        self.trades = TradeJournalWriter(self.journal) if self.journal is not None else TradeList() if replay else None
        self.lifecycle = LifecycleManager(
            self.config, ledger=self.ledger, state=self.state, clock=clock, calendar=self.calendar,
            router=self.router, journal=self.journal, validator=validator, feedback=self.feedback,
            clouds=self.strategy, alert=self.alerts.alert, starting_equity=self.account.get_starting_equity,
            kill_switch=self.kill_switch, external=self.external, strategy_pnl=self.strategy_pnl,
            quote=self.prices.price,  # held options: marked from the primary broker's quote on the underlying's bar
            trades=self.trades,
        )
        self.router.send_results_to(self.lifecycle.on_order_result)
        self.orchestrator = BotOrchestrator(
            self.config, self.account.account_state, clock=clock, calendar=self.calendar, state=self.state,
            journal=self.journal, router=self.router, routing=settings.routing, options=settings.options,
            feedback=self.feedback, price_lookup=self.prices.price, validator=validator,
            chain_provider=self._chain_provider(), slippage=settings.entry_slippage(), exiting=self.lifecycle.exiting,
            kill_switch=self.kill_switch, book=self.book, decisions=self.bus.decisions, sectors=self.sectors,
            budgets=self.budgets, pnl_from_state=False,  # the account book reads the same state's daily P&L
        )
        self.stops = ProtectiveStops(
            settings.exits, brokers=self.brokers, router=self.router, ledger=self.ledger, clock=clock,
            register=self.lifecycle.register_intent, journal=self.journal, alert=self.alerts.alert,
            timeout=settings.broker.request_timeout_seconds, exit_cap=self.external.exit_cap,
        )
        self.lifecycle.protect_with(self.stops)
        listeners = [b.on_bars for b in self.brokers.values() if isinstance(b, WatchesBars)]
        # the brokers with a delivery queue of their own (settle waits for it); a runtime Protocol check costs
        # ~10 us, so it is made once here, not at every settle
        self._flushers: list[Any] = [b for b in self.brokers.values() if isinstance(b, FlushesEvents)]
        self.engine = TradingEngine(self.orchestrator, self.lifecycle, self.strategy, bar_listeners=listeners,
                                    settle=self.settle if clock.simulated else None,
                                    pruners=[b.prune for b in self.brokers.values() if isinstance(b, Prunable)])
        self.reconciler = PositionReconciler(settings.reconcile.kill_notional_threshold)
        self.reconciliation = Reconciliation(self)
        self.resolver = OrderResolver(self.brokers, never_reached_after=settings.broker.never_reached_after_seconds,
                                      timeout=settings.broker.request_timeout_seconds, book=self.book,
                                      clock=clock)
        self.clock_offsets: dict[str, float] = {}
        self.stop_requested: Callable[[], bool] = lambda: False  # the daemon's SIGTERM ends start-up's retries
        self.events = BrokerEvents(self)  # subscribes to the broker events now: none published before is missed
        self.recovery = Recovery(self)
        self.limbo = OrderLimbo(self)
        self.working_entries = WorkingEntries(self)
        self.event_observer: Any = None
        self._signal_queue: asyncio.Queue[Any] | None = self.bus.signals.subscribe()
        self.last_reconciliation: dict[str, Any] | None = None

    def _strategy(self) -> Any:
        from pipeline.strategy.registry import build_strategies

        # [[strategies]] (or the one EMA-cloud strategy); built even when disabled: the exits read its cloud states
        return build_strategies(self.settings, self.calendar)

    def _smart_router(self) -> Any:
        """Venue scoring and TWAP splits over every broker, when [smart_router] enabled."""
        if not self.settings.smart_router.enabled:
            return None
        from pipeline.execution.smart_router import SmartRouter, Venue

        return SmartRouter(self.settings.smart_router, [Venue(n) for n in self.brokers], self.clock)

    def market_price(self, symbol: str) -> float | None:
        """The price entries are sized on (see `MarketPrices`); None when neither broker nor feed has one."""
        return self.prices.price(symbol)

    @property
    def starting_equity(self) -> float:
        """The primary broker's equity at start (the daily loss limit's base)."""
        return self.account.starting_equity

    def _chain_provider(self) -> Any:
        """The primary broker's option chain; a broker without one gets none (never the synthetic chain)."""
        from pipeline.instruments.options import NoOptionChain

        name = self.settings.broker.primary
        primary = self.brokers[name]
        return primary if isinstance(primary, OptionChainProvider) else NoOptionChain(f"the {name} broker")

    def reconfigure(self, settings: Settings) -> None:
        """Hand reloaded settings to every trading component (a SIGHUP): risk gate, sizing, routing, guard and
        unified risk (through the orchestrator), exits and time stops (the lifecycle), feedback, reconciliation.
        Restart-only fields arrive unchanged (config/reload.py), so the parts built from them stay valid."""
        self.settings = settings
        self.config = settings.pipeline
        self.feedback.reconfigure(self.config)
        self.orchestrator.reconfigure(self.config, settings.routing, settings.options)
        for broker in self.brokers.values():
            if isinstance(broker, ChainVenue):  # the chains' DTE window, limits and tickers
                broker.reconfigure_options(settings.options, chain_tickers(settings))
        self.lifecycle.reconfigure(self.config)
        self.reconciler.reconfigure(settings.reconcile.kill_notional_threshold)
        self.reconciliation.reconfigure(settings.reconcile.grace_seconds)

    # -- lifecycle ------------------------------------------------------------------------------------
    async def start(self) -> None:
        if self.state.load_error:
            log.error("state_file_unreadable", path=str(self.state.path), error=self.state.load_error,
                      kill_switch="active")
        if self.journal is not None:
            await self.journal.open()
            stored = await self.journal.get_kv("feedback")
            if stored:
                self.feedback.restore(stored)  # the tracker the orchestrator and the lifecycle hold
            await self.strategy_pnl.restore_from(self.journal)
        down: list[BrokerUnavailable] = []
        for name, broker in self.brokers.items():
            broker.set_event_handler(self.events.handler_for(broker))
            try:
                await broker.connect()
            except BrokerUnavailable as exc:
                # start anyway with this broker marked down: entries go to the other one meanwhile
                down.append(exc)
                self.router.mark_unstarted(name, str(exc))
                log.error("broker_down_at_start", broker=name, error=str(exc))
        if len(down) == len(self.brokers):
            raise down[0]
        # events the brokers (re)deliver on connect wait in the bus queue until the book is rebuilt from the
        # journal; only then are they applied (a fill already journaled is recognised and skipped)
        await self.recovery.rebuild()
        self.events.start()
        await self.settle()
        await self.recovery.measure_clock_offsets()
        await self.recovery.recover_open_orders()
        await self.reconciliation.splits_at_start()  # a split while we were down: rebased before any stop moves
        await self.stops.check_at_start()  # every open position has its resting stop; orphans are cancelled
        await self.settle()
        await self.sync_account()

    async def stop(self) -> None:
        """Finish submissions under way, cancel working entries if so configured, flush, disconnect."""
        await self.router.drain(self.settings.shutdown.timeout_seconds / 2)
        self.router.cancel_scheduled()  # TWAP slices not yet due are not sent
        await self.settle()
        if self.settings.shutdown.cancel_inflight_entries:
            await self.limbo.cancel_working_entries()
        await self.events.stop()
        for broker in self.brokers.values():
            with contextlib.suppress(Exception):
                await broker.close()
        if self.journal is not None:
            await self.save_marks()
            await self.journal.close()
        self.state.flush()

    async def save_marks(self) -> None:
        """The open positions' latest marks into the journal (the desk values positions with them)."""
        if self.journal is None:
            return
        try:
            await self.journal.set_kv(MARKS_KEY, snapshot(self.ledger.positions(), self.clock.now()))
        except Exception as exc:  # a full disk or a lost server: the desk shows older marks, trading goes on
            log.warning("marks_not_saved", error=str(exc))

    async def sync_account(self) -> None:
        """Cash and starting equity from the primary broker (the broker's cash already reflects every fill)."""
        name = self.settings.broker.primary
        if not self.brokers[name].is_connected():  # primary down at start-up: the broker that trades meanwhile
            name = next((n for n, b in self.brokers.items() if b.is_connected()), name)
        through = await fills_through(self.brokers[name], self.clock, self.settings.reconcile.grace_seconds,
                                      self.settings.broker.request_timeout_seconds)
        account = await self.brokers[name].get_account()
        self.account.sync(account, through)  # the broker's cash already reflects every fill, hand trades included
        log.info("book_rebuilt", positions=self.ledger.count(), cash=round(account.cash, 2),
                 equity=round(account.equity, 2), open_orders=len(self.book.working()))

    # -- the parts' entry points used from outside (the daemon's loops, the control commands, tests) ---------
    async def rebuild(self) -> None:
        """The order book and open positions from the journal (see `Recovery.rebuild`)."""
        await self.recovery.rebuild()

    async def connect_unstarted(self) -> list[str]:
        """Connect the brokers that were down at start-up (see `Recovery.connect_unstarted`)."""
        return await self.recovery.connect_unstarted()

    async def check_overdue(self) -> list[str]:
        """The timer's pass over orders in limbo (see `OrderLimbo.check_overdue`), after the entries working longer
        than a signal may be (or any, while the kill switch is active) are cancelled (`WorkingEntries`)."""
        await self.working_entries.cancel()
        return await self.limbo.check_overdue()

    async def flatten(self, reason: str = "flatten") -> dict[str, Any]:
        """Close every position now, stuck exits included (see `OrderLimbo.flatten`)."""
        return await self.limbo.flatten(reason)

    # -- account view, router callbacks, settle, alerts ---------------------------------------------------
    def account_state(self) -> AccountState:
        """The book as the risk gate sees it, external positions included (see `AccountBook`)."""
        return self.account.account_state()

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

    async def settle(self, timeout: float = 10.0) -> None:
        """Wait until in-flight orders and the broker events they caused have been applied.

        Used in simulated time after each step that sent an order (so a replay is deterministic) and at start
        and stop. Event-driven: the router's tasks, each broker's own delivery queue, then our consumer.

        Events held because the journal could not take them are tried once the sends under way are done:
        applied if the journal takes them now. While it still cannot, nothing behind them can move (a broker that
        redelivers waits for the held fill), so the settle ends at once and says so, instead of waiting out its
        timeout (the shutdown's included); they are applied by the order checks once the journal takes writes, or
        asked of the broker at the next start.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            if self.router.in_flight():
                await self.router.drain(max(0.0, deadline - loop.time()))
            if self.events.held():
                await self.events.apply_held()  # the journal may take them now
                if self.events.held():
                    log.warning("settle_left_held_events", held=self.events.held(),
                                in_flight=self.router.in_flight(),
                                reason="the journal cannot take them yet; applied once it can")
                    return
            for broker in self._flushers:
                if broker.is_connected():
                    with contextlib.suppress(Exception):
                        await broker.flush_events(timeout=max(0.01, deadline - loop.time()))
            if self.events.consuming():
                await self.events.wait_idle(max(0.01, deadline - loop.time()))
            else:
                await asyncio.sleep(0)
            if not self.router.in_flight() and not self.events.pending():
                return
        log.warning("settle_timed_out", in_flight=self.router.in_flight(), events_pending=self.events.pending())

    async def alert(self, kind: str, message: str, severity: str = "warning", **fields: Any) -> None:
        """Raise an alert (see `AlertRelay`: the daemon's dispatcher once attached, else the log)."""
        await self.alerts.alert(kind, message, severity, **fields)

    # -- reconciliation and views ----------------------------------------------------------------------
    async def reconcile(self) -> ReconciliationReport:
        """One reconciliation pass over every connected broker (see `daemon.reconciliation`)."""
        report = await self.reconciliation.run()
        self.stops.refresh()  # the resting stops follow what it learned (someone else's trades cap them)
        return report

    async def reconcile_at_start(self) -> ReconciliationReport:
        """The start-up reconciliation before READY: a difference the first check sees is checked once more."""
        return await self.reconciliation.at_start()

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
                "broker": p.broker, "signal_id": p.signal_id, "sector": self.sectors.get(p.ticker),
                "strategy": p.strategy, "entry_time": p.entry_time.isoformat() if p.entry_time else None,
                "external": p.origin == "external", "adopted": p.origin == "adopted",
                "resting_stop": self.stops.view(p.key) if p.origin != "external" else None}

    async def daily_summary(self, day: date | None = None) -> dict[str, Any]:
        """The day's closed trades and its signals by where their decision records ended (`ordergate journal`)."""
        if self.trades is None or self.journal is None:
            return {}
        summary = await self.trades.daily_summary(day)
        if summary.get("day"):
            summary["decisions"] = await self.journal.decision_counts(summary["day"])
        return summary
