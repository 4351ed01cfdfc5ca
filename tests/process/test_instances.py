"""Named instances: the template unit ordergate@.service, `ordergate --instance NAME`, and two instances on one
host side by side as real daemon subprocesses (own config, state dir, ports, lock and control socket; a kill
switch tripped on one leaves the other trading)."""

from __future__ import annotations

import json
import re
import socket
import sqlite3
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from daemon.instances import resolve_instance
from tests.daemon_proc import BIN, ROOT, DaemonProcess, base_env, wait_until
from tests.unit_file import ANALYZE, directives, needs_analyze

TEMPLATE = ROOT / "systemd" / "ordergate@.service"
SINGLE = ROOT / "systemd" / "ordergate.service"


def test_template_unit_names_the_instance_config_state_and_identity() -> None:
    d = directives(TEMPLATE)
    assert d["ExecStart"] == ["/opt/ordergate/.venv/bin/ordergate --instance %i run"]
    assert d["StateDirectory"] == ["ordergate/%i"]
    assert d["RuntimeDirectory"] == ["ordergate/%i"]
    assert d["CacheDirectory"] == ["ordergate/%i"]
    assert d["SyslogIdentifier"] == ["ordergate-%i"]
    assert d["EnvironmentFile"] == ["-/etc/ordergate/desk.env", "-/etc/ordergate/%i.env"]
    # everything else (hardening, notify, watchdog, limits) is the single unit's, line for line
    single = directives(SINGLE)
    differ = {"ExecStart", "StateDirectory", "RuntimeDirectory", "CacheDirectory", "SyslogIdentifier",
              "EnvironmentFile", "Description"}
    assert {k: v for k, v in d.items() if k not in differ} == {k: v for k, v in single.items() if k not in differ}


def _instance_copy(tmp_path: Path, name: str) -> Path:
    binary = BIN if BIN.exists() else Path("/bin/true")
    text = re.sub(r"(?m)^ExecStart=\S+", f"ExecStart={binary}", TEMPLATE.read_text())
    (tmp_path / "ordergate@.service").write_text(text)
    return tmp_path / f"ordergate@{name}.service"  # systemd instantiates it from the template beside it


@needs_analyze
def test_template_verifies_and_rates_low_exposure(tmp_path: Path) -> None:
    unit = _instance_copy(tmp_path, "alpha")
    proc = subprocess.run([ANALYZE, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "ordergate@" not in proc.stderr, proc.stderr + proc.stdout
    proc = subprocess.run([ANALYZE, "security", "--offline=true", "--no-pager", str(tmp_path / "ordergate@.service")],
                          capture_output=True, text=True, timeout=60)
    match = re.search(r"Overall exposure level for ordergate@\S*\.service:\s*([0-9.]+)", proc.stdout)
    assert match, proc.stdout + proc.stderr
    assert float(match.group(1)) <= 1.5, proc.stdout


def test_make_install_service_passes_the_instance() -> None:
    proc = subprocess.run(["make", "-n", "install-service", "INSTANCE=alpha"], cwd=ROOT, capture_output=True,
                          text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert "INSTANCE=alpha bash systemd/install.sh" in proc.stdout
    script = (ROOT / "systemd" / "install.sh").read_text()
    assert 'ordergate@$INSTANCE.service' in script and "ordergate@.service" in script


def _env(config_dir: Path, state_root: Path, **extra: str) -> dict[str, str]:
    env = base_env(state_root / "_unused", ORDERGATE_INSTANCE_CONFIG_DIR=str(config_dir),
                   ORDERGATE_INSTANCE_STATE_ROOT=str(state_root), **extra)
    del env["ORDERGATE_METRICS__PORT"]  # each instance's port comes from its own config file
    return env


def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN), *args], env=env, capture_output=True, text=True, timeout=60, cwd=ROOT)


def test_instance_resolves_its_config_and_state_dir(tmp_path: Path) -> None:
    config_dir, state_root = tmp_path / "etc", tmp_path / "var"
    config_dir.mkdir()
    (config_dir / "alpha.toml").write_text("[executor]\nmax_concurrent_positions = 3\n")
    env = _env(config_dir, state_root, ORDERGATE_STATE_DIR=str(tmp_path / "shared"))
    shown = _run(env, "--instance", "alpha", "config", "show")
    assert shown.returncode == 0, shown.stderr
    settings = json.loads(shown.stdout)
    assert settings["instance"] == {"name": "alpha"}
    assert settings["state_dir"] == str(state_root / "alpha")  # not the env's shared ORDERGATE_STATE_DIR
    assert settings["executor"]["max_concurrent_positions"] == 3
    assert resolve_instance("alpha", {"ORDERGATE_INSTANCE_CONFIG_DIR": "/c", "ORDERGATE_INSTANCE_STATE_ROOT": "/s"}) \
        .config == Path("/c/alpha.toml")
    assert resolve_instance("alpha", {}).state_dir == Path("/var/lib/ordergate/alpha")


