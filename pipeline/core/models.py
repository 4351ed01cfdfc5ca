"""Event and domain models that travel on the bus: bars, signals, order intents, updates, fills, positions.

Internal events are slots dataclasses or msgspec Structs (cheap to build). External input is checked with
`signal_problems()` — the one set of signal rules, used by the guard and by the webhook's pydantic model.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

import msgspec

from config.settings import TIMEFRAMES
from config.symbols import MAX_SYMBOL_LEN, symbol_problem
from pipeline.core.digest import sha256_hex

TIMEFRAME_SECONDS: dict[str, int] = {
    "1m": 60, "2m": 120, "3m": 180, "5m": 300, "10m": 600, "15m": 900, "30m": 1800,
    "1h": 3600, "2h": 7200, "4h": 14400, "1d": 86400,
}
assert set(TIMEFRAME_SECONDS) == set(TIMEFRAMES)
MAX_SIGNAL_PRICE = 1_000_000.0
MAX_TICKER_LEN = MAX_SYMBOL_LEN  # OCC option symbols are 21 characters


class Direction(StrEnum):
    """Side of a position."""

    LONG = "long"
    SHORT = "short"


def _direction(value: Any) -> Any:
    """A valid direction as `Direction`; anything else unchanged (signal_problems names it)."""
    return _DIRECTIONS.get(value, value) if isinstance(value, str) else value


class Side(StrEnum):
    """Side of an order."""

    BUY = "buy"
    SELL = "sell"


class SignalType(StrEnum):
    """What the EMA-cloud strategy (or an alert) saw."""

    CLOUD_CROSS_BULLISH = "cloud_cross_bullish"
    CLOUD_CROSS_BEARISH = "cloud_cross_bearish"
    CLOUD_FLIP_BULLISH = "cloud_flip_bullish"
    CLOUD_FLIP_BEARISH = "cloud_flip_bearish"
    TREND_ALIGNED_LONG = "trend_aligned_long"
    TREND_ALIGNED_SHORT = "trend_aligned_short"
    PULLBACK_ENTRY_LONG = "pullback_entry_long"
    PULLBACK_ENTRY_SHORT = "pullback_entry_short"
    BREAKOUT_LONG = "breakout_long"      # the daily breakout strategy: close above the N-day high
    BREAKOUT_SHORT = "breakout_short"    # close below the N-day low
    MANUAL = "manual"


class OrderType(StrEnum):
    MARKET = "market"
    LIMIT = "limit"
    STOP = "stop"
    BRACKET = "bracket"


_DIRECTIONS: dict[str, Direction] = {d.value: d for d in Direction}


class OrderKind(StrEnum):
    """What an order is for (`OrderIntent.kind`; the journal's orders.kind column)."""

    ENTRY = "entry"    # opens or adds to a position (the only kind the kill switch blocks)
    EXIT = "exit"      # reduce-only: one of the exits, a flatten, a manual sell
    STOP = "stop"      # the protective stop resting at the broker


class ExitType(StrEnum):
    """Why a position is closed (`OrderIntent.exit_type`, `ExitSignal.exit_type`, the trades.exit_type column)."""

    NONE = ""                              # not an exit (an entry's intent)
    STOP_LOSS = "stop_loss"
    MOMENTUM_EXHAUSTION = "momentum_exhaustion"
    CLOUD_FLIP = "cloud_flip"
    PROFIT_TARGET = "profit_target"
    TIME_STOP = "time_stop"
    EOD_CLOSE = "eod_close"
    TRAILING_STOP = "trailing_stop"
    BROKER_STOP = "stop_loss (broker)"     # the protective stop at the broker filled
    FLATTEN = "flatten"                    # emergency close of everything
    OPTION_EXPIRED = "option_expired"      # an option past its last session, gone from its broker (at 0)
    RESEND = "resend"                      # a fresh exit for one that never reached its broker
    MANUAL_BUY = "manual_buy"              # TradingService closing a short by hand
    MANUAL_SELL = "manual_sell"            # TradingService closing a long by hand
    UNKNOWN = "unknown"                    # a round trip whose closing order named no exit


class AssetClass(StrEnum):
    EQUITY = "equity"
    OPTION = "option"


OPTION_MULTIPLIER = 100.0  # shares per listed US equity option contract: the one place this number lives


def contract_multiplier(asset_class: AssetClass | str) -> float:
    """Value of one unit of quantity per point of price: OPTION_MULTIPLIER for an option, 1 for a share."""
    return OPTION_MULTIPLIER if asset_class == AssetClass.OPTION else 1.0


def asset_class_of(multiplier: float) -> AssetClass:
    """The asset class a position's multiplier says it is (an option contract or shares)."""
    return AssetClass.OPTION if multiplier == OPTION_MULTIPLIER else AssetClass.EQUITY


class InstrumentType(StrEnum):
    STOCK = "stock"
    LEVERAGED_ETF = "leveraged_etf"
    OPTIONS = "options"


class OrderStatus(StrEnum):
    """Lifecycle of an order at a broker (Alpaca's vocabulary; IB's is mapped onto it)."""

    PENDING = "pending"          # journaled, not yet acknowledged
    NEW = "new"                  # accepted by the broker
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCELED = "canceled"
    REJECTED = "rejected"
    EXPIRED = "expired"
    REPLACED = "replaced"
    NEVER_REACHED = "never_reached"  # journaled, and its broker never heard of it (order_resolver)

    @property
    def is_final(self) -> bool:
        return self in _FINAL_STATUSES


_FINAL_STATUSES = frozenset(
    {OrderStatus.FILLED, OrderStatus.CANCELED, OrderStatus.REJECTED, OrderStatus.EXPIRED, OrderStatus.REPLACED,
     OrderStatus.NEVER_REACHED}
)


@dataclass(slots=True)
class Bar:
    """One OHLCV bar; `timestamp` is the bar's open time, UTC-aware."""

    symbol: str
    timestamp: datetime
    open: float
    high: float
    low: float
    close: float
    volume: float
    timeframe: str = "1m"


@dataclass(slots=True)
class CloudState:
    """The three EMA clouds of one ticker at one bar: each cloud is bullish when its fast EMA is above."""

    symbol: str
    timeframe: str
    timestamp: datetime
    close: float
    fast_short: float
    fast_long: float
    pullback_short: float
    pullback_long: float
    trend_short: float
    trend_long: float

    @property
    def fast_bullish(self) -> bool:
        return self.fast_short >= self.fast_long

    @property
    def pullback_bullish(self) -> bool:
        return self.pullback_short >= self.pullback_long

    @property
    def trend_bullish(self) -> bool:
        return self.trend_short >= self.trend_long

    def cloud_bounds(self, cloud: str) -> tuple[float, float]:
        """(low, high) edge of the named cloud: 'fast', 'pullback' or 'trend'."""
        a, b = {
            "fast": (self.fast_short, self.fast_long),
            "pullback": (self.pullback_short, self.pullback_long),
            "trend": (self.trend_short, self.trend_long),
        }[cloud]
        return (a, b) if a <= b else (b, a)


@dataclass(slots=True)
class TradeSignal:
    """A request to enter a position. Built by the strategy or parsed from an alert; checked by the guard."""

    signal_type: SignalType | str
    direction: Direction | str
    ticker: str
    timeframe: str
    conviction: float
    entry_price: float
    stop_loss: float
    target_price: float | None = None
    timestamp: datetime | None = None
    source: str = "strategy"
    signal_id: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    strategy: str = ""               # the configured strategy that produced it (webhook: [webhook] strategy)

    @property
    def risk_per_share(self) -> float:
        return abs(self.entry_price - self.stop_loss)

    def __post_init__(self) -> None:
        direction = self.direction
        if isinstance(direction, str):  # _direction(), without its frame (every signal and its moved copy)
            self.direction = _DIRECTIONS.get(direction, direction)

    def dedup_key(self) -> tuple[str, str, str, str, str]:
        """What makes two signals the same request: one strategy's setup on one ticker, direction and timeframe
        (two strategies seeing the same setup are two requests, each judged by the risk checks)."""
        return (self.ticker, self.direction, str(self.signal_type), self.timeframe, self.strategy)


def _bad_number(value: Any) -> bool:
    if value.__class__ is float:  # the common case: finite unless inf or NaN (which fails both comparisons)
        return not -math.inf < value < math.inf
    return not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value)


