"""The ports: what the pipeline needs from the outside world. Adapters satisfy these Protocols."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from pipeline.core.models import (
    AccountSnapshot,
    Alert,
    Bar,
    BrokerEvent,
    BrokerPosition,
    OrderIntent,
    OrderResult,
    Side,
)

if TYPE_CHECKING:
    from config.settings import OptionsSettings
    from pipeline.instruments.options import OptionQuote

BrokerEventHandler = Callable[[BrokerEvent], Awaitable[None]]


class BrokerError(Exception):
    """Base of broker failures."""


class RetryableBrokerError(BrokerError):
    """Transient: timeout, connection error, 429, 5xx. `ambiguous` means the order may have been accepted."""

    def __init__(self, message: str, *, ambiguous: bool = False, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.ambiguous = ambiguous
        self.retry_after = retry_after


class BrokerUnavailable(RetryableBrokerError):
    """The broker could not be reached at all (connection refused, not connected): nothing was sent."""


class OrderRejected(BrokerError):
    """A final rejection (4xx, IB 201): never retried."""

    def __init__(self, reason: str, *, code: int | str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


class DuplicateClientOrderId(OrderRejected):
    """The broker already holds an order with this client order id (Alpaca 422, IB 103)."""


class SendRefused(OrderRejected):
    """Refused before it left the process (the kill switch is active): nothing reached the broker."""


SendGuard = Callable[[OrderIntent], None]
"""Called right before an order goes on the wire; raises `SendRefused` to stop it."""


@runtime_checkable
class AcknowledgesFills(Protocol):
    """A broker that sends a fill again after a restart until its handler has taken it (the paper broker): its
    handler must return only once the fill is applied and journaled, or a crash in between loses the fill."""

    acknowledges_fills: bool


@runtime_checkable
class AnswersInProcess(Protocol):
    """A broker whose calls, while `answers_in_process` is true, are answered inside this process without
    waiting on anything (the in-memory paper broker with no scripted latency and no book file): nothing can
    hang, so the router sends to it without arming a timeout. False the moment a call could wait."""

    answers_in_process: bool


def send_anything(intent: OrderIntent) -> None:
    """The send guard a broker adapter starts with: lets every order through (the daemon installs the kill
    switch's guard)."""


@runtime_checkable
class Broker(Protocol):
    """A venue that takes orders and reports their fate.

    Order updates and fills are pushed to the handler given to `set_event_handler`; every method is a
    coroutine that never blocks the loop.
    """

    name: str

    async def connect(self) -> None: ...

    async def close(self) -> None: ...

    def set_event_handler(self, handler: BrokerEventHandler) -> None: ...

    def set_send_guard(self, guard: SendGuard) -> None:
        """`guard(intent)` is called right before each order is written to the wire (after any local queueing:
        rate limiter, worker threads, contract lookups), so a kill switch tripped meanwhile still stops it."""
        ...

    async def submit_order(self, intent: OrderIntent) -> OrderResult:
        """Send the order. Raises RetryableBrokerError, BrokerUnavailable or OrderRejected."""
        ...

    async def get_order_by_client_id(self, client_order_id: str) -> OrderResult | None: ...

    async def cancel_order(self, client_order_id: str) -> None: ...

    async def get_open_orders(self) -> list[OrderResult]: ...

    async def get_positions(self) -> list[BrokerPosition]: ...

    async def get_account(self) -> AccountSnapshot: ...

    def is_connected(self) -> bool: ...


@runtime_checkable
class MarketDataFeed(Protocol):
    """A source of bars. Yields lists of bars that share one timestamp (one list per time step)."""

    async def warm_up(self, start: datetime) -> list[list[Bar]]:
        """Bars from `start` up to the first batch `batches()` will yield, for the indicators only (a live feed's
        history before the daemon started); [] for a feed that starts at the beginning of its data."""
        ...

    def batches(self) -> AsyncIterator[list[Bar]]: ...

    async def close(self) -> None: ...


SignalSubmit = Callable[..., Awaitable[str]]


@runtime_checkable
class SignalSource(Protocol):
    """A source of external trade signals (webhook, file)."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


@runtime_checkable
class AlertSink(Protocol):
    """Where alerts go (log, chat webhook)."""

    async def send(self, alert: Alert) -> None: ...


@runtime_checkable
class OptionChainProvider(Protocol):
    """The option chain port: the listed contracts of an underlying with their quotes, asked synchronously
    during a decision (pipeline.instruments.options.OptionQuote: strike, expiry, right, open interest, bid/ask/mid,
    implied vol and greeks where the venue gives them).

    `chain` raises `OptionChainUnavailable` (pipeline.instruments.options) with the reason when there is none to
    route to — not fetched yet, stale, the venue failing, a venue without chains — and never invents prices. A
    real venue answers from a prefetched, time-stamped cache (pipeline.instruments.chains.PrefetchedChains);
    `chain_label` names the source in the routing reason ("synthetic" for the paper broker's).
    """

    chain_label: str

    def chain(self, underlying: str, spot: float, as_of: datetime) -> list[OptionQuote]: ...


@runtime_checkable
class ChainVenue(Protocol):
    """A broker adapter that keeps a real option chain (Alpaca, IB): takes new option settings on a reload."""

    def reconfigure_options(self, options: OptionsSettings, tickers: list[str]) -> None: ...


ChainFetch = Callable[[str, datetime], Awaitable["list[OptionQuote]"]]
"""How a venue adapter fetches one underlying's chain now (`fetch(underlying, as_of)`), for the chain cache."""


@runtime_checkable
class StopVenue(Protocol):
    """A broker that can hold protective stops: says which it refuses and moves a resting one in place.

    `replace_stop` changes the quantity and stop price of the resting stop `client_order_id` (Alpaca
    PATCH /v2/orders/{id}, IB placing the same order id again, the paper book's replace); the order is known as
    `new_client_order_id` afterwards (Alpaca's replacement carries it, IB's orderRef is changed to it) and the old
    id ends `replaced`. Raises OrderRejected when the stop is no longer resting (filled, cancelled).
    """

    def stop_refusal(self, intent: OrderIntent) -> str | None:
        """Why this venue cannot hold this stop (e.g. options at Alpaca), or None when it can."""
        ...

    async def replace_stop(
        self, client_order_id: str, *, quantity: float, stop_price: float, new_client_order_id: str
    ) -> OrderResult: ...


# -- optional broker features: each a small Protocol, tested with isinstance (never probed with hasattr) ---------
@runtime_checkable
class FollowsReplacements(Protocol):
    """A broker where an edit of an open order made elsewhere (the account holder in the broker's app) puts a new
    order, with an id of the broker's making, in its place (Alpaca: `replaced_by`); the order record ends
    `replaced`. `replacement_of` is that new order (the last of a chain of edits), or None when the order was not
    replaced."""

    async def replacement_of(self, client_order_id: str) -> OrderResult | None: ...


@runtime_checkable
class WatchesBars(Protocol):
    """A broker that sees every batch of feed bars (the paper broker marks its prices and triggers resting
    orders on them); returns how many resting orders filled."""

    def on_bars(self, batch: list[Bar]) -> int: ...


@runtime_checkable
class Prunable(Protocol):
    """Something with in-memory bookkeeping that forgets its oldest finished entries beyond `keep`."""

    def prune(self, keep: int = 2_000) -> int: ...


@runtime_checkable
class QuotesPrices(Protocol):
    """A broker with a price of its own for a symbol (the paper broker's: what it fills at); None when unknown."""

    def last_price(self, symbol: str) -> float | None: ...


@runtime_checkable
class FlushesEvents(Protocol):
    """A broker with a delivery queue of its own: waits until every queued update and fill reached the handler."""

    async def flush_events(self, timeout: float = 5.0) -> None: ...


@runtime_checkable
class ResolvesOrders(Protocol):
    """A broker that looks an order up by client order id and itself emits the fills and status the event stream
    missed of it (else the caller applies what `get_order_by_client_id` reports)."""

    async def resolve_order(self, client_order_id: str) -> OrderResult | None: ...


@runtime_checkable
class Resyncs(Protocol):
    """A broker that can fetch again the events it may have missed for every order it tracks; returns how many."""

    async def resync(self) -> int: ...


@runtime_checkable
class AdoptsOrders(Protocol):
    """A broker that takes over orders an earlier process sent, told what the journal already holds of each, so
    it emits only what happened since (Alpaca)."""

    def track(
        self, client_order_id: str, *, filled_qty: float, filled_notional: float, symbol: str = "",
        side: Side | None = None, submitted_at: datetime | None = None,
    ) -> None: ...


@runtime_checkable
class MeasuresClock(Protocol):
    """A broker whose clock can be compared with ours: seconds it is ahead."""

    async def clock_offset(self) -> float: ...


@runtime_checkable
class LabelledChain(Protocol):
    """An option chain source that names itself (for the routing decision's reason)."""

    chain_label: str


@runtime_checkable
class DeclaresExits(Protocol):
    """A strategy that names the exits its positions get (`pipeline.strategy.port`): exit names beside the ones
    every position gets; a strategy without it gets all seven."""

    exits: tuple[str, ...]


@runtime_checkable
class StrategyExits(Protocol):
    """The running strategies' declared exits, by strategy name (None: it declares none, all seven apply), read
    by the lifecycle (pipeline.strategy.strategy_set.StrategySet)."""

    def declared_exits(self) -> dict[str, tuple[str, ...] | None]: ...
