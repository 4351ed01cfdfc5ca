"""TradingService: the operator's high-level trading API — buy, sell, preview and execute a rebalance.

Every order it sends takes the safe path of the daemon:

- buys (and explicit short sells) are `TradeSignal`s (signal_type "manual", source "trading_service") sent
  through `BotOrchestrator.process_signal`: kill switch, circuit breaker, SignalGuard, the 8 risk checks,
  unified risk, sizing caps, reservations, journal, OrderRouter. The wanted size travels in
  `signal.metadata["quantity"]`; the orchestrator sends at most that many shares and fewer when the risk
  sizing, the exposure limits or buying power allow fewer (`metadata["instrument"] = "stock"` trades the
  ticker itself rather than an ETF or option).
- sells that reduce a long (and buys that cover a short) are reduce-only orders registered with the
  lifecycle (so their fills close the position in the ledger) and dispatched through the same OrderRouter.
  They are refused while the kill switch is active, like everything else the service sends, and never sell
  more than is held (a short needs `short=True` and goes through the entry pipeline).
- `preview_rebalance` turns target weights into a `RebalanceProposal`; `execute_rebalance` sends it, sells
  first, only once `proposal.approved` is set, and reports every trade's outcome.

The service does not own the broker or the book: the daemon (or a test) gives it the running pieces.
"""

from __future__ import annotations

import asyncio
import math
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog
from pydantic import BaseModel, ConfigDict, Field, field_validator

from config.settings import TIMEFRAMES, Settings
from config.symbols import symbol_problem
from pipeline import orchestrator as orchestrator_module
from pipeline.core.clock import Clock
from pipeline.core.models import (
    AccountState,
    ExitType,
    OrderIntent,
    OrderKind,
    OrderResult,
    OrderStatus,
    Position,
    Side,
    SignalType,
    TradeSignal,
    asset_class_of,
    client_order_id_for,
)
from pipeline.orchestrator import BotOrchestrator
from pipeline.positions.ledger import Ledger
from pipeline.positions.lifecycle import LifecycleManager

log = structlog.get_logger("ordergate.trading_service")

PriceLookup = Callable[[str], float | None]
AccountProvider = Callable[[], AccountState]
Settle = Callable[[], Awaitable[None]]
SOURCE = "trading_service"
WEIGHT_EPSILON = 1e-6
QUANTITY_KEY = "quantity"        # signal.metadata: explicit order size, capped by the risk limits
INSTRUMENT_KEY = "instrument"    # signal.metadata: "stock" trades the ticker itself


class TradingConfig(BaseModel):
    """How the TradingService trades and estimates costs."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    paper_trading: bool = True
    initial_cash: float = Field(100_000.0, gt=0)
    rebalance_tolerance: float = Field(0.02, ge=0, le=1, description="weight drift left untraded / accepted")
    min_trade_value: float = Field(100.0, ge=0, description="smaller rebalance trades are skipped")
    commission_per_share: float = Field(0.0, ge=0, description="for cost estimates")
    slippage_bps: float = Field(2.0, ge=0, description="for cost estimates and buy sizing")
    stop_fraction: float = Field(0.05, gt=0, lt=1, description="protective stop of a manual buy, below entry")
    conviction: float = Field(100.0, ge=0, le=100)
    timeframe: str = Field("1d", description="timeframe of manual positions (daily: no end-of-day close)")
    order_wait_seconds: float = Field(30.0, gt=0, description="how long to wait for the broker's answer")
    proposal_max_age_seconds: float = Field(300.0, gt=0, description="older approved proposals are refused")

    @field_validator("timeframe")
    @classmethod
    def _known_timeframe(cls, value: str) -> str:
        if value not in TIMEFRAMES:
            raise ValueError(f"timeframe: unknown {value!r}; allowed: {', '.join(TIMEFRAMES)}")
        return value

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> TradingConfig:
        """Cost figures from the paper broker's settings; paper_trading when the primary broker is paper."""
        values: dict[str, Any] = {
            "paper_trading": settings.broker.primary == "paper",
            "initial_cash": settings.paper.initial_cash,
            "commission_per_share": settings.paper.commission_per_share,
            "slippage_bps": settings.paper.slippage_bps,
        }
        values.update(overrides)
        return cls(**values)


