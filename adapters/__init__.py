"""ordergate adapters package: brokers, market data feeds, signal intake and alert sinks.

``from adapters import PaperBroker, AlpacaBroker, IBKRBroker``. Names resolve lazily (PEP 562): importing the
package does not import the broker SDKs until a name is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from config.lazy import lazy_getattr

_EXPORTS: dict[str, str] = {
    # brokers
    "PaperBroker": "adapters.paper",
    "AlpacaBroker": "adapters.alpaca",
    "IBKRBroker": "adapters.ibkr",
    # bar feeds
    "SyntheticFeed": "adapters.synthetic",
    "ReplayFeed": "adapters.replay",
    "AlpacaBarFeed": "adapters.alpaca_data",
    # signal intake and alert sinks
    "WebhookServer": "adapters.webhook",
    "AlertDispatcher": "adapters.alerts",
    "LogSink": "adapters.alerts",
    "WebhookSink": "adapters.alerts",
    "JournalSink": "adapters.alerts",
}

__all__ = sorted(_EXPORTS)


__getattr__ = lazy_getattr(__name__, _EXPORTS)


if TYPE_CHECKING:
    from adapters.alerts import AlertDispatcher, JournalSink, LogSink, WebhookSink  # noqa: F401
    from adapters.alpaca import AlpacaBroker  # noqa: F401
    from adapters.alpaca_data import AlpacaBarFeed  # noqa: F401
    from adapters.ibkr import IBKRBroker  # noqa: F401
    from adapters.paper import PaperBroker  # noqa: F401
    from adapters.replay import ReplayFeed  # noqa: F401
    from adapters.synthetic import SyntheticFeed  # noqa: F401
    from adapters.webhook import WebhookServer  # noqa: F401
