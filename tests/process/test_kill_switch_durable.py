"""A trip holds whatever the disk does, and OS signals are handled for the whole life of the process.

- A trip whose state-file write fails is still active, logged and alerted as such, shown by `status` as not
  durable, answered by `ordergate kill` as active, and written again once the disk takes it.
- When only the state file cannot be written (no new file can be made in the state directory) the trip lands in
  the preallocated trip record, so a restart — or the CLI with the daemon down — still finds it active.
- SIGUSR1 during shutdown trips the kill switch durably; a second SIGTERM or SIGINT does not kill the process.

Write failures are made real with `chattr +i` (immutable: refused even to root) on the state directory and on the
trip record; the tests are skipped where the filesystem or the user cannot set it.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pipeline.safety.state_manager import TRIP_RECORD_FILENAME, read_state_file
from tests.daemon_proc import DaemonProcess, base_env, cli
from tests.daemon_proc import status as daemon_status
from tests.fakes.alpaca_server import FakeAlpaca

pytestmark = pytest.mark.timeout(120)


def _chattr(flag: str, *paths: Path) -> None:
    subprocess.run(["chattr", flag, *map(str, paths)], check=True, capture_output=True)


@pytest.fixture
def immutable(tmp_path: Path) -> Iterator[list[Path]]:
    """Paths to make immutable during a test (always made mutable again)."""
    if shutil.which("chattr") is None:
        pytest.skip("chattr is not installed")
    probe = tmp_path / "probe"
    probe.mkdir()
    try:
        _chattr("+i", probe)
    except subprocess.CalledProcessError as exc:
        pytest.skip(f"cannot set the immutable attribute here: {exc.stderr.decode().strip()}")
    _chattr("-i", probe)
    held: list[Path] = []
    yield held
    for path in held:
        subprocess.run(["chattr", "-i", str(path)], capture_output=True)


def _on_disk(state_dir: Path) -> dict:
    """The state file's kill switch (a missing file is a clean one)."""
    path = state_dir / "state.json"
    return json.loads(path.read_text())["kill_switch"] if path.exists() else {"active": False, "reason": None}


def _status(state_dir: Path, env: dict[str, str]) -> dict:
    return daemon_status(state_dir, env)


def test_trip_whose_write_fails_holds_is_alerted_shown_and_retried(tmp_path: Path, immutable: list[Path]) -> None:
    state_dir = tmp_path / "state"
    env = base_env(state_dir)
    daemon = DaemonProcess(state_dir, env=env).start()
    try:
        daemon.wait_for("daemon_ready", 45.0)
        record = state_dir / TRIP_RECORD_FILENAME
        assert record.is_file()
        immutable.extend([record, state_dir])
        _chattr("+i", record, state_dir)  # neither the state file nor the trip record can be written now
        out = cli(state_dir, "kill", "--reason", "disk trouble", "--json", env=env)
        assert out.returncode == 0, (out.stdout, out.stderr)
        answer = json.loads(out.stdout)
        assert answer["active"] is True and answer["durable"] is False, answer
        assert answer["write_error"], answer
        tripped = daemon.wait_for("kill_switch_tripped", 10.0)
        assert tripped["durable"] is False and tripped["state_write_error"]
        alert = daemon.wait_for("alert", 10.0, kind="kill_switch_not_durable")
        assert "IN MEMORY ONLY" in alert["message"] and alert["level"] == "critical", alert
        shown = _status(state_dir, env)["kill_switch"]
        assert shown["active"] is True and shown["durable"] is False and shown["write_error"]
        # entries stop at once all the same: the switch holds in memory
        assert not _on_disk(state_dir)["active"]
        # the disk takes writes again: the trip is written without anyone asking
        _chattr("-i", record, state_dir)
        daemon.wait_for("kill_switch_persisted", 15.0)
        assert _on_disk(state_dir)["active"] is True and _on_disk(state_dir)["reason"] == "disk trouble"
        assert _status(state_dir, env)["kill_switch"]["durable"] is True
    finally:
        for path in immutable:
            subprocess.run(["chattr", "-i", str(path)], capture_output=True)
        daemon.stop()
    # and a restart keeps it
    again = DaemonProcess(state_dir, env=env).start()
    try:
        again.wait_for("daemon_ready", 45.0)
        assert _status(state_dir, env)["kill_switch"]["active"] is True
    finally:
        assert again.stop() == 0


