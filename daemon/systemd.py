"""systemd notify protocol without libsystemd: datagrams to $NOTIFY_SOCKET, and the event-loop watchdog.

`SystemdNotifier` sends READY=1, STATUS=..., WATCHDOG=1, STOPPING=1 to the socket systemd passes in
NOTIFY_SOCKET (a filesystem path, or an abstract name starting with '@'). Without NOTIFY_SOCKET every call
is a no-op. `watchdog_loop` pings from the event loop itself, so a stuck loop stops the pings and systemd
restarts the service after WatchdogSec.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable

log = logging.getLogger(__name__)


def _socket_address(value: str) -> str | bytes:
    if value.startswith("@"):
        return b"\0" + value[1:].encode()
    return value


class SystemdNotifier:
    """Sends sd_notify datagrams; silently does nothing when not started by systemd with Type=notify."""

    def __init__(self, notify_socket: str | None = None) -> None:
        address = notify_socket if notify_socket is not None else os.environ.get("NOTIFY_SOCKET")
        self._address: str | bytes | None = _socket_address(address) if address else None
        self._sock: socket.socket | None = None
        self._warned = False

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def notify(self, *lines: str) -> bool:
        """Send `lines` as one datagram. Returns True when sent; never raises."""
        if self._address is None:
            return False
        payload = "\n".join(lines).encode()
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto(payload, self._address)
            return True
        except OSError as exc:
            if not self._warned:
                log.warning("systemd notify failed: %s", exc)
                self._warned = True
            return False

    def ready(self, status: str | None = None) -> bool:
        """READY=1 (with an optional STATUS=)."""
        return self._state("READY=1", status)

    def status(self, text: str) -> bool:
        """STATUS=<text> (shown by `systemctl status`)."""
        return self.notify(f"STATUS={_one_line(text)}")

    def watchdog(self) -> bool:
        """WATCHDOG=1 keep-alive."""
        return self.notify("WATCHDOG=1")

    def stopping(self, status: str | None = None) -> bool:
        """STOPPING=1 at the start of a graceful shutdown."""
        return self._state("STOPPING=1", status)

    def _state(self, line: str, status: str | None) -> bool:
        return self.notify(line, f"STATUS={_one_line(status)}") if status else self.notify(line)

    def extend_timeout(self, seconds: float) -> bool:
        """EXTEND_TIMEOUT_USEC: ask for more time during a long start or stop."""
        return self.notify(f"EXTEND_TIMEOUT_USEC={int(seconds * 1_000_000)}")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def watchdog_interval(environ: dict[str, str] | None = None) -> float | None:
    """Seconds between WATCHDOG=1 pings: half of WATCHDOG_USEC, or None when the watchdog is off or meant
    for another process (WATCHDOG_PID set and not ours)."""
    env = os.environ if environ is None else environ
    usec = env.get("WATCHDOG_USEC", "").strip()
    if not usec:
        return None
    pid = env.get("WATCHDOG_PID", "").strip()
    if pid and pid != str(os.getpid()):
        return None
    try:
        value = int(usec)
    except ValueError:
        log.warning("ignoring malformed WATCHDOG_USEC=%r", usec)
        return None
    if value <= 0:
        return None
    return value / 1_000_000 / 2


async def watchdog_loop(
    notifier: SystemdNotifier, interval: float, healthy: Callable[[], bool] | None = None
) -> None:
    """Ping WATCHDOG=1 every `interval` seconds from the event loop until cancelled.

    `healthy`, when given, is asked before each ping; a False answer skips the ping (systemd then restarts us).
    """
    if interval <= 0:
        raise ValueError(f"watchdog interval must be > 0, got {interval}")
    while True:
        if healthy is None or _safe_healthy(healthy):
            notifier.watchdog()
        await asyncio.sleep(interval)


def _safe_healthy(healthy: Callable[[], bool]) -> bool:
    try:
        return bool(healthy())
    except Exception:
        log.exception("watchdog health check raised; skipping the ping")
        return False
