"""UnifiedRisk: portfolio-level checks after the gate — correlation with open positions and a VaR limit.

Correlation: the candidate's bar returns against each open position's in the same direction (other tickers)
over `correlation_lookback_bars`; |corr| > max_correlation rejects. VaR: the 95 % one-day parametric VaR
(z = 1.645) of the signed exposures of all positions plus the candidate at its intended notional, from the
covariance of bar returns scaled to one day; VaR / equity > var_limit rejects. Where history is too short the
check passes and says so in `adjustments`.

Prices come from `PriceHistory`, a bounded deque of closes per symbol (O(1) per update), on the timeframe of
the bars that feed it: 1-minute bars scale the covariance by 390 bars a day, daily bars by 1. Beside the closes it
keeps each symbol's returns as a `RollingWindow` (pipeline.entry.return_stats: running sums, O(1) per bar), and the
checks read those: no array is built per signal. `correlations()` and `parametric_var()` below are the same
figures from numpy arrays (kept for callers and as the tests' reference).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from typing import Any

import numpy as np

from config.settings import PipelineConfig
from pipeline.core.models import TIMEFRAME_SECONDS, AccountState, Direction, Position, RiskDecision, TradeSignal
from pipeline.entry.return_stats import RollingWindow, portfolio_variance
from pipeline.entry.return_stats import correlations as window_correlations

Z_95 = 1.645
SESSION_SECONDS = 6.5 * 3600



_FEW = 24  # waiting closes of one symbol up to which a catch-up pushes them one at a time (numpy's calls cost more)


class PriceHistory:
    """The last `maxlen` closes of each symbol, fed one bar at a time.

    A replay's reader-checked time steps (`update_many(..., checked=True)`) are kept as rows and applied to a
    symbol's series when something reads that symbol (a signal's correlation and VaR checks), or to every series
    once `flush_rows` steps are waiting: a step costs one append instead of a push per bar. What a read sees is
    what applying every bar in order gives, value for value (the same divisions; `RollingWindow.extend` is
    `push` of each value)."""

    def __init__(self, maxlen: int = 61, timeframe: str = "5m") -> None:
        if maxlen < 2:
            raise ValueError(f"maxlen: must be at least 2, got {maxlen}")
        if timeframe not in TIMEFRAME_SECONDS:
            raise ValueError(f"timeframe: unknown {timeframe!r}")
        self.maxlen = maxlen
        self.timeframe = timeframe
        self._closes: dict[str, deque[float]] = {}
        self._returns: dict[str, RollingWindow] = {}  # the last maxlen - 1 returns, with running sums
        self._series: dict[str, tuple[deque[float], RollingWindow]] = {}  # both of a symbol, one lookup per bar
        # checked steps not yet applied to every symbol: [symbols, closes, lo, hi, {symbol: position}] (the bars
        # symbols[lo:hi]);
        # `_applied[s]` counts the rows (from the first ever, `_base` of them gone) already applied to s
        self._rows: list[list[Any]] = []
        self._base = 0
        self._applied: dict[str, int] = {}
        self.flush_rows = max(32, 2 * maxlen)  # bounded: never more waiting than this many steps
        self._pos_key: Sequence[str] | None = None  # the last step's symbols and {symbol: position} (distinct)
        self._pos_map: dict[str, int] | None = None
        # the closes of rows[_bstart:] as one array, a row each, while those steps share one tuple of symbols
        # (`_bsym`, None: no block): a symbol's waiting closes are then one column slice, not a loop over the rows
        self._block = np.empty((0, 0))
        self._bsym: tuple[str, ...] | None = None
        self._bpos: dict[str, int] = {}
        self._bstart = 0
        self._bragged = False  # a row before the block's last covers part of its step: read row by row

    @property
    def bars_per_day(self) -> float:
        """Bars of this timeframe in one regular session (1 for daily bars)."""
        return max(1.0, SESSION_SECONDS / TIMEFRAME_SECONDS[self.timeframe])

    def _start(self, symbol: str) -> tuple[deque[float], RollingWindow]:
        pair = self._series[symbol] = (deque(maxlen=self.maxlen), RollingWindow(self.maxlen - 1))
        self._closes[symbol], self._returns[symbol] = pair
        return pair

    def update(self, symbol: str, close: float, timeframe: str | None = None) -> None:
        """Append a close (ignored unless finite and positive). `timeframe` is the bar's: the history follows
        the bars that feed it, and a bar of another timeframe starts it afresh on that horizon (returns of two
        horizons never mix in one covariance)."""
        if self._rows:
            self._apply_all()
        if not (isinstance(close, (int, float)) and math.isfinite(close) and close > 0):
            return
        if timeframe is not None and timeframe != self.timeframe and timeframe in TIMEFRAME_SECONDS:
            self._closes.clear()
            self._returns.clear()
            self._series.clear()
            self.timeframe = timeframe
        pair = self._series.get(symbol)
        closes, window = pair if pair is not None else self._start(symbol)
        if closes:
            window.push(close / closes[-1] - 1.0)
        closes.append(float(close))

    def update_many(self, symbols: Sequence[str], closes: Sequence[float], timeframe: str | None = None,
                    checked: bool = False, lo: int = 0, hi: int | None = None) -> None:
        """`update(symbol, close, timeframe)` for each pair of `symbols[lo:hi]`, `closes[lo:hi]` in order, in one
        call (a replay's time step, or the part of it up to a signal's bar). `checked`: every close is already a
        finite positive float (a reader-checked `BarBatch`): the step is kept as a row (see the class)."""
        hi = len(symbols) if hi is None else hi
        positions = self._distinct(symbols) if checked else None
        if positions is not None and (timeframe is None or timeframe == self.timeframe):
            rows = self._rows
            if rows:
                last = rows[-1]
                if last[1] is closes and last[0] is symbols and last[3] == lo:  # the rest of the same step
                    last[3] = hi
                    return
            rows.append([symbols, closes, lo, hi, positions])
            self._block_add(symbols, closes, positions)
            if len(rows) >= self.flush_rows:
                self._apply_all()
            return
        if self._rows:
            self._apply_all()
        if timeframe is not None and timeframe != self.timeframe:
            for symbol, close in zip(symbols[lo:hi], closes[lo:hi], strict=True):
                self.update(symbol, close, timeframe)
            return
        series, start = self._series, self._start
        finite = math.isfinite
        for symbol, close in zip(symbols[lo:hi], closes[lo:hi], strict=True):
            if not (isinstance(close, (int, float)) and finite(close) and close > 0):
                continue
            pair = series.get(symbol)
            kept, window = pair if pair is not None else start(symbol)
            if kept:
                window.push(close / kept[-1] - 1.0)
            kept.append(float(close))

    def rescale(self, symbol: str, ratio: float) -> None:
        """A split by `ratio` (new shares per old share): the symbol's closes in new-share prices (over `ratio`),
        so the first close after it is not a -1/ratio return. The returns so far do not change."""
        if self._rows:
            self._apply_all()
        closes = self._closes.get(symbol)
        if closes:
            scaled = [c / ratio for c in closes]
            closes.clear()
            closes.extend(scaled)

    def _distinct(self, symbols: Sequence[str]) -> dict[str, int] | None:
        """{symbol: position} of a step whose symbols are distinct (cached for the same tuple), else None."""
        if symbols is self._pos_key:
            return self._pos_map
        positions = {s: i for i, s in enumerate(symbols)}
        found = positions if len(positions) == len(symbols) else None
        if isinstance(symbols, tuple):  # not a list: it could change under the same identity
            self._pos_key, self._pos_map = symbols, found
        return found

    def _block_add(self, symbols: Sequence[str], closes: Sequence[float], positions: dict[str, int]) -> None:
        """Note the row just appended in the block (or start a block with it)."""
        rows = self._rows
        k = len(rows) - 1
        width = len(symbols)
        if symbols is not self._bsym:
            if not isinstance(symbols, tuple) or len(closes) != width:
                self._bsym = None
                return
            self._bsym, self._bpos, self._bstart, self._bragged = symbols, positions, k, False
            if self._block.shape[1] != width or self._block.shape[0] < self.flush_rows:
                self._block = np.empty((max(self.flush_rows, 1), width))
        else:
            before = rows[k - 1]
            if before[2] != 0 or before[3] != width:  # finished covering part of its step only
                self._bragged = True
        at = k - self._bstart
        if at >= self._block.shape[0]:  # flush_rows raised since the block began
            self._block = np.concatenate([self._block, np.empty((at + 1, width))])
        self._block[at] = closes

    def _extend(self, symbol: str, values: np.ndarray | list[float]) -> None:
        """Apply a symbol's waiting closes (in order), as `update` one at a time would: a few one at a time (a
        symbol read every few steps), more as arrays."""
        pair = self._series.get(symbol)
        kept, window = pair if pair is not None else self._start(symbol)
        if len(values) <= _FEW:
            for close in values.tolist() if isinstance(values, np.ndarray) else values:
                if kept:
                    window.push(close / kept[-1] - 1.0)
                kept.append(close)
            return
        if not isinstance(values, np.ndarray):
            values = np.array(values, dtype=np.float64)
        if kept:
            returns = np.empty(values.size)
            returns[0] = values[0] / kept[-1] - 1.0
            np.subtract(np.divide(values[1:], values[:-1], out=returns[1:]), 1.0, out=returns[1:])
        else:
            returns = values[1:] / values[:-1] - 1.0
        window.extend(returns.tolist())
        kept.extend(values[-self.maxlen:].tolist())

    def _catch_up(self, symbol: str) -> None:
        """Apply the waiting rows to `symbol`'s series (a read of it is coming)."""
        rows, base = self._rows, self._base
        first = self._applied.get(symbol, base) - base
        if first >= len(rows):
            return
        if self._bsym is not None and first >= self._bstart and not self._bragged:
            self._catch_up_block(symbol, first)
            return
        values: list[float] = []
        last = len(rows) - 1
        upto = last + 1
        seen: dict[str, int] | None = None  # steps of one symbol tuple share one {symbol: position}: one lookup
        at: int | None = None
        for k in range(first, last + 1):
            _, closes, lo, hi, positions = rows[k]
            if positions is not seen:
                seen, at = positions, positions.get(symbol)
            if at is None or at < lo:
                continue
            if at >= hi:
                if k == last:  # the step is still being applied: its bar of `symbol` comes later
                    upto = k
                continue
            values.append(closes[at])
        self._applied[symbol] = base + upto
        if values:
            self._extend(symbol, values)

    def _catch_up_block(self, symbol: str, first: int) -> None:
        """`_catch_up` of rows that are all in the block (each but the last covering its whole step): the
        symbol's column, the last row's bar if that row has reached it."""
        rows, base = self._rows, self._base
        last = len(rows) - 1
        at = self._bpos.get(symbol)
        if at is None:
            self._applied[symbol] = base + last + 1
            return
        _, _, lo, hi, _ = rows[last]
        upto = end = last + 1
        if at < lo:  # the last row skips it (counted as applied)
            end = last
        elif at >= hi:  # the step is still being applied: its bar of `symbol` comes later
            upto = end = last
        self._applied[symbol] = base + upto
        if end > first:
            start = self._bstart
            self._extend(symbol, self._block[first - start:end - start, at])

    def _apply_all(self) -> None:
        """Apply every waiting row to every series; none waits after."""
        rows, base, applied = self._rows, self._base, self._applied
        if not rows:
            return
        symbols = rows[0][0]
        if all(row[0] is symbols for row in rows):  # one tuple of symbols (a replay's steps): column by column
            if self._bsym is symbols and self._bstart == 0:
                block = self._block[:len(rows)]
            else:
                block = np.array([row[1] for row in rows], dtype=np.float64)
            lo = np.array([row[2] for row in rows])
            hi = np.array([row[3] for row in rows])
            full = bool((lo == 0).all() and (hi == len(symbols)).all())
            for at, symbol in enumerate(symbols):
                first = applied.get(symbol, base) - base
                if full:
                    column = block[first:, at]
                else:
                    covered = (lo <= at) & (at < hi)
                    covered[:first] = False
                    column = block[covered, at]
                if column.size:
                    self._extend(symbol, column)
        else:
            for symbol in {s for row in rows for s in row[0]}:
                self._catch_up(symbol)
        self._base = base + len(rows)
        rows.clear()
        applied.clear()
        self._bsym = None

    def window(self, symbol: str) -> RollingWindow | None:
        """The symbol's rolling returns (None when never seen)."""
        if self._rows:
            self._catch_up(symbol)
        return self._returns.get(symbol)

    def closes(self, symbol: str) -> np.ndarray:
        if self._rows:
            self._catch_up(symbol)
        return np.fromiter(self._closes.get(symbol, ()), dtype=float)

    def returns(self, symbol: str, count: int) -> np.ndarray:
        """Up to the last `count` simple returns of `symbol` (may be fewer, or empty)."""
        closes = self.closes(symbol)[-(count + 1):]
        if closes.size < 2:
            return np.empty(0)
        return closes[1:] / closes[:-1] - 1.0

    def __contains__(self, symbol: str) -> bool:
        if self._rows:
            self._catch_up(symbol)
        return symbol in self._closes