_SIGNAL_TYPE_VALUES = frozenset(t.value for t in SignalType)
_TICKER_PROBLEMS: dict[str, str | None] = {}  # ticker text -> its symbol problem: few tickers, asked every signal
_MAX_TICKER_PROBLEMS = 10_000


def _ticker_problem(ticker: str) -> str | None:
    """`symbol_problem(ticker, extra=" ")`, remembered per ticker text (a pure function of it; bounded)."""
    if ticker.isalnum() and ticker.isascii() and len(ticker) <= MAX_TICKER_LEN:  # letters and digits: a symbol
        return None
    if type(ticker) is not str:  # a str subclass may compare and hash as it likes: asked afresh
        return symbol_problem(ticker, extra=" ")
    try:
        return _TICKER_PROBLEMS[ticker]
    except KeyError:
        pass
    problem = symbol_problem(ticker, extra=" ")
    if len(_TICKER_PROBLEMS) >= _MAX_TICKER_PROBLEMS:
        _TICKER_PROBLEMS.clear()
    _TICKER_PROBLEMS[ticker] = problem
    return problem


def _price_ok(value: Any) -> bool:
    """A finite positive price up to MAX_SIGNAL_PRICE (a plain float or int: no _bad_number call)."""
    cls = value.__class__
    if (cls is float or cls is int) and 0 < value <= MAX_SIGNAL_PRICE:  # NaN and inf fail: the full test below
        return True
    return not (_bad_number(value) or value <= 0 or value > MAX_SIGNAL_PRICE)


