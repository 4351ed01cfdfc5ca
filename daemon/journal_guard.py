"""A lost journal fails closed: missing, empty or damaged while a broker holds something -> kill switch on.

The ledger is rebuilt from the journal; without it every position at the broker looks like someone else's
and the strategy would enter again beside them. So at start, once the brokers are connected, the daemon
trips the kill switch (exits and `flatten` still go), says why in the log and alerts. A broker that cannot
be asked counts as holding something. The journal begun then is marked, so that once the operator has
resumed, a restart on it (still without orders) does not halt again; a journal lost again does.
Only the daemon calls this: tests and replays build fresh Cores beside scripted broker positions.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import structlog

if TYPE_CHECKING:
    from daemon.core import Core

log = structlog.get_logger("ordergate.daemon")
JOURNAL_LOST_KEY = "journal_lost"  # kv row of a journal begun after a lost one
SHOWN_POSITIONS = 10


async def fail_closed_if_journal_lost(core: Core) -> str | None:
    """Trip the kill switch (source "journal") if the journal is lost beside broker holdings; returns the reason."""
    journal = core.journal
    if journal is None or not journal.condition.lost:
        return None
    condition = journal.condition
    marker = await journal.get_kv(JOURNAL_LOST_KEY) if condition.state == "empty" else None
    if marker:  # the journal begun after a loss that was already halted on (and maybe resumed since)
        log.info("journal_begun_after_loss", since=marker.get("since"), reason=marker.get("reason"))
        return None
    if condition.state == "damaged":
        log.error("journal_damaged", path=str(journal.path), error=condition.detail,
                  preserved=list(condition.preserved))
    held, open_orders, unknown = await _broker_holdings(core)
    if not held and not open_orders and not unknown:
        log.info("journal_new", state=condition.state, detail=condition.detail, reason="no broker holds anything")
        return None
    what = condition.detail + (f"; kept as {', '.join(condition.preserved)}" if condition.preserved else "")
    shown = ", ".join(held[:SHOWN_POSITIONS]) + (", ..." if len(held) > SHOWN_POSITIONS else "")
    found = f"{len(held)} positions ({shown}) and {open_orders} open orders at the broker"
    if unknown:
        found += f", and {', '.join(unknown)} could not be asked"
    reason = (f"journal {condition.state} ({what}) while there are {found}: the ledger cannot be rebuilt;"
              " entries halted until `ordergate resume` (check the account first)")
    core.kill_switch.activate(reason, source="journal")  # logs kill_switch_tripped and alerts it
    try:
        await journal.set_kv(JOURNAL_LOST_KEY, {"reason": reason, "since": core.clock.now().isoformat()})
    except Exception as exc:
        log.error("journal_write_failed", key=JOURNAL_LOST_KEY, error=str(exc))
    log.error("journal_lost", state=condition.state, detail=condition.detail, preserved=list(condition.preserved),
              positions=len(held), open_orders=open_orders, unknown=unknown, kill_switch="active")
    await core.alert("journal_lost", f"kill switch tripped: {reason}", "critical")
    return reason


async def _broker_holdings(core: Core) -> tuple[list[str], int, list[str]]:
    """("broker:SYMBOL" of every position, open order count, brokers that could not be asked)."""
    timeout = core.settings.broker.request_timeout_seconds
    held: list[str] = []
    open_orders = 0
    unknown: list[str] = []
    for name, broker in core.brokers.items():
        if not broker.is_connected():
            unknown.append(name)
            continue
        try:
            positions = await asyncio.wait_for(broker.get_positions(), timeout)
            orders = await asyncio.wait_for(broker.get_open_orders(), timeout)
        except Exception as exc:
            log.error("journal_check_broker_failed", broker=name, error=str(exc))
            unknown.append(name)
            continue
        held.extend(f"{name}:{p.symbol}" for p in positions if p.quantity)
        open_orders += len(orders)
    return held, open_orders, unknown


__all__ = ["JOURNAL_LOST_KEY", "fail_closed_if_journal_lost"]
