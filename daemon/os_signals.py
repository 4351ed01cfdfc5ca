"""OS signals: SIGUSR1 trips the kill switch, SIGTERM/SIGINT stop, SIGHUP reloads the config; while stopping,
and after the event loop has closed, they stay handled (SIGUSR1 still trips, the others are logged)."""

from __future__ import annotations

import asyncio
import signal as os_signal
from typing import TYPE_CHECKING

import structlog

from daemon.reload import log_reloaded, read_reload

if TYPE_CHECKING:
    from daemon.process import Daemon

log = structlog.get_logger("ordergate.daemon")


class OsSignals:
    """The daemon's signal handlers, installed on its event loop and handed over before that loop closes."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon

    def install(self) -> None:
        """Handle the signals on the running loop."""
        loop = asyncio.get_running_loop()
        for sig, handler in ((os_signal.SIGUSR1, self._on_sigusr1), (os_signal.SIGTERM, self._on_stop),
                             (os_signal.SIGINT, self._on_stop), (os_signal.SIGHUP, self._on_sighup)):
            loop.add_signal_handler(sig, handler)

    def stopping(self) -> None:
        """While shutting down: SIGUSR1 still trips the kill switch (durably); another SIGTERM or SIGINT, or a
        SIGHUP, is logged and changes nothing."""
        loop = asyncio.get_running_loop()
        for sig in (os_signal.SIGTERM, os_signal.SIGINT, os_signal.SIGHUP):
            loop.add_signal_handler(sig, self._on_signal_while_stopping, sig)

    def _on_signal_while_stopping(self, sig: int) -> None:
        log.warning("signal_ignored_during_shutdown", signal=os_signal.Signals(sig).name)

    def hand_over(self) -> None:
        """Before the event loop closes (which would put the default actions back: SIGUSR1's kills the process),
        hand the signals to plain handlers that live until the process exits. Blocked meanwhile, so none is lost
        or gets the default action in between."""
        loop = asyncio.get_running_loop()
        handled = {os_signal.SIGUSR1, os_signal.SIGTERM, os_signal.SIGINT, os_signal.SIGHUP}
        previous = os_signal.pthread_sigmask(os_signal.SIG_BLOCK, handled)
        try:
            for sig in handled:
                loop.remove_signal_handler(sig)
            os_signal.signal(os_signal.SIGUSR1, lambda _sig, _frame: self._on_sigusr1())
            for sig in handled - {os_signal.SIGUSR1}:
                os_signal.signal(sig, lambda sig, _frame: self._on_signal_while_stopping(sig))
        finally:
            os_signal.pthread_sigmask(os_signal.SIG_SETMASK, previous)

    def _on_sigusr1(self) -> None:
        kill_switch = self.daemon.core.kill_switch
        kill_switch.activate("SIGUSR1 received", source="signal")  # logs and alerts the trip
        self.daemon.notifier.status("kill switch active" if kill_switch.durable else "kill switch active (NOT on disk)")

    def _on_stop(self) -> None:
        self.daemon.request_stop()

    def _on_sighup(self) -> None:
        """Reload the config: a new, validated settings object handed to every component that reads settings
        (daemon/reload.py); an invalid file changes nothing, a restart-only change is named and not applied."""
        plan = read_reload(self.daemon.settings, self.daemon.config_file, self.daemon.overrides)
        if plan is None:
            return
        self.daemon.reconfigure(plan.settings)
        if "reconcile.interval_seconds" in plan.applied:
            self.daemon.interval_changed.set()
        log_reloaded(plan)

