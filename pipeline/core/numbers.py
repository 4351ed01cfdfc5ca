"""Numbers read from outside (broker fields, holdings files): the one rule for a usable positive number."""

from __future__ import annotations

import math
from typing import Any


def positive_number(value: Any) -> float | None:
    """`value` as a float when it is a finite number above 0; None for anything else (not a number, NaN, infinite,
    0 or below: what brokers send for "no price")."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) and number > 0 else None