@pytest.mark.parametrize(("args", "said"), [
    (["--instance", "Alpha", "status"], "not an instance name"),
    (["--instance", "../etc", "status"], "not an instance name"),
    (["--instance", "alpha", "--config", "x.toml", "status"], "do not give --config"),
    (["--instance", "alpha", "--state-dir", "/tmp/x", "status"], "do not give --config or --state-dir"),
    (["--instance", "nosuch", "status"], "nosuch.toml: not found"),
])
def test_bad_instance_use_is_one_line_and_exit_2(tmp_path: Path, args: list[str], said: str) -> None:
    (tmp_path / "etc").mkdir()
    out = _run(_env(tmp_path / "etc", tmp_path / "var"), *args)
    assert out.returncode == 2, out.stdout + out.stderr
    assert said in out.stderr and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _orders(journal: Path) -> list[tuple[str, str, str]]:
    with sqlite3.connect(journal) as conn:
        return conn.execute("SELECT client_order_id, kind, created_ts FROM orders ORDER BY created_ts").fetchall()


def _sent_entries(journal: Path) -> set[str]:
    """Entry orders the broker accepted (not refused before the wire)."""
    with sqlite3.connect(journal) as conn:
        return {r[0] for r in conn.execute(
            "SELECT client_order_id FROM orders WHERE kind='entry' AND broker_order_id IS NOT NULL")}


def _metrics(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        return resp.read().decode()


@pytest.mark.timeout(180)
def test_two_instances_side_by_side(tmp_path: Path) -> None:
    config_dir, state_root = tmp_path / "etc", tmp_path / "var"
    config_dir.mkdir()
    ports = {name: _free_port() for name in ("alpha", "beta")}
    for name, port in ports.items():
        (config_dir / f"{name}.toml").write_text(f"[metrics]\nport = {port}\n[data]\nbars_per_second = 40\n")
    env = _env(config_dir, state_root)
    daemons = {name: DaemonProcess(state_root / name, "--instance", name, env=env) for name in ports}
    try:
        for d in daemons.values():
            d.start()
        for d in daemons.values():
            d.wait_for("daemon_ready", timeout=60)
        # separate state: each its own journal, state file, lock and control socket; each its own metrics port
        for name, port in ports.items():
            assert (state_root / name / "journal.db").exists() and (state_root / name / "control.sock").exists()
            assert "ordergate" in _metrics(port)
            st = json.loads(_run(env, "--instance", name, "status", "--json").stdout)
            assert st["pid"] == daemons[name].proc.pid  # the CLI reached this instance's own socket
        # a second daemon of one instance is refused by that instance's lock; the other instance is untouched
        again = _run(env, "--instance", "alpha", "run")
        assert again.returncode == 2 and f"{ports['alpha']} is already in use" in again.stderr, again.stderr
        again = _run({**env, "ORDERGATE_METRICS__PORT": "0"}, "--instance", "alpha", "run")
        assert again.returncode == 2 and "lock" in again.stderr.lower(), again.stderr
        # both trade
        for name in ports:
            wait_until(lambda n=name: _sent_entries(state_root / n / "journal.db"), 90, f"{name} sent an entry")
        # the kill switch of one instance
        killed = _run(env, "--instance", "alpha", "kill", "--reason", "alpha only", "--json")
        assert killed.returncode == 0, killed.stderr
        alpha = json.loads(_run(env, "--instance", "alpha", "status", "--json").stdout)
        beta = json.loads(_run(env, "--instance", "beta", "status", "--json").stdout)
        assert alpha["kill_switch"]["active"] and alpha["kill_switch"]["reason"] == "alpha only"
        assert not beta["kill_switch"]["active"]
        time.sleep(0.5)  # an entry that was on the wire when the trip came has its reply journaled by now
        alpha_sent = _sent_entries(state_root / "alpha" / "journal.db")
        beta_sent = _sent_entries(state_root / "beta" / "journal.db")
        # beta keeps trading: new entries reach its broker after alpha's trip
        wait_until(lambda: _sent_entries(state_root / "beta" / "journal.db") - beta_sent, 90, "beta sent a new entry")
        # alpha sent no entry since (exits may still go: they are never blocked by the kill switch)
        time.sleep(1.0)
        assert _sent_entries(state_root / "alpha" / "journal.db") <= alpha_sent
        assert daemons["alpha"].proc.poll() is None and daemons["beta"].proc.poll() is None
    finally:
        codes = {name: d.stop() for name, d in daemons.items()}
    assert codes == {"alpha": 0, "beta": 0}
