"""Rescaling a symbol's strategy state after a stock split, as if its whole history had been split-adjusted.

A split of `ratio` new shares per old share (2.0 for a 2:1 forward split, 0.1 for a 1:10 reverse split) divides
every price by `ratio` and multiplies every volume by it. EMAs, channel bounds and ATRs are linear in the prices
(volume sums in the volumes), so dividing (multiplying) the stored values gives what the adjusted history would
have given, up to float rounding; counts, timestamps and cloud colours do not change.
"""

from __future__ import annotations

import math
from collections import deque


def check_ratio(ratio: float) -> float:
    """`ratio` as a float; ValueError naming the field unless it is a finite number > 0."""
    if isinstance(ratio, bool) or not isinstance(ratio, int | float) or not (0.0 < ratio < math.inf):
        raise ValueError(f"ratio: a split ratio must be a finite number > 0, got {ratio!r}")
    return float(ratio)


def scale_values(values: deque[float], factor: float) -> None:
    """Multiply every value of `values` by `factor`, in place (the deque keeps its maxlen)."""
    scaled = [v * factor for v in values]
    values.clear()
    values.extend(scaled)


def divide_values(values: deque[float], ratio: float) -> None:
    """Divide every value of `values` by `ratio`, in place (the deque keeps its maxlen)."""
    scaled = [v / ratio for v in values]
    values.clear()
    values.extend(scaled)


def split_row(row: tuple, ratio: float) -> tuple:
    """A cloud track's row (open time, open, high, low, close, volume, six EMAs) after a `ratio` split."""
    when, o, h, low, c, v, *emas = row
    return (when, o / ratio, h / ratio, low / ratio, c / ratio, v * ratio, *(e / ratio for e in emas))


def split_rows(rows: deque[tuple], ratio: float) -> None:
    """Every row of a track's history after a `ratio` split, in place (see `split_row`)."""
    scaled = [split_row(row, ratio) for row in rows]
    rows.clear()
    rows.extend(scaled)
