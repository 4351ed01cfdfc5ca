"""Logging: JSON lines with event/level/timestamp, stdlib routed through structlog, secrets masked."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from datetime import datetime

import pytest
import structlog

from daemon.logging import configure_logging, get_logger, reset_logging


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    level = root.level
    yield
    reset_logging()
    root.setLevel(level)


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def test_json_lines_have_event_level_timestamp() -> None:
    out = io.StringIO()
    configure_logging("INFO", "auto", stream=out)  # StringIO is not a TTY -> JSON
    get_logger("ordergate.test").info("bar_received", symbol="AAPL", close=101.5)
    structlog.get_logger().warning("queue_deep", depth=900)
    records = lines(out)
    assert [r["event"] for r in records] == ["bar_received", "queue_deep"]
    assert [r["level"] for r in records] == ["info", "warning"]
    for record in records:
        ts = datetime.fromisoformat(record["timestamp"].replace("Z", "+00:00"))
        assert ts.utcoffset() is not None and ts.utcoffset().total_seconds() == 0
    assert records[0]["symbol"] == "AAPL" and records[0]["logger"] == "ordergate.test"


def test_level_filter() -> None:
    out = io.StringIO()
    configure_logging("WARNING", "json", stream=out)
    log = structlog.get_logger()
    log.info("quiet")
    log.debug("quieter")
    log.error("loud")
    logging.getLogger("aiohttp.client").info("quiet too")
    assert [r["event"] for r in lines(out)] == ["loud"]


def test_stdlib_logging_comes_out_as_json() -> None:
    out = io.StringIO()
    configure_logging("INFO", "json", stream=out)
    logging.getLogger("ib_async.client").warning("connection lost to %s:%d", "127.0.0.1", 7497)
    try:
        raise ValueError("bad fill")
    except ValueError:
        logging.getLogger("aiohttp.server").exception("handler failed")
    first, second = lines(out)
    assert first["event"] == "connection lost to 127.0.0.1:7497"
    assert first["level"] == "warning" and first["logger"] == "ib_async.client" and "timestamp" in first
    assert second["level"] == "error" and "ValueError: bad fill" in second["exception"]


def test_structlog_exceptions_are_rendered() -> None:
    out = io.StringIO()
    configure_logging("INFO", "json", stream=out)
    try:
        raise KeyError("x")
    except KeyError:
        structlog.get_logger().exception("crashed")
    (record,) = lines(out)
    assert record["level"] == "error" and "KeyError" in record["exception"]


def test_secrets_are_masked() -> None:
    out = io.StringIO()
    configure_logging("INFO", "json", stream=out)
    structlog.get_logger().info(
        "connecting",
        api_key="PKSECRET1",
        ALPACA_SECRET_KEY="SECRET2",
        webhook_token="SECRET3",
        headers={"Authorization": "Bearer SECRET4", "accept": "json"},
        accounts=[{"password": "SECRET5", "id": 1}],
        host="127.0.0.1",
    )
    logging.getLogger("x").info("stdlib", extra={"token": "SECRET6"})
    text = out.getvalue()
    for n in range(1, 7):
        assert f"SECRET{n}" not in text
    record = lines(out)[0]
    assert record["api_key"] == "***" and record["ALPACA_SECRET_KEY"] == "***"
    assert record["headers"] == {"Authorization": "***", "accept": "json"}
    assert record["accounts"] == [{"password": "***", "id": 1}]
    assert record["host"] == "127.0.0.1"
    assert lines(out)[1]["token"] == "***", "stdlib extras are kept, and masked"


def test_console_on_a_tty() -> None:
    out = FakeTTY()
    configure_logging("INFO", "auto", stream=out)
    structlog.get_logger().info("started", broker="paper", api_key="PKSECRET")
    text = out.getvalue()
    assert "started" in text and "paper" in text and "PKSECRET" not in text
    with pytest.raises(json.JSONDecodeError):
        json.loads(text.splitlines()[0])


def test_json_forced_on_a_tty() -> None:
    out = FakeTTY()
    configure_logging("INFO", "json", stream=out)
    structlog.get_logger().info("started")
    assert lines(out)[0]["event"] == "started"


def test_reconfigure_does_not_duplicate_stdlib_lines() -> None:
    out = io.StringIO()
    configure_logging("INFO", "json", stream=out)
    configure_logging("INFO", "json", stream=out)
    logging.getLogger("dup").warning("once")
    assert [r["event"] for r in lines(out)] == ["once"]


@pytest.mark.parametrize(("level", "fmt"), [("LOUD", "json"), ("INFO", "xml")])
def test_bad_arguments_are_named(level: str, fmt: str) -> None:
    with pytest.raises(ValueError, match="logging"):
        configure_logging(level, fmt, stream=io.StringIO())  # type: ignore[arg-type]
