"""ordergate config package: the settings schema and the shipped defaults.

``from config import Settings, ExecutorConfig, PipelineConfig, InstrumentMode, load_settings``. Names resolve
lazily (PEP 562) so importing the package costs nothing until a name is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from config.lazy import lazy_getattr

_EXPORTS: dict[str, str] = {
    name: "config.settings"
    for name in ("ConfigError", "ExecutorConfig", "InstrumentMode", "PipelineConfig", "Settings", "load_settings")
}

__all__ = sorted(_EXPORTS)


__getattr__ = lazy_getattr(__name__, _EXPORTS)


if TYPE_CHECKING:
    from config.settings import (  # noqa: F401
        ConfigError,
        ExecutorConfig,
        InstrumentMode,
        PipelineConfig,
        Settings,
        load_settings,
    )
