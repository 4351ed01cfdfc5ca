"""Whether a structlog logger writes a level at all: checked before a hot path builds a line's fields.

The daemon's loggers filter by level (`structlog.make_filtering_bound_logger`): a filtered `log.info(...)` does
nothing, but its keyword arguments (and the str() of enums in them) are built first. `info_enabled(log)` asks the
logger's bound form once per call (cached by structlog after its first use) — far cheaper than the fields.
"""

from __future__ import annotations

import logging

from structlog.typing import FilteringBoundLogger


def enabled(logger: FilteringBoundLogger, level: int) -> bool:
    """True when `logger` writes lines of `level` (a `logging` level number)."""
    return logger.bind().is_enabled_for(level)


def info_enabled(logger: FilteringBoundLogger) -> bool:
    """True when `logger` writes INFO lines."""
    return logger.bind().is_enabled_for(logging.INFO)
