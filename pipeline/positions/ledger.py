"""Positions, cash and P&L as the daemon's own book, built only from fills.

Positions are keyed by (strategy, traded symbol): two strategies holding one stock hold two positions, each
with its own entry, stop, target and exits; a fill goes to the position of its order's strategy (a fill
without a known order, or an adopted position, to strategy ""). What the broker holds is the NET per symbol
(`signed_quantities`, `net`). Each fill moves cash and quantity at average-price accounting; a fill that
reduces a position realizes P&L, and a fill that closes one returns the closed round trip. The same fills in
the same order always give the same book, which is how a restart rebuilds it from the journal.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from fractions import Fraction

from pipeline.core.models import (
    Direction,
    ExitType,
    Fill,
    InstrumentType,
    OrderIntent,
    Position,
    PositionKey,
    Side,
    contract_multiplier,
)
from pipeline.positions.splits import rescaled_quantity


@dataclass(slots=True)
class RoundTrip:
    """A position that was opened and fully closed."""

    position: Position
    exit_time: datetime
    exit_price: float
    quantity: float
    pnl: float
    r_multiple: float
    exit_type: str


@dataclass(slots=True)
class Holding:
    """A position with its signed quantity and realized P&L so far."""

    position: Position
    quantity: float                  # signed: + long, - short (in the traded instrument)
    realized: float = 0.0
    closed_qty: float = 0.0
    exit_value: float = 0.0          # sum of exit qty x price, for the average exit price
    exit_type: str = ""


@dataclass
class Ledger:
    """The daemon's book: cash, holdings, realized P&L."""

    cash: float
    holdings: dict[PositionKey, Holding] = field(default_factory=dict)  # (strategy, symbol) -> its holding
    realized_pnl: float = 0.0
    last_prices: dict[str, float] = field(default_factory=dict)
    _in: dict[str, dict[str, Holding]] = field(default_factory=dict, repr=False)  # symbol -> strategy -> holding

    # -- the books ------------------------------------------------------------------------------------
    def _put(self, holding: Holding) -> None:
        pos = holding.position
        self.holdings[(pos.strategy, pos.symbol)] = holding
        self._in.setdefault(pos.symbol, {})[pos.strategy] = holding

    def _remove(self, key: PositionKey) -> None:
        strategy, symbol = key
        self.holdings.pop(key, None)
        books = self._in.get(symbol)
        if books is not None:
            books.pop(strategy, None)
            if not books:
                del self._in[symbol]

    # -- marks ----------------------------------------------------------------------------------------
    def mark(self, symbol: str, price: float) -> None:
        """Record the latest price of a symbol (and of the positions held in it)."""
        self.last_prices[symbol] = price
        books = self._in.get(symbol)
        if books:
            for holding in books.values():
                holding.position.current_price = price

    def mark_many(self, symbols: Sequence[str], prices: Sequence[float]) -> None:
        """`mark` for a whole time step (a replay's BarBatch): one dict update, then the held symbols."""
        self.last_prices.update(zip(symbols, prices, strict=True))
        held = self._in
        if not held:
            return
        # backwards, so a symbol twice in a step marks its positions with its first price, as before
        for symbol, price in zip(reversed(symbols), reversed(prices), strict=True):
            books = held.get(symbol)
            if books:
                for holding in books.values():
                    holding.position.current_price = price

    def equity(self) -> float:
        """Cash plus the marked value of every holding (shorts count negative)."""
        total = self.cash
        for (_, symbol), h in self.holdings.items():
            price = self.last_prices.get(symbol, h.position.current_price)
            total += h.quantity * price * h.position.multiplier
        return total

    def short_market_value(self) -> float:
        """The marked value of every short holding (positive)."""
        return sum(-h.quantity * self.last_prices.get(symbol, h.position.current_price) * h.position.multiplier
                   for (_, symbol), h in self.holdings.items() if h.quantity < 0)

    def unrealized_pnl(self) -> float:
        return sum(h.position.unrealized_pnl for h in self.holdings.values())

    def positions(self) -> list[Position]:
        return [h.position for h in self.holdings.values()]

    def holding(self, symbol: str, strategy: str | None = None) -> Holding | None:
        """The holding `strategy` has in `symbol`; strategy None: the first one held in it (any strategy)."""
        books = self._in.get(symbol)
        if not books:
            return None
        if strategy is None:
            return next(iter(books.values()))
        return books.get(strategy)

    def position(self, symbol: str, strategy: str | None = None) -> Position | None:
        """The position `strategy` holds in `symbol`; strategy None: the first one held in it (any strategy)."""
        holding = self.holding(symbol, strategy)
        return holding.position if holding else None

    def position_at(self, key: PositionKey) -> Position | None:
        """The position of (strategy, symbol), or None."""
        holding = self.holdings.get(key)
        return holding.position if holding else None

    def positions_in(self, symbol: str) -> list[Position]:
        """Every strategy's position in `symbol` (oldest book first)."""
        return [h.position for h in self._in.get(symbol, {}).values()]

    def net(self, symbol: str) -> float:
        """The signed quantity all strategies hold in `symbol` together: what the broker holds for us."""
        return sum(h.quantity for h in self._in.get(symbol, {}).values())

    def share_of(self, position: Position, total: float) -> float:
        """What of `total` (the most the account may sell, or buy back, of the symbol: its exit cap, or what the
        broker holds) this position may trade: its own size, with the symbol's older positions served first when
        the total cannot cover them all (the sum of all shares never exceeds the total)."""
        left = max(0.0, total)
        for holding in self._in.get(position.symbol, {}).values():
            mine = min(abs(holding.quantity), left)
            if holding.position is position:
                return mine
            left -= mine
        return min(abs(position.shares), left)

    def signed_quantities(self) -> dict[str, float]:
        """symbol -> the net signed quantity of all strategies' positions in it (what the broker should hold)."""
        return {symbol: sum(h.quantity for h in books.values()) for symbol, books in self._in.items()}

    # -- fills ----------------------------------------------------------------------------------------
    def apply_fill(self, fill: Fill, intent: OrderIntent | None, exit_type: str = "") -> RoundTrip | None:
        """Apply one fill; returns the round trip when it closes a position."""
        multiplier = contract_multiplier(intent.asset_class) if intent is not None else 1.0
        signed = fill.quantity if fill.side == Side.BUY else -fill.quantity
        self.cash -= signed * fill.price * multiplier + fill.commission
        self.realized_pnl -= fill.commission
        self.last_prices[fill.symbol] = fill.price
        key = (intent.strategy if intent is not None else "", fill.symbol)
        holding = self.holdings.get(key)
        if holding is None or holding.quantity == 0:
            self._put(Holding(self._open_position(fill, intent, multiplier), signed))
            return None
        same_direction = (holding.quantity > 0) == (signed > 0)
        pos = holding.position
        if same_direction:
            new_qty = holding.quantity + signed
            pos.entry_price = (pos.entry_price * abs(holding.quantity) + fill.price * abs(signed)) / abs(new_qty)
            holding.quantity = new_qty
            pos.shares = abs(new_qty)
            pos.current_price = fill.price
            return None
        closing = min(abs(signed), abs(holding.quantity))
        sign = 1.0 if holding.quantity > 0 else -1.0
        pnl = sign * (fill.price - pos.entry_price) * closing * pos.multiplier
        holding.realized += pnl
        holding.closed_qty += closing
        holding.exit_value += closing * fill.price
        holding.exit_type = exit_type or holding.exit_type
        self.realized_pnl += pnl
        remaining = holding.quantity + signed
        pos.current_price = fill.price
        if abs(remaining) > 1e-9 and (remaining > 0) == (holding.quantity > 0):
            holding.quantity = remaining
            pos.shares = abs(remaining)
            return None
        # fully closed (and possibly flipped into a new position with the rest)
        self._remove(key)
        trip = RoundTrip(
            position=pos,
            exit_time=fill.timestamp,
            exit_price=holding.exit_value / holding.closed_qty,
            quantity=holding.closed_qty,
            pnl=holding.realized - 0.0,
            r_multiple=pos.r_multiple(holding.exit_value / holding.closed_qty),
            exit_type=holding.exit_type or ExitType.UNKNOWN,
        )
        if abs(remaining) > 1e-9:
            flip = Fill(fill.fill_id, fill.client_order_id, fill.symbol, fill.side, abs(remaining), fill.price,
                        fill.timestamp, fill.broker, fill.broker_order_id)
            self._put(Holding(self._open_position(flip, intent, multiplier), remaining))
        return trip

    @staticmethod
    def _open_position(fill: Fill, intent: OrderIntent | None, multiplier: float) -> Position:
        direction = Direction.LONG if fill.side == Side.BUY else Direction.SHORT
        if intent is None:
            # adopted from the broker or an unknown order: no stop known, so the stop is the entry itself
            return Position(
                ticker=fill.symbol, direction=direction, entry_price=fill.price, current_price=fill.price,
                shares=fill.quantity, stop_loss=fill.price, entry_time=fill.timestamp, symbol=fill.symbol,
                broker=fill.broker, multiplier=multiplier,
            )
        return Position(
            ticker=intent.ticker or fill.symbol, direction=direction, entry_price=fill.price,
            current_price=fill.price, shares=fill.quantity,
            stop_loss=intent.stop_loss if intent.stop_loss is not None else fill.price,
            target_price=intent.target_price, entry_time=fill.timestamp, signal_type=intent.signal_type,
            timeframe=intent.timeframe or "5m", symbol=fill.symbol,
            instrument_type=intent.instrument_type or InstrumentType.STOCK, broker=fill.broker,
            signal_id=intent.signal_id, multiplier=multiplier, strategy=intent.strategy,
        )

    opened_position = _open_position  # public: the position a first fill of `intent` opens (PipelineResult)

    def adopt(self, position: Position, quantity: float) -> None:
        """Take a position as the broker reports it (reconciliation policy 'adopt'): the symbol's only position."""
        self.drop(position.symbol)
        self._put(Holding(position, quantity))

    def drop(self, symbol: str) -> None:
        """Forget every strategy's position in a symbol the broker does not hold (reconciliation policy 'adopt')."""
        for strategy in list(self._in.get(symbol, {})):
            self._remove((strategy, symbol))

    def resize(self, symbol: str, quantity: float) -> bool:
        """Take the broker's signed NET quantity for the symbol (reconciliation policy 'adopt': stops, targets and
        signals stay, only a size was wrong): the difference goes to the newest position on that side, if it
        stays on its side; False when that cannot be (nothing, or nothing on that side, is held)."""
        books = self._in.get(symbol)
        if not books:
            return False
        holdings = list(books.values())
        if any((h.quantity > 0) != (quantity > 0) for h in holdings):
            return False
        newest = holdings[-1]
        rest = newest.quantity + quantity - sum(h.quantity for h in holdings)
        if abs(rest) <= 1e-9 or (rest > 0) != (quantity > 0):
            return False
        newest.quantity = rest
        newest.position.shares = abs(rest)
        return True

    def rescale(self, symbol: str, ratio: Fraction, whole: bool) -> list[Position]:
        """A split by `ratio` (new shares per old share, pipeline.positions.splits): every strategy's position in
        `symbol` holds `ratio` times the shares (`whole`: rounded down to whole shares, the broker pays the rest
        as cash) at its prices over `ratio` (entry, stop, target, mark), so its cost, its risk and its P&L so far
        are what they were. Cash and realized P&L do not move. Returns the positions rescaled."""
        r = float(ratio)
        done = []
        for holding in list(self._in.get(symbol, {}).values()):
            pos = holding.position
            holding.quantity = rescaled_quantity(holding.quantity, ratio, whole)
            holding.closed_qty *= r  # the closed part in the new shares: its average exit price stays in dollars
            pos.shares = abs(holding.quantity)
            pos.entry_price /= r
            pos.current_price /= r
            pos.stop_loss /= r
            if pos.target_price is not None:
                pos.target_price /= r
            done.append(pos)
            if abs(holding.quantity) < 1e-9:  # a reverse split left less than a share: all paid out as cash
                self._remove(pos.key)
        if symbol in self.last_prices:
            self.last_prices[symbol] /= r
        return done

    # -- what is held ---------------------------------------------------------------------------------
    def holds(self, symbol: str) -> bool:
        """Whether any strategy holds a position in `symbol`."""
        return symbol in self._in

    def count(self) -> int:
        """How many positions are open."""
        return len(self.holdings)

    def last_price(self, symbol: str) -> float | None:
        """The latest price marked for `symbol` (a bar or a fill), or None."""
        return self.last_prices.get(symbol)

    def held_at(self, unreachable: set[str]) -> list[tuple[Position, float]]:
        """Each open position with its signed quantity, except those held at a broker in `unreachable`."""
        return [(h.position, h.quantity) for h in self.holdings.values() if h.position.broker not in unreachable]
