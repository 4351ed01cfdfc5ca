"""Every counter of the chaos scoreboard can become non-zero: the real daemon, built deliberately broken one way
each (tests/chaos_breaks.py), runs a few crash points, and the break is caught by the counter it must move.

A scoreboard whose counters cannot move proves nothing; this is what makes `make chaos`'s zeros mean something.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.chaos_breaks import BREAKS
from tests.chaos_daemon import CrashRun, WebhookFeeder, audit_protection, crash_points, daemon_env, start_daemon

pytestmark = [pytest.mark.timeout(600), pytest.mark.slow]


WHILE_TRADING = {"stops_never_placed"}  # seen only while a position is open: audited as the daemon trades


CRASH_BREAKS = sorted(set(BREAKS) - WHILE_TRADING)
PARALLEL = 3  # broken daemons run side by side: each spends most of its time waiting on its crash points


def _broken_run(name: str, state_dir: Path) -> CrashRun:
    # the operator's kill switch, left active before the second run, is what the daemon must not forget
    plan = {1: True} if name == "kill_switch_forgotten" else None
    crashes = 3 if name == "journal_invents_acks" else 2  # it needs an entry decided, not only a fill
    return crash_points(crashes, state_dir, seed=2, min_delay=1.2, max_delay=1.8, breaks=name, kill_plan=plan,
                        check_every_restart=False)


@pytest.fixture(scope="module")
def broken_runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Future[CrashRun]]]:
    """Every break's crash run, started together on a small pool (each test waits for its own)."""
    pool = ThreadPoolExecutor(max_workers=PARALLEL, thread_name_prefix="break")
    runs = {name: pool.submit(_broken_run, name, tmp_path_factory.mktemp(name) / "state") for name in CRASH_BREAKS}
    yield runs
    pool.shutdown(wait=True, cancel_futures=True)


@pytest.mark.parametrize("name", CRASH_BREAKS)
def test_a_deliberately_broken_daemon_moves_its_counter(broken_runs: dict[str, Future[CrashRun]], name: str) -> None:
    counter = BREAKS[name]
    run = broken_runs[name].result(timeout=600)
    assert "error" not in run.final, run.final["error"]
    # the counter moving is the proof; a run that traded nothing would leave it at 0 and fail here too
    assert run.final[counter] > 0, f"{name} went unseen: {counter} = 0; final: {run.final}"
    assert any(counter in loss for loss in run.losses), run.losses


def test_a_daemon_that_places_no_stops_shows_protection_gaps(tmp_path: Path) -> None:
    """The crash points audit protection at moments that may find no position open; here the same audit runs
    while the broken daemon trades until a position is open: a position without its stop for 0.5 s is a gap."""
    state_dir = tmp_path / "state"
    env = daemon_env(state_dir)
    state_dir.mkdir(parents=True)
    daemon = start_daemon(state_dir, env, "stops_never_placed")
    feeder = None
    try:
        daemon.wait_for("daemon_ready", 60.0)
        feeder = WebhookFeeder(state_dir, daemon.wait_for("webhook_listening", 10.0)["port"], seed=5)
        feeder.start()
        deadline = time.monotonic() + 40
        gaps: list[str] = []
        while not gaps and time.monotonic() < deadline:
            gaps = audit_protection(state_dir, final=False)["protection_gaps"]
            time.sleep(0.2)
        assert gaps, "a daemon that never places its stops went unseen"
    finally:
        if feeder is not None:
            feeder.halt.set()
        daemon.kill9()
    # and the unbroken daemon, under the same feeder, shows none
    healthy = tmp_path / "healthy"
    healthy.mkdir()
    good = start_daemon(healthy, daemon_env(healthy))
    try:
        good.wait_for("daemon_ready", 60.0)
        feeder = WebhookFeeder(healthy, good.wait_for("webhook_listening", 10.0)["port"], seed=5)
        feeder.start()
        seen_position = False
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:
            assert audit_protection(healthy, final=False)["protection_gaps"] == []
            book = healthy / "paper_book.json"
            seen_position = seen_position or (book.exists() and bool(json.loads(book.read_text())["positions"]))
            time.sleep(0.3)
        assert seen_position
    finally:
        feeder.halt.set()
        good.kill9()
