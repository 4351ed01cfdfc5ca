"""Whether a value names a member of an enum (Python 3.11's `in` takes members, not values)."""

from __future__ import annotations

import functools
from enum import Enum


@functools.cache
def _values(enum: type[Enum]) -> frozenset[object]:
    return frozenset(member.value for member in enum)


def is_value_of(enum: type[Enum], value: object) -> bool:
    """True when `value` is the value of one of `enum`'s members (unhashable values never are)."""
    try:
        return value in _values(enum)
    except TypeError:
        return False