def signal_problems(signal: TradeSignal) -> list[str]:
    """Every reason this signal cannot be traded, each naming the field; empty when it is well formed."""
    problems: list[str] = []
    signal_type, direction, timeframe = signal.signal_type, signal.direction, signal.timeframe
    if not (isinstance(signal_type, str) and isinstance(direction, str)
            and isinstance(timeframe, str) and isinstance(signal.source, str)):
        for name in ("signal_type", "direction", "timeframe", "source"):
            value = getattr(signal, name)
            if not isinstance(value, str):
                problems.append(f"{name}: must be a string, got {type(value).__name__}")
        return problems
    ticker = signal.ticker
    # a plain str of letters and digits is a symbol (what _ticker_problem finds first); anything else is asked
    if not (ticker.__class__ is str and ticker.isalnum() and ticker.isascii() and len(ticker) <= MAX_TICKER_LEN):
        if not isinstance(ticker, str) or not ticker.strip():
            problems.append("ticker: must be a non-empty symbol")
        elif (problem := _ticker_problem(ticker)) is not None:
            problems.append(f"ticker: {problem}")
    known_direction = direction in _DIRECTIONS
    if not known_direction:
        problems.append(f"direction: must be 'long' or 'short', got {direction!r}")
    if str(signal_type) not in _SIGNAL_TYPE_VALUES:
        problems.append(f"signal_type: unknown {str(signal_type)[:40]!r}")
    if timeframe not in TIMEFRAME_SECONDS:
        problems.append(f"timeframe: unknown {str(timeframe)[:20]!r}; allowed: {', '.join(TIMEFRAMES)}")
    conviction = signal.conviction
    cls = conviction.__class__
    if not ((cls is float or cls is int) and 0 <= conviction <= 100) and \
            (_bad_number(conviction) or not 0 <= conviction <= 100):
        problems.append(f"conviction: must be between 0 and 100, got {conviction!r}")
    entry, stop, target = signal.entry_price, signal.stop_loss, signal.target_price
    prices_ok = True
    # a float price in range is fine as it is (_price_ok's own first test, without its frame)
    if not (entry.__class__ is float and 0.0 < entry <= MAX_SIGNAL_PRICE) and not _price_ok(entry):
        problems.append(f"entry_price: must be a finite positive price, got {entry!r}")
        prices_ok = False
    if not (stop.__class__ is float and 0.0 < stop <= MAX_SIGNAL_PRICE) and not _price_ok(stop):
        problems.append(f"stop_loss: must be a finite positive price, got {stop!r}")
        prices_ok = False
    if target is not None and not _price_ok(target):
        problems.append(f"target_price: must be a finite positive price, got {target!r}")
        prices_ok = False
    if prices_ok and known_direction:
        long = direction == Direction.LONG
        if stop == entry or (stop > entry) == long:
            side = "below" if long else "above"
            problems.append(f"stop_loss: {stop} must be {side} entry_price {entry} for a {direction} signal")
        if target is not None and (target > entry) != long:
            side = "above" if long else "below"
            problems.append(f"target_price: {target} must be {side} entry_price for a {direction}")
    stamp = signal.timestamp
    if stamp is not None and (not isinstance(stamp, datetime) or stamp.tzinfo is None):
        problems.append("timestamp: must be a timezone-aware datetime")
    return problems


