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
import stat
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from config.files import UnreadableFile, json_depth, read_regular_file
from pipeline.core.clock import LiveClock
from pipeline.safety.atomic_file import atomic_write_bytes, cleanup_temp_files

if TYPE_CHECKING:
    from pipeline.core.calendar import MarketCalendar
    from pipeline.core.clock import Clock

SCHEMA_VERSION = 1
DEFAULT_FILENAME = "state.json"
NEW_YORK = ZoneInfo("America/New_York")
MAX_STATE_BYTES = 1024 * 1024  # the file is ~400 bytes
MAX_STATE_DEPTH = 32  # the schema nests 2 levels

State = dict[str, Any]
_CLOSED_BREAKER: dict[str, Any] = {"consecutive_losses": 0, "open": False, "open_until": None}  # never mutated


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


def _copy_nested(value: dict[str, Any]) -> dict[str, Any]:
    """A copy of one nested object of the state: a flat dict of scalars shallowly, anything deeper deeply."""
    copy = value.copy()
    for key, v in value.items():
        if type(v) is dict or type(v) is list:
            copy[key] = _copy_json(v)
    return copy


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


TRIP_RECORD_FILENAME = "kill_switch.trip"
TRIP_RECORD_BYTES = 4096


class TripRecord:
    """A preallocated file, held open for the life of the daemon, that a trip is written into in place when the
    state file cannot be written (a full disk, no free file descriptors): no new block and no new descriptor is
    needed, so the trip still reaches the disk. Start-up and the CLI read it and hold the kill switch active; it
    is cleared once the state file holds the switch again."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        self.holds_trip = False

    def open(self) -> None:
        """Create (mode 0600) and preallocate the file, and keep it open."""
        if self._fd is not None:
            return
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK, 0o600)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise OSError(f"{self.path} is not a regular file")
            os.posix_fallocate(fd, 0, TRIP_RECORD_BYTES)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        self.holds_trip = read_trip_record(self.path) is not None

    def write(self, kill_switch: dict[str, Any]) -> None:
        """Write the active kill switch in place and fsync it (raises OSError when even that fails)."""
        if self._fd is None:
            raise OSError(f"{self.path} is not open")
        record = {k: kill_switch.get(k) for k in ("active", "reason", "since", "source")}
        record["reason"] = str(record.get("reason") or "")[:1000]
        data = json.dumps(record, sort_keys=True).encode()
        os.pwrite(self._fd, data.ljust(TRIP_RECORD_BYTES, b" "), 0)
        os.fsync(self._fd)
        self.holds_trip = True

    def clear(self) -> None:
        """The state file holds the switch again: blank the record (only when it holds something)."""
        if self._fd is None or not self.holds_trip:
            return
        os.pwrite(self._fd, b" " * TRIP_RECORD_BYTES, 0)
        os.fsync(self._fd)
        self.holds_trip = False

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __del__(self) -> None:
        with suppress(OSError):
            self.close()


def read_trip_record(path: str | Path) -> dict[str, Any] | None:
    """The trip a failed state write left in the trip record, or None when there is none (or no file).

    Anything in the file that is not a readable record still counts as a trip (fail closed)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return {"active": True, "reason": f"trip record {path} is unreadable: {exc.strerror or exc}",
                "since": None, "source": "trip_record"}
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return {"active": True, "reason": f"trip record {path} is not a regular file", "since": None,
                    "source": "trip_record"}
        data = os.pread(fd, TRIP_RECORD_BYTES, 0)
    finally:
        os.close(fd)
    text = data.replace(b"\0", b" ").strip()
    if not text:
        return None
    try:
        record = json.loads(text)
        if not isinstance(record, dict) or record.get("active") is not True:
            raise ValueError("not a trip")
        return {"active": True, "reason": str(record.get("reason") or "kill switch"),
                "since": record.get("since") if isinstance(record.get("since"), str) else None,
                "source": str(record.get("source") or "trip_record")}
    except ValueError:
        return {"active": True, "reason": f"trip record {path} holds something unreadable", "since": None,
                "source": "trip_record"}


def _with_trip_record(state: State, path: Path) -> State:
    """`state` with the kill switch active when the trip record beside the state file holds a trip."""
    record = read_trip_record(path.with_name(TRIP_RECORD_FILENAME))
    if record is not None and not state["kill_switch"]["active"]:
        if _valid_iso(record.get("since")) is None:
            record["since"] = None
        record["reason"] = f"{record['reason']} (kept in {TRIP_RECORD_FILENAME}: the state file write had failed)"
        state["kill_switch"] = record
    return state


