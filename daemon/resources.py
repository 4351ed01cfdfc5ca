"""The process's file-descriptor budget: raise the soft RLIMIT_NOFILE to the hard limit at start, and refuse
a webhook connection cap that would leave too few descriptors for the control socket, the state file, the
journal and the broker connections (so a flooded webhook can never stop `ordergate kill` or SIGUSR1)."""

from __future__ import annotations

import resource
from dataclasses import dataclass

from config.settings import Settings

# Descriptors kept out of the webhook's reach: journal (+ WAL, SHM), state file writes, lock files, control
# socket clients, broker REST/websocket/TWS sockets, metrics, the event loop's own, the interpreter's.
RESERVED_FDS = 256


@dataclass(frozen=True, slots=True)
class FdLimit:
    """RLIMIT_NOFILE after `raise_fd_limit()`: the soft and hard limits, what the soft one was, any error."""

    soft: int
    hard: int
    was: int
    error: str | None = None


def _finite(limit: int) -> int:
    return 1 << 20 if limit == resource.RLIM_INFINITY else limit


def raise_fd_limit() -> FdLimit:
    """Take the soft open-files limit up to the hard one (a no-op when they are equal); never raises."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = _finite(hard)
    if soft == resource.RLIM_INFINITY or soft >= target:
        return FdLimit(_finite(soft), target, _finite(soft))
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (OSError, ValueError) as exc:  # a seccomp filter (EPERM), or a hard limit above the kernel's
        return FdLimit(soft, target, soft, f"setrlimit(RLIMIT_NOFILE, {target}): {exc}")
    return FdLimit(target, target, soft)


def fd_budget_problem(settings: Settings, limit: FdLimit) -> str | None:
    """One line naming webhook.max_connections (or dashboard.max_connections) when the listeners could use
    descriptors the daemon needs."""
    problem = _webhook_budget_problem(settings, limit)
    if problem:
        return problem
    dashboard = settings.dashboard
    if dashboard.token is None or not dashboard.token.get_secret_value():
        return None
    webhook = settings.webhook
    webhook_on = webhook.token is not None and bool(webhook.token.get_secret_value())
    allowed = limit.soft - RESERVED_FDS - (webhook.max_connections if webhook_on else 0)
    if dashboard.max_connections <= allowed:
        return None
    return (f"invalid setting dashboard.max_connections={dashboard.max_connections}: must be at most {max(allowed, 0)}"
            f" with {limit.soft} open files allowed (RLIMIT_NOFILE, {RESERVED_FDS} kept for the daemon"
            f"{', the rest for the webhook' if webhook_on else ''}); lower it or raise LimitNOFILE (ulimit -n)")


def _webhook_budget_problem(settings: Settings, limit: FdLimit) -> str | None:
    webhook = settings.webhook
    if webhook.token is None or not webhook.token.get_secret_value():
        return None  # the webhook does not listen
    allowed = limit.soft - RESERVED_FDS
    if webhook.max_connections <= allowed:
        return None
    if allowed < 1:
        return (f"invalid setting webhook.max_connections={webhook.max_connections}: the process may open only "
                f"{limit.soft} files (RLIMIT_NOFILE), fewer than the {RESERVED_FDS} it keeps for itself; "
                f"raise LimitNOFILE (ulimit -n)")
    return (f"invalid setting webhook.max_connections={webhook.max_connections}: must be at most {allowed} with "
            f"{limit.soft} open files allowed (RLIMIT_NOFILE, {RESERVED_FDS} kept for the control socket, state "
            f"file, journal and brokers); lower it or raise LimitNOFILE (ulimit -n)")
