"""A daemon killed (SIGKILL) while it holds positions, and the paper broker's book it leaves in its state dir."""

from __future__ import annotations

import time
from pathlib import Path

from adapters.paper import PaperBroker
from config.settings import PaperSettings
from pipeline.core.clock import SimulatedClock
from tests.daemon_proc import DaemonProcess, status


def paper_book(state_dir: Path) -> PaperBroker:
    """The paper broker's book as the daemon of `state_dir` left it on disk."""
    return PaperBroker(PaperSettings(), SimulatedClock(), state_path=state_dir / "paper_book.json")


def crash_holding_positions(state_dir: Path, env: dict[str, str], tries: int = 8) -> dict[str, float]:
    """Start the daemon on `state_dir` and SIGKILL it as soon as it reports an open position (or after 60 s), until
    one is caught holding positions (positions come and go; each try is a crash too); what the broker holds after
    the last crash, symbol -> quantity (empty when no try caught one)."""
    held: dict[str, float] = {}
    for _attempt in range(tries):
        daemon = DaemonProcess(state_dir, env=env).start()
        try:
            daemon.wait_for("daemon_ready")
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and status(state_dir)["open_positions"] == 0:
                time.sleep(0.02)
            daemon.kill9()
        finally:
            daemon.stop()
        held = {p.symbol: p.quantity for p in paper_book(state_dir).positions() if p.quantity}
        if held:
            break
    return held
