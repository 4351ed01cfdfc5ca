"""`ordergate watch` against a running daemon: one frame when piped, with the account, positions and the
decision feed (the `decisions` control command), prices on the tick."""

from __future__ import annotations

import json

import pytest

from tests.daemon_proc import DaemonProcess, base_env, cli

pytestmark = pytest.mark.timeout(120)


def test_watch_prints_one_frame_when_piped(tmp_path) -> None:
    state_dir = tmp_path / "state"
    env = base_env(state_dir, ORDERGATE_DATA__BARS_PER_SECOND="50", COLUMNS="160")
    proc = DaemonProcess(state_dir, env=env).start()
    try:
        proc.wait_for("daemon_ready")
        proc.wait_for("bars_flowing")
        assert cli(state_dir, "buy", "JPM", "--shares", "5", env=env).returncode == 0
        out = cli(state_dir, "watch", env=env)
        assert out.returncode == 0, out.stderr
        assert "kill switch off" in out.stdout and "positions" in out.stdout and "decisions" in out.stdout
        assert "JPM" in out.stdout and "\x1b[" not in out.stdout
        feed = cli(state_dir, "decisions", env=env)  # not a CLI command: watch reads it over the socket
        assert feed.returncode == 2
        status = json.loads(cli(state_dir, "status", "--json", env=env).stdout)
        assert status["running"]
    finally:
        assert proc.stop() == 0
    down = cli(state_dir, "watch", env=env)
    assert down.returncode == 1 and "not running" in down.stdout