def correlation(a: np.ndarray, b: np.ndarray) -> float | None:
    """Pearson correlation over the common tail of two return series; None if either is flat."""
    n = min(a.size, b.size)
    x, y = a[-n:], b[-n:]
    if n < 2 or np.std(x) == 0 or np.std(y) == 0:
        return None
    return float(np.corrcoef(x, y)[0, 1])


def correlations(candidate: np.ndarray, peers: list[np.ndarray]) -> list[float | None]:
    """Pearson correlation of `candidate` with each peer over their common tail, in one matrix operation;
    None for a flat series."""
    n = min(candidate.size, *(p.size for p in peers))
    if n < 2:
        return [None] * len(peers)
    raw = np.vstack([p[-n:] for p in peers])
    if np.ptp(candidate[-n:]) == 0:
        return [None] * len(peers)
    flat = np.ptp(raw, axis=1) == 0  # a constant series has no correlation (centering leaves only rounding)
    x = candidate[-n:] - candidate[-n:].mean()
    centred = raw - raw.mean(axis=1, keepdims=True)
    norms = np.sqrt(np.einsum("ij,ij->i", centred, centred))
    norms[flat] = 1.0
    row = (centred @ x) / (norms * math.sqrt(float(x @ x)))  # only the candidate's row: O(peers), not O(peers^2)
    return [None if flat[i] else float(row[i]) for i in range(len(peers))]


