"""One daemon per state directory: an exclusive `flock` on `daemon.lock`, held for the life of the process.

The control socket cannot be the lock (it can be deleted while its daemon runs). The lock file is opened
with mode 0600 and holds the pid of its holder; the kernel releases the lock when the process dies, however
it dies, so a stale file never blocks a start. The file itself is never unlinked (unlinking a lock file
lets two processes each hold a lock on a different inode).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from pathlib import Path

LOCK_FILE = "daemon.lock"
ACQUIRE_ATTEMPTS = 5  # the CLI's probe (`is_locked`) holds a shared lock for microseconds: not a reason to fail
ACQUIRE_INTERVAL_S = 0.1


class DaemonLockHeld(RuntimeError):
    """Another live process holds the state directory's lock."""

    def __init__(self, path: Path, pid: int | None) -> None:
        self.path = path
        self.pid = pid
        holder = f"pid {pid}" if pid is not None else "a process whose pid could not be read"
        super().__init__(f"state dir {path.parent} is in use: {holder} holds {path}; "
                         "stop that daemon first or set another ORDERGATE_STATE_DIR")


class DaemonLock:
    """The held lock on `<state_dir>/daemon.lock` (release it with `release()` or by exiting)."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, state_dir: str | Path) -> DaemonLock:
        """Take the lock without waiting and write our pid into it; raises DaemonLockHeld if it is taken."""
        state_dir = Path(state_dir)
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = state_dir / LOCK_FILE
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            for attempt in range(ACQUIRE_ATTEMPTS):
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if attempt == ACQUIRE_ATTEMPTS - 1:
                        raise
                    time.sleep(ACQUIRE_INTERVAL_S)
        except BlockingIOError:
            os.close(fd)
            raise DaemonLockHeld(path, holder_pid(state_dir)) from None
        except BaseException:
            os.close(fd)
            raise
        os.fchmod(fd, 0o600)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return cls(path, fd)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        """Give the lock up (the file stays)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def holder_pid(state_dir: str | Path) -> int | None:
    """The pid written in the lock file (whether or not the lock is still held); None when unreadable."""
    with contextlib.suppress(OSError, ValueError):
        return int((Path(state_dir) / LOCK_FILE).read_text().strip())
    return None


def is_locked(state_dir: str | Path) -> bool:
    """True when a live process holds the state directory's lock (a read-only probe for the CLI)."""
    path = Path(state_dir) / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def running_pid(state_dir: str | Path) -> int | None:
    """The pid of the daemon holding the state directory, or None when no process holds it."""
    return holder_pid(state_dir) if is_locked(state_dir) else None


__all__ = ["LOCK_FILE", "DaemonLock", "DaemonLockHeld", "holder_pid", "is_locked", "running_pid"]