def client_order_id_for(signal_id: str, leg: str = "entry") -> str:
    """The deterministic client order id of an order: the same signal and leg always give the same id.

    Fits Alpaca's 48-character limit and IB's orderRef.
    """
    digest = sha256_hex(f"{signal_id}|{leg}".encode())[:20]
    return f"og-{leg[:8]}-{digest}"


# og-<leg, up to 8>-<20 hex>, optionally a smart-router child suffix (see smart_router.child_client_order_id)
_OWN_ID = re.compile(r"^og-[a-z0-9]{1,8}-[0-9a-f]{10,20}(-[0-9a-z]+)*$")


def is_own_client_order_id(client_order_id: str | None) -> bool:
    """True when the id is of ordergate's scheme (`client_order_id_for`, smart-router children).

    An order or fill with any other id (a UUID from the broker's app, IB's empty orderRef) was placed by
    someone else in the account: never applied to the ledger, never exited.
    """
    return bool(client_order_id) and _OWN_ID.match(client_order_id or "") is not None


@dataclass(slots=True)
class OrderIntent:
    """An order the pipeline decided to send. Journaled before it is sent; `client_order_id` is idempotent."""

    client_order_id: str
    signal_id: str
    symbol: str
    side: Side
    quantity: float
    order_type: OrderType = OrderType.MARKET
    limit_price: float | None = None
    stop_price: float | None = None
    take_profit_price: float | None = None
    time_in_force: str = "day"
    asset_class: AssetClass = AssetClass.EQUITY
    reduce_only: bool = False
    kind: OrderKind = OrderKind.ENTRY
    ticker: str = ""                 # the underlying the signal was about
    direction: Direction = Direction.LONG
    instrument_type: InstrumentType = InstrumentType.STOCK
    reference_price: float = 0.0     # price the decision was made at (fill validation, reservations)
    stop_loss: float | None = None
    target_price: float | None = None
    signal_type: str = ""
    timeframe: str = ""
    broker: str | None = None        # forced venue (exits go to the broker that holds the position)
    created_at: datetime | None = None
    parent_id: str | None = None     # smart-router child orders
    exit_type: ExitType = ExitType.NONE  # for exits: which exit fired
    strategy: str = ""               # the configured strategy whose signal (or position) this order is for

    def __post_init__(self) -> None:  # journal rows and callers may give the plain strings
        if self.kind.__class__ is not OrderKind:
            self.kind = OrderKind(self.kind)
        if self.exit_type.__class__ is not ExitType:
            self.exit_type = ExitType(self.exit_type)
        if self.direction.__class__ is not Direction:
            self.direction = Direction(self.direction)

    @property
    def notional(self) -> float:
        return abs(self.quantity) * self.reference_price * contract_multiplier(self.asset_class)

    @property
    def key(self) -> tuple[str, str]:
        """The position this order is for (or opens): (strategy, symbol), as `Position.key`."""
        return (self.strategy, self.symbol)


