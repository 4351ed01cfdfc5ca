"""ordergate daemon package: the process (CLI, assembly, lifecycle, OS signals, control socket).

``from daemon import TradingService, TradingConfig``: the spec's high-level trading API on a paper core of its
own (see `daemon.service`). Names resolve lazily so the CLI's start-up imports nothing it does not use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from config.lazy import lazy_getattr

_EXPORTS: dict[str, str] = {"TradingService": "daemon.service", "TradingConfig": "pipeline.trading_service"}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_getattr(__name__, _EXPORTS)


if TYPE_CHECKING:
    from daemon.service import TradingService  # noqa: F401
    from pipeline.trading_service import TradingConfig  # noqa: F401
