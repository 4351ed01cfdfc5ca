"""BotOrchestrator: the hardened signal-to-order pipeline, one decision at a time.

    kill switch -> SignalGuard (fresh + dedup) -> SignalRecorder (id + audit) -> MarketPrice (entry on the
    market) -> RiskGate (8 checks) -> UnifiedRisk (correlation, VaR) -> InstrumentRouter
    -> PositionSizer / LeveragedETFSizer -> OrderIntent

Everything after MarketPrice sees the signal moved to the market price: entries are sized on the price they
will fill at, and reserved at it plus the expected slippage.

Every stage is a direct call inside one synchronous function (no queue hops, no await): decisions are
serialised by the event loop itself, one runs to its end before the next starts, and each sees in-flight orders
through the ReservationBook, so a burst can never overshoot the limits. The approved
intent is reserved, journaled and handed to the OrderRouter in a task of its own.

Every stage's outcome goes into one DecisionRecord (pipeline.record.decision), journaled once per signal.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog

from config.settings import OptionsSettings, PipelineConfig, RoutingSettings
from pipeline.core.bus import Topic
from pipeline.core.calendar import MarketCalendar, default_calendar
from pipeline.core.clock import Clock, LiveClock, monotonic
from pipeline.core.logs import info_enabled
from pipeline.core.models import (
    AccountState,
    AssetClass,
    Direction,
    Fill,
    InstrumentDecision,
    InstrumentType,
    OrderIntent,
    OrderKind,
    OrderResult,
    PipelineResult,
    Side,
    StageOutcome,
    TradeSignal,
    client_order_id_for,
    contract_multiplier,
)
from pipeline.entry.market_price import price_on_market, usable_price
from pipeline.entry.risk_gate import RiskGate
from pipeline.entry.signal_guard import SignalGuard
from pipeline.entry.sizing import LeveragedETFSizer, PositionSizer, SizingResult
from pipeline.entry.strategy_budget import StrategyBudgets
from pipeline.entry.unified_risk import PriceHistory, UnifiedRisk
from pipeline.execution.fill_validator import OrderValidator
from pipeline.execution.order_record import OrderBook
from pipeline.execution.order_router import OrderRouter
from pipeline.execution.reservations import ReservationBook
from pipeline.instruments.catalog import load_sectors
from pipeline.instruments.instrument_router import InstrumentRouter
from pipeline.positions.ledger import Ledger
from pipeline.record.decision import DecisionRecord
from pipeline.record.feedback import FeedbackTracker
from pipeline.record.journal import Journal
from pipeline.record.recorder import SignalRecorder
from pipeline.safety.kill_switch import KillSwitch
from pipeline.safety.state_manager import PersistentStateManager

log = structlog.get_logger("ordergate.orchestrator")
AccountProvider = Callable[[], AccountState]
PriceLookup = Callable[[str], float | None]
QUANTITY_KEY = "quantity"        # signal.metadata: an explicit size (whole shares), capped by the risk sizing
INSTRUMENT_KEY = "instrument"    # signal.metadata: "stock" trades the ticker itself (no ETF / option routing)
APPROVED_KEY = "approved:approved"  # the approved count's key in `counts` (stage:outcome)


@dataclass(slots=True)
class _Sized:
    quantity: float
    notional: float
    stop_loss: float | None
    adjustments: dict[str, Any]
    reason: str = ""


class BotOrchestrator:
    """Hardened pipeline coordinator (the spec's BotOrchestrator)."""

    def __init__(
        self,
        config: PipelineConfig,
        account: AccountState | AccountProvider | None = None,
        *,
        clock: Clock | None = None,
        calendar: MarketCalendar | None = None,
        state: PersistentStateManager | None = None,
        journal: Journal | None = None,
        router: OrderRouter | None = None,
        routing: RoutingSettings | None = None,
        options: OptionsSettings | None = None,
        sectors: dict[str, str] | None = None,
        feedback: FeedbackTracker | None = None,
        prices: PriceHistory | None = None,
        price_lookup: PriceLookup | None = None,
        validator: OrderValidator | None = None,
        chain_provider: Any = None,
        decisions: Topic | None = None,
        on_intent: Callable[[OrderIntent], None] | None = None,
        exiting: Callable[[str], bool] | None = None,
        kill_switch: KillSwitch | None = None,
        slippage: float | None = None,
        book: OrderBook | None = None,
        guard: Any = None,
        pnl_from_state: bool = True,
        budgets: StrategyBudgets | None = None,
    ) -> None:
        """Only `config` (and the account) are needed; the rest defaults to what the daemon uses (live clock, NYSE
        calendar, a state manager in `config.state_dir`, the shipped sectors). `guard` replaces the SignalGuard
        (anything with `check(signal, now)`); `pnl_from_state=False` trusts the account's own daily P&L; `budgets`
        holds each strategy's own limits, checked after the account-wide gate."""
        self.config = config
        self.executor = config.executor_config
        self.clock = clock or LiveClock()
        self.calendar = calendar or default_calendar()
        self.state = state or PersistentStateManager(config.state_dir, self.clock, self.calendar)
        self.kill_switch = kill_switch or KillSwitch(self.state)
        self.journal = journal
        self.router = router
        self.sectors = sectors if sectors is not None else load_sectors()
        self.guard = guard if guard is not None else SignalGuard(config, clock=self.clock)
        self.recorder = SignalRecorder(journal, config.enable_signal_recording)
        self.gate = RiskGate(self.executor, self.calendar, self.sectors)
        self.budgets = budgets
        # the engine feeds it every feed bar (1-minute bars live and in the embedded data)
        self.prices = prices or PriceHistory(config.correlation_lookback_bars + 1, "1m")
        self.unified = UnifiedRisk(config, self.prices) if config.enable_unified_risk else None
        self.instruments = InstrumentRouter(
            self.executor, routing or RoutingSettings(), options or OptionsSettings(), sectors=self.sectors,
            chain_provider=chain_provider,
        )
        # how far an entry fills from the market price: sized and reserved with it ([pipeline] expected_slippage)
        self.slippage = config.expected_slippage if slippage is None else slippage
        self.sizer = PositionSizer(self.executor, self.sectors, slippage=self.slippage)
        self.etf_sizer = LeveragedETFSizer(self.executor, self.sectors, slippage=self.slippage)
        self.feedback = feedback or FeedbackTracker(config)
        # one record per order (pipeline.execution.order_record): the validator and the reservations are views over it
        self.book = book if book is not None else (validator.book if validator is not None else OrderBook())
        self.reservations = ReservationBook(self.slippage, self.book)
        self.validator = validator or OrderValidator(config.fill_slippage_tolerance, config.fill_timeout_seconds,
                                                     self.book)
        self._account = account
        self._price_lookup = price_lookup
        self.decisions = decisions  # each decision's StageOutcome is published here (the daemon's metrics)
        self.on_intent = on_intent
        self.exiting = exiting  # ticker -> an exit of its position is working (the lifecycle's view)
        self._pnl_from_state = pnl_from_state
        self.counts: dict[str, int] = {}

    def reconfigure(self, config: PipelineConfig, routing: RoutingSettings, options: OptionsSettings) -> None:
        """Decide with new settings from the next signal on (a SIGHUP reload): the guard, the risk gate, unified
        risk, instrument routing and both sizers get their sections. What sizes state built at start (slippage
        and reservations, price history, recording, the validator) is not reloadable and stays."""
        self.config = config
        self.executor = config.executor_config
        self.guard.reconfigure(config)
        self.gate.reconfigure(self.executor)
        if self.budgets is not None:
            self.budgets.reconfigure(self.executor)
        if self.unified is not None:
            self.unified.reconfigure(config)
        self.instruments.reconfigure(self.executor, routing, options)
        self.sizer.reconfigure(self.executor)
        self.etf_sizer.reconfigure(self.executor)

    # -- account --------------------------------------------------------------------------------------
    def account_state(self) -> AccountState:
        """The account as the risk gate sees it: the book plus every in-flight entry."""
        if callable(self._account):
            base = self._account()
        elif self._account is not None:
            base = self._account
        else:
            base = AccountState(equity=0.0, cash=0.0, buying_power=0.0)
        if self._pnl_from_state:
            base.daily_pnl = self.state.get_daily_pnl()
        return self.reservations.account_view(base)

    # -- kill switch ----------------------------------------------------------------------------------
    def activate_kill_switch(self, reason: str, source: str = "manual") -> None:
        self.kill_switch.activate(reason, source=source)

    def deactivate_kill_switch(self) -> None:
        self.kill_switch.deactivate()

    def get_state(self) -> dict[str, Any]:
        return {
            "kill_switch": self.kill_switch.info(),
            "daily_pnl": self.state.get_daily_pnl(),
            "circuit_breaker": self.state.get_circuit_breaker_status(),
            "in_flight_orders": len(self.reservations),
            "counts": dict(self.counts),
            "feedback_weights": self.feedback.to_dict(),
            **({"analytics": self.analytics()} if self.config.enable_analytics else {}),
        }

    def analytics(self) -> dict[str, dict[str, float]]:
        """Live analytics per signal type from the closed trades: count, rolling Sharpe of R, sizing weight."""
        fb = self.feedback
        kinds = sorted(fb.to_dict()["returns"])
        return {kind: {"trades": fb.trade_count(kind), "sharpe": round(fb.sharpe(kind), 6), "weight": fb.weight(kind)}
                for kind in kinds}

    # -- the pipeline ---------------------------------------------------------------------------------
    async def process_signal(self, signal: TradeSignal) -> PipelineResult:
        """Run one signal through every stage; returns where it stopped and why, or the order intent."""
        started = monotonic()
        result = self._decide(signal)  # synchronous: no other decision can run until it returns
        decisions = self.decisions
        if decisions is not None:
            if result.success:
                outcome = StageOutcome(result.signal_id, "approved", "approved", monotonic() - started)
            else:
                outcome = StageOutcome(result.signal_id, result.pipeline_stage, "rejected", monotonic() - started)
            await decisions.publish(outcome)
        return result

    def _decide(self, signal: TradeSignal) -> PipelineResult:
        now = self.clock.now()
        record = self.recorder.begin(signal, now)  # every stage's outcome, journaled once at the end

        if self.kill_switch.is_active():
            return self._reject(record, signal, "kill_switch",
                                f"kill switch active: {self.kill_switch.info().get('reason')}")
        if self.state.is_circuit_breaker_open():
            status = self.state.get_circuit_breaker_status()
            return self._reject(record, signal, "circuit_breaker",
                                f"circuit_breaker: open until {status.get('open_until')}")
        record.passed("kill_switch")
        if self.exiting is not None and self.exiting(str(signal.ticker)):
            return self._reject(record, signal, "exit_pending", f"an exit order for {signal.ticker} is working")

        guard = self.guard.check(signal, now)
        if not guard.approved:
            return self._reject(record, signal, "signal_guard", guard.reason,
                                {"check": guard.check} if guard.check else None)
        record.passed("signal_guard", guard.reason, guard.adjustments)

        priced = price_on_market(signal, self.market_price(signal.ticker), self.config.max_entry_deviation)
        if not priced.approved or priced.signal is None:
            return self._reject(record, signal, "market_price", priced.reason, priced.detail)
        record.passed_by("market_price", priced.describe)
        signal = priced.signal  # from here on: the signal on the market price

        account = self.account_state()
        gate = self.gate.validate(signal, account, now)
        record.checks("risk_gate", gate.checks)  # each of the 8 checks, in the table's order
        if not gate.approved:
            return self._reject(record, signal, "risk_gate", gate.reason, {"check": gate.check})
        room: float | None = None
        if self.budgets is not None:  # the strategy's own budget, inside the account's
            budget, room = self.budgets.judge(signal, account, lambda: self.calendar.trading_day(now))
            if not budget.approved:
                return self._reject(record, signal, "risk_gate", budget.reason,
                                    {"check": budget.check, "strategy": signal.strategy})
            if budget.adjustments:
                gate.adjustments.update(budget.adjustments)
        record.passed("risk_gate", gate.reason, gate.adjustments)

        weight = self.feedback.weight(str(signal.signal_type)) if self.config.enable_feedback_loop else 1.0
        sector = self.sectors.get(signal.ticker)
        base = self.sizer.size(signal, account, weight=weight, sector=sector, price=signal.entry_price)
        metadata = signal.metadata if isinstance(signal.metadata, dict) else {}
        if metadata.get(QUANTITY_KEY) is not None:
            base = self._honour_quantity(base, metadata[QUANTITY_KEY], signal)
        if room is not None:
            base = self._cap_to_room(base, room, signal)
        if base.shares < 1:
            return self._reject(record, signal, "sizing", base.reason or "position below one share")

        if self.unified is not None:
            unified = self.unified.assess(signal, account, base.notional)
            if not unified.approved:
                return self._reject(record, signal, "unified_risk", unified.reason, {"check": unified.check})
            record.passed("unified_risk", unified.reason, unified.adjustments)

        try:
            decision = self._route(signal, now)
        except Exception as exc:  # a broken catalog or chain must not stop the bus
            log.exception("instrument_routing_failed", signal_id=record.signal_id)
            return self._reject(record, signal, "instrument_router", f"routing failed: {exc}")
        if decision is None or not decision.approved or not decision.symbol:
            return self._reject(record, signal, "instrument_router", decision.reason if decision else "no instrument")
        instrument = decision.instrument_type
        record.passed("instrument_router", decision.reason, {"instrument": str(instrument), "symbol": decision.symbol})

        if instrument is InstrumentType.STOCK and room is None:  # the stock itself, as sized above
            quantity, stop_loss = base.shares, signal.stop_loss
            record.passed_by("sizing", lambda: ("", {"quantity": quantity, **base.adjustments}))
        else:
            sized = self._size_instrument(signal, account, decision, base, weight, sector)
            if room is not None and sized.quantity >= 1 and sized.notional > room:  # an ETF or option: the same cap
                unit = sized.notional / sized.quantity
                capped = math.floor(room / unit) if unit > 0 else 0
                sized = _Sized(capped, capped * unit, sized.stop_loss,
                               {**sized.adjustments,
                                "strategy_equity_share_cap": {"from": sized.quantity, "to": capped}},
                               f"strategy {signal.strategy} equity share leaves {room:,.2f}, less than one unit at "
                               f"{unit:,.2f}" if capped < 1 else sized.reason)
            if sized.quantity < 1:
                return self._reject(record, signal, "sizing", sized.reason or "position below one unit")
            quantity, stop_loss = sized.quantity, sized.stop_loss
            record.passed("sizing", sized.reason, {"quantity": quantity, **sized.adjustments})

        intent = self._intent(signal, decision, quantity, stop_loss, now)
        record.approve_by(intent.client_order_id, lambda: intent_outcome(intent))
        self.recorder.finish(record, signal)  # buffered ahead of the intent: its commit carries the record too
        self.book.reserve(intent)  # in flight: the reservations (a view of the book) count it from now
        if self.validator.book is not self.book:  # one book (the daemon's): the record reserve() made is tracked
            self.validator.track(intent)
        self.book.touch(intent.symbol, now)  # order activity on the symbol (reconciliation's grace)
        if self.on_intent is not None:
            self.on_intent(intent)
        # handed to the router first: its durable write starts now; the count and the log line come after it
        task = self.router.dispatch(intent) if self.router is not None else None
        counts = self.counts
        counts[APPROVED_KEY] = counts.get(APPROVED_KEY, 0) + 1
        if info_enabled(log):
            log.info("signal_approved", signal_id=record.signal_id, strategy=signal.strategy,
                     client_order_id=intent.client_order_id, ticker=signal.ticker, symbol=intent.symbol,
                     side=intent.side.value, quantity=intent.quantity, instrument=str(instrument),
                     reason=decision.reason)
        result = PipelineResult(True, record.signal_id, "order_submitted" if task else "order_intent", None, None,
                                None, intent, task)
        if task is not None:
            task.add_done_callback(lambda done: fill_result(result, done, self.clock))
        return result

    def _reject(self, record: DecisionRecord, signal: TradeSignal, stage: str, reason: str,
                detail: dict[str, Any] | None = None) -> PipelineResult:
        """The signal stops at `stage`: its record ends there and is journaled, the rejection counted."""
        record.reject(stage, reason, detail)
        self.recorder.finish(record, signal)
        self._count(stage, "rejected")
        return PipelineResult(False, record.signal_id, stage, reason)

    # -- helpers --------------------------------------------------------------------------------------
    def _honour_quantity(self, base: SizingResult, requested: Any, signal: TradeSignal) -> SizingResult:
        """An explicit quantity is sent as asked, never above what the risk sizing and its caps allow."""
        bad = isinstance(requested, bool) or not isinstance(requested, (int, float)) or \
            not math.isfinite(requested) or requested < 1
        if bad:
            return SizingResult(0, 0.0, base.adjustments, f"sizing: metadata quantity {requested!r} is not >= 1")
        wanted = math.floor(requested)
        adjustments = {**base.adjustments, "requested_quantity": wanted}
        if wanted >= base.shares:
            if wanted > base.shares:
                adjustments["requested_quantity_cap"] = {"from": wanted, "to": base.shares}
            return SizingResult(base.shares, base.notional, adjustments, base.reason, base.risk_amount,
                                base.stop_price)
        notional = wanted * signal.entry_price
        if notional < self.executor.min_position_value:
            return SizingResult(0, 0.0, adjustments, f"sizing: notional {notional:,.2f} < min_position_value "
                                f"{self.executor.min_position_value:,.2f}")
        return SizingResult(wanted, round(notional, 2), adjustments, f"{wanted} share(s) as requested",
                            round(wanted * signal.risk_per_share, 2))

    def _cap_to_room(self, base: SizingResult, room: float, signal: TradeSignal) -> SizingResult:
        """No more than the strategy's equity share leaves (priced like the sizer: entry plus slippage)."""
        unit = signal.entry_price * (1.0 + self.slippage)
        if base.shares < 1 or base.notional <= room or unit <= 0:
            return base
        shares = max(0, math.floor(room / unit))
        adjustments = {**base.adjustments, "strategy_equity_share_cap": {"from": base.shares, "to": shares}}
        if shares < 1:
            return SizingResult(0, 0.0, adjustments, f"sizing: strategy {signal.strategy} equity share leaves "
                                f"{room:,.2f}, less than one share at {unit:,.2f}")
        return SizingResult(shares, round(shares * signal.entry_price, 2), adjustments,
                            f"{shares} share(s), capped by strategy {signal.strategy}'s equity share",
                            round(shares * signal.risk_per_share, 2), base.stop_price)

    def _route(self, signal: TradeSignal, now: Any) -> InstrumentDecision:
        if signal.metadata and isinstance(signal.metadata, dict) and signal.metadata.get(INSTRUMENT_KEY) == "stock":
            ticker = signal.ticker.strip().upper()
            return InstrumentDecision(InstrumentType.STOCK, ticker, f"explicit instrument: {ticker} stock",
                                      sector=self.sectors.get(ticker))
        decision = self.instruments.route(signal, now)
        if decision.instrument_type is InstrumentType.STOCK:  # nothing to price (priced() returns it as it is)
            return decision
        return self.instruments.priced(signal, decision, self._price)

    def _size_instrument(
        self, signal: TradeSignal, account: AccountState, decision: InstrumentDecision, base: Any,
        weight: float, sector: str | None,
    ) -> _Sized:
        if decision.instrument_type == InstrumentType.STOCK:
            return _Sized(base.shares, base.notional, signal.stop_loss, dict(base.adjustments))
        if decision.instrument_type == InstrumentType.LEVERAGED_ETF:
            price = self._price(decision.symbol)
            if price is None:
                return _Sized(0, 0, None, {}, f"no price for {decision.symbol}")
            etf = self.etf_sizer.compute_shares(signal, account, price, leverage=decision.leverage, weight=weight,
                                                sector=sector)
            return _Sized(etf.shares, etf.shares * price, etf.stop_price, dict(etf.adjustments), etf.reason)
        if decision.option is None:
            return _Sized(0, 0, None, {}, f"no option contract for {signal.ticker}")
        opt = self.sizer.size_option(signal, account, decision.option, weight=weight, sector=sector)
        return _Sized(opt.shares, opt.notional, opt.stop_price, dict(opt.adjustments), opt.reason)

    def market_price(self, symbol: str) -> float | None:
        """The current market price of `symbol` from the price lookup (feed / broker), or None when unknown."""
        if self._price_lookup is None:
            return None
        try:
            price = self._price_lookup(symbol)
            if price.__class__ is float and 0.0 < price < math.inf:  # usable as it is (usable_price's common case)
                return price
            return usable_price(price)
        except Exception:  # a broken lookup is no price: the entry is rejected, the bus keeps going
            log.exception("market_price_lookup_failed", symbol=symbol)
            return None

    def _price(self, symbol: str) -> float | None:
        return self.market_price(symbol)

    def _intent(self, signal: TradeSignal, decision: InstrumentDecision, quantity: float, stop_loss: float | None,
                now: Any) -> OrderIntent:
        instrument = decision.instrument_type
        signal_id = signal.signal_id or ""
        if instrument == InstrumentType.STOCK:
            # stocks: buy for long, sell short for short; ETFs and options are always bought (bear fund / puts)
            direction = signal.direction if signal.direction.__class__ is Direction else Direction(signal.direction)
            return OrderIntent(
                client_order_id_for(signal_id, "entry"), signal_id, decision.symbol,
                Side.SELL if direction is Direction.SHORT else Side.BUY, float(quantity),
                asset_class=AssetClass.EQUITY, kind=OrderKind.ENTRY, ticker=signal.ticker, direction=direction,
                instrument_type=instrument, reference_price=signal.entry_price, stop_loss=stop_loss,
                target_price=signal.target_price, signal_type=str(signal.signal_type), timeframe=signal.timeframe,
                created_at=now, strategy=signal.strategy,
            )
        is_option = instrument == InstrumentType.OPTIONS
        if is_option:
            ref = float(getattr(decision.option, "ask", 0.0) or getattr(decision.option, "mid", 0.0))
        else:
            ref = self._price(decision.symbol) or 0.0
        return OrderIntent(
            client_order_id=client_order_id_for(signal_id, "entry"),
            signal_id=signal_id,
            symbol=decision.symbol,
            side=Side.BUY,
            quantity=float(quantity),
            asset_class=AssetClass.OPTION if is_option else AssetClass.EQUITY,
            kind=OrderKind.ENTRY,
            ticker=signal.ticker,
            direction=Direction.LONG,
            instrument_type=instrument,
            reference_price=ref,
            stop_loss=stop_loss,
            target_price=None,
            signal_type=str(signal.signal_type),
            timeframe=signal.timeframe,
            created_at=now,
            strategy=signal.strategy,
        )

    def _count(self, stage: str, outcome: str) -> None:
        key = f"{stage}:{outcome}"
        self.counts[key] = self.counts.get(key, 0) + 1

    def release(self, client_order_id: str, filled_qty: float | None = None, fully_filled: bool = False) -> None:
        """An entry reached a final state: its reservation no longer holds exposure, but for what filled and is
        not in the ledger yet (see ReservationBook.release). With a known outcome (`filled_qty` given) the router's
        smart venue scores learn whether the order filled."""
        self.reservations.release(client_order_id, filled_qty, fully_filled, self.clock.now())
        if self.router is not None and filled_qty is not None:
            self.router.record_outcome(client_order_id, filled=fully_filled or filled_qty > 0)

    def withdraw(self, signal: TradeSignal, client_order_id: str) -> None:
        """An approved entry that was never sent and never will be (an operator's order whose intent the journal
        could not take): its reservation is released and its signal forgotten by the dedup window, so the
        operator's next decision on the ticker is judged afresh."""
        self.release(client_order_id, 0.0)
        self.guard.forget(signal)

    def entry_filled(self, client_order_id: str, quantity: float) -> None:
        """Part of an entry filled and is in the ledger: its reservation keeps only the unfilled rest."""
        self.reservations.filled(client_order_id, quantity)


def intent_outcome(intent: OrderIntent) -> tuple[str, dict[str, Any]]:
    """The decision record's last stage of an approved signal: the intent made (reason, detail)."""
    side = intent.side.value
    return (f"{side} {intent.quantity:g} {intent.symbol}",
            {"symbol": intent.symbol, "side": side, "quantity": intent.quantity,
             "reference_price": intent.reference_price, "instrument": str(intent.instrument_type)})


def fill_result(result: PipelineResult, task: asyncio.Task[OrderResult], clock: Clock) -> None:
    """Once the order task is done: `result.order_result` is the broker's answer and, when something filled,
    `result.position` the position it opened (as the ledger will hold it)."""
    if task.cancelled() or task.exception() is not None:
        return
    answer = task.result()
    result.order_result = answer
    intent = result.intent
    price = answer.filled_avg_price
    if intent is None or answer.filled_qty <= 0 or price is None or not price > 0:
        return
    fill = Fill(f"{answer.client_order_id}-result", answer.client_order_id, intent.symbol, intent.side,
                answer.filled_qty, price, answer.submitted_at or clock.now(), answer.broker, answer.broker_order_id)
    result.position = Ledger.opened_position(fill, intent, contract_multiplier(intent.asset_class))