def parametric_var(exposures: np.ndarray, returns: np.ndarray, bars_per_day: float, z: float = Z_95) -> float:
    """z x sqrt(w' S w): `returns` is bars x assets, S its covariance scaled to one day, w signed dollars."""
    if returns.shape[1] == 1:
        cov = np.array([[np.var(returns[:, 0], ddof=1)]])
    else:
        cov = np.cov(returns, rowvar=False)
    daily = cov * bars_per_day
    variance = float(exposures @ daily @ exposures)
    return z * math.sqrt(max(variance, 0.0))


def _signed(direction: Direction | str, dollars: float) -> float:
    return dollars if direction == Direction.LONG else -dollars


def _exposures(account: AccountState, signal: TradeSignal, intended_notional: float) -> list[tuple[str, float]]:
    """(ticker, signed dollars) of every ticker held, the candidate's at its intended notional added; none at 0."""
    by_ticker: dict[str, float] = {}
    for p in account.open_positions:
        held = p.ticker.upper()
        by_ticker[held] = by_ticker.get(held, 0.0) + _signed(p.direction, p.market_value)
    ticker = signal.ticker.strip().upper()
    by_ticker[ticker] = by_ticker.get(ticker, 0.0) + _signed(signal.direction, max(intended_notional, 0.0))
    out = []
    for held, dollars in by_ticker.items():  # a loop, not a comprehension: no frame of its own (Python 3.11)
        if dollars != 0.0:
            out.append((held, dollars))
    return out


