"""How far the figures a broker gives right now reach: the broker time up to which they hold every fill.

A fill can reach us after the broker's own figures already hold it: its stream lags behind its REST answers, or it
is redelivered after a restart. The figures read right after `fills_through` (positions, the account's cash) hold
every fill the broker stamped up to the time it returns: the broker's clock now, less the lag its views are allowed
(`[reconcile] grace_seconds`, and never less than MIN_VIEW_LAG_SECONDS for the clock's measurement and the broker's
own bookkeeping). The broker's clock is read each time (its offset from ours: `MeasuresClock`), so a step of either
clock since start-up moves nothing.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import structlog

from pipeline.core.clock import Clock
from pipeline.core.ports import Broker, MeasuresClock

log = structlog.get_logger("ordergate.daemon")
MIN_VIEW_LAG_SECONDS = 2.0


async def fills_through(broker: Broker, clock: Clock, lag_seconds: float, timeout: float) -> datetime | None:
    """The broker time up to which figures read from `broker` right after this call hold every fill; None when
    its clock cannot be read now (a fill that arrives later is then counted on top of them: the cautious side)."""
    lag = timedelta(seconds=max(lag_seconds, MIN_VIEW_LAG_SECONDS))
    if not isinstance(broker, MeasuresClock):
        return None
    try:
        offset = float(await asyncio.wait_for(broker.clock_offset(), timeout))
    except Exception as exc:  # a broker that does not answer now: nothing is assumed held
        log.warning("broker_clock_unread", broker=broker.name, error=str(exc))
        return None
    return clock.now() + timedelta(seconds=offset) - lag
