"""What a SIGHUP reload may change in a running daemon, and the settings it then runs with.

A reload builds a whole new, validated `Settings`; `plan_reload` compares it with the running one field by
field (`section.field`). A changed field the running components take on (`RELOADABLE`) is applied; any other
one (brokers, state dir, ports, data source, journal, ...) needs a restart: it is named, and the daemon keeps
running with the old value, so the effective settings are the new file with those fields put back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, SecretStr, ValidationError

from config.settings import ConfigError, Settings, format_validation_error

# Fields the running components are handed on a reload ("section.*" = every field of that section).
RELOADABLE: frozenset[str] = frozenset({
    "executor.*",
    "pipeline.max_signal_age_seconds", "pipeline.dedup_window_seconds",           # SignalGuard
    "pipeline.max_correlation", "pipeline.var_limit",                             # UnifiedRisk
    "pipeline.max_entry_deviation", "pipeline.enable_feedback_loop",              # BotOrchestrator
    "pipeline.auto_kill_on_daily_loss",                                           # LifecycleManager
    "pipeline.feedback_adjust_every_n_trades", "pipeline.feedback_weight_min",    # FeedbackTracker
    "pipeline.feedback_weight_max",
    "routing.*", "options.*",                                                     # InstrumentRouter
    "webhook.rate_per_minute",                                                    # KeyedBuckets
    "alerts.min_interval_seconds", "alerts.broker_down_alert_seconds",            # AlertDispatcher, monitor
    "reconcile.*",                                                                # housekeeping, Reconciliation
    "shutdown.*",                                                                 # read when the stop begins
})
# Mirrors of other fields (Settings._wire copies [broker] and state_dir into them): never compared themselves.
DERIVED: frozenset[str] = frozenset({
    "executor.primary_broker", "executor.fallback_broker", "pipeline.executor_config", "pipeline.state_dir",
})


def reloadable(field: str) -> bool:
    """True when a changed `section.field` is taken on by the running daemon without a restart."""
    section = field.split(".", 1)[0]
    return field in RELOADABLE or f"{section}.*" in RELOADABLE


def _flat(settings: Settings) -> dict[str, Any]:
    """`section.field` -> value for every leaf of the settings (top-level fields under their own name)."""
    flat: dict[str, Any] = {}
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if isinstance(value, BaseModel):
            for field in type(value).model_fields:
                key = f"{name}.{field}"
                if key not in DERIVED:
                    flat[key] = getattr(value, field)
        else:
            flat[name] = value
    return flat


def changed_fields(old: Settings, new: Settings) -> list[str]:
    """The `section.field` names whose values differ between two settings objects, sorted."""
    before, after = _flat(old), _flat(new)
    return sorted(k for k in after if before.get(k) != after[k])


def shown(value: Any) -> Any:
    """A value as a log line may show it: secrets masked, paths and enums as text."""
    if isinstance(value, SecretStr):
        return "***"
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if isinstance(value, list | tuple):
        return [shown(v) for v in value]
    return str(value)


@dataclass(frozen=True, slots=True)
class ReloadPlan:
    """A reload's outcome: the settings to run with, what they change, and what waits for a restart."""

    settings: Settings
    applied: dict[str, Any]
    needs_restart: list[str]


def plan_reload(running: Settings, fresh: Settings) -> ReloadPlan:
    """Compare `fresh` with the `running` settings: the reloadable changes are kept, every other change is put
    back to its running value and listed in `needs_restart`. Raises ConfigError (one line) in the unlikely case
    that the mix fails a cross-field rule."""
    changed = changed_fields(running, fresh)
    restart = [f for f in changed if not reloadable(f)]
    data = {name: getattr(fresh, name) for name in type(fresh).model_fields}
    for field in restart:
        section, _, name = field.partition(".")
        if not name:
            data[section] = getattr(running, section)
        else:
            current = data[section]
            data[section] = current.model_copy(update={name: getattr(getattr(running, section), name)})
    try:
        # model_validate runs every validator (and _wire) without reading the environment or any file again
        effective = Settings.model_validate({k: _as_input(v) for k, v in data.items()})
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc)) from None
    applied = {f: shown(getattr(getattr(effective, f.split(".")[0]), f.split(".")[1])) for f in changed
               if reloadable(f)}
    return ReloadPlan(effective, applied, restart)


def _as_input(value: Any) -> Any:
    """A section as validation input (its fields, secrets kept as SecretStr); other values unchanged."""
    if isinstance(value, BaseModel):
        return {name: getattr(value, name) for name in type(value).model_fields}
    return value