@dataclass(slots=True)
class _OrderAtBroker:
    """Which order, at which broker, in which state: the fields an answer and a pushed update share."""

    client_order_id: str
    status: OrderStatus
    broker: str
    broker_order_id: str | None = None
    symbol: str = ""
    side: Side | None = None


@dataclass(slots=True)
class OrderResult(_OrderAtBroker):
    """What a broker says about one order."""

    quantity: float = 0.0
    filled_qty: float = 0.0
    filled_avg_price: float | None = None
    reason: str | None = None
    submitted_at: datetime | None = None
    found_existing: bool = False     # the router found it already at the broker (journaled before: a restart)
    stop_price: float | None = None  # a stop order's trigger price, where the broker says it


@dataclass(slots=True)
class OrderUpdate(_OrderAtBroker):
    """A status change of an order pushed by a broker (trade_updates, orderStatus)."""

    filled_qty: float = 0.0
    filled_avg_price: float | None = None
    reason: str | None = None
    timestamp: datetime | None = None
    stop_price: float | None = None  # a stop order's trigger price, where the broker pushes it (IB's openOrder)


@dataclass(slots=True)
class Fill:
    """One execution. `fill_id` is unique per broker execution, so a fill delivered twice is applied once."""

    fill_id: str
    client_order_id: str
    symbol: str
    side: Side
    quantity: float
    price: float
    timestamp: datetime
    broker: str
    broker_order_id: str | None = None
    commission: float = 0.0


BrokerEvent = OrderUpdate | Fill


@dataclass(slots=True)
class BrokerPosition:
    """A position as the broker reports it; `quantity` is signed (negative = short)."""

    symbol: str
    quantity: float
    avg_price: float = 0.0
    market_price: float | None = None
    broker: str = ""


@dataclass(slots=True)
class AccountSnapshot:
    """Balances as the broker reports them."""

    equity: float
    cash: float
    buying_power: float
    broker: str = ""
    account_id: str = ""  # the broker's account number (Alpaca account_number, IB account code)
    paper: bool | None = None  # a paper (simulated) account at the broker; None when the broker cannot tell


PositionKey = tuple[str, str]  # (strategy, symbol): one position per strategy per traded symbol


def position_key(strategy: str, symbol: str) -> PositionKey:
    """The key of the position `strategy` holds in `symbol` (an order's: its intent's strategy and symbol)."""
    return (strategy, symbol)