def test_a_trip_the_state_file_cannot_take_lands_in_the_trip_record(tmp_path: Path, immutable: list[Path]) -> None:
    state_dir = tmp_path / "state"
    env = base_env(state_dir)
    daemon = DaemonProcess(state_dir, env=env).start()
    try:
        daemon.wait_for("daemon_ready", 45.0)
        immutable.append(state_dir)
        _chattr("+i", state_dir)  # no new file (the state file's temp file) can be made in the directory
        daemon.signal(signal.SIGUSR1)
        tripped = daemon.wait_for("kill_switch_tripped", 10.0)
        assert tripped["trip_record"] is True and tripped["durable"] is True, tripped
        shown = _status(state_dir, env)["kill_switch"]
        assert shown["active"] is True and shown["durable"] is True and shown["write_error"]
    finally:
        daemon.kill9()  # a crash before the disk recovers
    # the daemon is down and the state file never got the trip: the CLI still reports it active
    offline = _status(state_dir, env)
    assert offline["running"] is False and offline["kill_switch"]["active"] is True, offline
    assert "SIGUSR1" in offline["kill_switch"]["reason"] and TRIP_RECORD_FILENAME in offline["kill_switch"]["reason"]
    _chattr("-i", state_dir)
    # a restart hands the record's trip to the state file and trades nothing
    again = DaemonProcess(state_dir, env=env).start()
    try:
        again.wait_for("daemon_ready", 45.0)
        assert _status(state_dir, env)["kill_switch"]["active"] is True
        assert _on_disk(state_dir)["active"] is True
    finally:
        assert again.stop() == 0
    # `resume` with the daemon down clears both the state file and the record
    out = cli(state_dir, "resume", "--json", env=env)
    assert out.returncode == 0, out.stderr
    assert read_state_file(state_dir / "state.json")["kill_switch"]["active"] is False


def test_a_start_that_cannot_write_its_state_dir_fails_closed(tmp_path: Path, immutable: list[Path]) -> None:
    state_dir = tmp_path / "state"
    env = base_env(state_dir)
    daemon = DaemonProcess(state_dir, env=env).start()
    daemon.wait_for("daemon_ready", 45.0)
    assert daemon.stop() == 0
    (state_dir / TRIP_RECORD_FILENAME).unlink()
    immutable.append(state_dir)
    _chattr("+i", state_dir)
    from pipeline.core.clock import SimulatedClock
    from pipeline.safety.state_manager import PersistentStateManager

    manager = PersistentStateManager(state_dir, SimulatedClock(datetime(2026, 11, 24, 15, tzinfo=UTC)))
    assert manager.is_kill_switch_active()
    assert "cannot be written" in (manager.load_error or "")


# -- signals during shutdown ------------------------------------------------------------------------------
async def test_sigusr1_during_shutdown_trips_durably_and_a_second_sigterm_does_not_kill(
    tmp_path: Path, fake: FakeAlpaca,
) -> None:
    state_dir = tmp_path / "state"
    env = base_env(state_dir, **fake.env(tickers=["AAPL"]), ORDERGATE_SHUTDOWN__TIMEOUT_SECONDS="5",
                   ORDERGATE_ALPACA__REQUEST_TIMEOUT_SECONDS="3", ORDERGATE_EXECUTOR__INSTRUMENT_MODE="stock")
    daemon = DaemonProcess(state_dir, env=env).start()
    try:
        await asyncio.to_thread(daemon.wait_for, "daemon_ready", 45.0)
        await fake.wait_for(lambda: "AAPL" in fake.data_subscriptions, timeout=15)
        now = datetime.now(UTC).replace(second=0, microsecond=0)
        await fake.push_bars([{"S": "AAPL", "t": now, "o": 187.5, "h": 187.5, "l": 187.5, "c": 187.5, "v": 1000}])
        await asyncio.sleep(0.3)
        fake.next_submit_hangs()  # the send is still under way at shutdown: the daemon waits for it a while
        out = await asyncio.to_thread(cli, state_dir, "signal", "--ticker", "AAPL", "--direction", "long",
                                      "--entry", "187.5", "--stop", "183.0", "--timeframe", "1d", "--json", env=env)
        assert json.loads(out.stdout)["accepted"] is True, out.stdout
        await fake.wait_for(lambda: len(fake.submits()) == 1, timeout=15)
        daemon.signal(signal.SIGTERM)
        await asyncio.to_thread(daemon.wait_for, "daemon_stopping", 10.0)
        daemon.signal(signal.SIGUSR1)
        await asyncio.to_thread(daemon.wait_for, "kill_switch_tripped", 10.0)
        daemon.signal(signal.SIGTERM)
        daemon.signal(signal.SIGINT)
        await asyncio.to_thread(daemon.wait_for, "signal_ignored_during_shutdown", 10.0)
        code = await asyncio.to_thread(daemon.wait, 30.0)
    finally:
        daemon.stop()
    assert code == 0, daemon.text()[-3000:]
    assert _on_disk(state_dir)["active"] is True and _on_disk(state_dir)["reason"] == "SIGUSR1 received"


def test_a_credential_pasted_into_a_kill_reason_is_blanked_out(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    token = "hunter2-webhook-token-0123456789"
    env = base_env(state_dir, ORDERGATE_WEBHOOK__TOKEN=token, ORDERGATE_WEBHOOK__PORT="0")
    daemon = DaemonProcess(state_dir, env=env).start()
    try:
        daemon.wait_for("daemon_ready", 45.0)
        out = cli(state_dir, "kill", "--reason", f"oops {token} pasted", "--json", env=env)
        assert out.returncode == 0, out.stderr
        assert token not in out.stdout and "[REDACTED]" in json.loads(out.stdout)["reason"]
    finally:
        assert daemon.stop() == 0
    assert token not in (state_dir / "state.json").read_text() and token not in daemon.text()
