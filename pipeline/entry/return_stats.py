"""Rolling return statistics for the correlation and VaR checks, maintained one bar at a time.

Each symbol's `RollingWindow` holds its last `size` bar returns with their running sum and sum of squares (O(1)
per bar; recomputed exactly once per `size` pushes, so rounding never accumulates). A check then needs only the
cross terms over the bounded window: the candidate's sum of products with each peer (O(window) per peer), and for
VaR the variance of the portfolio's return series sum_i w_i r_i (O(assets x window)), which equals w' S w for the
sample covariance S without building S (from 3 assets the products as one assets x window array, summed in asset
order).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from itertools import chain, islice, repeat
from operator import add, mul, sub

import numpy as np

FLAT = 1e-12  # a variance this small relative to the mean square is a flat series (rounding, not movement)


class RollingWindow:
    """The last `size` values with their running sum and sum of squares.

    The sums are those of the running update — exact (`fsum`) once per `size` pushes, counted from the first, and
    in between the oldest value subtracted and the newest added, in that order — but worked out when something
    reads them, not on every push: a push only appends. The buffer holds the window as of the last exact point
    (once there was one) and the values pushed since (fewer than `size`), which is all the update needs; the
    sums already worked out are kept, so each value is added once however often they are read."""

    __slots__ = ("_buf", "_limit", "_size", "_summed", "_sums")

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"size: must be at least 1, got {size}")
        self._buf: list[float] = []
        self._size = size
        self._limit = 2 * size
        self._sums = (0.0, 0.0)  # (sum, sum of squares) as of the first `_summed` values of the buffer
        self._summed = 0

    def push(self, value: float) -> None:
        buf = self._buf
        buf.append(value)
        if len(buf) == self._limit:  # a window since the last exact point: this push is the next one
            del buf[: self._size]
            self._summed = 0

    def extend(self, values: list[float]) -> None:
        """`push` of each value, in order, in one call: the buffer is left as those pushes leave it (cut by
        `size` each time it reached twice that)."""
        buf = self._buf
        buf.extend(values)
        n, size = len(buf), self._size
        if n >= self._limit:
            del buf[: n - size - (n - size) % size]
            self._summed = 0

    def _running(self) -> tuple[float, float]:
        """(sum, sum of squares) of the window, as the update pushing one value at a time gives them."""
        buf, size, done = self._buf, self._size, self._summed
        n = len(buf)
        if done == n:
            return self._sums
        total, squares = self._sums
        if n < size:  # no exact point yet: summed from zero
            for value in islice(buf, done, None):
                total += value
                squares += value * value
        else:
            if done < size:  # from the exact point
                window = buf[:size]
                total, squares, done = math.fsum(window), math.fsum(map(mul, window, window)), size
            for old, value in zip(islice(buf, done - size, n - size), islice(buf, done, None), strict=True):
                total = (total - old) + value
                squares = (squares - old * old) + value * value
        self._sums, self._summed = (total, squares), n
        return total, squares

    @property
    def total(self) -> float:
        return self._running()[0]

    @property
    def squares(self) -> float:
        return self._running()[1]

    @property
    def values(self) -> list[float]:
        """The window's values, oldest first (a copy)."""
        return self._buf[-self._size:]

    def __len__(self) -> int:
        held = len(self._buf)
        return held if held < self._size else self._size

    def tail(self, n: int) -> Iterator[float]:
        """The last `n` values of the window (all of it for a larger `n`), oldest first (an iterator over a copy
        of at most `size` values: cheaper than skipping the older values of the buffer one by one)."""
        buf = self._buf
        held = len(buf)
        return iter(buf[held - min(n, held, self._size):]) if n > 0 else iter(())

    def sums(self, n: int) -> tuple[float, float]:
        """(sum, sum of squares) of the last `n` values: the maintained ones for the whole window."""
        if n == len(self):
            return self._running()
        tail = list(self.tail(n))
        return math.fsum(tail), math.fsum(v * v for v in tail)


def _centred(total: float, squares: float, n: int) -> float:
    """n x the population variance from the sums (clamped at 0); 0 for a flat series."""
    value = squares - total * total / n
    return 0.0 if value <= FLAT * max(squares, 1e-300) else value


def correlations(candidate: RollingWindow, peers: Sequence[RollingWindow], count: int) -> list[float | None]:
    """Pearson correlation of the candidate's last returns with each peer's over the tail they all share (at most
    `count` returns), None for a flat series or fewer than 2 common returns."""
    if not peers:
        return []
    n = min(count, len(candidate), *(len(p) for p in peers))
    if n < 2:
        return [None] * len(peers)
    sx, sxx = candidate.sums(n)
    vx = _centred(sx, sxx, n)
    if vx == 0.0:
        return [None] * len(peers)
    out: list[float | None] = []
    for peer in peers:
        sy, syy = peer.sums(n)
        vy = _centred(sy, syy, n)
        if vy == 0.0:
            out.append(None)
            continue
        sxy = sum(map(mul, candidate.tail(n), peer.tail(n)))
        corr = (sxy - sx * sy / n) / math.sqrt(vx * vy)
        out.append(max(-1.0, min(1.0, corr)))
    return out


NUMPY_ASSETS = 3  # from this many assets the portfolio's series is summed as one numpy array (faster from 3)


def _series_by_columns(weights: Sequence[float], windows: Sequence[RollingWindow], n: int) -> list[float]:
    """sum_i w_i r_i per bar over the last `n` returns, as one assets x n array: each product w_i r_i, then the
    rows added in asset order (numpy's reduction along the outer axis adds row after row), so every value is
    the asset-by-asset sum's to the bit."""
    flat = np.fromiter(chain.from_iterable(w.tail(n) for w in windows), dtype=np.float64, count=len(windows) * n)
    products = flat.reshape(len(windows), n)
    products *= np.array(weights, dtype=np.float64)[:, None]
    return np.add.reduce(products, axis=0).tolist()


def portfolio_variance(weights: Sequence[float], windows: Sequence[RollingWindow], count: int) -> tuple[float, int]:
    """The sample variance (ddof=1) of sum_i w_i r_i over the assets' common tail (at most `count` returns) — w' S w
    for their sample covariance S — and the number of returns it used (0 and 0 when fewer than 2)."""
    n = min(count, *(len(w) for w in windows))
    if n < 2:
        return 0.0, 0
    if len(windows) >= NUMPY_ASSETS:
        series = _series_by_columns(weights, windows, n)
    else:  # asset by asset, each a C-level map over its window: w_0 r_0 + w_1 r_1 + ... in that order per bar
        series = list(map(mul, repeat(weights[0], n), windows[0].tail(n)))
        for weight, window in zip(weights[1:], windows[1:], strict=True):
            series = list(map(add, series, map(mul, repeat(weight, n), window.tail(n))))
    mean = math.fsum(series) / n
    centred = list(map(sub, series, repeat(mean, n)))
    variance = math.fsum(map(mul, centred, centred)) / (n - 1)  # two passes: no cancellation
    return variance, n
