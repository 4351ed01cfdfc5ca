"""The persistent state file: kill switch, daily P&L, consecutive-loss circuit breaker, day rollover.

The file (`<state_dir>/state.json`) is replaced atomically (temp file, fsync, rename, fsync dir) on every
change and never otherwise, so it costs nothing per bar. It fails closed: a missing file is a clean start,
but an unreadable, corrupt, mistyped or unknown-version file starts with the kill switch ACTIVE and a
reason naming the file and what is wrong with it (`PersistentStateManager.load_error`).

Schema (version 1)::

    {"version": 1,
     "kill_switch": {"active": bool, "reason": str|null, "since": iso|null, "source": str|null},
     "daily_pnl": float, "trading_day": "YYYY-MM-DD"|null,
     "circuit_breaker": {"consecutive_losses": int, "open": bool, "open_until": iso|null},
     "updated_at": iso|null}

`read_state_file` and `update_state_file` give the CLI the same rules while the daemon is down;
`update_state_file` holds an fcntl lock so two writers never interleave a read-modify-write.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from config.files import UnreadableFile, json_depth, read_regular_file
from pipeline.atomic_file import atomic_write_bytes, cleanup_temp_files

if TYPE_CHECKING:
    from pipeline.calendar import MarketCalendar
    from pipeline.clock import Clock

SCHEMA_VERSION = 1
DEFAULT_FILENAME = "state.json"
NEW_YORK = ZoneInfo("America/New_York")
MAX_STATE_BYTES = 1024 * 1024  # the file is ~400 bytes
MAX_STATE_DEPTH = 32  # the schema nests 2 levels

State = dict[str, Any]


class StateFileError(ValueError):
    """The state file cannot be trusted; the message names the file and the reason."""


# ----------------------------------------------------------------------------------------------- schema


def default_state() -> State:
    """A clean state: kill switch off, no P&L, breaker closed."""
    return {
        "version": SCHEMA_VERSION,
        "kill_switch": {"active": False, "reason": None, "since": None, "source": None},
        "daily_pnl": 0.0,
        "trading_day": None,
        "circuit_breaker": {"consecutive_losses": 0, "open": False, "open_until": None},
        "updated_at": None,
    }


def _copy_json(value: Any) -> Any:
    """A deep copy of JSON-shaped data (dicts, lists, scalars): what copy.deepcopy does here, several times
    faster (a draft is taken for every P&L update)."""
    if isinstance(value, dict):
        return {k: _copy_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy_json(v) for v in value]
    return value


def _fail_closed_state(reason: str, since: str | None) -> State:
    state = default_state()
    state["kill_switch"] = {"active": True, "reason": reason, "since": since, "source": "state_file"}
    return state


def _require(obj: dict[str, Any], key: str, types: tuple[type, ...], where: str) -> Any:
    if key not in obj:
        raise StateFileError(f"missing field {where}{key}")
    value = obj[key]
    if isinstance(value, bool) and bool not in types:
        raise StateFileError(f"field {where}{key} must be {_type_names(types)}, got bool")
    if not isinstance(value, types):
        raise StateFileError(f"field {where}{key} must be {_type_names(types)}, got {type(value).__name__}")
    return value


def _type_names(types: tuple[type, ...]) -> str:
    return " or ".join("null" if t is type(None) else t.__name__ for t in types)


def _require_iso(obj: dict[str, Any], key: str, where: str) -> str | None:
    value = _require(obj, key, (str, type(None)), where)
    if value is not None:
        try:
            datetime.fromisoformat(value)
        except ValueError:
            raise StateFileError(f"field {where}{key} is not an ISO timestamp: {value[:40]!r}") from None
    return value


def validate_state(raw: Any) -> State:
    """Check a decoded state document field by field; return a normalised copy or raise StateFileError."""
    if not isinstance(raw, dict):
        raise StateFileError(f"top level must be an object, got {type(raw).__name__}")
    version = raw.get("version")
    if version != SCHEMA_VERSION or isinstance(version, bool):
        raise StateFileError(f"unknown schema version {version!r} (this ordergate reads version {SCHEMA_VERSION})")
    kill = _require(raw, "kill_switch", (dict,), "")
    breaker = _require(raw, "circuit_breaker", (dict,), "")
    pnl = float(_require(raw, "daily_pnl", (int, float), ""))
    if not math.isfinite(pnl):
        raise StateFileError("field daily_pnl must be finite")
    day = _require(raw, "trading_day", (str, type(None)), "")
    if day is not None:
        try:
            date.fromisoformat(day)
        except ValueError:
            raise StateFileError(f"field trading_day is not a date: {day[:40]!r}") from None
    losses = _require(breaker, "consecutive_losses", (int,), "circuit_breaker.")
    if losses < 0:
        raise StateFileError("field circuit_breaker.consecutive_losses must be >= 0")
    return {
        "version": SCHEMA_VERSION,
        "kill_switch": {
            "active": _require(kill, "active", (bool,), "kill_switch."),
            "reason": _require(kill, "reason", (str, type(None)), "kill_switch."),
            "since": _require_iso(kill, "since", "kill_switch."),
            "source": _require(kill, "source", (str, type(None)), "kill_switch."),
        },
        "daily_pnl": pnl,
        "trading_day": day,
        "circuit_breaker": {
            "consecutive_losses": losses,
            "open": _require(breaker, "open", (bool,), "circuit_breaker."),
            "open_until": _require_iso(breaker, "open_until", "circuit_breaker."),
        },
        "updated_at": _require_iso(raw, "updated_at", ""),
    }


def encode_state(state: State) -> bytes:
    """The bytes written to disk (stable key order, one trailing newline)."""
    return json.dumps(state, sort_keys=True, indent=2, allow_nan=False).encode() + b"\n"


# ------------------------------------------------------------------------------------------- file access


def _load(path: Path) -> tuple[State | None, bytes | None, str | None]:
    """(state, raw bytes, error). State None + error None means the file is missing.

    Only a regular file is read (opened non-blocking and checked with fstat: a FIFO cannot hang the daemon or
    the CLI, a device is not read), at most MAX_STATE_BYTES of it, and only when it nests at most
    MAX_STATE_DEPTH levels (a deep document must not reach the recursive decoder)."""
    try:
        data = read_regular_file(path, MAX_STATE_BYTES)
    except FileNotFoundError:
        return None, None, None
    except UnreadableFile as exc:
        return None, None, f"state file {path} {exc}"
    except OSError as exc:
        return None, None, f"state file {path} is unreadable: {exc.strerror or exc}"
    if not data.strip():
        return None, data, f"state file {path} is empty"
    if json_depth(data) > MAX_STATE_DEPTH:
        return None, data, f"state file {path} is corrupt (nested more than {MAX_STATE_DEPTH} levels deep)"
    try:
        raw = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        return None, data, f"state file {path} is corrupt (not valid JSON: {exc})"
    try:
        return validate_state(raw), data, None
    except StateFileError as exc:
        return None, data, f"state file {path} is invalid: {exc}"


def read_state_file(path: str | Path, now: datetime | None = None) -> State:
    """Read a state file with the daemon's fail-closed rules (for the CLI while the daemon is down).

    Returns the state plus `"load_error"` (None, or why the file could not be trusted, in which case the kill
    switch is reported active). A missing file reads as a clean state.
    """
    path = Path(path)
    state, _, error = _load(path)
    if error is not None:
        state = _fail_closed_state(_fail_reason(error), now.isoformat() if now else None)
    elif state is None:
        state = default_state()
    state["load_error"] = error
    return state


def _fail_reason(error: str) -> str:
    return f"{error}; kill switch held active until `ordergate resume`"


@contextmanager
def state_file_lock(path: str | Path) -> Iterator[None]:
    """An exclusive fcntl lock on `.<name>.lock` beside the state file (released on exit or process death)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path.parent / f".{path.name}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _write_state(path: Path, state: State, durable: bool = True) -> None:
    atomic_write_bytes(path, encode_state(state), durable=durable)
    _match_directory_owner(path)