@dataclass(slots=True)
class TradeResult:
    """What happened to one buy or sell."""

    ok: bool
    ticker: str
    side: str
    requested_shares: float
    shares: float = 0.0               # what was sent (after the risk caps)
    est_price: float | None = None
    reason: str = ""
    stage: str = ""                   # where the pipeline stopped it, or "order_submitted"
    signal_id: str | None = None
    client_order_id: str | None = None
    status: str | None = None         # the broker's answer
    filled_qty: float = 0.0
    filled_avg_price: float | None = None

    @property
    def capped(self) -> bool:
        return self.ok and self.shares < self.requested_shares

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok, "ticker": self.ticker, "side": self.side, "requested_shares": self.requested_shares,
            "shares": self.shares, "capped": self.capped, "est_price": self.est_price, "reason": self.reason,
            "stage": self.stage, "signal_id": self.signal_id, "client_order_id": self.client_order_id,
            "status": self.status, "filled_qty": self.filled_qty, "filled_avg_price": self.filled_avg_price,
        }


@dataclass(slots=True)
class RebalanceTrade:
    """One trade of a rebalance proposal."""

    ticker: str
    side: str
    shares: float
    est_price: float
    est_value: float

    def to_dict(self) -> dict[str, Any]:
        return {"ticker": self.ticker, "side": self.side, "shares": self.shares, "est_price": self.est_price,
                "est_value": round(self.est_value, 2)}


@dataclass
class RebalanceProposal:
    """Trades that move the book to target weights; set `approved = True` after review to execute it."""

    proposal_id: str
    created_at: datetime
    target_weights: dict[str, float]
    trades: list[RebalanceTrade]
    estimated_cost: float
    equity: float
    current_weights: dict[str, float]
    resulting_weights: dict[str, float]
    warnings: list[str] = field(default_factory=list)
    approved: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "proposal_id": self.proposal_id, "created_at": self.created_at.isoformat(),
            "target_weights": self.target_weights, "trades": [t.to_dict() for t in self.trades],
            "estimated_cost": round(self.estimated_cost, 2), "equity": round(self.equity, 2),
            "current_weights": self.current_weights, "resulting_weights": self.resulting_weights,
            "warnings": self.warnings, "approved": self.approved,
        }


@dataclass(slots=True)
class RebalanceResult:
    """The outcome of `execute_rebalance`: refused with a reason, or one TradeResult per trade."""

    executed: bool
    reason: str = ""
    proposal_id: str = ""
    trades: list[TradeResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.executed and all(t.ok for t in self.trades)

    def to_dict(self) -> dict[str, Any]:
        return {"executed": self.executed, "ok": self.ok, "reason": self.reason, "proposal_id": self.proposal_id,
                "trades": [t.to_dict() for t in self.trades]}


# -- input checks --------------------------------------------------------------------------------------------
def normalize_ticker(ticker: Any, name: str = "ticker") -> str:
    """The upper-case symbol, or ValueError naming the field."""
    if not isinstance(ticker, str) or not ticker.strip():
        raise ValueError(f"{name}: must be a non-empty symbol, got {ticker!r}")
    symbol = ticker.strip().upper()
    problem = symbol_problem(symbol)
    if problem is not None:
        raise ValueError(f"{name}: {problem}")
    return symbol


def _positive(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name}: must be a finite number > 0, got {value!r}")
    return float(value)


def _amount(dollars: Any, shares: Any) -> tuple[str, float]:
    """Exactly one of dollars / shares, positive: ('dollars' | 'shares', value)."""
    if (dollars is None) == (shares is None):
        raise ValueError("dollars/shares: give exactly one of dollars or shares")
    if dollars is not None:
        return "dollars", _positive(dollars, "dollars")
    return "shares", _positive(shares, "shares")


def validate_targets(target_weights: Any) -> dict[str, float]:
    """Upper-cased tickers with weights in [0, 1] summing to at most 1; ValueError naming the bad entry."""
    if not isinstance(target_weights, dict) or not target_weights:
        raise ValueError("target_weights: must be a non-empty mapping of ticker -> weight")
    targets: dict[str, float] = {}
    for raw, weight in target_weights.items():
        ticker = normalize_ticker(raw, "target_weights ticker")
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight):
            raise ValueError(f"target_weights[{ticker}]: weight must be a number, got {weight!r}")
        if not 0.0 <= weight <= 1.0:
            raise ValueError(f"target_weights[{ticker}]: weight {weight} is outside [0, 1]")
        if ticker in targets:
            raise ValueError(f"target_weights[{ticker}]: listed twice")
        targets[ticker] = float(weight)
    total = sum(targets.values())
    if total > 1.0 + WEIGHT_EPSILON:
        raise ValueError(f"target_weights: weights sum to {total:.4f} > 1")
    return targets


