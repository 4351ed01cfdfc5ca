"""ordergate daemon package: the process (CLI, assembly, lifecycle, OS signals, control socket).

``from daemon import TradingService, TradingConfig``: the spec's high-level trading API on a paper core of its
own (see `daemon.service`). Names resolve lazily so the CLI's start-up imports nothing it does not use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["TradingConfig", "TradingService"]


def __getattr__(name: str) -> Any:
    """Import a public name's module on first use (PEP 562)."""
    if name == "TradingService":
        from daemon.service import TradingService

        return TradingService
    if name == "TradingConfig":
        from pipeline.trading_service import TradingConfig

        return TradingConfig
    raise AttributeError(f"module 'daemon' has no attribute {name!r}")


if TYPE_CHECKING:
    from daemon.service import TradingService
    from pipeline.trading_service import TradingConfig
