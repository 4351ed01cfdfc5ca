"""Logging setup: structlog JSON lines for journald, readable console lines on a TTY, secrets masked.

Every line carries `event`, `level` and `timestamp` (ISO 8601, UTC). The stdlib `logging` tree (aiohttp,
ib_async, alpaca-py, asyncio) is routed through the same processors, so third-party lines come out in the
same format. Any key whose name contains token / secret / api_key / password / webhook_url (at any depth) is
masked.
"""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Mapping
from typing import Any, Literal, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

LogFormat = Literal["auto", "json", "console"]

MASK = "***"
SECRET_MARKERS = ("token", "secret", "api_key", "apikey", "password", "passwd", "authorization", "webhook_url")
_HANDLER_MARK = "_ordergate_handler"
_MAX_DEPTH = 6


@functools.lru_cache(maxsize=4096)
def _is_secret_name(name: str) -> bool:
    lowered = name.lower()
    return any(marker in lowered for marker in SECRET_MARKERS)


def _is_secret_key(key: object) -> bool:
    """True for a key naming a secret (answers cached: log lines repeat the same keys)."""
    return _is_secret_name(key if isinstance(key, str) else str(key))


def _mask_value(value: Any, depth: int) -> Any:
    if depth > _MAX_DEPTH:
        return value
    if isinstance(value, Mapping):
        return {k: (MASK if _is_secret_key(k) else _mask_value(v, depth + 1)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_mask_value(v, depth + 1) for v in value]
    return value


def mask_secrets(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """Processor: replace the value of any secret-looking key (also inside nested dicts/lists) with ***."""
    for key, value in event_dict.items():
        if _is_secret_key(key):
            event_dict[key] = MASK
        elif isinstance(value, Mapping | list | tuple):
            event_dict[key] = _mask_value(value, 1)
    return event_dict


def _is_tty(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def _level_number(level: str | int) -> int:
    if isinstance(level, int):
        return level
    number = logging.getLevelName(str(level).upper())
    if not isinstance(number, int):
        raise ValueError(f"logging.level must be DEBUG, INFO, WARNING or ERROR, got {level!r}")
    return number


def _renderer(use_json: bool, stream: TextIO) -> list[Processor]:
    if use_json:
        return [structlog.processors.format_exc_info, structlog.processors.JSONRenderer()]
    return [structlog.dev.ConsoleRenderer(colors=_is_tty(stream))]


def _shared_processors() -> list[Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]


class _SysStream:
    """sys.stdout or sys.stderr as it is at each write, not as it was when logging was configured: a structlog
    logger caches its output on first use, so without this a process that swaps the stream later (pytest's capture
    between tests, a redirect) would keep writing to the old, possibly closed, one."""

    def __init__(self, name: Literal["stdout", "stderr"]) -> None:
        self._name = name

    def write(self, text: str) -> int:
        return getattr(sys, self._name).write(text)

    def flush(self) -> None:
        getattr(sys, self._name).flush()


_STDOUT, _STDERR = _SysStream("stdout"), _SysStream("stderr")  # one each: structlog keeps a lock per file


def _output(stream: TextIO) -> Any:
    if stream is sys.stdout:
        return _STDOUT
    if stream is sys.stderr:
        return _STDERR
    return stream


def configure_logging(level: str | int = "INFO", fmt: LogFormat = "auto", stream: TextIO | None = None) -> None:
    """Configure structlog and the stdlib root logger to write one line per event to `stream` (stdout).

    fmt 'auto' means JSON unless `stream` is a TTY. Safe to call again (replaces the previous setup), but
    loggers already used keep their first configuration (cache_logger_on_first_use).
    """
    stream = sys.stdout if stream is None else stream
    if fmt not in ("auto", "json", "console"):
        raise ValueError(f"logging.format must be auto, json or console, got {fmt!r}")
    number = _level_number(level)
    use_json = fmt == "json" or (fmt == "auto" and not _is_tty(stream))
    renderer = _renderer(use_json, stream)
    structlog.configure(
        processors=[
            *_shared_processors(),
            mask_secrets,
            structlog.processors.StackInfoRenderer(),
            *renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(number),
        logger_factory=structlog.WriteLoggerFactory(file=_output(stream)),
        cache_logger_on_first_use=True,
    )
    _route_stdlib(number, _output(stream), renderer)


def _route_stdlib(level: int, stream: Any, renderer: list[Processor]) -> None:
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*_shared_processors(), structlog.stdlib.add_logger_name, structlog.stdlib.ExtraAdder()],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, mask_secrets, *renderer],
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    setattr(handler, _HANDLER_MARK, True)
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _HANDLER_MARK, False)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(True)


def reset_logging() -> None:
    """Undo configure_logging (tests): structlog defaults and no ordergate handler on the root logger."""
    structlog.reset_defaults()
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _HANDLER_MARK, False)]:
        root.removeHandler(old)
    logging.captureWarnings(False)


def get_logger(name: str | None = None, **initial: Any) -> Any:
    """A structlog logger (bound to `initial` values), e.g. get_logger(__name__, component="router")."""
    if name:
        initial = {"logger": name, **initial}
    logger = structlog.get_logger()
    return logger.bind(**initial) if initial else logger
