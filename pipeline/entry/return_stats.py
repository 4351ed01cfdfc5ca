"""Rolling return statistics for the correlation and VaR checks, maintained one bar at a time.

Each symbol's `RollingWindow` holds its last `size` bar returns with their running sum and sum of squares (O(1)
per bar; recomputed exactly once per `size` pushes, so rounding never accumulates). A check then needs only the
cross terms over the bounded window: the candidate's sum of products with each peer (O(window) per peer), and for
VaR the variance of the portfolio's return series sum_i w_i r_i (O(assets x window)), which equals w' S w for the
sample covariance S without building S. No array per signal: the VaR's one list of `window` floats at most.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterator, Sequence
from itertools import islice, repeat
from operator import add, mul, sub

FLAT = 1e-12  # a variance this small relative to the mean square is a flat series (rounding, not movement)


class RollingWindow:
    """The last `size` values with their running sum and sum of squares."""

    __slots__ = ("_pushes", "_size", "squares", "total", "values")

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"size: must be at least 1, got {size}")
        self.values: deque[float] = deque(maxlen=size)
        self._size = size
        self.total = 0.0
        self.squares = 0.0
        self._pushes = 0

    def push(self, value: float) -> None:
        values = self.values
        size = self._size
        pushes = self._pushes + 1
        if pushes >= size:  # exact again once per window: drift stays bounded
            values.append(value)
            self._pushes = 0
            self.total = math.fsum(values)
            self.squares = math.fsum(map(mul, values, values))
            return
        self._pushes = pushes
        if len(values) == size:
            old = values[0]
            values.append(value)
            self.total = (self.total - old) + value
            self.squares = (self.squares - old * old) + value * value
        else:
            values.append(value)
            self.total += value
            self.squares += value * value

    def __len__(self) -> int:
        return len(self.values)

    def tail(self, n: int) -> Iterator[float]:
        """The last `n` values, oldest first (an iterator: no copy)."""
        return islice(self.values, len(self.values) - n, None)

    def sums(self, n: int) -> tuple[float, float]:
        """(sum, sum of squares) of the last `n` values: the maintained ones for the whole window."""
        if n == len(self.values):
            return self.total, self.squares
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


def portfolio_variance(weights: Sequence[float], windows: Sequence[RollingWindow], count: int) -> tuple[float, int]:
    """The sample variance (ddof=1) of sum_i w_i r_i over the assets' common tail (at most `count` returns) — w' S w
    for their sample covariance S — and the number of returns it used (0 and 0 when fewer than 2)."""
    n = min(count, *(len(w) for w in windows))
    if n < 2:
        return 0.0, 0
    # the series asset by asset, each a C-level map over its window: w_0 r_0 + w_1 r_1 + ... in that order per bar
    series = list(map(mul, repeat(weights[0], n), windows[0].tail(n)))
    for weight, window in zip(weights[1:], windows[1:], strict=True):
        series = list(map(add, series, map(mul, repeat(weight, n), window.tail(n))))
    mean = math.fsum(series) / n
    centred = list(map(sub, series, repeat(mean, n)))
    variance = math.fsum(map(mul, centred, centred)) / (n - 1)  # two passes: no cancellation
    return variance, n
