"""Bounded reads of the files ordergate is given (config TOML, target weights, the state file).

`read_regular_file` opens with `O_NONBLOCK` (a FIFO without a writer cannot block the open or the read),
checks with `fstat` that it is a regular file (not a FIFO, device, socket or directory: `/dev/zero` is
refused, not read until memory runs out) and reads at most `max_bytes`. `json_depth` measures how deeply a
JSON text nests without parsing it, so a document can be refused before a recursive decoder sees it.
"""

from __future__ import annotations

import os
import re
import stat
import tomllib
from itertools import accumulate
from pathlib import Path
from typing import Any

MAX_CONFIG_BYTES = 1024 * 1024
MAX_TOML_DEPTH = 32

_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_TOML_STRING = re.compile(rb'"""(?:[^"\\]|\\.|"(?!""))*"""|\'\'\'.*?\'\'\'|"(?:[^"\\\n]|\\.)*"|\'[^\'\n]*\'|#[^\n]*',
                          re.DOTALL)


class UnreadableFile(ValueError):
    """A file that is not read: not a regular file, too large, or too deeply nested. The message says which."""


class TomlFileError(ValueError):
    """A TOML file that cannot be used; the message (without the path: the caller names the file) says why."""


def _kind(mode: int) -> str:
    for test, name in _KINDS:
        if test(mode):
            return name
    return "not a regular file"


def read_regular_file(path: str | Path, max_bytes: int) -> bytes:
    """The bytes of a regular file of at most `max_bytes`; UnreadableFile otherwise. OSError (missing,
    permission denied, name too long, ...) propagates for the caller to name."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UnreadableFile(f"is {_kind(info.st_mode)}, not a regular file")
        if info.st_size > max_bytes:
            raise UnreadableFile(f"is larger than {max_bytes} bytes ({info.st_size})")
        chunks: list[bytes] = []
        size = 0
        while size <= max_bytes:
            chunk = os.read(fd, min(1 << 16, max_bytes + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > max_bytes:  # it grew while we read it
            raise UnreadableFile(f"is larger than {max_bytes} bytes")
        return b"".join(chunks)
    finally:
        os.close(fd)


def _bracket_depth(brackets: bytes) -> int:
    return max(accumulate(1 if b in b"[{" else -1 for b in brackets), default=0)


def json_depth(data: bytes) -> int:
    """How deeply arrays and objects nest in a JSON text (brackets inside strings do not count)."""
    return _bracket_depth(_JSON_STRING.sub(b"", data).translate(None, _NOT_BRACKETS))


def toml_depth(data: bytes) -> int:
    """How deeply inline arrays and tables nest in a TOML text (strings and comments do not count)."""
    return _bracket_depth(_TOML_STRING.sub(b"", data).translate(None, _NOT_BRACKETS))


def read_toml_file(path: str | Path, max_bytes: int = MAX_CONFIG_BYTES) -> dict[str, Any]:
    """A small regular TOML file, decoded. Raises OSError, UnreadableFile, tomllib.TOMLDecodeError."""
    data = read_regular_file(path, max_bytes)
    if toml_depth(data) > MAX_TOML_DEPTH:
        raise UnreadableFile(f"is nested more than {MAX_TOML_DEPTH} levels deep")
    try:
        return tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise UnreadableFile(f"is not UTF-8 text (byte {exc.start})") from None
    except RecursionError:
        raise UnreadableFile("is nested too deeply") from None


def load_toml(path: str | Path, max_bytes: int = MAX_CONFIG_BYTES) -> dict[str, Any]:
    """`read_toml_file`, every failure one `TomlFileError`: not found, malformed TOML, unreadable (and why)."""
    try:
        return read_toml_file(path, max_bytes)
    except FileNotFoundError:
        raise TomlFileError("not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise TomlFileError(f"malformed TOML: {exc}") from None
    except UnreadableFile as exc:
        raise TomlFileError(str(exc)) from None
    except OSError as exc:
        raise TomlFileError(f"unreadable: {exc.strerror or exc}") from None