@dataclass(slots=True)
class Position:
    """An open position held by the daemon (the spec's Position)."""

    ticker: str
    direction: Direction
    entry_price: float
    current_price: float
    shares: float
    stop_loss: float
    target_price: float | None = None
    entry_time: datetime | None = None
    signal_type: str = ""
    timeframe: str = "5m"
    symbol: str = ""                 # the traded instrument (ticker, ETF or OCC symbol)
    instrument_type: InstrumentType = InstrumentType.STOCK
    broker: str = ""
    signal_id: str = ""
    sector: str | None = None
    multiplier: float = 1.0
    origin: str = ""                 # "": opened by ordergate; "external": not ours; "adopted": external, managed
    strategy: str = ""               # the configured strategy that opened it

    def __post_init__(self) -> None:
        self.direction = Direction(self.direction)
        if not self.symbol:
            self.symbol = self.ticker

    @property
    def is_long(self) -> bool:
        return self.direction is Direction.LONG

    @property
    def key(self) -> PositionKey:
        """Which book it is in: (strategy, symbol); two strategies hold one symbol as two positions."""
        return (self.strategy, self.symbol)

    @property
    def closing_side(self) -> Side:
        """The side of an order that reduces this position: sell a long, buy back a short."""
        return Side.SELL if self.is_long else Side.BUY

    @property
    def market_value(self) -> float:
        return abs(self.shares) * self.current_price * self.multiplier

    @property
    def unrealized_pnl(self) -> float:
        sign = 1.0 if self.is_long else -1.0
        return sign * (self.current_price - self.entry_price) * abs(self.shares) * self.multiplier

    @property
    def risk_per_share(self) -> float:
        return abs(self.entry_price - self.stop_loss)

    def r_multiple(self, price: float | None = None) -> float:
        """Profit in units of initial risk at `price` (default: the current price)."""
        price = self.current_price if price is None else price
        risk = self.risk_per_share
        if risk <= 0:
            return 0.0
        sign = 1.0 if self.is_long else -1.0
        return sign * (price - self.entry_price) / risk


class AccountState(msgspec.Struct):
    """What the risk gate sees of the account (the spec's AccountState; a Struct: one or two per signal)."""

    equity: float
    cash: float
    buying_power: float
    open_positions: list[Position] = msgspec.field(default_factory=list)
    daily_pnl: float = 0.0
    starting_equity: float = 0.0

    def __post_init__(self) -> None:
        if not self.starting_equity:
            self.starting_equity = self.equity


@dataclass(slots=True)
class ExitSignal:
    """A reason to close a position now; lower priority number wins."""

    ticker: str
    exit_type: ExitType
    priority: int
    reason: str
    price: float = 0.0

    def __post_init__(self) -> None:
        self.exit_type = ExitType(self.exit_type)


class RiskDecision(msgspec.Struct):
    """The verdict of a risk stage: approved, or rejected naming the check that failed (a Struct: built in C,
    several per signal)."""

    approved: bool
    reason: str = ""
    adjustments: dict[str, Any] = msgspec.field(default_factory=dict)
    check: str = ""
    # a stage of several checks (the risk gate): each check's (name, approved / rejected / not_run, reason)
    checks: tuple[tuple[str, str, str], ...] = ()


class InstrumentDecision(msgspec.Struct):
    """Which instrument to trade for a signal, and why."""

    instrument_type: InstrumentType
    symbol: str
    reason: str
    leverage: float = 1.0
    asset_class: AssetClass = AssetClass.EQUITY
    option: Any = None               # the selected OptionQuote, for OPTIONS
    approved: bool = True            # False: no tradable instrument; `reason` says why (reject the signal)
    sector: str | None = None        # the ticker's sector (sectors.toml), for sizing caps


class PipelineResult(msgspec.Struct):
    """What `BotOrchestrator.process_signal` did with a signal."""

    success: bool
    signal_id: str | None
    pipeline_stage: str
    rejection_reason: str | None = None
    position: Position | None = None
    order_result: OrderResult | None = None
    intent: OrderIntent | None = None
    order_task: Any = None           # the asyncio.Task submitting the order (await it for order_result)


@dataclass(slots=True)
class Alert:
    """Something an operator must hear about."""

    kind: str
    message: str
    severity: str = "warning"        # info | warning | critical
    fields: dict[str, Any] = field(default_factory=dict)
    timestamp: datetime | None = None


class StageOutcome(msgspec.Struct, frozen=True):
    """Where one signal's decision ended, published on the bus's `decisions` topic (the metrics count it): the
    stage that rejected it (or "approved"), the outcome, and the seconds the decision took."""

    signal_id: str | None
    stage: str
    outcome: str                     # approved | rejected
    seconds: float
