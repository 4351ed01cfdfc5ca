"""KillSwitch: the one place every trip goes through — persist, log, alert — and the guard before every send.

A trip is acknowledged (its `kill_switch_tripped` log line, `ordergate kill`'s answer) only after it is on disk:
in the state file, or, when that write fails (full disk, no free descriptors), in the preallocated trip record
that the next start reads. A trip that neither could hold still holds in memory, is logged and alerted as not
durable, shows in `status`, and is written again by `retry()` until it lands.

`guard(intent)` is given to every broker adapter, which calls it right before an order goes on the wire: once the
switch is active no entry leaves the process, however long it waited in a queue. Exits and `flatten` still go.
Without a state manager (the spec's in-memory `KillSwitch()`) it is a plain flag.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import structlog

from pipeline.core.models import OrderIntent, OrderKind
from pipeline.core.ports import SendRefused
from pipeline.safety.state_manager import PersistentStateManager

log = structlog.get_logger("ordergate.kill_switch")
AlertNow = Callable[[str, str, str], None]  # (kind, message, severity): fire and forget


class KillSwitch:
    """Emergency halt: activate / deactivate / is_active, durable when built over a state manager."""

    def __init__(self, state: PersistentStateManager | None = None, *, alert: AlertNow | None = None) -> None:
        self.state = state
        self.alert = alert
        self._memory: dict[str, Any] = {"active": False, "reason": None, "since": None, "source": None}
        self._unwritten = False   # active in memory, the state file does not hold it yet
        self._recorded = False    # ... but the trip record does
        self.write_error: str | None = None

    # -- the spec's API -------------------------------------------------------------------------------
    def activate(self, reason: str = "manual halt", source: str = "manual") -> bool:
        """Trip the switch (keeps the first reason). True when this call tripped it.

        Never raises for a failed write: the switch is active in memory either way, and the failure is logged,
        alerted and retried (see `retry`)."""
        if self.state is None:
            if self._memory["active"]:
                return False
            self._memory = {"active": True, "reason": reason, "since": None, "source": source}
            log.error("kill_switch_tripped", reason=reason, source=source, durable=False, in_memory=True)
            return True
        try:
            tripped = self.state.activate_kill_switch(reason, source=source)
        except OSError as exc:
            self._write_failed(reason, source, exc)
            return True
        if tripped:
            log.error("kill_switch_tripped", reason=reason, source=source, durable=True)
            self._alert("kill_switch_tripped", f"kill switch tripped ({source}): {reason}", "critical")
        return tripped

    def deactivate(self, source: str = "manual") -> bool:
        """Clear the switch; it takes effect once written (raises OSError when the write fails). True when it
        was active."""
        if self.state is None:
            was = bool(self._memory["active"])
            self._memory = {"active": False, "reason": None, "since": None, "source": None}
            return was
        cleared = self.state.deactivate_kill_switch()
        self._unwritten = self._recorded = False
        self.write_error = None
        if cleared:
            log.warning("kill_switch_cleared", source=source)
            self._alert("kill_switch_cleared", f"kill switch cleared ({source})", "info")
        return cleared

    def is_active(self) -> bool:
        if self.state is None:
            return bool(self._memory["active"])
        return self.state.is_kill_switch_active()

    # -- durability -----------------------------------------------------------------------------------
    @property
    def durable(self) -> bool:
        """False while an active switch is held in memory only (a restart now would lose it)."""
        if self.state is None:
            return not self._memory["active"]
        return not self._unwritten or self._recorded

    def info(self) -> dict[str, Any]:
        """{"active", "reason", "since", "source", "durable", "write_error"} for status and `ordergate kill`."""
        base = dict(self._memory) if self.state is None else self.state.kill_switch_info()
        return {**base, "durable": self.durable, "write_error": self.write_error if self._unwritten else None}

    def retry(self) -> bool:
        """Write an unwritten trip to the state file again; True when nothing is left unwritten."""
        if not self._unwritten or self.state is None:
            return True
        try:
            self.state.persist_again()
        except OSError as exc:
            self.write_error = str(exc.strerror or exc)
            if not self._recorded:
                self._record()
            return False
        self._unwritten = self._recorded = False
        self.write_error = None
        log.warning("kill_switch_persisted", reason=self.state.kill_switch_info().get("reason"))
        self._alert("kill_switch_persisted", "the kill switch trip is on disk now", "warning")
        return True

    # -- the send guard -------------------------------------------------------------------------------
    def guard(self, intent: OrderIntent) -> None:
        """Raise SendRefused for an entry while the switch is active (exits and flatten pass)."""
        if intent.kind is OrderKind.ENTRY and self.is_active():
            raise SendRefused(f"kill switch: {self.info().get('reason') or 'active'}", code="kill_switch")

    # -- internals ------------------------------------------------------------------------------------
    def _write_failed(self, reason: str, source: str, exc: OSError) -> None:
        assert self.state is not None
        self._unwritten = True
        self.write_error = str(exc.strerror or exc)
        self._record()
        log.error("kill_switch_tripped", reason=reason, source=source, durable=self._recorded,
                  state_write_error=self.write_error, trip_record=self._recorded)
        where = "kept in the trip record" if self._recorded else "held IN MEMORY ONLY (a restart would lose it)"
        self._alert("kill_switch_not_durable", f"kill switch tripped ({source}): {reason}; the state file write "
                    f"failed ({self.write_error}): {where}; retrying", "critical")

    def _record(self) -> None:
        assert self.state is not None
        try:
            self.state.record_trip()
        except OSError as exc:
            self._recorded = False
            log.error("kill_switch_trip_record_failed", error=str(exc.strerror or exc))
            return
        self._recorded = True

    def _alert(self, kind: str, message: str, severity: str) -> None:
        if self.alert is not None:
            try:
                self.alert(kind, message, severity)
            except Exception:  # an alert sink must never undo or hide a trip
                log.exception("kill_switch_alert_failed", kind=kind)
