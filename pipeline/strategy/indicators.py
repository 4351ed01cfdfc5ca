"""Incremental indicators for the hot path: O(1) per update, plain floats, no allocation per update.

`EMA` reproduces pandas `Series.ewm(span=n, adjust=False).mean()`: alpha = 2 / (n + 1), the first value
seeds the average, then y_t = (1 - alpha) * y_{t-1} + alpha * x_t. `EmaCloud` is a pair of EMAs (a
"cloud"): it is bullish when its short EMA is at or above its long EMA (the convention of `CloudState`).
"""

from __future__ import annotations


def _check_span(name: str, span: int) -> int:
    if isinstance(span, bool) or not isinstance(span, int) or span < 1:
        raise ValueError(f"{name}: EMA span must be an integer >= 1, got {span!r}")
    return span


class EMA:
    """Exponential moving average updated one value at a time (pandas `ewm(span=n, adjust=False)`)."""

    __slots__ = ("_alpha", "_beta", "count", "span", "value")

    def __init__(self, span: int) -> None:
        self.span = _check_span("span", span)
        self._alpha = 2.0 / (span + 1.0)
        self._beta = 1.0 - self._alpha
        self.value = 0.0
        self.count = 0

    def update(self, x: float) -> float:
        """Feed one value and return the new average. The caller passes finite floats."""
        if self.count:
            self.value = self._beta * self.value + self._alpha * x
        else:
            self.value = float(x)
        self.count += 1
        return self.value

    @property
    def ready(self) -> bool:
        """True once `span` values have been seen (the average has warmed up)."""
        return self.count >= self.span

    def reset(self) -> None:
        self.value = 0.0
        self.count = 0

    def __repr__(self) -> str:
        return f"EMA(span={self.span}, value={self.value!r}, count={self.count})"


class EmaCloud:
    """Two EMAs of the same series; the band between them is the cloud."""

    __slots__ = ("long", "short")

    def __init__(self, short_span: int, long_span: int) -> None:
        _check_span("short_span", short_span)
        _check_span("long_span", long_span)
        if short_span > long_span:
            raise ValueError(f"short_span: {short_span} must not exceed long_span {long_span}")
        self.short = EMA(short_span)
        self.long = EMA(long_span)

    def update(self, x: float) -> None:
        """Feed one value to both EMAs."""
        self.short.update(x)
        self.long.update(x)

    @property
    def bullish(self) -> bool:
        """Short EMA at or above the long one."""
        return self.short.value >= self.long.value

    @property
    def upper(self) -> float:
        s = self.short.value
        g = self.long.value
        return s if s >= g else g

    @property
    def lower(self) -> float:
        s = self.short.value
        g = self.long.value
        return g if s >= g else s

    @property
    def ready(self) -> bool:
        """True once the long EMA has warmed up."""
        return self.long.count >= self.long.span

    def reset(self) -> None:
        self.short.reset()
        self.long.reset()

    def __repr__(self) -> str:
        return f"EmaCloud({self.short.span}/{self.long.span}, short={self.short.value!r}, long={self.long.value!r})"


class CloudEmas:
    """The six EMAs of three clouds (fast, pullback, trend; short then long) of one series, updated together.

    The arithmetic is `EMA.update`'s, value for value (the first value seeds each average, then
    beta * previous + alpha * x); holding them as six floats on one object saves five method calls per bar.
    """

    __slots__ = ("_a", "count", "fl", "fs", "pl", "ps", "tl", "ts")

    def __init__(self, spans: tuple[int, int, int, int, int, int]) -> None:
        if len(spans) != 6:
            raise ValueError(f"spans: need six EMA spans (three clouds), got {len(spans)}")
        alphas = [2.0 / (_check_span("span", s) + 1.0) for s in spans]
        # (beta, alpha) per EMA, in the order fs, fl, ps, pl, ts, tl
        self._a = tuple(v for a in alphas for v in (1.0 - a, a))
        self.fs = self.fl = self.ps = self.pl = self.ts = self.tl = 0.0
        self.count = 0

    def update(self, x: float) -> None:
        """Feed one value (a finite float) to all six averages."""
        if self.count:
            b0, a0, b1, a1, b2, a2, b3, a3, b4, a4, b5, a5 = self._a
            self.fs = b0 * self.fs + a0 * x
            self.fl = b1 * self.fl + a1 * x
            self.ps = b2 * self.ps + a2 * x
            self.pl = b3 * self.pl + a3 * x
            self.ts = b4 * self.ts + a4 * x
            self.tl = b5 * self.tl + a5 * x
        else:
            self.fs = self.fl = self.ps = self.pl = self.ts = self.tl = float(x)
        self.count += 1

    def rescale(self, ratio: float) -> None:
        """Divide all six averages by `ratio` (a stock split: every value they averaged divided by it)."""
        self.fs /= ratio
        self.fl /= ratio
        self.ps /= ratio
        self.pl /= ratio
        self.ts /= ratio
        self.tl /= ratio
