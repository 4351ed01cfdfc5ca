"""The live dashboard on a real daemon subprocess: token and CSRF rules over HTTP, then the page in Debian's
headless chromium (selenium): it loads, its numbers match `ordergate status --json`, a trip from the page
trips the daemon, and a screenshot is written."""

from __future__ import annotations

import json
import shutil
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.daemon_proc import DaemonProcess, base_env, cli
from tests.daemon_proc import status as daemon_status

pytestmark = pytest.mark.timeout(240)
TOKEN = "dash-test-token-0123456789"


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory):
    state_dir = tmp_path_factory.mktemp("dash") / "state"
    env = base_env(state_dir, ORDERGATE_DATA__BARS_PER_SECOND="0.5", ORDERGATE_DASHBOARD__TOKEN=TOKEN,
                   ORDERGATE_DASHBOARD__PORT="0", ORDERGATE_DASHBOARD__PUSH_INTERVAL_SECONDS="0.5")
    proc = DaemonProcess(state_dir, env=env).start()
    line = proc.wait_for("dashboard_listening")
    proc.wait_for("bars_flowing")
    proc.url = f"http://127.0.0.1:{line['port']}"  # type: ignore[attr-defined]
    yield proc
    assert proc.stop() == 0


def _request(url: str, method: str = "GET", body: bytes | None = None, **headers: str) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as res:
            return res.status, res.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _status(daemon: DaemonProcess) -> dict:
    return daemon_status(daemon.state_dir, daemon.env)


def test_token_and_csrf_rules(daemon: DaemonProcess) -> None:
    url = daemon.url  # type: ignore[attr-defined]
    status, page = _request(url + "/")
    assert status == 200 and b"/static/dashboard.js" in page and b"http" not in page.replace(b"http://www.w3", b"")
    assert _request(url + "/api/snapshot")[0] == 401
    assert _request(url + "/api/snapshot", Authorization="Bearer wrong-token-0123456789")[0] == 401
    status, body = _request(url + "/api/snapshot", Authorization=f"Bearer {TOKEN}")
    assert status == 200 and json.loads(body)["status"]["running"] is True
    confirmed = json.dumps({"confirm": True}).encode()
    auth = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    assert _request(url + "/api/kill", "POST", confirmed, Origin="http://evil.example", **auth)[0] == 403
    assert _request(url + "/api/kill", "POST", confirmed, **{"Sec-Fetch-Site": "cross-site"}, **auth)[0] == 403
    assert _request(url + "/api/kill", "POST", b"{}", **auth)[0] == 400  # not confirmed
    assert _request(url + "/api/kill", "POST", confirmed, **{"Content-Type": "text/plain"})[0] == 401
    assert _request(url + "/api/kill", "POST", confirmed, Authorization=f"Bearer {TOKEN}",
                    **{"Content-Type": "text/plain"})[0] == 415  # a cross-site form cannot send JSON
    assert _status(daemon)["kill_switch"]["active"] is False
    status, body = _request(url + "/api/decisions?limit=5", Authorization=f"Bearer {TOKEN}")
    rows = json.loads(body)["decisions"]
    assert status == 200 and len(rows) <= 5
    if rows:
        status, body = _request(url + f"/api/decisions?before={rows[-1]['seq']}&limit=5",
                                Authorization=f"Bearer {TOKEN}")
        assert all(r["seq"] < rows[-1]["seq"] for r in json.loads(body)["decisions"])


def _browser(tmp_path: Path):
    chromium = next((p for p in (shutil.which(n) for n in ("chromium", "chromium-browser")) if p), None)
    driver_bin = shutil.which("chromedriver")
    if chromium is None or driver_bin is None:
        pytest.skip("no headless browser: apt-get install chromium chromium-driver (as .ci/run does)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is in the dev extras: make install")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    profile = tmp_path / "chromium-profile"
    profile.mkdir()
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                f"--user-data-dir={profile}", "--window-size=1400,1200"):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(driver_bin), options=options)


def test_page_matches_status_and_trips_the_daemon(daemon: DaemonProcess, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser = _browser(tmp_path)
    bought = cli(daemon.state_dir, "buy", "JPM", "--shares", "10", "--json", env=daemon.env)
    assert bought.returncode == 0, bought.stdout + bought.stderr  # a position with its stop on the page
    try:
        browser.get(daemon.url + f"/#token={TOKEN}")  # type: ignore[attr-defined]
        wait = WebDriverWait(browser, 30)
        wait.until(lambda b: b.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "1")
        assert "token" not in browser.current_url  # the fragment is removed from the address bar
        # the numbers on the page are those of `ordergate status --json` at the same simulated time
        value = lambda el_id: browser.find_element(By.ID, el_id).get_attribute("data-value")  # noqa: E731
        body = browser.find_element(By.TAG_NAME, "body")
        for _ in range(80):  # a bar every 2 s moves prices: compare when page and status stand on the same bar
            page_clock = body.get_attribute("data-clock")
            page = {k: value(k) for k in ("equity", "cash", "daily-pnl", "open-positions")}
            status = _status(daemon)
            if status["clock"] == page_clock == body.get_attribute("data-clock"):
                break
            time.sleep(0.2)
        else:
            pytest.fail("the page and status never showed the same bar")
        assert float(page["equity"]) == pytest.approx(status["equity"], abs=0.005)
        assert float(page["cash"]) == pytest.approx(status["cash"], abs=0.005)
        assert float(page["daily-pnl"]) == pytest.approx(status["daily_pnl"], abs=0.005)
        assert int(page["open-positions"]) == status["open_positions"]
        assert browser.find_element(By.ID, "equity").text == f"{status['equity']:,.2f}"
        broker_text = browser.find_element(By.ID, "brokers").text
        assert "paper: connected" in broker_text
        assert browser.find_element(By.ID, "kill-state").text == "off"
        assert "JPM" in browser.find_element(By.ID, "positions").text
        # trip from the page: the confirmation is asked, then the daemon trips
        browser.find_element(By.ID, "trip").click()
        wait.until(lambda b: b.switch_to.alert)
        browser.switch_to.alert.accept()
        wait.until(lambda b: b.find_element(By.ID, "kill-state").text == "ACTIVE")
        ks = _status(daemon)["kill_switch"]
        assert ks["active"] is True and ks["reason"] == "dashboard"
        daemon.wait_for("dashboard_kill")
        wait.until(lambda b: "dashboard" in b.find_element(By.ID, "kill-reason").text)  # pushed back by SSE
        shot = tmp_path / "dashboard.png"
        assert browser.save_screenshot(str(shot))
        assert shot.stat().st_size > 10_000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        print(f"\ndashboard screenshot: {shot}")
    finally:
        browser.quit()
    assert cli(daemon.state_dir, "resume", env=daemon.env).returncode == 0
