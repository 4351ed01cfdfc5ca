"""Each file in examples/ (the spec's seven code examples) runs offline: exit 0, expected output.

`test_example_runs` runs each in this interpreter (runpy, as `__main__`, in a scratch directory: fast, in
`make test-fast`); `test_example_runs_in_a_fresh_interpreter` runs each as a subprocess with only the repo on
PYTHONPATH (slow: seven interpreter starts, in `make test`).
"""

from __future__ import annotations

import contextlib
import io
import re
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
# a pattern per example; the risk gate's verdict depends on the wall clock (market hours), so either is fine
EXPECTED = {
    "01_risk_gate.py": r"^Signal (APPROVED for execution|REJECTED: \w+)",
    "02_exit_monitor.py": r"^EXIT: stop_loss \(priority 1\)\nReason: price 170\.0 hit stop 175\.0$",
    "03_instrument_router.py": r"^Instrument: leveraged_etf\nSymbol: SOXL\nReason: ",
    "04_bot_orchestrator.py": r"^(Rejected at stage 'market_price': |Position created: NVDA)",
    "05_state_manager.py": r"^kill switch was active: True; daily P&L 150\.0; circuit breaker \{'consecutive_",
    "06_reconciler.py": r"^Matches: 1\nMismatches: 2\n  GOOGL: ghost - .*\n  MSFT: orphan - ",
    "07_trading_service.py": r"^Trades needed: 3\nEstimated cost: \$\d+\.\d\d\nSold: \d+ AAPL; rebalance ok: ",
}


def test_every_example_has_an_expectation() -> None:
    assert sorted(p.name for p in EXAMPLES.glob("*.py")) == sorted(EXPECTED)


def _printed(stdout: str) -> str:
    """What the example printed, without log lines (they start with a timestamp)."""
    return "\n".join(line for line in stdout.splitlines() if not re.match(r"^\d{4}-\d\d-\d\d ", line))


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_runs(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # run from a scratch directory: the examples write ".bot_state" where they run, as the spec's do
    monkeypatch.chdir(tmp_path)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        runpy.run_path(str(EXAMPLES / name), run_name="__main__")
    assert re.search(EXPECTED[name], _printed(out.getvalue()), re.MULTILINE), out.getvalue()[-3000:]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_runs_in_a_fresh_interpreter(name: str, tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(EXAMPLES / name)], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120, env={"PYTHONPATH": str(EXAMPLES.parent), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert re.search(EXPECTED[name], _printed(proc.stdout), re.MULTILINE), proc.stdout[-3000:]
