"""Start-up checks on the host that settings validation cannot make: is the state directory a usable,
writable directory, and are the metrics and webhook ports free. Each problem is one line naming the setting,
so `ordergate run` exits 2 before it touches a broker, instead of failing later with a traceback."""

from __future__ import annotations

import errno
import os
import socket
import stat
from pathlib import Path

from config.settings import Settings


def state_dir_problem(path: Path, *, create: bool) -> str | None:
    """Why `path` cannot serve as the state directory, or None. With `create`, a missing directory is made
    (0700) and a file is written and removed in it, so a read-only directory is named now."""
    shown = f"invalid setting state_dir={str(path)!r}"
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        if not create:
            return None  # nothing there yet: a clean state
        try:
            path.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            return f"{shown}: cannot be created: {exc.strerror or exc}"
        mode = os.stat(path).st_mode
    except NotADirectoryError:
        return f"{shown}: a parent of it is not a directory"
    except OSError as exc:
        return f"{shown}: unusable: {exc.strerror or exc}"
    if not stat.S_ISDIR(mode):
        return f"{shown}: is not a directory"
    if create:
        return _write_problem(path, shown)
    return None


# Files in the state dir that SQLite or the paper broker open without our bounded reader: a FIFO there would
# hang the start (SQLite blocks reading a FIFO -wal), a device would be read as a database.
OPENED_FILES = ("journal.db", "journal.db-wal", "journal.db-shm", "journal.db-journal", "paper_book.json")


def special_file_problem(state_dir: Path) -> str | None:
    """One line naming the first of OPENED_FILES that exists and is not a regular file, or None."""
    for name in OPENED_FILES:
        try:
            mode = os.stat(state_dir / name).st_mode
        except FileNotFoundError:
            continue
        except OSError as exc:
            return f"{state_dir / name}: unusable ({exc.strerror or exc})"
        if not stat.S_ISREG(mode):
            kind = "a FIFO" if stat.S_ISFIFO(mode) else "a directory" if stat.S_ISDIR(mode) else "not a regular file"
            return f"{state_dir / name} is {kind}; ordergate keeps only regular files there: move it aside"
    return None


def _write_problem(path: Path, shown: str) -> str | None:
    probe = path / f".ordergate-write-test-{os.getpid()}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        return f"{shown}: is not writable ({exc.strerror or exc}); the daemon keeps its state file, journal and " \
               f"control socket there"
    os.close(fd)
    os.unlink(probe)
    return None


def port_problem(name: str, host: str, port: int) -> str | None:
    """None when host:port can be bound now (port 0 = any), else one line naming the setting."""
    if port == 0:
        return None
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        return f"invalid setting {name}.host={host!r}: cannot be resolved ({exc})"
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # what asyncio's create_server sets
        try:
            sock.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return (f"invalid setting {name}.port={port}: {host}:{port} is already in use (another ordergate "
                        f"on this host?); choose another port")
            return f"invalid setting {name}.host={host!r}: cannot listen on {host}:{port} ({exc.strerror or exc})"
    return None


def host_problems(settings: Settings) -> list[str]:
    """Every start-up problem of the host: the state directory, then the listening ports."""
    problems: list[str] = []
    state = state_dir_problem(Path(settings.state_dir), create=True) or special_file_problem(Path(settings.state_dir))
    if state:
        problems.append(state)
    if settings.metrics.port:
        problem = port_problem("metrics", settings.metrics.host, settings.metrics.port)
        if problem:
            problems.append(problem)
    webhook = settings.webhook
    if webhook.token is not None and webhook.token.get_secret_value():
        problem = port_problem("webhook", webhook.host, webhook.port)
        if problem:
            problems.append(problem)
    return problems


def tighten_modes(state_dir: Path) -> list[str]:
    """Make the state directory 0700 and everything in it owner-only (files 0600, directories 0700), as
    `ordergate run` would have created them; returns "name: old mode" for each one changed. Symlinks are
    left alone (chmod would follow them out of the directory)."""
    changed: list[str] = []
    for path in [state_dir, *sorted(state_dir.rglob("*"))]:
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            continue  # a journal -shm that went away meanwhile
        mode = stat.S_IMODE(info.st_mode)
        if stat.S_ISLNK(info.st_mode) or not mode & 0o077:
            continue
        private = mode & 0o700 | (0o700 if stat.S_ISDIR(info.st_mode) else 0o600)
        try:
            os.chmod(path, private)
        except OSError:
            continue  # not ours: the state_dir check names what cannot be written
        changed.append(f"{path.relative_to(state_dir) if path != state_dir else '.'}: {mode:04o}")
    return changed