def _match_directory_owner(path: Path) -> None:
    """When root edits the file (CLI with the daemon down), give it back to the state directory's owner."""
    if os.geteuid() != 0:
        return
    owner = path.parent.stat()
    if path.stat().st_uid != owner.st_uid:
        os.chown(path, owner.st_uid, owner.st_gid)


def update_state_file(
    path: str | Path, mutate: Callable[[State], State | None], now: datetime | None = None
) -> State:
    """Locked read-modify-write of a state file (CLI `kill`/`resume` with the daemon down).

    `mutate` edits the state in place (or returns a new one); the result is validated and written atomically
    before this returns. A corrupt file is read fail-closed (kill switch active) first, so `resume` repairs it.
    """
    path = Path(path)
    with state_file_lock(path):
        state = read_state_file(path, now)
        state.pop("load_error", None)
        result = mutate(state)
        new_state = validate_state(result if result is not None else state)
        if now is not None:
            new_state["updated_at"] = now.isoformat()
        _write_state(path, new_state)
        return new_state


def apply_kill(state: State, reason: str, source: str, since: datetime | None) -> State:
    """Mutator: activate the kill switch (keeps the first reason when it is already active)."""
    if not state["kill_switch"]["active"]:
        state["kill_switch"] = {
            "active": True,
            "reason": reason,
            "since": since.isoformat() if since else None,
            "source": source,
        }
    return state


