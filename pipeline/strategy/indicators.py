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
