"""Can a SQLite journal on disk be trusted? Its WAL checked frame by frame, then `PRAGMA quick_check`.

SQLite recovers a WAL by reading frames until the first one whose checksum or salt does not match, and takes
a WAL whose header is not its own for empty: committed transactions after damage are silently dropped (and
the WAL is overwritten by the next write). So the WAL is read here first, without opening the database:
a bad header, or a committed frame of the current WAL beyond a frame that fails its checksum, is damage.
(A torn frame at the very end, with no commit after it, is an unfinished transaction: normal after a crash.)
A damaged journal is moved aside, never overwritten (`move_aside`). Format: https://sqlite.org/fileformat.html
"""

from __future__ import annotations

import os
import sqlite3
import struct
from pathlib import Path

WAL_MAGIC = (0x377F0682, 0x377F0683)  # checksums over little- / big-endian words
WAL_VERSION = 3007000
WAL_HEADER = 32
FRAME_HEADER = 24


def journal_damage(path: Path) -> str | None:
    """Why the SQLite file at `path` (with its -wal) cannot be trusted, or None when it checks clean."""
    wal = path.with_name(path.name + "-wal")
    problem = wal_problem(wal)
    if problem is not None:
        return f"{wal.name}: {problem}"
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        _raise_if_busy(exc)
        return f"{path.name} cannot be opened: {exc}"
    try:
        result = [row[0] for row in conn.execute("PRAGMA quick_check")]
    except sqlite3.Error as exc:
        _raise_if_busy(exc)
        return f"{path.name} cannot be read: {exc}"
    finally:
        conn.close()
    if result != ["ok"]:
        return f"{path.name} failed its integrity check: {'; '.join(map(str, result[:3]))}"
    return None


def _raise_if_busy(exc: sqlite3.Error) -> None:
    """A journal another process holds locked is in use, not damaged: it must never be moved aside."""
    if isinstance(exc, sqlite3.OperationalError) and any(w in str(exc).lower() for w in ("locked", "busy")):
        raise exc


def wal_problem(wal: Path) -> str | None:
    """What is wrong with a WAL file (None: absent, empty, or sound up to its last commit)."""
    try:
        data = wal.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"unreadable: {exc.strerror}"
    if not data:
        return None  # what a clean shutdown leaves
    if len(data) < WAL_HEADER:
        return f"truncated header ({len(data)} bytes)"
    magic, version, page_size = struct.unpack(">III", data[:12])
    if magic not in WAL_MAGIC or version != WAL_VERSION or page_size < 512 or page_size & (page_size - 1):
        return f"not a SQLite WAL (header {data[:12].hex()})"
    order = ">" if magic & 1 else "<"
    checksum = _checksum(data[:24], order, (0, 0))
    if checksum != struct.unpack(">II", data[24:32]):
        return "header checksum mismatch"
    salts = data[16:24]
    frame = FRAME_HEADER + page_size
    offset = WAL_HEADER
    while offset + frame <= len(data):
        header = data[offset:offset + FRAME_HEADER]
        if header[8:16] != salts:
            return None  # the end of this WAL: what follows is left over from an earlier one
        checksum = _checksum(header[:8] + data[offset + FRAME_HEADER:offset + frame], order, checksum)
        if checksum != struct.unpack(">II", header[16:24]):
            break
        offset += frame
    else:
        return None
    bad = offset
    for later in range(bad + frame, len(data) - frame + 1, frame):
        header = data[later:later + FRAME_HEADER]
        if header[8:16] == salts and struct.unpack(">I", header[4:8])[0] != 0:
            return f"frame at byte {bad} fails its checksum, committed frames follow it (at byte {later})"
    return None


def _checksum(data: bytes, order: str, start: tuple[int, int]) -> tuple[int, int]:
    s0, s1 = start
    words = struct.unpack(f"{order}{len(data) // 4}I", data)
    for i in range(0, len(words), 2):
        s0 = (s0 + words[i] + s1) & 0xFFFFFFFF
        s1 = (s1 + words[i + 1] + s0) & 0xFFFFFFFF
    return s0, s1


def move_aside(path: Path) -> tuple[str, ...]:
    """Rename the database and its -wal/-shm to `<name>.damaged-N[-wal|-shm]` (N the first free), never over
    anything; the directory is fsync'd so the renames hold. Returns the new paths."""
    n = 1
    while any(path.with_name(f"{path.name}.damaged-{n}{s}").exists() for s in ("", "-wal", "-shm")):
        n += 1
    moved = []
    for suffix in ("", "-wal", "-shm"):
        src = path.with_name(path.name + suffix)
        if src.exists():
            dst = path.with_name(f"{path.name}.damaged-{n}{suffix}")
            os.rename(src, dst)
            moved.append(str(dst))
    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return tuple(moved)


__all__ = ["journal_damage", "move_aside", "wal_problem"]
