"""The control socket: `ordergate status|kill|resume|...` talk to the running daemon over a unix socket.

Protocol: the client sends one JSON line `{"cmd": "...", "args": {...}}` and reads one JSON line back,
`{"ok": true, "result": ...}` or `{"ok": false, "error": "..."}`. The socket lives in the state directory
with mode 0600. A bad request (oversized, nested more than 32 levels, not JSON, unknown command, a handler that
raises) gets an error answer; the server keeps running.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from config.files import json_depth

log = logging.getLogger(__name__)

MAX_REQUEST_BYTES = 64 * 1024
MAX_REQUEST_DEPTH = 32
MAX_RESPONSE_BYTES = 64 * 1024 * 1024
IDLE_TIMEOUT_SECONDS = 30.0
MAX_SOCKET_PATH = 107
SOCKET_NAME = "control.sock"

Handler = Callable[[dict[str, Any]], Awaitable[Any]]


class ControlError(Exception):
    """The daemon answered with an error (or an answer that cannot be read)."""


class ControlTimeout(ControlError):
    """The daemon accepted the connection but did not answer in time."""


class DaemonNotRunning(Exception):
    """No daemon listens on the control socket (absent, stale, or refused)."""


def socket_path(state_dir: str | Path) -> Path:
    """Where the control socket of a state directory is."""
    return Path(state_dir) / SOCKET_NAME


def _check_path_length(path: Path) -> None:
    if len(os.fsencode(path)) > MAX_SOCKET_PATH:
        raise ValueError(f"control socket path {path} is longer than {MAX_SOCKET_PATH} bytes; use a shorter state_dir")


def _error(message: str) -> dict[str, Any]:
    return {"ok": False, "error": message}


def _encode(response: dict[str, Any]) -> bytes:
    try:
        return json.dumps(response, default=str, allow_nan=False).encode() + b"\n"
    except (TypeError, ValueError) as exc:
        return json.dumps(_error(f"response could not be encoded: {exc}")).encode() + b"\n"


def _parse_request(line: bytes) -> tuple[str, dict[str, Any]]:
    """(cmd, args) or ValueError with a message for the client."""
    if json_depth(line) > MAX_REQUEST_DEPTH:
        raise ValueError(f"malformed request: nested more than {MAX_REQUEST_DEPTH} levels deep")
    try:
        request = json.loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"malformed request: not JSON ({exc})") from None
    except RecursionError:
        raise ValueError("malformed request: nested too deeply") from None
    if not isinstance(request, dict):
        raise ValueError("malformed request: expected an object with 'cmd'")
    cmd = request.get("cmd")
    if not isinstance(cmd, str) or not cmd:
        raise ValueError("malformed request: 'cmd' must be a non-empty string")
    args = request.get("args") or {}
    if not isinstance(args, dict):
        raise ValueError("malformed request: 'args' must be an object")
    return cmd, args


class ControlServer:
    """Serves `handlers` (command name -> async fn(args) -> JSON-able result) on a unix socket.

    A built-in `ping` answers `{"pid": ...}` unless a handler named `ping` is given.
    """

    def __init__(self, path: str | Path, handlers: dict[str, Handler]) -> None:
        self.path = Path(path)
        self.handlers: dict[str, Handler] = {"ping": self._ping, **handlers}
        self._server: asyncio.AbstractServer | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._inode: int | None = None

    async def _ping(self, _args: dict[str, Any]) -> dict[str, Any]:
        return {"pid": os.getpid()}

    async def start(self) -> None:
        """Bind the socket (mode 0600), removing a stale one; refuse if a live daemon already owns it."""
        _check_path_length(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        await self._remove_stale()
        old_umask = os.umask(0o177)
        try:
            self._server = await asyncio.start_unix_server(
                self._on_connect, path=str(self.path), limit=MAX_REQUEST_BYTES
            )
        finally:
            os.umask(old_umask)
        os.chmod(self.path, 0o600)
        self._inode = os.stat(self.path).st_ino

    async def _remove_stale(self) -> None:
        try:
            mode = os.lstat(self.path).st_mode
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(mode):
            raise RuntimeError(f"{self.path} exists and is not a socket; refusing to replace it")
        if await _socket_alive(self.path):
            raise RuntimeError(f"another ordergate daemon is listening on {self.path}")
        self.path.unlink(missing_ok=True)

    async def stop(self) -> None:
        """Stop listening, drop open connections and unlink the socket (only if it is still ours)."""
        if self._server is not None:
            self._server.close()
        for task in list(self._connections):
            task.cancel()
        if self._connections:
            await asyncio.gather(*self._connections, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5.0)
            self._server = None
        self._unlink_own_socket()

    def _unlink_own_socket(self) -> None:
        try:
            if self._inode is not None and os.lstat(self.path).st_ino == self._inode:
                self.path.unlink()
        except FileNotFoundError:
            pass
        self._inode = None

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._connections.add(task)
        try:
            await self._serve(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            pass
        finally:
            if task is not None:
                self._connections.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                line = await asyncio.wait_for(reader.readline(), IDLE_TIMEOUT_SECONDS)
            except (ValueError, asyncio.LimitOverrunError):
                writer.write(_encode(_error(f"request larger than {MAX_REQUEST_BYTES} bytes")))
                await writer.drain()
                return
            except TimeoutError:
                return
            if not line:
                return
            if not line.strip():
                continue
            writer.write(_encode(await self._dispatch(line)))
            await writer.drain()

    async def _dispatch(self, line: bytes) -> dict[str, Any]:
        try:
            cmd, args = _parse_request(line)
        except ValueError as exc:
            return _error(str(exc))
        handler = self.handlers.get(cmd)
        if handler is None:
            known = ", ".join(sorted(self.handlers))
            return _error(f"unknown command {cmd!r} (known: {known})")
        try:
            return {"ok": True, "result": await handler(args)}
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("control command %s failed", cmd)
            return _error(f"{cmd} failed: {type(exc).__name__}: {exc}")


async def _socket_alive(path: Path) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_unix_connection(str(path)), 2.0)
    except (ConnectionRefusedError, FileNotFoundError, TimeoutError, OSError):
        return False
    writer.close()
    with contextlib.suppress(Exception):
        await writer.wait_closed()
    return True


async def control_request(path: str | Path, cmd: str, args: dict[str, Any] | None = None, timeout: float = 5.0) -> Any:
    """Send one command to the daemon and return its result.

    Raises DaemonNotRunning (no socket / refused), ControlTimeout (no answer within `timeout`), ControlError
    (an error answer, or an unreadable one).
    """
    path = Path(path)
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_unix_connection(str(path), limit=MAX_RESPONSE_BYTES), timeout
        )
    except (FileNotFoundError, ConnectionRefusedError, NotADirectoryError) as exc:
        raise DaemonNotRunning(f"no ordergate daemon on {path} ({type(exc).__name__})") from None
    except PermissionError:
        raise ControlError(f"permission denied on {path}: run as the daemon's user (or root)") from None
    except TimeoutError:
        raise ControlTimeout(f"connecting to {path} timed out after {timeout} s") from None
    try:
        request = json.dumps({"cmd": cmd, "args": args or {}}, default=str).encode() + b"\n"
        writer.write(request)
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), timeout)
    except TimeoutError:
        raise ControlTimeout(f"{cmd}: no answer from {path} within {timeout} s") from None
    except (ConnectionError, ValueError) as exc:
        raise ControlError(f"{cmd}: connection to {path} failed: {exc}") from None
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
    return _read_response(cmd, line)


def _read_response(cmd: str, line: bytes) -> Any:
    if not line:
        raise ControlError(f"{cmd}: the daemon closed the connection without answering")
    try:
        response = json.loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ControlError(f"{cmd}: unreadable answer ({exc})") from None
    if not isinstance(response, dict) or "ok" not in response:
        raise ControlError(f"{cmd}: unexpected answer {line[:200]!r}")
    if not response["ok"]:
        raise ControlError(str(response.get("error", "unknown error")))
    return response.get("result")


def control_request_sync(path: str | Path, cmd: str, args: dict[str, Any] | None = None, timeout: float = 5.0) -> Any:
    """Blocking `control_request` for the CLI (no event loop needed)."""
    return asyncio.run(control_request(path, cmd, args, timeout))


def is_socket_file(path: str | Path) -> bool:
    """True when `path` exists and is a unix socket (a daemon may be listening)."""
    try:
        return stat.S_ISSOCK(os.lstat(path).st_mode)
    except OSError:
        return False


__all__ = [
    "MAX_REQUEST_BYTES",
    "ControlError",
    "ControlServer",
    "ControlTimeout",
    "DaemonNotRunning",
    "control_request",
    "control_request_sync",
    "is_socket_file",
    "socket_path",
]
