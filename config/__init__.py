"""ordergate config package: the settings schema and the shipped defaults.

``from config import Settings, ExecutorConfig, PipelineConfig, InstrumentMode, load_settings``. Names resolve
lazily (PEP 562) so importing the package costs nothing until a name is used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS: dict[str, str] = {
    name: "config.settings"
    for name in ("ConfigError", "ExecutorConfig", "InstrumentMode", "PipelineConfig", "Settings", "load_settings")
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    """Import a public name's module on first use (PEP 562)."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'config' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


if TYPE_CHECKING:
    from config.settings import (  # noqa: F401
        ConfigError,
        ExecutorConfig,
        InstrumentMode,
        PipelineConfig,
        Settings,
        load_settings,
    )
