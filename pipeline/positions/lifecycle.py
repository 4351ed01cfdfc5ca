"""LifecycleManager: everything that happens to a position after its entry order is sent.

- `on_broker_event`: order updates and fills from the brokers. A fill is validated, journaled (deduplicated
  by broker execution id) and only then applied to the ledger; a closed round trip goes to the trade
  journal, the feedback loop, daily P&L and the loss limits (daily loss -> kill switch; consecutive losses
  -> circuit breaker).
- `update_positions` / `check_exits`: marks on every bar, the 7 exits evaluated only for positions in the
  tickers of that bar (an index by ticker), time stops and EOD from a deadline heap, so a bar's cost does not
  grow with positions in other tickers. Exit orders are reduce-only and never blocked by the kill switch.
- Positions are per (strategy, symbol) (`Position.key`): each has its own exits (those its strategy declares,
  `exits_for`, plus the ones that always apply), its own time stop, its own working exit (`pending_exits` by
  key), and an exit sells only its own quantity; a fill goes to its order's strategy's position.
- `emergency_close_all`: cancel open orders, flatten everything.
- Only its own orders: a fill whose client order id ordergate did not send (not a known intent, not of its id
  scheme) is journaled and alerted as external and handed to `on_external_fill`; it never touches the ledger,
  so it is never exited. A fill of an id of ours that no journaled order has (the journal was lost or replaced)
  is a `ghost_fill`: journaled, alerted, and counted as external too, never traded on a stop nobody set.
  `activity` holds each symbol's last order activity (for reconciliation's grace).
"""

from __future__ import annotations

import heapq
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

import structlog

from config.settings import PipelineConfig
from pipeline.core.batch import BarBatch
from pipeline.core.calendar import MarketCalendar
from pipeline.core.clock import Clock
from pipeline.core.logs import info_enabled
from pipeline.core.models import (
    Bar,
    ExitSignal,
    ExitType,
    Fill,
    InstrumentType,
    OrderIntent,
    OrderKind,
    OrderResult,
    OrderStatus,
    OrderUpdate,
    Position,
    PositionKey,
    Side,
    asset_class_of,
    client_order_id_for,
    is_own_client_order_id,
)
from pipeline.core.ports import StrategyExits
from pipeline.execution.fill_validator import FillIssue, OrderValidator
from pipeline.execution.order_record import IntentsView, OrderBook
from pipeline.execution.order_router import OrderRouter
from pipeline.positions.exit_backoff import ExitBackoff
from pipeline.positions.exit_monitor import ExitMonitor, applicable_exits
from pipeline.positions.external import ExternalBook
from pipeline.positions.ledger import Ledger, RoundTrip
from pipeline.record.feedback import FeedbackTracker
from pipeline.record.journal import Journal
from pipeline.record.strategy_pnl import StrategyPnL
from pipeline.record.trade_journal import ClosedTrade, TradeJournalWriter, TradeList
from pipeline.safety.kill_switch import KillSwitch
from pipeline.safety.state_manager import PersistentStateManager

log = structlog.get_logger("ordergate.lifecycle")
AlertFn = Callable[..., Awaitable[None]]
CloudSource = Any  # the strategy: recent_states(symbol, timeframe, n), completed_on_last_bar(symbol)