def _require_explicit_quantity() -> None:
    """Fail closed: an orchestrator that ignores metadata['quantity'] would send its own (larger) size."""
    keys = (getattr(orchestrator_module, "QUANTITY_KEY", None), getattr(orchestrator_module, "INSTRUMENT_KEY", None))
    if keys != (QUANTITY_KEY, INSTRUMENT_KEY):
        raise RuntimeError("BotOrchestrator does not honour signal.metadata['quantity'] / ['instrument']: "
                           "TradingService refuses to run (it would send the pipeline's own size)")


class TradingService:
    """High-level trading API (the spec's TradingService) over the daemon's running pipeline."""

    def __init__(
        self,
        config: TradingConfig,
        *,
        orchestrator: BotOrchestrator,
        ledger: Ledger,
        price_lookup: PriceLookup,
        account: AccountProvider,
        clock: Clock,
        lifecycle: LifecycleManager | None = None,
        settle: Settle | None = None,
        start: Settle | None = None,
    ) -> None:
        _require_explicit_quantity()
        self.config = config
        self.orchestrator = orchestrator
        self.ledger = ledger
        self.price_lookup = price_lookup
        self.account = account
        self.clock = clock
        self.lifecycle = lifecycle
        self._settle = settle
        self._start = start
        self._connected = False
        self._lock = asyncio.Lock()

    # -- connection ---------------------------------------------------------------------------------------
    async def connect(self) -> None:
        """Start the pipeline pieces if a starter was given; a no-op once connected."""
        if self._connected:
            return
        if self._start is not None:
            await self._start()
        self._connected = True
        log.info("trading_service_connected", paper_trading=self.config.paper_trading)

    @property
    def connected(self) -> bool:
        return self._connected

    def kill_switch_reason(self) -> str | None:
        """Why nothing may be sent now (kill switch active), or None."""
        kill_switch = self.orchestrator.kill_switch
        if not kill_switch.is_active():
            return None
        return f"kill switch active: {kill_switch.info().get('reason')}"

    # -- buy / sell ---------------------------------------------------------------------------------------
    async def buy(self, ticker: str, *, dollars: float | None = None, shares: float | None = None) -> TradeResult:
        """Buy by dollars or shares: covers a short (reduce-only) or opens/adds to a long through the pipeline."""
        symbol = normalize_ticker(ticker)
        kind, value = _amount(dollars, shares)
        await self.connect()
        async with self._lock:
            return await self._trade(symbol, Side.BUY, kind, value, short=False)

    async def sell(
        self, ticker: str, *, dollars: float | None = None, shares: float | None = None, short: bool = False,
    ) -> TradeResult:
        """Sell by dollars or shares: reduces or closes a long; selling short needs short=True and no long."""
        symbol = normalize_ticker(ticker)
        kind, value = _amount(dollars, shares)
        await self.connect()
        async with self._lock:
            return await self._trade(symbol, Side.SELL, kind, value, short=short)

    async def _trade(self, ticker: str, side: Side, kind: str, value: float, *, short: bool) -> TradeResult:
        price = self._price(ticker)
        requested = value if kind == "shares" else 0.0
        refused = self.kill_switch_reason()
        if refused is not None:
            return self._refused(ticker, side, requested, price, refused, "kill_switch")
        if price is None:
            return self._refused(ticker, side, requested, None, f"no price known for {ticker}", "price")
        quantity = math.floor(value) if kind == "shares" else math.floor(value / price)
        requested = value if kind == "shares" else float(quantity)
        if quantity < 1:
            what = f"dollars: {value:,.2f} buys" if kind == "dollars" else f"shares: {value:g} is"
            return self._refused(ticker, side, requested, price,
                                 f"{what} less than one whole share of {ticker} at {price:,.2f}", "input")
        held_qty = self.ledger.net(ticker)  # every strategy's position in it together
        reduces = (held_qty > 0 and side == Side.SELL) or (held_qty < 0 and side == Side.BUY)
        if reduces:
            return await self._reduce(ticker, side, quantity, price, held_qty)
        if side == Side.SELL and not short:
            why = "no long position" if held_qty == 0 else f"a short of {abs(held_qty):g}"
            return self._refused(ticker, side, requested, price,
                                 f"sell: {ticker} has {why}; selling short needs short=True", "position")
        if side == Side.SELL and held_qty > 0:
            return self._refused(ticker, side, requested, price,
                                 f"sell: {ticker} is held long {held_qty:g}; close it before selling short",
                                 "position")
        return await self._enter(ticker, side, quantity, price)

    # -- entries through the orchestrator -----------------------------------------------------------------
    def _signal(self, ticker: str, side: Side, quantity: int, price: float) -> TradeSignal:
        long = side == Side.BUY
        stop = price * (1.0 - self.config.stop_fraction) if long else price * (1.0 + self.config.stop_fraction)
        return TradeSignal(
            signal_type=SignalType.MANUAL.value, direction="long" if long else "short", ticker=ticker,
            timeframe=self.config.timeframe, conviction=self.config.conviction, entry_price=price,
            stop_loss=round(stop, 4), timestamp=self.clock.now(), source=SOURCE,
            signal_id=f"ts-{uuid.uuid4().hex[:20]}",
            metadata={QUANTITY_KEY: quantity, INSTRUMENT_KEY: "stock"},
        )

    async def _enter(self, ticker: str, side: Side, quantity: int, price: float) -> TradeResult:
        signal = self._signal(ticker, side, quantity, price)
        result = await self.orchestrator.process_signal(signal)
        if not result.success or result.intent is None:
            log.warning("manual_order_refused", ticker=ticker, side=str(side), stage=result.pipeline_stage,
                        reason=result.rejection_reason)
            return TradeResult(False, ticker, str(side), float(quantity), 0.0, price,
                               result.rejection_reason or "refused", result.pipeline_stage, result.signal_id)
        intent = result.intent
        trade = TradeResult(True, ticker, str(side), float(quantity), intent.quantity, price, "",
                            result.pipeline_stage, result.signal_id, intent.client_order_id)
        if intent.quantity < quantity:
            trade.reason = (f"capped by the risk limits: {quantity:g} requested, {intent.quantity:g} sent "
                            "(risk per trade, single-stock/sector exposure or buying power)")
        try:
            await self._await_order(trade, result.order_task)
        except Exception as exc:  # its intent could not be journaled: the router withdrew it, nothing was sent
            self.orchestrator.withdraw(signal, intent.client_order_id)
            reason = (f"journal: {type(exc).__name__}: {exc}; nothing was sent and it will not be sent (decide "
                      "again once the journal takes writes)")
            log.error("manual_order_refused", ticker=ticker, side=str(side), stage="journal", reason=reason,
                      client_order_id=intent.client_order_id)
            return TradeResult(False, ticker, str(side), float(quantity), 0.0, price, reason, "journal",
                               result.signal_id, intent.client_order_id)
        return trade

    # -- reductions (exits) -------------------------------------------------------------------------------
    async def _reduce(self, ticker: str, side: Side, quantity: int, price: float, held_qty: float) -> TradeResult:
        held = abs(held_qty)
        if quantity > held + 1e-9:
            direction = "long" if held_qty > 0 else "short"
            return self._refused(
                ticker, side, float(quantity), price,
                f"{side}: {quantity:g} shares > {held:g} held {direction} in {ticker}; an order may only reduce "
                "the position (close it first to reverse)", "position",
            )
        positions = self.ledger.positions_in(ticker)
        pos = next((p for p in positions if abs(p.shares) >= quantity - 1e-9), None)
        if pos is None:  # more than any one strategy's position: a reducing order is for one position
            held_by = ", ".join(f"{p.strategy or '(none)'} {p.shares:g}" for p in positions)
            return self._refused(ticker, side, float(quantity), price,
                                 f"{side}: {quantity:g} shares is more than any one position in {ticker} "
                                 f"(held by strategy: {held_by}); reduce one position at a time", "position")
        if self.lifecycle is not None and pos.key in self.lifecycle.pending_exits:
            return self._refused(ticker, side, float(quantity), price,
                                 f"an exit order for {ticker} is already working", "pending_exit")
        router = self.orchestrator.router
        register = self.lifecycle.register_intent if self.lifecycle is not None else self.orchestrator.on_intent
        if router is None or register is None:
            return self._refused(ticker, side, float(quantity), price,
                                 "no order router / lifecycle to send a reducing order", "setup")
        intent = self._exit_intent(pos, side, quantity, price)
        closes = quantity >= abs(pos.shares) - 1e-9
        if closes and self.lifecycle is not None:
            # the automatic exits must not send a second full close while this one works
            self.lifecycle.pending_exits[pos.key] = intent.client_order_id
        register(intent)
        log.info("manual_exit", ticker=ticker, side=str(side), quantity=quantity,
                 client_order_id=intent.client_order_id, closes=closes)
        stops = self.lifecycle.stops if self.lifecycle is not None else None
        if stops is not None and stops.guards(intent.key):  # the resting stop is released first: never two sales
            task = router.dispatch_after(intent, self.lifecycle.release_stop)  # type: ignore[union-attr]
        else:
            task = router.dispatch(intent)
        trade = TradeResult(True, ticker, str(side), float(quantity), float(quantity), price, "", "order_submitted",
                            intent.signal_id, intent.client_order_id)
        try:
            await self._await_order(trade, task)
        except Exception as exc:  # its intent could not be journaled yet: an exit is kept and sent once it is
            trade.status = str(OrderStatus.PENDING)
            trade.reason = (f"journal: {type(exc).__name__}: {exc}; not sent yet: it goes out once the journal takes "
                            "writes (an exit is never dropped; do not repeat it by hand)")
            log.error("manual_exit_not_journaled", ticker=ticker, client_order_id=intent.client_order_id,
                      reason=trade.reason)
        return trade

    def _exit_intent(self, pos: Position, side: Side, quantity: int, price: float) -> OrderIntent:
        signal_id = f"ts-{uuid.uuid4().hex[:20]}"
        return OrderIntent(
            client_order_id=client_order_id_for(signal_id, "manual"), signal_id=signal_id, symbol=pos.symbol,
            side=side, quantity=float(quantity), reduce_only=True, kind=OrderKind.EXIT, ticker=pos.ticker,
            direction=pos.direction, instrument_type=pos.instrument_type,
            asset_class=asset_class_of(pos.multiplier),
            reference_price=price, signal_type=pos.signal_type, timeframe=pos.timeframe,
            broker=pos.broker or None, created_at=self.clock.now(),
            exit_type=ExitType.MANUAL_SELL if side == Side.SELL else ExitType.MANUAL_BUY,
            strategy=pos.strategy,  # it reduces that strategy's position
        )

    # -- shared helpers -----------------------------------------------------------------------------------
    async def _await_order(self, trade: TradeResult, task: Any) -> None:
        """Fill in the broker's answer; a rejection turns the trade into a failure with the broker's reason."""
        if task is None:
            return
        try:
            answer: OrderResult = await asyncio.wait_for(asyncio.shield(task), self.config.order_wait_seconds)
        except TimeoutError:
            trade.status = str(OrderStatus.PENDING)
            trade.reason = (trade.reason + "; " if trade.reason else "") + \
                f"no broker answer within {self.config.order_wait_seconds:g}s (order still working)"
            return
        trade.status = str(answer.status)
        trade.filled_qty = answer.filled_qty
        trade.filled_avg_price = answer.filled_avg_price
        if answer.status == OrderStatus.REJECTED:
            trade.ok = False
            trade.stage = "broker"
            trade.reason = f"rejected by {answer.broker}: {answer.reason}"

    def _price(self, ticker: str) -> float | None:
        price = self.price_lookup(ticker)
        if price is None or not math.isfinite(price) or price <= 0:
            return None
        return float(price)

    @staticmethod
    def _refused(ticker: str, side: Side, requested: float, price: float | None, reason: str,
                 stage: str) -> TradeResult:
        log.warning("manual_order_refused", ticker=ticker, side=str(side), stage=stage, reason=reason)
        return TradeResult(False, ticker, str(side), requested, 0.0, price, reason, stage)

    # -- rebalance ----------------------------------------------------------------------------------------
    async def preview_rebalance(self, target_weights: dict[str, float]) -> RebalanceProposal:
        """The trades that move the named tickers to their target weights of equity (nothing is sent).

        Tickers not named are left alone (name one with weight 0 to sell it all). Raises ValueError for a bad
        target (naming the ticker and weight) or a ticker without a known price.
        """
        targets = validate_targets(target_weights)
        prices = self._target_prices(targets)
        account = self.account()
        equity = account.equity
        if not equity > 0:
            raise ValueError(f"equity: {equity:,.2f} is not positive; nothing to rebalance")
        held = self._long_quantities(targets)
        trades = [t for t in (self._plan(ticker, targets[ticker], held.get(ticker, 0.0), prices[ticker], equity)
                              for ticker in targets) if t is not None]
        trades.sort(key=lambda t: (t.side != "sell", t.ticker))
        cost = sum(self._cost(t) for t in trades)
        proposal = RebalanceProposal(
            proposal_id=f"rb-{uuid.uuid4().hex[:12]}", created_at=self.clock.now(), target_weights=targets,
            trades=trades, estimated_cost=round(cost, 2), equity=round(equity, 2),
            current_weights=self._weights(held, prices, account.cash, equity, targets),
            resulting_weights=self._resulting(held, prices, trades, account.cash, cost, equity, targets),
            warnings=self._warnings(targets, held),
        )
        log.info("rebalance_previewed", proposal_id=proposal.proposal_id, trades=len(trades),
                 estimated_cost=proposal.estimated_cost)
        return proposal

    def _target_prices(self, targets: dict[str, float]) -> dict[str, float]:
        prices: dict[str, float] = {}
        for ticker, weight in targets.items():
            price = self._price(ticker)
            if price is None:
                raise ValueError(f"target_weights[{ticker}]: no known price for {ticker} (weight {weight})")
            prices[ticker] = price
        return prices

    def _long_quantities(self, targets: dict[str, float]) -> dict[str, float]:
        quantities: dict[str, float] = {}
        for ticker in targets:
            if not self.ledger.holds(ticker):
                continue
            net = self.ledger.net(ticker)
            if net < 0:
                raise ValueError(f"target_weights[{ticker}]: {ticker} is held short; rebalance handles longs only")
            quantities[ticker] = net
        return quantities

    def _plan(self, ticker: str, weight: float, held: float, price: float, equity: float) -> RebalanceTrade | None:
        current = held * price
        if abs(current / equity - weight) <= self.config.rebalance_tolerance / 2 and weight > 0:
            return None
        diff = weight * equity - current
        if diff < 0:
            shares = held if weight == 0 else min(held, float(math.floor(-diff / price)))
            side = "sell"
        else:
            # leave room for the fill's slippage and commission so the buy stays inside buying power
            unit = price * (1 + self.config.slippage_bps / 10_000) + self.config.commission_per_share
            shares = float(math.floor(diff / unit))
            side = "buy"
        value = shares * price
        if shares < 1 or (value < self.config.min_trade_value and not (side == "sell" and weight == 0)):
            return None
        return RebalanceTrade(ticker, side, shares, price, value)

    def _cost(self, trade: RebalanceTrade) -> float:
        return trade.shares * self.config.commission_per_share + trade.est_value * self.config.slippage_bps / 10_000

    @staticmethod
    def _weights(held: dict[str, float], prices: dict[str, float], cash: float, equity: float,
                 targets: dict[str, float]) -> dict[str, float]:
        weights = {t: round(held.get(t, 0.0) * prices[t] / equity, 6) for t in targets}
        weights["cash"] = round(cash / equity, 6)
        return weights

    @staticmethod
    def _resulting(held: dict[str, float], prices: dict[str, float], trades: list[RebalanceTrade], cash: float,
                   cost: float, equity: float, targets: dict[str, float]) -> dict[str, float]:
        after = dict(held)
        for t in trades:
            sign = 1.0 if t.side == "buy" else -1.0
            after[t.ticker] = after.get(t.ticker, 0.0) + sign * t.shares
            cash -= sign * t.est_value
        new_equity = equity - cost
        weights = {t: round(after.get(t, 0.0) * prices[t] / new_equity, 6) for t in targets}
        weights["cash"] = round((cash - cost) / new_equity, 6)
        return weights

    def _warnings(self, targets: dict[str, float], held: dict[str, float]) -> list[str]:
        """Targets the risk limits will cap or refuse at execution."""
        limits = self.orchestrator.executor
        sectors = self.orchestrator.sectors
        warnings: list[str] = []
        by_sector: dict[str, float] = {}
        for ticker, weight in targets.items():
            if weight > limits.max_single_stock_exposure:
                warnings.append(f"{ticker}: target {weight:.0%} > max_single_stock_exposure "
                                f"{limits.max_single_stock_exposure:.0%}; the buy will be capped")
            sector = sectors.get(ticker)
            if sector is not None:
                by_sector[sector] = by_sector.get(sector, 0.0) + weight
            if held.get(ticker, 0.0) > 0 and weight > 0:
                warnings.append(f"{ticker}: already held; adding to it passes the risk gate only when "
                                "allow_add_to_winner is on and the position is in profit")
        for sector, weight in by_sector.items():
            if weight > limits.max_sector_exposure:
                warnings.append(f"sector {sector}: targets sum to {weight:.0%} > max_sector_exposure "
                                f"{limits.max_sector_exposure:.0%}; buys will be capped")
        return warnings

    async def execute_rebalance(self, proposal: RebalanceProposal) -> RebalanceResult:
        """Send an approved proposal: sells first (then wait for them to settle), then buys, each on the safe path."""
        refused = self._execution_refusal(proposal)
        if refused is not None:
            proposal_id = str(getattr(proposal, "proposal_id", ""))
            log.warning("rebalance_refused", proposal_id=proposal_id, reason=refused)
            return RebalanceResult(False, refused, proposal_id)
        await self.connect()
        outcomes: list[TradeResult] = []
        sells = [t for t in proposal.trades if t.side == "sell"]
        buys = [t for t in proposal.trades if t.side == "buy"]
        for trade in sells:
            outcomes.append(await self.sell(trade.ticker, shares=trade.shares))
        if sells and self._settle is not None:
            await self._settle()  # the buys are decided with the cash the sells freed
        for trade in buys:
            outcomes.append(await self.buy(trade.ticker, shares=trade.shares))
        if self._settle is not None:
            await self._settle()
        result = RebalanceResult(True, "", proposal.proposal_id, outcomes)
        log.info("rebalance_executed", proposal_id=proposal.proposal_id, ok=result.ok,
                 failed=[t.ticker for t in outcomes if not t.ok])
        return result

    def _execution_refusal(self, proposal: RebalanceProposal) -> str | None:
        if not isinstance(proposal, RebalanceProposal):
            return f"proposal: expected a RebalanceProposal, got {type(proposal).__name__}"
        if not proposal.approved:
            return "proposal not approved: review it and set proposal.approved = True to execute"
        age = (self.clock.now() - proposal.created_at).total_seconds()
        if age > self.config.proposal_max_age_seconds:
            return (f"proposal is {age:.0f}s old > proposal_max_age_seconds "
                    f"{self.config.proposal_max_age_seconds:g}; preview again")
        return self.kill_switch_reason()
