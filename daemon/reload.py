"""SIGHUP: read the config again into a new, validated settings object and say what it changes.

`read_reload` never changes anything itself: it returns the plan (config/reload.py) the daemon hands to its
components, or None after one `config_reload_failed` line naming the field when the file is invalid. A change
that needs a restart is named in one `config_reload_needs_restart` line; the daemon keeps its running value.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import structlog

from config.reload import ReloadPlan, plan_reload
from config.settings import ConfigError, Settings, load_settings

log = structlog.get_logger("ordergate.daemon")


def read_reload(running: Settings, config_file: str | Path | None, overrides: dict[str, Any]) -> ReloadPlan | None:
    """The settings a reload would run with: the config file (and environment) read again, with the same CLI
    `overrides` as at start. None (and one error line) when they do not validate: nothing may change then."""
    try:
        fresh = load_settings(config_file, **overrides)
        plan = plan_reload(running, fresh)
    except ConfigError as exc:
        log.error("config_reload_failed", error=str(exc), changed="nothing")
        return None
    except Exception as exc:  # never let a reload take the daemon down
        log.error("config_reload_failed", error=f"{type(exc).__name__}: {exc}", changed="nothing")
        return None
    if plan.needs_restart:
        log.warning("config_reload_needs_restart", fields=plan.needs_restart,
                    message=f"changed but applied only after a restart: {', '.join(plan.needs_restart)}")
    return plan


def log_reloaded(plan: ReloadPlan) -> None:
    """The one line that says what a reload applied (secrets masked)."""
    log.info("config_reloaded", applied=plan.applied, needs_restart=plan.needs_restart)
