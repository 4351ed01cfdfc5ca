"""systemd notify without libsystemd: datagrams to NOTIFY_SOCKET, watchdog interval and loop."""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon.systemd import SystemdNotifier, watchdog_interval, watchdog_loop


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[str, socket.socket]]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = tmp_path / "notify.sock"
    sock.bind(str(path))
    sock.settimeout(5)
    yield str(path), sock
    sock.close()


def recv(sock: socket.socket) -> str:
    return sock.recv(4096).decode()


def test_messages_reach_the_socket(listener: tuple[str, socket.socket], monkeypatch) -> None:
    path, sock = listener
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    notifier = SystemdNotifier()
    assert notifier.enabled
    assert notifier.ready()
    assert recv(sock) == "READY=1"
    assert notifier.status("trading\n3 positions")
    assert recv(sock) == "STATUS=trading 3 positions"
    assert notifier.watchdog()
    assert recv(sock) == "WATCHDOG=1"
    assert notifier.stopping("shutting down")
    assert recv(sock).split("\n") == ["STOPPING=1", "STATUS=shutting down"]
    assert notifier.extend_timeout(1.5)
    assert recv(sock) == "EXTEND_TIMEOUT_USEC=1500000"
    notifier.close()


def test_abstract_socket_name() -> None:
    name = f"ordergate-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(b"\0" + name.encode())
    sock.settimeout(5)
    try:
        notifier = SystemdNotifier(f"@{name}")
        assert notifier.ready()
        assert recv(sock) == "READY=1"
    finally:
        sock.close()


def test_no_op_without_notify_socket(monkeypatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    notifier = SystemdNotifier()
    assert not notifier.enabled
    assert notifier.ready() is False
    assert notifier.watchdog() is False
    assert notifier.stopping() is False


def test_a_vanished_socket_does_not_raise(tmp_path: Path) -> None:
    notifier = SystemdNotifier(str(tmp_path / "gone.sock"))
    assert notifier.ready() is False
    assert notifier.watchdog() is False


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, None),
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({"WATCHDOG_USEC": "200000"}, 0.1),
    ],
)
def test_watchdog_interval(env: dict[str, str], expected: float | None) -> None:
    assert watchdog_interval(env) == expected


def test_watchdog_interval_reads_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "10000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    assert watchdog_interval() == 5.0


async def test_watchdog_loop_pings_from_the_loop(listener: tuple[str, socket.socket]) -> None:
    path, sock = listener
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    task = asyncio.create_task(watchdog_loop(SystemdNotifier(path), 0.02))
    try:
        got = [await asyncio.wait_for(loop.sock_recv(sock, 64), 5) for _ in range(3)]
    finally:
        task.cancel()
    assert got == [b"WATCHDOG=1"] * 3


async def test_watchdog_loop_skips_pings_when_unhealthy(listener: tuple[str, socket.socket]) -> None:
    path, sock = listener
    healthy = {"ok": False, "asked": 0}

    def check() -> bool:
        healthy["asked"] += 1
        return healthy["ok"]

    task = asyncio.create_task(watchdog_loop(SystemdNotifier(path), 0.01, healthy=check))
    for _ in range(500):
        if healthy["asked"] >= 3:
            break
        await asyncio.sleep(0.01)
    task.cancel()
    assert healthy["asked"] >= 3
    sock.setblocking(False)
    with pytest.raises(BlockingIOError):
        sock.recv(64)


async def test_watchdog_loop_rejects_a_bad_interval() -> None:
    with pytest.raises(ValueError):
        await watchdog_loop(SystemdNotifier(None), 0)