class UnifiedRisk:
    """Correlation and VaR checks against the whole book (the spec's UnifiedRisk, PRD-163)."""

    def __init__(
        self, config: PipelineConfig, history: PriceHistory | None = None, min_history: int | None = None
    ) -> None:
        self.config = config
        self.lookback = config.correlation_lookback_bars
        self.history = history or PriceHistory(self.lookback + 1)
        self.min_history = min_history or min(self.lookback, 20)

    def reconfigure(self, config: PipelineConfig) -> None:
        """New correlation and VaR limits (a SIGHUP reload); the lookback, which sizes the history, stays."""
        self.config = config

    def _returns(self, ticker: str) -> RollingWindow | None:
        """The ticker's rolling returns when it has at least min_history of them (of the last `lookback`)."""
        window = self.history.window(ticker)
        if window is None or min(len(window), self.lookback) < self.min_history:
            return None
        return window

    def assess(self, signal: TradeSignal, account: AccountState, intended_notional: float) -> RiskDecision:
        """Approve, or reject with check 'correlation' or 'var' and the figures."""
        notes: dict[str, Any] = {}
        positions = account.open_positions
        rejection = self._check_correlation(signal, positions, notes) if positions else None  # none held: no peers
        if rejection is None:
            rejection = self._check_var(signal, account, intended_notional, notes)
        return rejection or RiskDecision(True, "correlation and VaR within limits", notes)

    def _check_correlation(
        self, signal: TradeSignal, positions: list[Position], notes: dict[str, Any]
    ) -> RiskDecision | None:
        if not positions:
            return None
        ticker = signal.ticker.strip().upper()
        peers = sorted({p.ticker.upper() for p in positions
                        if p.direction == signal.direction and p.ticker.upper() != ticker})
        if not peers:
            return None
        candidate = self._returns(ticker)
        if candidate is None:
            notes["correlation"] = f"skipped: insufficient history for {ticker} (< {self.min_history} returns)"
            return None
        worst: tuple[str, float] | None = None
        skipped = []
        usable: list[tuple[str, RollingWindow]] = []
        for peer in peers:
            series = self._returns(peer)
            if series is None:
                skipped.append(peer)
            else:
                usable.append((peer, series))
        if usable:
            figures = window_correlations(candidate, [s for _, s in usable], self.lookback)
            for peer, corr in zip((p for p, _ in usable), figures, strict=True):
                if corr is None:
                    skipped.append(peer)
                elif worst is None or abs(corr) > abs(worst[1]):
                    worst = (peer, corr)
        if skipped:
            notes["correlation_skipped"] = skipped
        if worst is None:
            return None
        notes["max_correlation"] = {"ticker": worst[0], "corr": round(worst[1], 4)}
        if abs(worst[1]) > self.config.max_correlation:
            return RiskDecision(
                False,
                f"correlation: {ticker} vs open {signal.direction} {worst[0]} |corr| {abs(worst[1]):.3f} > "
                f"max_correlation {self.config.max_correlation:.2f} over {self.lookback} bars",
                notes, check="correlation",
            )
        return None

    def _check_var(
        self, signal: TradeSignal, account: AccountState, intended_notional: float, notes: dict[str, Any]
    ) -> RiskDecision | None:
        weights: list[float] = []
        windows: list[RollingWindow] = []
        missing = []
        for ticker, dollars in _exposures(account, signal, intended_notional):
            series = self._returns(ticker)
            if series is None:
                missing.append(ticker)
            else:
                weights.append(dollars)
                windows.append(series)
        if missing:
            notes["var_missing_history"] = missing
        if not windows:
            notes["var"] = "skipped: insufficient history"
            return None
        variance, _ = portfolio_variance(weights, windows, self.lookback)
        var = Z_95 * math.sqrt(variance * self.history.bars_per_day)
        equity = account.equity
        fraction = var / equity if equity > 0 else math.inf
        notes["var_95_1d"] = round(var, 2)
        notes["var_fraction"] = round(fraction, 6)
        if fraction > self.config.var_limit:
            return RiskDecision(
                False,
                f"var: 95% one-day VaR {var:,.2f} = {fraction:.2%} of equity {equity:,.2f} > var_limit "
                f"{self.config.var_limit:.2%} (with {signal.ticker} at {intended_notional:,.2f})",
                notes, check="var",
            )
        return None