def apply_resume(state: State) -> State:
    """Mutator: clear the kill switch."""
    state["kill_switch"] = {"active": False, "reason": None, "since": None, "source": None}
    return state


# -------------------------------------------------------------------------------------------- the manager


class PersistentStateManager:
    """File-backed kill switch, daily P&L and circuit breaker that survive restarts (spec name and methods).

    Every mutation happens on the event loop (a lock guards it anyway). Changes that tighten safety (trip the
    kill switch, record P&L, open the breaker) take effect in memory before the write, so a failed write still
    fails closed; changes that relax it (resume, reset/close the breaker) take effect only once written.
    """

    def __init__(
        self,
        state_dir: str | Path,
        clock: Clock,
        calendar: MarketCalendar | None = None,
        filename: str = DEFAULT_FILENAME,
        durable: bool = True,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.path = self.state_dir / filename
        self._clock = clock
        self._calendar = calendar
        self._lock = threading.RLock()
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        cleanup_temp_files(self.state_dir, filename)
        self.load_error: str | None = None
        # fsync'd writes; a simulated run (replay, bench) in a throwaway directory may turn this off
        self.durable = durable
        self._unwritten = False
        self._state = self._load_or_fail_closed()

    # ------------------------------------------------------------------------------------------ loading

    def _load_or_fail_closed(self) -> State:
        state, data, error = _load(self.path)
        if error is None:
            return state if state is not None else default_state()
        self.load_error = error
        failed = _fail_closed_state(_fail_reason(error), self._now_iso())
        self._preserve_bad_file(data)
        try:
            self._persist(failed)
        except OSError:
            pass  # stays active in memory; the daemon logs load_error
        return failed

    def _preserve_bad_file(self, data: bytes | None) -> None:
        if data is None:
            return
        try:
            atomic_write_bytes(self.path.with_name(self.path.name + ".corrupt"), data)
        except OSError:
            pass

    # ------------------------------------------------------------------------------------------ helpers

    def _now_iso(self) -> str:
        return self._clock.now().isoformat()

    def _today(self) -> str:
        now = self._clock.now()
        if self._calendar is not None:
            return self._calendar.trading_day(now).isoformat()
        return now.astimezone(NEW_YORK).date().isoformat()

    def _persist(self, state: State) -> None:
        with state_file_lock(self.path):
            _write_state(self.path, state, self.durable)

    def _commit(self, new_state: State, tighten: bool) -> bool:
        """Store `new_state` if it differs; write it. Returns True when something changed."""
        if new_state == self._state:
            return False
        new_state["updated_at"] = self._now_iso()
        if not self.durable and new_state["kill_switch"] == self._state["kill_switch"]:
            # a throwaway (simulated) run writes P&L and breaker changes at flush(); the kill switch at once
            self._state = new_state
            self._unwritten = True
            return True
        if tighten:
            self._state = new_state
            self._persist(new_state)
        else:
            self._persist(new_state)
            self._state = new_state
        self._unwritten = False
        return True

    def flush(self) -> None:
        """Write changes held back in non-durable mode (a no-op otherwise)."""
        if self._unwritten:
            self._persist(self._state)
            self._unwritten = False

    def _draft(self) -> State:
        return _copy_json(self._state)

    # ------------------------------------------------------------------------------------------ kill switch

    def activate_kill_switch(self, reason: str, source: str = "manual") -> bool:
        """Trip the kill switch; it is on disk before this returns. Idempotent (keeps the first reason).

        Returns True when this call tripped it. A failed write raises, with the switch active in memory.
        """
        with self._lock:
            if self._state["kill_switch"]["active"]:
                return False
            draft = self._draft()
            apply_kill(draft, str(reason), str(source), self._clock.now())
            return self._commit(draft, tighten=True)

    def deactivate_kill_switch(self) -> bool:
        """Clear the kill switch (written before it takes effect). Returns True when it was active."""
        with self._lock:
            draft = apply_resume(self._draft())
            return self._commit(draft, tighten=False)

    def is_kill_switch_active(self) -> bool:
        return bool(self._state["kill_switch"]["active"])

    def kill_switch_info(self) -> dict[str, Any]:
        """{"active", "reason", "since", "source"}."""
        return dict(self._state["kill_switch"])

    # ------------------------------------------------------------------------------------------ daily P&L

    def record_pnl(self, amount: float) -> float:
        """Add realised P&L to today's total (rolling the day first if needed); returns the new total."""
        value = float(amount)
        if not math.isfinite(value):
            raise ValueError(f"pnl amount must be a finite number, got {amount!r}")
        with self._lock:
            self.check_day_rollover()
            draft = self._draft()
            draft["daily_pnl"] = draft["daily_pnl"] + value
            self._commit(draft, tighten=True)
            return float(self._state["daily_pnl"])

    def get_daily_pnl(self) -> float:
        """Today's realised P&L (0.0 when the stored total belongs to an earlier day)."""
        if self._state["trading_day"] not in (None, self._today()):
            return 0.0
        return float(self._state["daily_pnl"])

    # ------------------------------------------------------------------------------------- circuit breaker

    def increment_circuit_breaker(self) -> int:
        """Count one more consecutive loss; returns the count."""
        with self._lock:
            self.check_day_rollover()
            draft = self._draft()
            draft["circuit_breaker"]["consecutive_losses"] += 1
            self._commit(draft, tighten=True)
            return int(self._state["circuit_breaker"]["consecutive_losses"])

    def reset_circuit_breaker(self) -> None:
        """A win (or an operator) resets the loss count and closes the breaker."""
        with self._lock:
            draft = self._draft()
            draft["circuit_breaker"] = {"consecutive_losses": 0, "open": False, "open_until": None}
            self._commit(draft, tighten=False)

    def open_circuit_breaker(self, until: datetime | None = None) -> None:
        """Open the breaker (no entries) until `until`, or until the next trading day when None."""
        if until is not None and until.tzinfo is None:
            raise ValueError("until must be timezone-aware")
        with self._lock:
            draft = self._draft()
            draft["circuit_breaker"]["open"] = True
            draft["circuit_breaker"]["open_until"] = until.isoformat() if until else None
            self._commit(draft, tighten=True)

    def is_circuit_breaker_open(self) -> bool:
        """Open, its `open_until` not yet reached, and still the day it opened on."""
        breaker = self._state["circuit_breaker"]
        if not breaker["open"]:
            return False
        if self._state["trading_day"] not in (None, self._today()):
            return False
        until = breaker["open_until"]
        return until is None or self._clock.now() < datetime.fromisoformat(until)

    def get_circuit_breaker_status(self) -> dict[str, Any]:
        """{"consecutive_losses", "open" (effective now), "open_until"}."""
        breaker = self._state["circuit_breaker"]
        stale = self._state["trading_day"] not in (None, self._today())
        return {
            "consecutive_losses": 0 if stale else int(breaker["consecutive_losses"]),
            "open": self.is_circuit_breaker_open(),
            "open_until": None if stale else breaker["open_until"],
        }

    # ------------------------------------------------------------------------------------------ rollover

    def check_day_rollover(self) -> bool:
        """On a new New York trading day reset daily P&L and close the breaker. True when it rolled.

        The first call on a state with no day just records today (no roll). The kill switch is never
        touched: only an operator clears it.
        """
        with self._lock:
            today = self._today()
            stored = self._state["trading_day"]
            if stored == today:
                return False
            draft = self._draft()
            draft["trading_day"] = today
            if stored is not None:
                draft["daily_pnl"] = 0.0
                draft["circuit_breaker"] = {"consecutive_losses": 0, "open": False, "open_until": None}
            self._commit(draft, tighten=False)
            return stored is not None

    # ------------------------------------------------------------------------------------------ reporting

    def snapshot(self) -> dict[str, Any]:
        """A copy of the state for `status` (effective P&L/breaker, plus path and load_error)."""
        with self._lock:
            snap = _copy_json(self._state)
        snap["daily_pnl"] = self.get_daily_pnl()
        snap["circuit_breaker"] = self.get_circuit_breaker_status()
        snap["path"] = str(self.path)
        snap["load_error"] = self.load_error
        return snap
