"""Telegram control end to end: the real daemon (subprocess) polls a local fake of the Bot API; an allowed
chat gets /status and /positions, trips and clears the kill switch and flattens after confirming with the
code; a chat not on the allow-list gets no answer and changes nothing; a stale queued command is ignored;
the bot token never reaches the log."""

from __future__ import annotations

import re

import pytest

from tests.daemon_proc import DaemonProcess, base_env, cli
from tests.daemon_proc import status as daemon_status
from tests.fakes.telegram_server import FakeBotAPI

pytestmark = pytest.mark.timeout(180)
TOKEN = "123456:FAKE-bot-token-secret"
ALLOWED, STRANGER = 1001, 666


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory):
    api = FakeBotAPI(TOKEN).start()
    state_dir = tmp_path_factory.mktemp("tg") / "state"
    env = base_env(state_dir, ORDERGATE_DATA__BARS_PER_SECOND="20", ORDERGATE_TELEGRAM__TOKEN=TOKEN,
                   ORDERGATE_TELEGRAM__ALLOWED_CHAT_IDS=f"[{ALLOWED}]", ORDERGATE_TELEGRAM__BASE_URL=api.base_url,
                   ORDERGATE_TELEGRAM__POLL_TIMEOUT_SECONDS="1")
    proc = DaemonProcess(state_dir, env=env).start()
    try:
        proc.wait_for("telegram_listening")
        proc.wait_for("bars_flowing")
        yield proc, api
        assert proc.stop() == 0
    finally:
        proc.stop()
        api.stop()


def _status(proc: DaemonProcess) -> dict:
    return daemon_status(proc.state_dir, proc.env)


def test_phone_control(setup) -> None:
    proc, api = setup
    api.send_command(STRANGER, "/kill intruder")  # refused: no answer, nothing tripped
    api.send_command(ALLOWED, "/status")
    status_reply = api.wait_reply(ALLOWED, 1)
    assert "kill switch:" in status_reply and "broker paper:" in status_reply and "<pre>" in status_reply
    assert api.replies(STRANGER) == []
    assert _status(proc)["kill_switch"]["active"] is False
    proc.wait_for("telegram_refused", chat_id=STRANGER)

    assert cli(proc.state_dir, "buy", "JPM", "--shares", "5", env=proc.env).returncode == 0
    api.send_command(ALLOWED, "/positions")
    assert "JPM" in api.wait_reply(ALLOWED, 2)

    api.send_command(ALLOWED, "/kill from my phone")
    assert "ACTIVE" in api.wait_reply(ALLOWED, 3)
    ks = _status(proc)["kill_switch"]
    assert ks["active"] is True and ks["reason"] == "from my phone"
    api.send_command(ALLOWED, "/resume")
    assert "off" in api.wait_reply(ALLOWED, 4)
    assert _status(proc)["kill_switch"]["active"] is False

    api.send_command(ALLOWED, "/flatten")
    ask = api.wait_reply(ALLOWED, 5)
    code = re.search(r"/flatten (\d{6})", ask).group(1)
    assert _status(proc)["open_positions"] >= 1  # asking does nothing yet
    api.send_command(ALLOWED, "/flatten 000000" if code != "000000" else "/flatten 111111")
    assert "wrong or expired" in api.wait_reply(ALLOWED, 6)
    code = re.search(r"/flatten (\d{6})", api.replies(ALLOWED)[5]).group(1)
    api.send_command(ALLOWED, f"/flatten {code}")
    assert "flatten sent" in api.wait_reply(ALLOWED, 7)
    proc.wait_for("telegram_command", command="/flatten")

    api.send_command(ALLOWED, "/kill stale", age_seconds=3600)  # queued while the daemon was down
    proc.wait_for("telegram_stale_command")
    assert _status(proc)["kill_switch"]["active"] is False
    assert "FAKE-bot-token-secret" not in proc.text()
