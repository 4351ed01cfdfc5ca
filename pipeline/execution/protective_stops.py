"""ProtectiveStops: a stop order rests at the broker for every open position, so it is protected while the
daemon is down (DESIGN invariant 12, issue 13).

- One stop per position, and a position is a (strategy, symbol): two strategies holding one symbol each have
  their own stop, sized to their own quantity and at their own level. Their sum never exceeds what the broker
  holds (the broker reserves each stop's shares; a strategy's exit releases only its own stop, so the exit fits
  in what that frees).
- When an entry fills (partially or fully) the position's stop is placed for the quantity held, or grown with
  a replace. Each stop order has its own deterministic client order id, `client_order_id_for(signal id,
  "stop<n>")`, is registered as ours and is journaled before it is sent (through the OrderRouter), so its fill
  is booked once, as `exit_type = "stop_loss (broker)"`, even when it arrives after a restart.
- One exit, never two: before a daemon exit the resting stop is cancelled and the cancel confirmed by the
  broker's order record (`release`). The exit then sells what the stop did not; a stop that already filled
  leaves nothing to sell and the exit is not sent; a cancel that cannot be confirmed sends no exit either (the
  stop keeps protecting, the exit loop tries again). No new stop is placed while an exit is working; one that
  ends without closing the position puts the stop back.
- Trailing: `trail()` moves the resting stop (only ever tighter) with a replace, at most once per
  `[exits] stop_replace_min_seconds` of the injected clock.
- At start (`rebuild` from the journal, then `check_at_start`): each stop the journal calls open is looked up
  at its broker; a position without a live stop gets one at the journal's latest level; a stop whose position
  is gone is cancelled, as is any open `og-stop-` order of ours the journal does not know.
- A venue that cannot hold a stop (`StopVenue.stop_refusal`, e.g. no stop orders on options) leaves the
  position marked unprotected, and the operator is alerted at entry time.
- Never cancelled by the kill switch (stops are not entries); `flatten` exits go through `release` too.
- A stop's status only moves forward, whichever of the stream and a REST reply arrives first: a stop the broker
  ended while its placing or replacing reply was on the way is put back once the reply lands, never shown as
  resting.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog

from config.settings import ExitsSettings
from pipeline.core.clock import Clock
from pipeline.core.models import (
    ExitType,
    Fill,
    InstrumentType,
    OrderIntent,
    OrderKind,
    OrderResult,
    OrderStatus,
    OrderType,
    OrderUpdate,
    Position,
    PositionKey,
    asset_class_of,
    client_order_id_for,
)
from pipeline.core.ports import Broker, BrokerError, FollowsReplacements, OrderRejected, StopVenue
from pipeline.positions.ledger import Ledger
from pipeline.record.journal import STATUS_RANK, Journal, intent_from_json

log = structlog.get_logger("ordergate.stops")


class _Unknown:
    """A lookup that could not be answered (broker down, timeout): neither found nor absent."""


UNKNOWN = _Unknown()

BROKER_STOP_EXIT = ExitType.BROKER_STOP
STOP_KIND = OrderKind.STOP
STOP_PREFIX = "og-stop"
_EPS = 1e-9
MAX_PUT_BACK = 3  # a stop the broker keeps ending (cancelled, expired) is put back this often, then alerted
# ...counting only the stops it ended within this long of their placing: one that rested longer and was then ended
# (a GTC order's age limit at the broker, a split) is put back as a first time
PUT_BACK_RESTED = timedelta(days=1)
FOLLOW_RETRIES = (0.5, 1.0, 2.0, 4.0)  # pauses between lookups of what replaced a stop at the broker
AlertFn = Callable[..., Awaitable[None]]


def round_stop(price: float) -> float:
    """A stop price every venue takes: cents from $1, else 4 decimals."""
    return round(price, 2) if price >= 1.0 else round(price, 4)


@dataclass(slots=True)
class RestingStop:
    """The protective stop of one position as the daemon knows it."""

    symbol: str
    signal_id: str
    client_order_id: str
    broker: str
    stop_price: float
    quantity: float
    intent: OrderIntent
    status: OrderStatus = OrderStatus.PENDING
    broker_order_id: str | None = None
    filled_qty: float = 0.0          # as the broker reports it
    applied_qty: float = 0.0         # its fills already in the ledger
    moved_at: datetime | None = None

    @property
    def live(self) -> bool:
        return not self.status.is_final

    @property
    def key(self) -> PositionKey:
        """The position it protects: (strategy, symbol)."""
        return (self.intent.strategy, self.symbol)

    def view(self) -> dict[str, Any]:
        return {"client_order_id": self.client_order_id, "broker_order_id": self.broker_order_id,
                "broker": self.broker, "stop_price": self.stop_price, "quantity": self.quantity,
                "status": str(self.status)}


class ProtectiveStops:
    """Keeps one resting stop at the broker per open position (see the module docstring)."""

    def __init__(
        self,
        settings: ExitsSettings,
        *,
        brokers: dict[str, Broker],
        router: Any,                 # pipeline.execution.order_router.OrderRouter (submit, spawn, primary)
        ledger: Ledger,
        clock: Clock,
        register: Callable[[OrderIntent], None],
        journal: Journal | None = None,
        alert: AlertFn | None = None,
        timeout: float = 10.0,
        exit_cap: Callable[[str, float], float] | None = None,
    ) -> None:
        self.settings = settings
        self.brokers = brokers
        self.router = router
        self.ledger = ledger
        self.clock = clock
        self.register = register
        self.journal = journal
        self.alert = alert
        self.timeout = timeout
        self.exit_cap = exit_cap  # (symbol, our signed qty) -> the most a sale of ours may take (external trades)
        # every map is by position: (strategy, symbol)
        self.stops: dict[PositionKey, RestingStop] = {}      # position -> its current stop
        self.unprotected: dict[PositionKey, str] = {}        # position -> why no stop rests for it
        self._by_coid: dict[str, PositionKey] = {}           # every stop client order id -> position
        self._seq: dict[str, int] = {}                       # signal key -> stop orders made for it
        self._targets: dict[PositionKey, float] = {}         # position -> trailed level waiting for a replace
        self._locks: dict[PositionKey, asyncio.Lock] = {}
        self._dirty: set[PositionKey] = set()
        self._syncing: set[PositionKey] = set()
        self._releasing: dict[PositionKey, str] = {}         # position -> the daemon exit its stop was released for
        self._put_back: dict[PositionKey, int] = {}          # position -> stops put back after the broker ended them
        self._announced: dict[PositionKey, OrderIntent] = {}  # position -> its next stop, registered before placing
        self._replacing: dict[PositionKey, str] = {}         # position -> the replacement whose reply is awaited
        self._early: dict[PositionKey, OrderUpdate] = {}     # position -> its replacement's end, seen before the reply

    @property
    def enabled(self) -> bool:
        return self.settings.broker_stop

    # -- views ----------------------------------------------------------------------------------------
    def owns(self, client_order_id: str) -> bool:
        return client_order_id in self._by_coid

    def stop_for(self, where: str | PositionKey) -> RestingStop | None:
        """The stop of a position (strategy, symbol); a symbol alone: the first stop on it (any strategy)."""
        if isinstance(where, tuple):
            return self.stops.get(where)
        return next((stop for key, stop in self.stops.items() if key[1] == where), None)

    def view(self, where: str | PositionKey) -> dict[str, Any] | None:
        """What `positions`/`status` show: the resting stop and its broker order id, or why there is none. A
        symbol alone: the first position's on it (any strategy)."""
        key = where if isinstance(where, tuple) else \
            next((k for k in (*self.stops, *self.unprotected) if k[1] == where), ("", where))
        stop = self.stops.get(key)
        if stop is not None and stop.live:
            return stop.view()
        if key in self.unprotected:
            return {"status": "unprotected", "reason": self.unprotected[key]}
        return None

    def guards(self, key: PositionKey) -> bool:
        """True when a daemon exit of this position must first release its stop."""
        return self.enabled and (key in self.stops or key in self._syncing)

    # -- events from the lifecycle --------------------------------------------------------------------
    def on_fill(self, fill: Fill, intent: OrderIntent | None) -> None:
        """A fill was applied to the ledger: count a stop's own fills, and re-sync the symbol's stop."""
        key = self._by_coid.get(fill.client_order_id)
        if key is not None:
            stop = self.stops.get(key)
            if stop is not None and stop.client_order_id == fill.client_order_id:
                stop.applied_qty += fill.quantity
            return
        if intent is not None and intent.kind is OrderKind.ENTRY:
            self._announce(intent.key)
            self.request_sync(intent.key)

    def _announce(self, key: PositionKey) -> None:
        """Register the stop an entry fill is about to get, at once: a venue that attached it to the entry (IB)
        may report its fill before the placing task has run, and that fill must be known as ours."""
        stop = self.stops.get(key)
        pos = self.ledger.position_at(key)
        if not self.enabled or key in self._announced or pos is None or not pos.signal_id \
                or (stop is not None and stop.live):
            return
        intent = self._stop_intent(pos, abs(pos.shares), round_stop(pos.stop_loss))
        self._announced[key] = intent
        self.register(intent)

    def on_update(self, update: OrderUpdate) -> None:
        """A status of one of our stops: a stop that ended without selling (expired, cancelled by hand) is put
        back while its position is open."""
        released = self._released_for(update.client_order_id)
        if released is not None and update.status.is_final:
            self.exit_over(released)  # the exit is over: a position still open gets its stop back
        key = self._by_coid.get(update.client_order_id)
        stop = self.stops.get(key) if key else None
        if stop is None or stop.client_order_id != update.client_order_id:
            if key is not None and self._replacing.get(key) == update.client_order_id and update.status.is_final:
                self._early[key] = update  # the replacement ended before its reply came: applied once it is current
            return  # a replaced predecessor, or a replacement not yet current
        if update.stop_price is not None and stop.live and not update.status.is_final \
                and abs(update.stop_price - stop.stop_price) > _EPS and stop.key not in self._replacing:
            # the same order at a new level, not by us: an edit at the broker that keeps the order (TWS)
            self.router.spawn(self._moved(stop.key, stop.client_order_id, update.stop_price),
                              f"stop-moved-{_name(stop.key)}")
        if not _advances(stop.status, update.status):
            return  # an older view of the order (a late reply, a frame overtaken): a final status stays final
        stop.status = update.status
        stop.filled_qty = max(stop.filled_qty, update.filled_qty)
        stop.broker_order_id = update.broker_order_id or stop.broker_order_id
        if update.status == OrderStatus.REPLACED and stop.key not in self._replacing:
            # replaced, and not by us: an edit made at the broker (its app) put another order in its place
            self.router.spawn(self._follow(stop.key, stop.client_order_id), f"stop-follow-{_name(stop.key)}")
            return
        if update.status.is_final and update.status not in (OrderStatus.FILLED, OrderStatus.REPLACED) \
                and stop.key not in self._releasing:
            log.warning("protective_stop_gone", symbol=stop.symbol, strategy=stop.intent.strategy,
                        client_order_id=stop.client_order_id, status=str(update.status), reason=update.reason)
            placed = stop.intent.created_at
            if placed is not None and self.clock.now() - placed >= PUT_BACK_RESTED:
                self._put_back.pop(stop.key, None)  # it rested a good while: not a stop that keeps being ended
            tries = self._put_back[stop.key] = self._put_back.get(stop.key, 0) + 1
            if update.status == OrderStatus.REJECTED or tries > MAX_PUT_BACK:
                why = f"stop {update.status} by {stop.broker}: {update.reason or 'no reason given'}"
                self.router.spawn(self._unprotected(stop.key, why), f"stop-alert-{_name(stop.key)}")
            else:
                self.request_sync(stop.key)

    def refresh(self) -> None:
        """Bring every held position's stop in line (after a reconciliation: quantities or caps may have moved);
        costs nothing at the broker where nothing changed."""
        for key, stop in list(self.stops.items()):
            if stop.live and key in self.ledger.holdings:  # never a new stop from here: the start-up check,
                self.request_sync(key)                     # the entry fills and the put-backs place those

    def exit_over(self, key: PositionKey) -> None:
        """A daemon exit of this position is final: if the position is still open, it gets its stop back."""
        self._releasing.pop(key, None)
        self.request_sync(key)

    def _released_for(self, client_order_id: str) -> PositionKey | None:
        for key, exit_coid in self._releasing.items():
            if exit_coid == client_order_id:
                return key
        return None

    def trail(self, position: Position, level: float) -> bool:
        """Move the resting stop to `level` if that is tighter and the last move is old enough; True if asked."""
        stop = self.stops.get(position.key)
        if not (self.enabled and self.settings.trail_broker_stop) or stop is None or not stop.live:
            return False
        level = round_stop(level)
        current = self._targets.get(position.key, stop.stop_price)
        price = position.current_price
        tighter = level > current + _EPS and level < price if position.is_long else \
            level < current - _EPS and level > price
        if not tighter:
            return False
        if stop.moved_at is not None and \
                (self.clock.now() - stop.moved_at).total_seconds() < self.settings.stop_replace_min_seconds:
            return False
        self._targets[position.key] = level
        self.request_sync(position.key)
        return True

    def rescale(self, symbol: str, ratio: float, placed_before: datetime | None = None) -> None:
        """A split by `ratio` (new shares per old share): each resting stop on `symbol` moves to its level over
        `ratio`, for the rescaled position's quantity (a replace, or a new stop where the broker ended the old
        one). Alpaca keeps a resting stop's price through a split: left there, a long's stop would sit far above
        the new price and sell at the open. Only a stop still in the old shares moves: its quantity nearer the
        position's old size than its new one (the ledger is rescaled already), so a stop moved for this split
        before (the split found again after its journal record was lost) is not moved twice. `placed_before` (a
        rebuild from the journal's splits): instead, only stops placed before the split move, and only their
        level is set; the start-up check then brings them in line."""
        for key, stop in list(self.stops.items()):
            if key[1] != symbol:
                continue
            if placed_before is not None:
                placed = stop.intent.created_at
                if placed is None or placed >= placed_before:
                    continue
            elif not self._in_old_shares(key, stop, ratio):
                continue
            level = self._targets.get(key, stop.stop_price)
            self._targets[key] = round_stop(level / ratio)
        if placed_before is None:
            self.request_sync(symbol)

    def _in_old_shares(self, key: PositionKey, stop: RestingStop, ratio: float) -> bool:
        pos = self.ledger.position_at(key)
        if pos is None:
            return False
        new = abs(pos.shares)
        return abs(stop.quantity - new / ratio) < abs(stop.quantity - new)

    # -- syncing one position -------------------------------------------------------------------------
    def request_sync(self, where: str | PositionKey) -> None:
        """Bring a position's resting stop in line with it (in a router task: settle waits for it). A symbol alone:
        every strategy's position (and stop) on it (an external trade, a reconciliation moved the symbol)."""
        if not self.enabled:
            return
        if not isinstance(where, tuple):
            keys = {key for key in self.stops if key[1] == where}
            keys.update(pos.key for pos in self.ledger.positions_in(where))
            for key in sorted(keys):
                self.request_sync(key)
            return
        self._dirty.add(where)
        if where in self._syncing:
            return
        self._syncing.add(where)
        self.router.spawn(self._sync_loop(where), f"stop-{_name(where)}")

    async def _sync_loop(self, key: PositionKey) -> None:
        try:
            while key in self._dirty:
                self._dirty.discard(key)
                async with self._lock(key):
                    await self._sync(key)
        except Exception as exc:  # a stop that could not be placed: the position is unprotected, and we say so
            log.exception("protective_stop_sync_failed", symbol=key[1], strategy=key[0])
            await self._unprotected(key, f"placing its stop failed: {exc!r}")
        finally:
            self._syncing.discard(key)

    def _lock(self, key: PositionKey) -> asyncio.Lock:
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        return lock

    async def _sync(self, key: PositionKey, at_broker: dict[str, float] | None = None) -> None:
        """`at_broker` (start-up): signed quantities the brokers hold; a stop never exceeds what the broker holds
        (a sell stop without the shares behind it would open a short when it fires). With several strategies on
        the symbol, this position's stop gets what the broker holds beyond the others' positions."""
        if key in self._releasing:
            return
        symbol = key[1]
        pos = self.ledger.position_at(key)
        stop = self.stops.get(key)
        qty = abs(pos.shares) if pos is not None else 0.0
        if pos is not None and self.exit_cap is not None:  # someone sold some of ours by hand: never oversell
            qty = self.ledger.share_of(pos, self.exit_cap(symbol, self.ledger.net(symbol)))
        if pos is not None and at_broker is not None:
            held = at_broker.get(symbol, 0.0)
            qty = min(qty, self.ledger.share_of(pos, abs(held))) if (held > 0) == pos.is_long else 0.0
            if qty <= _EPS:
                await self._unprotected(key, "the broker holds no such position (see reconciliation)")
        if pos is not None and not pos.signal_id:
            # no signal of ours behind it: no stop level of ours (the ledger's is its entry price)
            self.unprotected[key] = "not opened by ordergate: no stop level to rest"
            qty = 0.0
        if pos is None:
            self._put_back.pop(key, None)
            self._announced.pop(key, None)
        if pos is None or qty <= _EPS:
            if stop is not None and stop.live:
                log.info("protective_stop_orphaned", symbol=symbol, strategy=key[0],
                         client_order_id=stop.client_order_id)
                await self._cancel_confirmed(stop)
            return
        mine = stop is not None and stop.signal_id == (pos.signal_id or pos.symbol)
        level = self._targets.get(key) or (stop.stop_price if mine and stop else round_stop(pos.stop_loss))
        if stop is None or not stop.live:
            await self._place(pos, qty, level)
        elif abs(stop.quantity - qty) > _EPS or abs(stop.stop_price - level) > _EPS:
            await self._replace(stop, qty, level)

    def _next_coid(self, key: str) -> str:
        n = self._seq.get(key, 0)
        self._seq[key] = n + 1
        return client_order_id_for(key, f"stop{n}")

    def _stop_intent(self, pos: Position, qty: float, price: float) -> OrderIntent:
        key = pos.signal_id or pos.symbol
        return OrderIntent(
            client_order_id=self._next_coid(key), signal_id=key, symbol=pos.symbol,
            side=pos.closing_side, quantity=qty, order_type=OrderType.STOP, stop_price=price,
            time_in_force="gtc", asset_class=asset_class_of(pos.multiplier),
            reduce_only=True, kind=STOP_KIND, ticker=pos.ticker, direction=pos.direction,
            instrument_type=pos.instrument_type or InstrumentType.STOCK, reference_price=price, stop_loss=price,
            signal_type=pos.signal_type, timeframe=pos.timeframe, broker=pos.broker or None,
            created_at=self.clock.now(), exit_type=BROKER_STOP_EXIT, strategy=pos.strategy,
        )

    async def _place(self, pos: Position, qty: float, price: float) -> None:
        announced = self._announced.pop(pos.key, None)
        if announced is not None and announced.signal_id == (pos.signal_id or pos.symbol):
            intent = dataclasses.replace(announced, quantity=qty, stop_price=price, stop_loss=price,
                                         reference_price=price, created_at=self.clock.now())
        else:
            intent = self._stop_intent(pos, qty, price)
        name = intent.broker or self.router.primary
        venue = self.brokers.get(name)
        refusal = venue.stop_refusal(intent) if isinstance(venue, StopVenue) else \
            f"{name} cannot hold protective stops"
        if refusal:
            await self._unprotected(pos.key, refusal)
            return
        self.register(intent)
        stop = RestingStop(pos.symbol, intent.signal_id, intent.client_order_id, name, price, qty, intent,
                           moved_at=self.clock.now())
        self.stops[pos.key] = stop
        self._by_coid[stop.client_order_id] = pos.key
        self._targets.pop(pos.key, None)
        result = await self.router.submit(intent)
        self._apply(stop, result)
        if result.quantity > 0 and abs(result.quantity - qty) > _EPS:
            # already at the broker with another size: the child the venue attached to the entry (IB: the whole
            # entry's quantity), or a send before a restart; the next sync brings it to what is held
            stop.quantity = result.quantity
            self._dirty.add(pos.key)
        if result.status == OrderStatus.REJECTED:
            await self._unprotected(pos.key, f"stop rejected by {name}: {result.reason}")
            return
        self.unprotected.pop(pos.key, None)
        log.info("protective_stop_placed", signal_id=intent.signal_id, client_order_id=intent.client_order_id,
                 symbol=pos.symbol, strategy=pos.strategy, quantity=qty, stop_price=price, broker=name,
                 status=str(result.status))

    async def _replace(self, stop: RestingStop, qty: float, price: float) -> None:
        venue = self.brokers.get(stop.broker)
        if not isinstance(venue, StopVenue):
            return
        new = dataclasses.replace(stop.intent, client_order_id=self._next_coid(stop.signal_id), quantity=qty,
                                  stop_price=price, stop_loss=price, reference_price=price,
                                  created_at=self.clock.now())
        self.register(new)
        self._by_coid[new.client_order_id] = stop.key
        now = self.clock.now()
        if self.journal is not None:
            await self.journal.record_order_intent(new, stop.broker, now)
        self._replacing[stop.key] = new.client_order_id
        try:
            async with asyncio.timeout(self.timeout):
                result = await venue.replace_stop(stop.client_order_id, quantity=qty, stop_price=price,
                                                  new_client_order_id=new.client_order_id)
        except (BrokerError, TimeoutError) as exc:
            self._replacing.pop(stop.key, None)
            # not replaced (or not known to be): the old stop still rests; look at both and try again later
            log.warning("protective_stop_replace_failed", symbol=stop.symbol, client_order_id=stop.client_order_id,
                        error=str(exc) or type(exc).__name__)
            found = await self._lookup(stop.broker, new.client_order_id)
            if not isinstance(found, OrderResult):
                self._early.pop(stop.key, None)
            if isinstance(found, _Unknown):
                return  # the replacement stays pending in the journal: the start-up check resolves it
            if found is None:
                await self._journal(new.client_order_id, OrderStatus.REJECTED, stop.broker, reason=f"replace: {exc}")
                old = await self._lookup(stop.broker, stop.client_order_id)
                if isinstance(old, OrderResult):
                    self._apply(stop, old)
                    if not stop.live and stop.status != OrderStatus.FILLED:
                        self._dirty.add(stop.key)  # gone without selling: place a fresh one
                return
            result = found
        self._replacing.pop(stop.key, None)
        early = self._early.pop(stop.key, None)
        old_coid = stop.client_order_id
        await self._journal(old_coid, OrderStatus.REPLACED, stop.broker, reason=f"replaced by {new.client_order_id}")
        stop.client_order_id, stop.intent, stop.quantity, stop.stop_price = new.client_order_id, new, qty, price
        stop.filled_qty = stop.applied_qty = 0.0
        stop.status = OrderStatus.PENDING
        stop.moved_at = now
        if self._targets.get(stop.key) == price:
            del self._targets[stop.key]
        self._apply(stop, result)
        await self._journal(new.client_order_id, result.status, stop.broker, broker_order_id=result.broker_order_id)
        log.info("protective_stop_replaced", signal_id=stop.signal_id, client_order_id=new.client_order_id,
                 replaces=old_coid, symbol=stop.symbol, quantity=qty, stop_price=price)
        if early is not None:
            self.on_update(early)  # ended at the broker while the reply was on its way: put back (or alerted)

    async def _follow(self, key: PositionKey, old_coid: str) -> None:
        """The stop `old_coid` was replaced at the broker by an edit made outside ordergate: the order that took its
        place (its id the broker's, its level and size the editor's) becomes the position's stop, journaled as
        one of ours, so an exit cancels it before selling and a restart finds it. When none can be found, the stop
        is gone: the position gets a fresh one."""
        async with self._lock(key):
            stop = self.stops.get(key)
            if stop is None or stop.client_order_id != old_coid:
                return  # moved on meanwhile (a replace of ours, an exit)
            venue = self.brokers.get(stop.broker)
            successor: OrderResult | None = None
            if isinstance(venue, FollowsReplacements):
                for delay in FOLLOW_RETRIES:
                    try:
                        async with asyncio.timeout(self.timeout):
                            successor = await venue.replacement_of(old_coid)
                        break
                    except (BrokerError, TimeoutError) as exc:
                        log.warning("protective_stop_follow_failed", client_order_id=old_coid, error=str(exc))
                        await asyncio.sleep(delay)
                else:  # the broker cannot say now: another order may rest; never place a second one blind
                    await self._unprotected(key, f"its stop {old_coid} was replaced at {stop.broker} and what "
                                                 "replaced it could not be looked up")
                    return
            if successor is None or successor.status.is_final:
                log.warning("protective_stop_gone", symbol=stop.symbol, strategy=stop.intent.strategy,
                            client_order_id=old_coid, status="replaced",
                            reason="replaced at the broker, and no working order took its place")
                await self._journal(old_coid, OrderStatus.REPLACED, stop.broker)
                self._dirty.add(key)
                adopted = None
            else:
                adopted = await self._adopt(stop, successor)
        if adopted is None:
            self.request_sync(key)
            return
        if self.alert is not None:
            await self.alert("protective_stop_moved",
                             f"{stop.symbol}: its protective stop was changed at {stop.broker} outside ordergate "
                             f"({adopted}); ordergate follows it", "info", symbol=stop.symbol)
        self.request_sync(key)  # the quantity comes back in line with the position (the level stays the editor's)

    async def _moved(self, key: PositionKey, coid: str, price: float, while_down: bool = False) -> None:
        """The stop `coid` rests at its broker at `price`, not at the level the daemon set: the holder edited it
        there (an edit that keeps the order: TWS). That level is the position's stop from now on: shown, journaled,
        and the one a trailing move must beat (a stop tightened by hand is never loosened by the trail)."""
        async with self._lock(key):
            stop = self.stops.get(key)
            if stop is None or stop.client_order_id != coid or not stop.live or key in self._replacing \
                    or not price > 0 or abs(stop.stop_price - price) <= _EPS:
                return  # moved on meanwhile (a replace of ours, an exit), or already there
            was, stop.stop_price = stop.stop_price, price
            stop.moved_at = self.clock.now()
            self._targets.pop(key, None)
            when = " while ordergate was down" if while_down else ""
            await self._journal(coid, stop.status, stop.broker,
                                reason=f"stop moved from {was:g} to {price:g} at {stop.broker} outside ordergate{when}")
        log.warning("protective_stop_moved_elsewhere", signal_id=stop.signal_id, symbol=stop.symbol,
                    strategy=stop.intent.strategy, client_order_id=coid, stop_price=price, was=was,
                    broker=stop.broker, while_down=while_down)
        if self.alert is not None:
            await self.alert("protective_stop_moved",
                             f"{stop.symbol}: its protective stop was moved from {was:g} to {price:g} at {stop.broker} "
                             f"outside ordergate{when}; ordergate follows it", "info", symbol=stop.symbol)

    async def _adopt(self, stop: RestingStop, successor: OrderResult) -> str:
        """Make `successor` (what replaced `stop` at its broker) the position's stop; describes it."""
        now = self.clock.now()
        old_coid = stop.client_order_id
        qty = successor.quantity or stop.quantity
        price = successor.stop_price or stop.stop_price
        new = dataclasses.replace(stop.intent, client_order_id=successor.client_order_id, quantity=qty,
                                  stop_price=price, stop_loss=price, reference_price=price, created_at=now)
        self.register(new)
        self._by_coid[new.client_order_id] = stop.key
        if self.journal is not None:
            await self.journal.record_order_intent(new, stop.broker, now)
        await self._journal(old_coid, OrderStatus.REPLACED, stop.broker,
                            reason=f"replaced at the broker by {new.client_order_id} (an edit outside ordergate)")
        stop.client_order_id, stop.intent, stop.quantity, stop.stop_price = new.client_order_id, new, qty, price
        stop.filled_qty = stop.applied_qty = 0.0
        stop.status = OrderStatus.PENDING
        stop.moved_at = now
        self._apply(stop, successor)
        await self._journal(new.client_order_id, successor.status, stop.broker,
                            broker_order_id=successor.broker_order_id, filled_qty=successor.filled_qty)
        self._targets.pop(stop.key, None)
        described = f"now {qty:g} at {price:g}, order {new.client_order_id}"
        log.warning("protective_stop_replaced_elsewhere", signal_id=stop.signal_id, symbol=stop.symbol,
                    strategy=stop.intent.strategy, replaces=old_coid, client_order_id=new.client_order_id,
                    quantity=qty, stop_price=price, broker=stop.broker)
        return described

    # -- releasing before a daemon exit ---------------------------------------------------------------
    async def release(self, exit_intent: OrderIntent) -> OrderIntent | str:
        """Cancel the position's resting stop before the daemon's exit; the exit to send, or why none is sent.

        Only this strategy's stop: another strategy's stop on the symbol keeps resting (the broker reserves its
        shares; the exit sells this position's, which the cancel freed). The broker's order record decides a
        race: cancelled -> the exit sells what the ledger holds less any of the stop's fills not yet applied;
        filled -> nothing is left to sell. Unconfirmed -> nothing is sent.
        """
        key = exit_intent.key
        symbol = exit_intent.symbol
        self._releasing[key] = exit_intent.client_order_id
        async with self._lock(key):
            stop = self.stops.get(key)
            if stop is not None and stop.live:
                if not await self._cancel_confirmed(stop):
                    self._releasing.pop(key, None)
                    return f"protective stop {stop.client_order_id} could not be confirmed cancelled; it still rests"
            pos = self.ledger.position_at(key)
            held = abs(pos.shares) if pos is not None else 0.0
            unapplied = max(0.0, stop.filled_qty - stop.applied_qty) if stop is not None else 0.0
            qty = min(exit_intent.quantity, held - unapplied)
            if qty <= _EPS:
                self._releasing.pop(key, None)
                log.info("exit_not_needed", symbol=symbol, client_order_id=exit_intent.client_order_id,
                         reason="the broker's stop sold the position")
                return "nothing to sell: the broker's protective stop filled first"
            if abs(qty - exit_intent.quantity) > _EPS:
                return dataclasses.replace(exit_intent, quantity=qty)
            return exit_intent

    async def _cancel_confirmed(self, stop: RestingStop) -> bool:
        """Cancel and wait for the broker to call the stop final; True once it does (filled or cancelled)."""
        broker = self.brokers.get(stop.broker)
        if broker is None:
            return False
        try:
            async with asyncio.timeout(self.timeout):
                await broker.cancel_order(stop.client_order_id)
        except OrderRejected:
            pass  # already final (filled, cancelled) or unknown: the lookup says which
        except (BrokerError, TimeoutError) as exc:
            log.warning("protective_stop_cancel_failed", client_order_id=stop.client_order_id, error=str(exc))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.stop_confirm_timeout_seconds
        delay = 0.01
        while True:
            found = await self._lookup(stop.broker, stop.client_order_id)
            if found is None and stop.status == OrderStatus.PENDING:
                stop.status = OrderStatus.NEVER_REACHED
                await self._journal(stop.client_order_id, OrderStatus.NEVER_REACHED, stop.broker,
                                    reason="never reached the broker")
                return True
            if isinstance(found, OrderResult):
                self._apply(stop, found)
                if found.status.is_final:
                    await self._journal(stop.client_order_id, found.status, stop.broker,
                                        broker_order_id=found.broker_order_id, filled_qty=found.filled_qty)
                    return True
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.25)

    # -- start-up -------------------------------------------------------------------------------------
    async def rebuild(self) -> None:
        """The stops the journal knows: the latest per symbol is its current one (with its level)."""
        if self.journal is None:
            return
        rows = await self.journal.query(
            "SELECT client_order_id, broker, status, broker_order_id, filled_qty, intent FROM orders"
            " WHERE kind = ? ORDER BY created_ts, rowid", (STOP_KIND,))
        for row in rows:
            try:
                intent = intent_from_json(row["intent"])
            except ValueError as exc:  # not JSON at all: this one row is skipped, the other stops still rebuild
                log.error("journal_stop_unreadable", error=str(exc))
                continue
            if intent is None:
                continue
            self._seq[intent.signal_id] = self._seq.get(intent.signal_id, 0) + 1
            self._by_coid[intent.client_order_id] = intent.key
            if str(row["status"]) in (OrderStatus.REJECTED.value, OrderStatus.REPLACED.value):
                current = self.stops.get(intent.key)
                if current is not None and current.signal_id == intent.signal_id:
                    continue  # a failed replace, or a predecessor: the one before stays current
            self.stops[intent.key] = RestingStop(
                intent.symbol, intent.signal_id, intent.client_order_id, row["broker"] or "", intent.stop_price or 0.0,
                intent.quantity, intent, OrderStatus(row["status"]), row["broker_order_id"],
                float(row["filled_qty"] or 0.0),
            )
        for fill in await self.journal.query("SELECT client_order_id, quantity FROM fills"):
            key = self._by_coid.get(fill["client_order_id"])
            stop = self.stops.get(key) if key else None
            if stop is not None and stop.client_order_id == fill["client_order_id"]:
                stop.applied_qty += float(fill["quantity"])

    async def check_at_start(self) -> dict[str, list[str]]:
        """Every open position has a live stop at its broker; stops of positions gone are cancelled."""
        done: dict[str, list[str]] = {"placed": [], "cancelled": [], "kept": []}
        if not self.enabled:
            return done
        for stop in list(self.stops.values()):
            if not stop.live:
                continue
            found = await self._lookup(stop.broker, stop.client_order_id)
            if found is None:
                stop.status = OrderStatus.NEVER_REACHED  # journaled, then down before (or while) it was sent
                await self._journal(stop.client_order_id, OrderStatus.NEVER_REACHED, stop.broker,
                                    reason="never reached the broker: not found there at start")
            elif isinstance(found, OrderResult):
                self._apply(stop, found)
                if found.stop_price is not None:  # at another level than ours: edited while we were down
                    await self._moved(stop.key, stop.client_order_id, found.stop_price, while_down=True)
        for name, broker in self.brokers.items():  # our stops the journal lost track of
            if not broker.is_connected():
                continue
            try:
                open_orders = await broker.get_open_orders()
            except BrokerError as exc:
                log.warning("protective_stop_scan_failed", broker=name, error=str(exc))
                continue
            current = {s.client_order_id for s in self.stops.values() if s.live}
            for order in open_orders:
                if order.client_order_id.startswith(STOP_PREFIX) and order.client_order_id not in current:
                    if await self._cancel_stray(broker, order):
                        done["cancelled"].append(order.client_order_id)
        at_broker: dict[str, float] | None = {}
        for name, broker in self.brokers.items():
            if not broker.is_connected():
                at_broker = None  # a position there cannot be checked: size by the ledger
                break
            try:
                for bp in await broker.get_positions():
                    at_broker[bp.symbol] = at_broker.get(bp.symbol, 0.0) + bp.quantity
            except BrokerError as exc:  # cannot tell what is held: size by the ledger
                log.warning("protective_stop_positions_failed", broker=name, error=str(exc))
                at_broker = None
                break
        for key in sorted(set(self.stops) | set(self.ledger.holdings)):
            before = self.stops.get(key)
            was = before.client_order_id if before is not None and before.live else None
            async with self._lock(key):
                await self._sync(key, at_broker)
            after = self.stops.get(key)
            if after is not None and after.live and after.client_order_id != was:
                done["placed"].append(after.client_order_id)
            elif was is not None and (after is None or not after.live):
                done["cancelled"].append(was)
            elif was is not None:
                done["kept"].append(was)
        log.info("protective_stops_checked", **{k: len(v) for k, v in done.items()},
                 unprotected=sorted(_name(key) for key in self.unprotected))
        return done

    async def _cancel_stray(self, broker: Broker, order: OrderResult) -> bool:
        try:
            await broker.cancel_order(order.client_order_id)
        except BrokerError as exc:
            log.warning("stray_stop_cancel_failed", client_order_id=order.client_order_id, error=str(exc))
            return False
        log.warning("stray_stop_cancelled", client_order_id=order.client_order_id, symbol=order.symbol)
        return True

    # -- helpers --------------------------------------------------------------------------------------
    def _apply(self, stop: RestingStop, result: OrderResult) -> None:
        if _advances(stop.status, result.status):
            stop.status = result.status
        stop.broker_order_id = result.broker_order_id or stop.broker_order_id
        stop.filled_qty = max(stop.filled_qty, result.filled_qty)

    async def _lookup(self, name: str, client_order_id: str) -> OrderResult | _Unknown | None:
        """The broker's record of the order; None when it has none; UNKNOWN when it could not be asked."""
        broker = self.brokers.get(name)
        if broker is None:
            return UNKNOWN
        try:
            async with asyncio.timeout(self.timeout):
                return await broker.get_order_by_client_id(client_order_id)
        except (BrokerError, TimeoutError) as exc:
            log.warning("protective_stop_lookup_failed", client_order_id=client_order_id, error=str(exc))
            return UNKNOWN

    async def _journal(self, client_order_id: str, status: OrderStatus, broker: str, **fields: Any) -> None:
        if self.journal is not None:
            await self.journal.update_order(client_order_id, status, ts=self.clock.now(), broker=broker, **fields)

    async def _unprotected(self, key: PositionKey, reason: str) -> None:
        first = self.unprotected.get(key) != reason
        self.unprotected[key] = reason
        strategy, symbol = key
        if first:
            log.warning("position_unprotected", symbol=symbol, strategy=strategy, reason=reason)
            if self.alert is not None:
                whose = f" (strategy {strategy})" if strategy else ""
                await self.alert("position_unprotected",
                                 f"{symbol}{whose}: no protective stop at the broker: {reason}", symbol=symbol)


def _advances(current: OrderStatus, seen: OrderStatus) -> bool:
    """Whether a status seen for a stop replaces the one it has. An order that is final stays final: a REST reply
    written before a cancel can reach the daemon after the stream's `canceled` (a slow reply), and taking it
    would show a cancelled stop as resting and never put it back. Short of final, the journal's order of
    statuses rules (no `pending` after `new`, no `new` after a partial fill)."""
    if current.is_final:
        return False
    return STATUS_RANK.get(seen.value, 0) >= STATUS_RANK.get(current.value, 0)


def _name(key: PositionKey) -> str:
    """A position key as text (task names, logs): `AAPL` or `AAPL@breakout`."""
    strategy, symbol = key
    return f"{symbol}@{strategy}" if strategy else symbol
