"""The unix control socket: round trip, errors, permissions, stale sockets, DaemonNotRunning."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import stat
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from daemon.control import (
    MAX_REQUEST_BYTES,
    ControlError,
    ControlServer,
    DaemonNotRunning,
    control_request,
    control_request_sync,
    socket_path,
)


async def status(args: dict[str, Any]) -> dict[str, Any]:
    return {"running": True, "echo": args, "when": datetime(2026, 1, 5, tzinfo=UTC)}


async def boom(_args: dict[str, Any]) -> None:
    raise RuntimeError("broker unreachable")


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[ControlServer]:
    srv = ControlServer(socket_path(tmp_path), {"status": status, "boom": boom})
    await srv.start()
    yield srv
    await srv.stop()


async def raw_exchange(path: Path, payload: bytes) -> dict[str, Any]:
    reader, writer = await asyncio.open_unix_connection(str(path))
    try:
        writer.write(payload)
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), 5)
    finally:
        writer.close()
    return json.loads(line)


async def test_round_trip(server: ControlServer) -> None:
    result = await control_request(server.path, "status", {"verbose": True})
    assert result["running"] is True and result["echo"] == {"verbose": True}
    assert result["when"].startswith("2026-01-05")
    assert (await control_request(server.path, "ping"))["pid"] == os.getpid()


async def test_socket_mode_is_0600(server: ControlServer) -> None:
    mode = os.stat(server.path).st_mode
    assert stat.S_ISSOCK(mode)
    assert stat.S_IMODE(mode) == 0o600


async def test_unknown_command_is_named(server: ControlServer) -> None:
    with pytest.raises(ControlError, match="unknown command 'flatten_everything'"):
        await control_request(server.path, "flatten_everything")


async def test_handler_error_is_an_answer(server: ControlServer) -> None:
    with pytest.raises(ControlError, match="boom failed: RuntimeError: broker unreachable"):
        await control_request(server.path, "boom")
    assert (await control_request(server.path, "status"))["running"]


@pytest.mark.parametrize(
    "payload",
    [b"not json\n", b"[1,2]\n", b'{"args": {}}\n', b'{"cmd": 5}\n', b'{"cmd": "status", "args": [1]}\n'],
)
async def test_malformed_request_gets_an_error_and_server_survives(server: ControlServer, payload: bytes) -> None:
    answer = await raw_exchange(server.path, payload)
    assert answer["ok"] is False and "malformed request" in answer["error"]
    assert (await control_request(server.path, "status"))["running"]


@pytest.mark.parametrize(
    "payload",
    [b"[" * 30_000 + b"]" * 30_000 + b"\n",
     b'{"cmd": "status", "args": {"x": ' + b"[" * 20_000 + b"]" * 20_000 + b"}}\n",
     b'{"cmd": "status", "args": ' + b'{"a": ' * 5_000 + b"1" + b"}" * 5_000 + b"}\n"],
    ids=["array", "args-array", "args-object"],
)
async def test_deeply_nested_request_gets_an_error_answer(server: ControlServer, payload: bytes) -> None:
    assert len(payload) < MAX_REQUEST_BYTES
    answer = await raw_exchange(server.path, payload)
    assert answer["ok"] is False and "malformed request" in answer["error"] and "nested" in answer["error"]
    assert (await control_request(server.path, "status"))["running"]


async def test_oversized_request_gets_an_error_and_server_survives(server: ControlServer) -> None:
    payload = b'{"cmd": "status", "args": {"x": "' + b"a" * (MAX_REQUEST_BYTES * 2) + b'"}}\n'
    try:
        answer = await raw_exchange(server.path, payload)
        assert answer["ok"] is False and "larger than" in answer["error"]
    except (ConnectionResetError, BrokenPipeError):
        pass  # the server may close before the whole oversized line is written; it must still be alive
    assert (await control_request(server.path, "status"))["running"]


async def test_several_requests_on_one_connection(server: ControlServer) -> None:
    reader, writer = await asyncio.open_unix_connection(str(server.path))
    writer.write(b'{"cmd": "ping"}\n\n{"cmd": "status"}\n')
    await writer.drain()
    first = json.loads(await asyncio.wait_for(reader.readline(), 5))
    second = json.loads(await asyncio.wait_for(reader.readline(), 5))
    writer.close()
    assert first["ok"] and second["ok"] and second["result"]["running"]


async def test_daemon_not_running_when_socket_absent(tmp_path: Path) -> None:
    with pytest.raises(DaemonNotRunning):
        await control_request(tmp_path / "control.sock", "status")
    with pytest.raises(DaemonNotRunning):
        await control_request(tmp_path / "missing-dir" / "control.sock", "status")


async def test_daemon_not_running_on_a_stale_socket(tmp_path: Path) -> None:
    path = tmp_path / "control.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))  # bound, never listening: what a crashed daemon leaves behind
    stale.close()
    with pytest.raises(DaemonNotRunning):
        await control_request(path, "status")
    srv = ControlServer(path, {"status": status})
    await srv.start()  # removes the stale socket
    try:
        assert (await control_request(path, "status"))["running"]
    finally:
        await srv.stop()
    assert not path.exists(), "stop() unlinks the socket"


async def test_refuses_to_start_over_a_live_daemon(server: ControlServer) -> None:
    second = ControlServer(server.path, {})
    with pytest.raises(RuntimeError, match="another ordergate daemon"):
        await second.start()
    assert (await control_request(server.path, "ping"))["pid"] == os.getpid()


async def test_refuses_to_replace_a_regular_file(tmp_path: Path) -> None:
    path = tmp_path / "control.sock"
    path.write_text("precious")
    with pytest.raises(RuntimeError, match="not a socket"):
        await ControlServer(path, {}).start()
    assert path.read_text() == "precious"


async def test_stop_with_an_idle_client_connected(tmp_path: Path) -> None:
    srv = ControlServer(tmp_path / "control.sock", {})
    await srv.start()
    _, writer = await asyncio.open_unix_connection(str(srv.path))
    await asyncio.sleep(0.05)
    await asyncio.wait_for(srv.stop(), 10)
    writer.close()
    assert not srv.path.exists()


def test_sync_client_reports_not_running(tmp_path: Path) -> None:
    with pytest.raises(DaemonNotRunning):
        control_request_sync(tmp_path / "control.sock", "status")


def test_overlong_socket_path_is_a_clear_error(tmp_path: Path) -> None:
    srv = ControlServer(tmp_path / ("d" * 120) / "control.sock", {})
    with pytest.raises(ValueError, match="longer than"):
        asyncio.run(srv.start())
