"""Crash-safe file replacement: temp file in the same directory, flush, fsync, rename, fsync the directory.

A reader sees either the old content or the new one, never a torn or empty file, even across SIGKILL or
power loss.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def atomic_write_bytes(path: str | Path, data: bytes, mode: int = 0o600, *, durable: bool = True) -> None:
    """Replace `path` with `data` atomically and (unless `durable=False`: simulated runs) durably."""
    path = Path(path)
    directory = path.parent
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            if durable:
                os.fsync(fh.fileno())
        os.chmod(tmp_name, mode)
        os.replace(tmp_name, path)
    except BaseException:
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
        raise
    if not durable:
        return
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def atomic_write_json(path: str | Path, value: Any, mode: int = 0o600) -> None:
    """Serialise `value` as JSON and replace `path` with it atomically."""
    atomic_write_bytes(path, json.dumps(value, sort_keys=True, indent=2).encode() + b"\n", mode)


def cleanup_temp_files(directory: str | Path, name: str) -> None:
    """Remove temp files a crash left behind for `name` (they are never the file of record)."""
    for stale in Path(directory).glob(f".{name}.*.tmp"):
        try:
            stale.unlink()
        except OSError:
            pass