class LifecycleManager:
    """Active position management (the spec's LifecycleManager)."""

    def __init__(
        self,
        config: PipelineConfig,
        *,
        ledger: Ledger,
        state: PersistentStateManager,
        clock: Clock,
        calendar: MarketCalendar,
        router: OrderRouter | None,
        journal: Journal | None = None,
        validator: OrderValidator | None = None,
        feedback: FeedbackTracker | None = None,
        clouds: CloudSource = None,
        alert: AlertFn | None = None,
        starting_equity: Callable[[], float] | None = None,
        kill_switch: KillSwitch | None = None,
        external: ExternalBook | None = None,
        quote: Callable[[str], float | None] | None = None,
        strategy_pnl: StrategyPnL | None = None,
        trades: TradeJournalWriter | TradeList | None = None,
    ) -> None:
        """`trades`: where closed trades go (default: the journal's trades table, none without a journal)."""
        self.config = config
        # an option has no bars of its own: on each bar of its underlying it is marked at this price (the broker's
        # quote: the paper book's model value, a real venue's chain mid) before its exits are checked
        self.quote = quote
        self.executor = config.executor_config
        self.ledger = ledger
        self.state = state
        self.kill_switch = kill_switch or KillSwitch(state)
        self.clock = clock
        self.calendar = calendar
        self.router = router
        self.journal = journal
        self.trades = trades if trades is not None else TradeJournalWriter(journal) if journal is not None else None
        self.validator = validator or OrderValidator(config.fill_slippage_tolerance, config.fill_timeout_seconds)
        self.feedback = feedback or FeedbackTracker(config)
        self.monitor = ExitMonitor(self.executor, calendar, clock)
        self.clouds = clouds
        self.alert = alert
        self._starting_equity = starting_equity
        self.external = external  # someone else's positions: their fills counted there, they cap our exits
        self.exit_cap = external.exit_cap if external is not None else None  # (symbol, our qty) -> most an exit
        self.strategy_pnl = strategy_pnl  # each strategy's closed P&L per day (its daily loss budget)
        # every order's record lives in the book the validator views (pipeline.execution.order_record)
        self.book: OrderBook = self.validator.book
        self._exit_attempts: dict[str, int] = {}       # signal id -> exits tried
        self.backoff = ExitBackoff()                     # positions whose exits the broker refused: when to retry
        self._by_ticker: dict[str, set[str]] = {}      # underlying ticker -> held symbols
        self._deadlines: list[tuple[datetime, str]] = []
        self._day: Any = None                            # the trading day last seen (the daily rollover)
        self._day_seen: Any = None                       # the exit monitor's New York day of the last clock check
        self.issues: list[FillIssue] = []
        self.round_trips = 0
        self.stops: Any = None  # ProtectiveStops (see protect_with): stops at the broker
        # strategy name -> the exits its positions get (what it declares, plus the ones always applying); a
        # strategy not running here (adopted, external, the webhook's) -> None: all seven
        declared = clouds.declared_exits() if isinstance(clouds, StrategyExits) else {}
        self._exits = {name: applicable_exits(names) for name, names in declared.items()}

    def exits_for(self, strategy: str) -> frozenset[ExitType] | None:
        """The exits a position of `strategy` gets (None: all seven)."""
        return self._exits.get(strategy)

    def protect_with(self, stops: Any) -> None:
        """The protective stops at the broker (pipeline.execution.protective_stops), built after the lifecycle
        since they register their orders with it: exits release them first, external fills and updates reach
        them."""
        self.stops = stops

    # -- registry -------------------------------------------------------------------------------------
    @property
    def activity(self) -> dict[str, datetime]:
        """symbol -> last order activity, ours or anyone's (held by the order book; reconciliation's grace)."""
        return self.book.activity

    @property
    def intents(self) -> IntentsView:
        """client order id -> intent of every order we know (a view over the order book)."""
        return IntentsView(self.book)

    @property
    def pending_exits(self) -> dict[PositionKey, str]:
        """(strategy, symbol) -> client order id of its working exit (held by the order book)."""
        return self.book.exits

    def exiting(self, ticker: str, strategy: str | None = None) -> bool:
        """True while an exit order for this ticker's position (of `strategy`; None: of any) is working (no adding
        to it meanwhile)."""
        keys = self._by_ticker.get(ticker)
        if not keys:  # nothing held in the ticker: no exit of it can be working
            return False
        exits = self.book.exits  # pending_exits, read once
        return any(key in exits for key in keys if strategy is None or key[0] == strategy)

    def register_intent(self, intent: OrderIntent) -> None:
        """Remember an order we send (entries from the orchestrator, exits from here): its record in the book."""
        self.validator.track(intent)
        self.book.touch(intent.symbol, self.clock.now())

    def prune(self, keep: int = 10_000) -> int:
        """Forget the oldest finished orders beyond `keep` (bounded memory in a long run); returns how many."""
        if len(self.book) <= keep:
            return 0
        dropped = self.book.prune(keep)  # never a working order, a reservation or a pending exit
        held = {pos.signal_id or pos.symbol for pos in self.ledger.positions()}
        for key in [k for k in self._exit_attempts if k not in held]:
            del self._exit_attempts[key]  # a closed position's exits are over; its signal never reopens
        self.backoff.keep_only({pos.key for pos in self.ledger.positions()})
        return dropped

    def rebuild_index(self) -> None:
        """Recompute the ticker index and deadlines from the ledger (after a restart or adoption)."""
        self._by_ticker.clear()
        self._deadlines.clear()
        for pos in self.ledger.positions():
            self._index(pos)

    def reconfigure(self, config: PipelineConfig) -> None:
        """Manage positions with new settings (a SIGHUP reload): the exit monitor gets the new executor config,
        and the time stops of positions already open are rescheduled at the new `time_stop_minutes` (the EOD
        cutoff is recomputed too)."""
        self.config = config
        self.executor = config.executor_config
        self.monitor.reconfigure(self.executor)
        self._deadlines.clear()
        for pos in self.ledger.positions():
            self._schedule(pos)

    def _index(self, pos: Position) -> None:
        key = pos.key
        self._by_ticker.setdefault(pos.ticker, set()).add(key)
        if pos.symbol != pos.ticker:
            self._by_ticker.setdefault(pos.symbol, set()).add(key)
        self._schedule(pos)

    def _schedule(self, pos: Position) -> None:
        """Put the position's time stop on the deadline heap (the instant is the TimeExits rule's)."""
        deadline = self.monitor.time.deadline(pos)
        if deadline is not None:
            heapq.heappush(self._deadlines, (deadline, pos.key))

    def _unindex(self, pos: Position) -> None:
        key = pos.key
        for where in (pos.ticker, pos.symbol):
            held = self._by_ticker.get(where)
            if held is not None:
                held.discard(key)
                if not held:
                    del self._by_ticker[where]

    # -- bars -----------------------------------------------------------------------------------------
    def update_positions(self, batch: Sequence[Bar]) -> None:
        """Mark the ledger with the batch's closes."""
        if isinstance(batch, BarBatch):
            self.ledger.mark_many(batch.symbols, batch.closes())
            return
        mark = self.ledger.mark
        for bar in batch:
            mark(bar.symbol, bar.close)

    def check_exits(self, batch: Sequence[Bar] | None = None) -> list[OrderIntent]:
        """Evaluate exits for positions in the batch's tickers, plus due time stops and EOD; dispatch them."""
        intents: list[OrderIntent] = []
        by_ticker = self._by_ticker
        if by_ticker and batch:
            # a BarBatch's tickers are read from its symbols: no Bar is built for a bar (the exits read the
            # position's mark, set from the batch's closes, and the strategy's cloud states)
            tickers = batch.symbols if isinstance(batch, BarBatch) else [bar.symbol for bar in batch]
            for ticker in tickers:
                held = by_ticker.get(ticker)
                if held:
                    for key in (tuple(held) if len(held) == 1 else sorted(held)):
                        intent = self._evaluate(key, ticker)
                        if intent is not None:
                            intents.append(intent)
        intents.extend(self._check_clock())
        return intents

    def _evaluate(self, key: PositionKey, ticker: str | None) -> OrderIntent | None:
        """The exits of one position on a bar of `ticker` (None: no bar, the clock alone). It runs for every bar of
        every held ticker: the order book's pending exits and the strategy's exits are read without the property
        and method that give them."""
        if key in self.book.exits:
            return None
        pos = self.ledger.position_at(key)
        if pos is None:
            return None
        if self.backoff.refusals and self.backoff.holds(key, self.clock.now()) is not None:
            return None  # its last exit was refused: the next one waits (ExitBackoff)
        symbol = pos.symbol
        if self.quote is not None and pos.instrument_type == InstrumentType.OPTIONS:
            quoted = self.quote(symbol)
            if quoted is not None and quoted > 0:
                self.ledger.mark(symbol, quoted)
        price = pos.current_price
        states = None
        if pos.instrument_type == InstrumentType.STOCK and self.clouds is not None and ticker == pos.ticker \
                and pos.timeframe in self.clouds.completed_on_last_bar(ticker):
            states = self.clouds.recent_states(ticker, pos.timeframe, self.executor.momentum_exhaustion_candles + 2)
        signal = self.monitor.check_all(pos, price, states, None, self.clock.now(), exits=self._exits.get(pos.strategy))
        if signal is None:
            if states and self.stops is not None:  # the trailing level moves the resting stop (rate-limited)
                level = self.monitor.trailing_stop_level(pos, states)
                if level is not None:
                    self.stops.trail(pos, level)
            return None
        if self._exit_quantity(pos) <= 0:
            return None
        return self._exit(pos, signal)

    def _check_clock(self) -> list[OrderIntent]:
        now = self.clock.now()
        intents: list[OrderIntent] = []
        while self._deadlines and self._deadlines[0][0] <= now:
            _, key = heapq.heappop(self._deadlines)
            pos = self.ledger.position_at(key)
            held_back = self.backoff.holds(key, now) if self.backoff.refusals else None
            if pos is not None and held_back is not None:
                heapq.heappush(self._deadlines, (held_back, key))  # the time stop comes back once the pause ends
                continue
            if pos is not None and key not in self.pending_exits and self._exit_quantity(pos) > 0:
                signal = self.monitor.check_time_stop(pos, now)
                if signal is not None:
                    intents.append(self._exit(pos, signal))
        today = self.monitor.time.day_of(now)  # now's New York day, its session and EOD cutoff (cached per day)
        if today is not self._day_seen:  # a day not seen yet (or its cache renewed): has the trading day rolled?
            self._day_seen = today
            self._roll_day(now)
        cutoff = today.cutoff
        if cutoff is not None and now >= cutoff and self.ledger.holdings:
            for pos in self.ledger.positions():
                if pos.key in self.pending_exits or self._exit_quantity(pos) <= 0:
                    continue
                if self.backoff.refusals and self.backoff.holds(pos.key, now) is not None:
                    continue
                signal = self.monitor.check_eod_close(pos, now)
                if signal is not None:
                    intents.append(self._exit(pos, signal))
        return intents

    def _roll_day(self, now: datetime) -> None:
        day = self.calendar.trading_day(now)
        if day != self._day:
            self._day = day
            if self.state.check_day_rollover():  # a new session: daily P&L and the breaker start over
                log.info("day_rollover", day=str(day))

    def _exit_quantity(self, pos: Position) -> float:
        """What an exit of this position may sell (buy back): its size, capped by `exit_cap` when someone else's
        trade has already taken part of it out of the account (an exit must never oversell into the other side);
        with several strategies on the symbol the cap is shared out (`Ledger.share_of`)."""
        if self.exit_cap is None:
            return abs(pos.shares)
        return self.ledger.share_of(pos, self.exit_cap(pos.symbol, self.ledger.net(pos.symbol)))

    def _exit(self, pos: Position, signal: ExitSignal) -> OrderIntent:
        """Build, register and dispatch a reduce-only exit order (never blocked by the kill switch)."""
        key = pos.signal_id or pos.symbol
        attempt = self._exit_attempts.get(key, 0)
        client_order_id = client_order_id_for(key, f"exit{attempt}")
        while client_order_id in self.book:  # an earlier run's exits (restart)
            attempt += 1
            client_order_id = client_order_id_for(key, f"exit{attempt}")
        self._exit_attempts[key] = attempt + 1
        side = pos.closing_side
        intent = OrderIntent(
            client_order_id=client_order_id,
            signal_id=pos.signal_id or key,
            symbol=pos.symbol,
            side=side,
            quantity=self._exit_quantity(pos),
            reduce_only=True,
            kind=OrderKind.EXIT,
            ticker=pos.ticker,
            direction=pos.direction,
            instrument_type=pos.instrument_type,
            asset_class=asset_class_of(pos.multiplier),
            reference_price=pos.current_price,
            signal_type=pos.signal_type,
            timeframe=pos.timeframe,
            broker=pos.broker or None,
            created_at=self.clock.now(),
            exit_type=signal.exit_type,
            strategy=pos.strategy,
        )
        self.pending_exits[pos.key] = intent.client_order_id
        self.register_intent(intent)
        if info_enabled(log):  # a filtered line builds no fields (one exit per closed position)
            log.info("exit_signal", signal_id=intent.signal_id, client_order_id=intent.client_order_id,
                     strategy=pos.strategy, symbol=pos.symbol, exit_type=signal.exit_type, priority=signal.priority,
                     reason=signal.reason)
        if self.router is not None:
            if self.stops is not None and self.stops.guards(pos.key):
                self.router.dispatch_after(intent, self.release_stop)  # one exit, never two
            else:
                self.router.dispatch(intent)
        return intent

    async def release_stop(self, intent: OrderIntent) -> OrderIntent | str:
        """Cancel the position's resting stop (confirmed) before its exit; the exit to send or why not."""
        ready = await self.stops.release(intent)
        if isinstance(ready, OrderIntent) and ready is not intent:
            self.register_intent(ready)
        return ready

    def resend_exit(self, stuck: OrderIntent, reason: str) -> OrderIntent | None:
        """An exit that never reached its broker: the position it was for gets a fresh one (a new client order
        id), so a position is never left without its exits. None when nothing is held or an exit is working."""
        pos = self.ledger.position_at(stuck.key)
        if pos is None or stuck.key in self.pending_exits:
            return None
        later = pos.entry_time is not None and stuck.created_at is not None and pos.entry_time > stuck.created_at
        if stuck.side != pos.closing_side or later:
            # the stuck exit was for an earlier position (closed since, e.g. by its stop): this one is not due
            log.info("stale_exit_not_resent", client_order_id=stuck.client_order_id, symbol=stuck.symbol)
            return None
        return self._exit(pos, ExitSignal(pos.ticker, stuck.exit_type or ExitType.RESEND, 0, reason, pos.current_price))

    async def emergency_close_all(self, reason: str = "flatten") -> list[OrderIntent]:
        """Cancel every open order and close every position now."""
        if self.router is not None:
            for intent in self.validator.working():
                if intent.kind is not OrderKind.ENTRY:
                    continue
                try:
                    await self.router.cancel(intent.client_order_id, intent.broker)
                except Exception as exc:  # a cancel that fails must not stop the flatten
                    log.warning("cancel_failed", client_order_id=intent.client_order_id, error=str(exc))
        intents = []
        for pos in self.ledger.positions():
            if pos.key not in self.pending_exits and self._exit_quantity(pos) > 0:
                intents.append(self._exit(pos, ExitSignal(pos.ticker, ExitType.FLATTEN, 0, reason, pos.current_price)))
        return intents

    # -- broker events --------------------------------------------------------------------------------
    async def on_broker_event(self, event: OrderUpdate | Fill) -> None:
        """Apply one broker event. Fills are journaled before the ledger changes."""
        if event.symbol:
            self.book.touch(event.symbol, self.clock.now())
        if isinstance(event, Fill):
            await self._on_fill(event)
        else:
            await self._on_update(event)

    def _entry_final(self, client_order_id: str, filled_qty: float | None, fully_filled: bool) -> None:
        """An entry reached a final state: its reservation in the order record is released (what filled but is not
        in the ledger yet stays), and the router's smart venue scores learn whether it filled."""
        self.book.release(client_order_id, filled_qty, fully_filled, self.clock.now())
        if self.router is not None and filled_qty is not None:
            self.router.record_outcome(client_order_id, filled=fully_filled or filled_qty > 0)

    async def on_order_result(self, intent: OrderIntent, result: OrderResult) -> None:
        """The router's answer for a submission. Rejections it decided (nothing reached a broker, or a final 4xx)
        and entries the kill switch stopped before the wire bring no broker event: applied here as one. An
        accepted order is marked so; an entry a resend after a restart found already final is released (no
        event will come for it)."""
        withheld = result.status == OrderStatus.CANCELED and not result.found_existing
        if result.status == OrderStatus.REJECTED or withheld:
            await self.on_broker_event(OrderUpdate(
                intent.client_order_id, result.status, result.broker, result.broker_order_id,
                intent.symbol, intent.side, reason=result.reason, timestamp=self.clock.now(),
            ))
        elif result.status in (OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED, OrderStatus.FILLED):
            self.book.accepted(intent.client_order_id, self.clock.now())
        if result.found_existing and result.status.is_final and intent.kind == "entry":
            self.book.release(intent.client_order_id, now=self.clock.now())

    async def _on_update(self, update: OrderUpdate) -> None:
        now = self.clock.now()
        record = self.book.get(update.client_order_id)  # the order's record (the intents view reads the same)
        if record is None and not is_own_client_order_id(update.client_order_id):
            log.info("external_order_update", client_order_id=update.client_order_id, symbol=update.symbol,
                     status=str(update.status), broker=update.broker)
            return  # someone else's order: not ours to journal or to act on (its fills are recorded as external)
        if self.journal is not None:
            await self.journal.update_order(
                update.client_order_id, update.status, ts=now, broker=update.broker,
                broker_order_id=update.broker_order_id, reason=update.reason, filled_qty=update.filled_qty,
                filled_avg_price=update.filled_avg_price,
            )
        for issue in self.validator.on_update(update, now):
            await self._issue(issue)
        if self.stops is not None:
            self.stops.on_update(update)
        if not update.status.is_final:
            return
        record = self.book.get(update.client_order_id)
        intent = record.intent if record is not None else None
        if intent is not None and intent.kind is OrderKind.ENTRY:
            self._entry_final(update.client_order_id, update.filled_qty, update.status == OrderStatus.FILLED)
        if intent is not None and intent.kind is OrderKind.EXIT \
                and self.pending_exits.get(intent.key) == update.client_order_id:
            # the exit is over: if it did not happen, or an add filled beside it and left a remainder, the exit
            # loop looks at the position again
            del self.pending_exits[intent.key]
            if update.status == OrderStatus.REJECTED:
                await self._exit_refused(intent, update.reason or "no reason given", now)
                return
            self.backoff.taken(intent.key)
        if update.status == OrderStatus.REJECTED:
            log.warning("order_rejected", signal_id=intent.signal_id if intent else None,
                        client_order_id=update.client_order_id, reason=update.reason)
            if self.alert is not None:
                await self.alert("order_rejected", f"order {update.client_order_id} rejected: {update.reason}",
                                 client_order_id=update.client_order_id)

    async def _exit_refused(self, intent: OrderIntent, reason: str, now: datetime) -> None:
        """The broker refused an exit: the position's next one waits (ExitBackoff); a new reason is alerted."""
        new, pause = self.backoff.refused(intent.key, reason, now)
        log.warning("exit_refused", signal_id=intent.signal_id, client_order_id=intent.client_order_id,
                    symbol=intent.symbol, strategy=intent.strategy, reason=reason,
                    retry_in_seconds=pause.total_seconds())
        if new and self.alert is not None:
            await self.alert("exit_refused", f"{intent.symbol}: exit {intent.client_order_id} refused by "
                             f"{intent.broker or 'the broker'}: {reason}; tried again after "
                             f"{pause.total_seconds():g} s, the pause doubling up to "
                             f"{self.backoff.most.total_seconds():g} s (alerted again on another reason)",
                             client_order_id=intent.client_order_id, symbol=intent.symbol)

    async def _on_fill(self, fill: Fill) -> None:
        record = self.book.get(fill.client_order_id)
        intent = record.intent if record is not None else None
        if intent is None and not is_own_client_order_id(fill.client_order_id):
            await self._external_fill(fill)
            return
        if self.book.has_fill(fill):  # its record already counts this fill id (a redelivery)
            log.info("fill_duplicate_ignored", client_order_id=fill.client_order_id, fill_id=fill.fill_id)
            return
        # journaled first: a write that fails changes nothing here, so the caller can apply the fill again later
        strategy = intent.strategy if intent is not None else ""
        if self.journal is not None and not await self.journal.record_fill(fill, strategy):
            log.info("fill_duplicate_ignored", client_order_id=fill.client_order_id, fill_id=fill.fill_id)
            return
        issues = self.validator.validate(intent, fill)
        record = self.book.get(fill.client_order_id)  # looked up again: the validator may have added it
        if record is not None:
            record.last_contact = self.clock.now()
        for issue in issues:
            await self._issue(issue)
        if intent is None and self.external is not None:
            # ours by its id, but of an order no journal holds (the journal was lost or replaced): nothing says
            # what stop or strategy it had, so it is not traded on a made-up one; counted as external (risk,
            # status), like a hand trade, until the user adopts it (`[reconcile] external = "adopt"`)
            self.external.apply_fill(fill)
            if self.stops is not None:
                self.stops.request_sync(fill.symbol)
            log.warning("unknown_own_fill_external", client_order_id=fill.client_order_id, fill_id=fill.fill_id,
                        symbol=fill.symbol, side=str(fill.side), quantity=fill.quantity, price=fill.price)
            return
        key = intent.key if intent is not None else ("", fill.symbol)  # the position of the order's strategy
        before = self.ledger.position_at(key)
        trip = self.ledger.apply_fill(fill, intent, intent.exit_type if intent else "")
        after = self.ledger.position_at(key)
        if intent is not None and intent.kind is OrderKind.ENTRY:
            self.book.entry_filled(fill.client_order_id, fill.quantity)  # held by the ledger now, not the reservation
        if info_enabled(log):  # a filtered line builds no fields (the str() of the side, per fill)
            log.info("fill_applied", signal_id=intent.signal_id if intent else None,
                     strategy=intent.strategy if intent else None, client_order_id=fill.client_order_id,
                     symbol=fill.symbol, side=str(fill.side),
                     quantity=fill.quantity, price=fill.price)
        if before is not None and after is not before:
            self._unindex(before)
        if after is not None and after is not before:
            self._index(after)
        if after is None and self.pending_exits.get(key) == fill.client_order_id:
            del self.pending_exits[key]
        if self.stops is not None:
            self.stops.on_fill(fill, intent)
        if trip is not None:
            await self._closed(trip, fill)

    async def record_missing_trades(self, closed: list[tuple[RoundTrip, Fill]]) -> int:
        """After a restart: round trips the journal's fills close but whose trade row (and P&L, feedback, loss
        limits) a crash cut off are booked now. `closed` in fill order; returns how many were missing."""
        if self.trades is None or not closed:
            return 0
        missing = set(await self.trades.unrecorded([fill.fill_id for _, fill in closed]))
        for trip, fill in closed:
            if fill.fill_id in missing:
                log.warning("trade_row_recovered", signal_id=trip.position.signal_id, symbol=fill.symbol,
                            fill_id=fill.fill_id)
                await self._closed(trip, fill)
        return len(missing)

    async def _external_fill(self, fill: Fill) -> None:
        """A fill of an order someone else placed in the account: recorded and alerted, never booked."""
        fresh = self.external.apply_fill(fill) if self.external is not None else True
        if self.stops is not None:
            self.stops.request_sync(fill.symbol)  # a resting stop of ours never sells more than we still hold
        if not fresh:
            return
        detail = (f"fill {fill.fill_id}: {fill.side} {fill.quantity:g} {fill.symbol} at {fill.price:g} for order "
                  f"{fill.client_order_id or '(no id)'} that ordergate did not send: external, not traded")
        ours = self.ledger.position(fill.symbol)
        severity = "warning"
        if ours is not None and ours.is_long != (fill.side == Side.BUY):
            severity = "critical"  # someone traded ordergate's position down by hand
            cap = self._exit_quantity(ours)
            detail += f"; it reduces ordergate's {ours.direction} {ours.shares:g}: its exits now trade at most {cap:g}"
        log.warning("external_fill", client_order_id=fill.client_order_id, fill_id=fill.fill_id,
                    symbol=fill.symbol, side=str(fill.side), quantity=fill.quantity, price=fill.price,
                    broker=fill.broker)
        if self.journal is not None:
            self.journal.record_decision(None, "external", "external_fill", detail, self.clock.now(), {
                "client_order_id": fill.client_order_id, "fill_id": fill.fill_id, "broker": fill.broker,
                "symbol": fill.symbol, "side": str(fill.side), "quantity": fill.quantity, "price": fill.price})
        if self.alert is not None:
            await self.alert("external_fill", detail, severity, client_order_id=fill.client_order_id)

    async def _closed(self, trip: RoundTrip, fill: Fill) -> None:
        pos = trip.position
        self.round_trips += 1
        if self.backoff.refusals:
            self.backoff.taken(pos.key)  # closed (by its stop, by hand): a later position there starts afresh
        entry_time = pos.entry_time or trip.exit_time
        trade = ClosedTrade(
            signal_id=pos.signal_id, ticker=pos.ticker, symbol=pos.symbol, direction=pos.direction,
            signal_type=pos.signal_type, timeframe=pos.timeframe, entry_time=entry_time,
            exit_time=trip.exit_time, entry_price=pos.entry_price, exit_price=trip.exit_price,
            quantity=trip.quantity, pnl=trip.pnl, r_multiple=trip.r_multiple, exit_type=trip.exit_type,
            holding_minutes=(trip.exit_time - entry_time).total_seconds() / 60, broker=fill.broker,
            exit_fill_id=fill.fill_id, strategy=pos.strategy,
        )
        if self.trades is not None:
            await self.trades.record(trade)
        if info_enabled(log):
            log.info("position_closed", signal_id=pos.signal_id, client_order_id=fill.client_order_id,
                     strategy=pos.strategy, symbol=pos.symbol, exit_type=trip.exit_type, pnl=round(trip.pnl, 2),
                     r=round(trip.r_multiple, 2))
        # the per-signal-type statistics: kept for the feedback loop (weights) and for live analytics (status)
        if (self.config.enable_feedback_loop or self.config.enable_analytics) and pos.signal_type:
            adjustment = self.feedback.record_trade(pos.signal_type, trip.r_multiple)
            if adjustment:
                log.info("feedback_weights_adjusted", adjustments=adjustment)
                if self.journal is not None:
                    await self.journal.set_kv("feedback", self.feedback.to_dict())
        if self.strategy_pnl is not None:
            self.strategy_pnl.record(pos.strategy, trip.pnl, trip.exit_time)
        await self._loss_limits(trip.pnl)

    async def _loss_limits(self, pnl: float) -> None:
        self.state.record_pnl(pnl)
        if pnl < 0:
            losses = self.state.increment_circuit_breaker()  # the count after the day's rollover: the status's
            if losses >= self.executor.consecutive_loss_threshold and not self.state.is_circuit_breaker_open():
                until = self.clock.now() + timedelta(minutes=self.executor.circuit_breaker_cooldown_minutes)
                self.state.open_circuit_breaker(until)
                log.warning("circuit_breaker_opened", consecutive_losses=losses, until=until.isoformat())
                if self.alert is not None:
                    await self.alert("circuit_breaker", f"{losses} consecutive losses: entries paused until "
                                     f"{until.isoformat()}")
        else:
            self.state.reset_circuit_breaker()
        daily = self.state.get_daily_pnl()
        base = self._starting_equity() if self._starting_equity is not None else 0.0
        limit = self.executor.daily_loss_limit * base
        if (self.config.auto_kill_on_daily_loss and base > 0 and daily <= -limit
                and not self.kill_switch.is_active()):
            reason = f"daily loss limit: P&L {daily:.2f} crossed -{limit:.2f} ({self.executor.daily_loss_limit:.0%})"
            self.kill_switch.activate(reason, source="daily_loss")
            if self.alert is not None:
                await self.alert("daily_loss_limit", reason, severity="critical")

    async def _issue(self, issue: FillIssue) -> None:
        self.issues.append(issue)
        log.error("fill_issue", kind=issue.kind, client_order_id=issue.client_order_id, detail=issue.detail)
        if self.journal is not None:
            self.journal.record_decision(None, "fill_validator", issue.kind, issue.detail, self.clock.now(),
                                         {"client_order_id": issue.client_order_id})
        if self.alert is not None:
            await self.alert("ghost_fill" if issue.kind == "ghost_fill" else "fill_issue", issue.detail,
                             client_order_id=issue.client_order_id)
