"""The one `daemon_ready` line: what the daemon trades on, so a wrong account or data source is seen at once.

Broker (and fallback), paper or live account and its id as each broker reports it, the data source, the
clock, and the risk limits in force.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import structlog

from pipeline.core.clock import Clock

if TYPE_CHECKING:
    from daemon.core import Core

log = structlog.get_logger("ordergate.daemon")
RISK_LIMITS = ("max_risk_per_trade", "max_concurrent_positions", "daily_loss_limit", "max_single_stock_exposure",
               "max_sector_exposure", "min_account_equity", "consecutive_loss_threshold", "instrument_mode")
PIPELINE_LIMITS = ("max_correlation", "var_limit", "auto_kill_on_daily_loss", "max_signal_age_seconds")


async def ready_summary(core: Core, clock: Clock) -> dict[str, Any]:
    """The fields of the ready line (the primary's account at top level, every broker's under `accounts`)."""
    settings = core.settings
    accounts = {name: await _account(name, broker, settings.broker.request_timeout_seconds)
                for name, broker in core.brokers.items()}
    executor, pipeline = core.config.executor_config, core.config
    limits: dict[str, Any] = {name: getattr(executor, name) for name in RISK_LIMITS}
    limits.update({name: getattr(pipeline, name) for name in PIPELINE_LIMITS})
    limits["kill_notional_threshold"] = settings.reconcile.kill_notional_threshold
    primary = settings.broker.primary
    return {"broker": primary, **accounts[primary], "fallback": settings.broker.fallback, "accounts": accounts,
            "data": settings.data.source, "clock": "simulated" if clock.simulated else "live", "risk_limits": limits}


async def _account(name: str, broker: Any, timeout: float) -> dict[str, Any]:
    if not broker.is_connected():
        return {"account": "unknown", "account_id": ""}
    try:
        snapshot = await asyncio.wait_for(broker.get_account(), timeout)
    except Exception as exc:
        log.warning("account_lookup_failed", broker=name, error=str(exc))
        return {"account": "unknown", "account_id": ""}
    kind = "unknown" if snapshot.paper is None else "paper" if snapshot.paper else "live"
    return {"account": kind, "account_id": snapshot.account_id}


__all__ = ["ready_summary"]
