"""Every counter of the chaos scoreboard can become non-zero: the real daemon, built deliberately broken one way
each (tests/chaos_breaks.py), runs a few crash points, and the break is caught by the counter it must move.

A scoreboard whose counters cannot move proves nothing; this is what makes `make chaos`'s zeros mean something.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos_breaks import BREAKS
from tests.chaos_daemon import crash_points

pytestmark = [pytest.mark.timeout(240), pytest.mark.slow]


@pytest.mark.parametrize("name", sorted(BREAKS))
def test_a_deliberately_broken_daemon_moves_its_counter(tmp_path: Path, name: str) -> None:
    counter = BREAKS[name]
    # the operator's kill switch, left active before the third run, is what the daemon must not forget
    plan = {2: True} if name == "kill_switch_forgotten" else None
    run = crash_points(3, tmp_path / "state", seed=2, max_delay=1.5, breaks=name, kill_plan=plan,
                       check_every_restart=False)
    assert "error" not in run.final, run.final["error"]
    assert run.final["fills"] > 0, "the broken daemon traded nothing: the run proves nothing"
    assert run.final[counter] > 0, f"{name} went unseen: {counter} = 0; final: {run.final}"
    assert any(counter in loss for loss in run.losses), run.losses