def _valid_iso(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return None
    return value


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
    state = _with_trip_record(state, path)
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
        _clear_trip_record(path.with_name(TRIP_RECORD_FILENAME))
        return new_state


def _clear_trip_record(path: Path) -> None:
    """The state file was written (it holds the switch now): blank a trip record that holds a trip."""
    if read_trip_record(path) is None or not path.is_file():
        return
    record = TripRecord(path)
    record.open()
    try:
        record.holds_trip = True
        record.clear()
    finally:
        record.close()


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
        clock: Clock | None = None,
        calendar: MarketCalendar | None = None,
        filename: str = DEFAULT_FILENAME,
        durable: bool = True,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.path = self.state_dir / filename
        self._clock = clock if clock is not None else LiveClock()  # the daemon's: the live clock
        self._calendar = calendar
        self._day_window: tuple[datetime, datetime, str] | None = None  # [start, end) of the last New York day
        self._lock = threading.RLock()
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        cleanup_temp_files(self.state_dir, filename)
        self.load_error: str | None = None
        # fsync'd writes; a simulated run (replay, bench) in a throwaway directory may turn this off
        self.durable = durable
        self._unwritten = False
        self.write_error: str | None = None  # why the last write failed (None once one succeeds)
        self.trip_record = TripRecord(self.state_dir / TRIP_RECORD_FILENAME) if durable else None
        self._state = self._load_or_fail_closed()
        if durable:
            self._check_writable()

    # ------------------------------------------------------------------------------------------ loading

    def _load_or_fail_closed(self) -> State:
        state, data, error = _load(self.path)
        if error is None:
            return _with_trip_record(state if state is not None else default_state(), self.path)
        self.load_error = error
        failed = _fail_closed_state(_fail_reason(error), self._now_iso())
        self._preserve_bad_file(data)
        try:
            self._persist(failed)
        except OSError:
            pass  # stays active in memory; the daemon logs load_error
        return failed

    def _check_writable(self) -> None:
        """A start that cannot write beside its state file fails closed: kill switch active.

        The probe is the trip record itself (created and preallocated in the state directory), so a clean start
        still writes no state file. A trip the record holds is handed to the state file at once."""
        assert self.trip_record is not None
        try:
            self.trip_record.open()
            if self.trip_record.holds_trip:
                self._persist(self._state)
        except OSError as exc:
            error = f"state directory {self.state_dir} cannot be written: {exc.strerror or exc}"
            self.load_error = self.load_error or error
            if not self._state["kill_switch"]["active"]:
                self._state = _fail_closed_state(_fail_reason(error), self._now_iso())

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

    def today(self) -> str:
        """The trading day (ISO date) the daily figures are kept for, now."""
        return self._today()

    def _today(self) -> str:
        now = self._clock.now()
        window = self._day_window
        if window is not None and window[0] <= now < window[1]:
            return window[2]  # still the same New York day: no timezone conversion (asked on every decision)
        if self._calendar is not None:
            day = self._calendar.trading_day(now)
        else:
            day = now.astimezone(NEW_YORK).date()
        start = datetime.combine(day, dtime.min, NEW_YORK)
        self._day_window = (start.astimezone(UTC), (start + timedelta(days=1)).replace(tzinfo=NEW_YORK).astimezone(UTC),
                            day.isoformat())
        if not self._day_window[0] <= now < self._day_window[1]:  # a calendar with days of its own: never cached
            self._day_window = None
        return day.isoformat()

    def _persist(self, state: State) -> None:
        try:
            with state_file_lock(self.path):
                _write_state(self.path, state, self.durable)
        except OSError as exc:
            self.write_error = str(exc.strerror or exc)
            raise
        self.write_error = None
        if self.trip_record is not None:
            with suppress(OSError):  # a record left holding a trip only errs on the safe side at the next start
                self.trip_record.clear()

    def persist_again(self) -> None:
        """Write the state as it is in memory (after a failed write; raises OSError while it still fails)."""
        with self._lock:
            self._persist(self._state)

    def record_trip(self) -> None:
        """Write the active kill switch into the trip record (when the state file cannot be written)."""
        if self.trip_record is None:
            raise OSError("no trip record in a non-durable run")
        self.trip_record.write(self._state["kill_switch"])

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
        """A copy of the state to edit (one per change: every P&L update): what `_copy_json` gives for this
        two-level document — the nested objects (kill switch, breaker) copied, their scalar values shared —
        without recursing. Every state held here is built from scalars at its second level (`default_state`,
        `validate_state`, the fail-closed and trip-record states); anything nested deeper is copied deeply."""
        state = self._state
        draft = state.copy()
        for key, value in state.items():
            if type(value) is dict:
                draft[key] = _copy_nested(value)
            elif type(value) is list:
                draft[key] = _copy_json(value)
        return draft

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
            if self._state["circuit_breaker"] == _CLOSED_BREAKER:
                return  # already reset: nothing would change (`_commit` would store and write nothing either)
            draft = self._draft()
            draft["circuit_breaker"] = dict(_CLOSED_BREAKER)
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
