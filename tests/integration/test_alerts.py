"""Alert dispatch: a real local aiohttp receiver, retries, payload shapes, rate limiting, never blocking."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import pytest
import structlog
from aiohttp import web

from adapters.alerts import (
    ALERT_KINDS,
    BROKER_DISCONNECTED,
    BROKER_RECONNECTED,
    GHOST_FILL,
    KILL_SWITCH_TRIPPED,
    ORDER_REJECTED,
    AlertDispatcher,
    BrokerDownMonitor,
    JournalSink,
    LogSink,
    WebhookSink,
    build_alert_sinks,
    webhook_payload,
)
from config.settings import AlertSettings
from pipeline.core.clock import SimulatedClock
from pipeline.core.models import Alert
from pipeline.record.journal import Journal

START = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
WAIT = 10.0  # generous: only an upper bound for things that should happen quickly


class Receiver:
    """A local webhook receiver: answers the scripted statuses first, then 200; can hang until released."""

    def __init__(self) -> None:
        self.statuses: list[int] = []
        self.requests: list[Any] = []
        self.received: list[Any] = []
        self.hang = asyncio.Event()
        self.release = asyncio.Event()
        self.release.set()
        self.port = 0
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append(body)
        if self.hang.is_set():
            await self.release.wait()
        status = self.statuses.pop(0) if self.statuses else 200
        if status == 200:
            self.received.append(body)
        return web.Response(status=status, text="ok" if status == 200 else "nope")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.port = int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        self.release.set()
        if self._runner is not None:
            await self._runner.cleanup()


class RecordingSink:
    """An in-memory sink."""

    name = "recording"

    def __init__(self) -> None:
        self.alerts: list[Alert] = []

    async def send(self, alert: Alert) -> None:
        self.alerts.append(alert)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver()
    await r.start()
    yield r
    await r.stop()


async def eventually(check: Callable[[], bool], timeout: float = WAIT) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


def fast_sink(url: str, fmt: str = "generic", retries: int = 3, timeout: float = 5.0) -> WebhookSink:
    return WebhookSink(url, fmt, retries, timeout, backoff_initial=0.01, backoff_max=0.05)  # type: ignore[arg-type]


def dispatcher(sinks: list[Any], clock: SimulatedClock | None = None, **settings: Any) -> AlertDispatcher:
    return AlertDispatcher(AlertSettings(**settings), clock or SimulatedClock(START), sinks)


# -- delivery and retry -------------------------------------------------------------------------------
async def test_kill_switch_alert_reaches_receiver_after_a_500(receiver: Receiver) -> None:
    receiver.statuses = [500]
    sink = fast_sink(receiver.url)
    d = dispatcher([sink])
    d.start()
    assert await d.alert(KILL_SWITCH_TRIPPED, "kill switch tripped: manual", "critical", reason="manual") is True
    await eventually(lambda: len(receiver.received) == 1)
    await d.stop()
    assert sink.attempts == 2 and len(receiver.requests) == 2
    body = receiver.received[0]
    assert body == {
        "kind": "kill_switch_tripped", "severity": "critical", "message": "kill switch tripped: manual",
        "fields": {"reason": "manual"}, "timestamp": START.isoformat(),
    }
    assert d.stats["delivered"] == 1 and d.stats["failed"] == 0


async def test_retries_are_bounded_and_4xx_is_final(receiver: Receiver) -> None:
    receiver.statuses = [503] * 10
    sink = fast_sink(receiver.url, retries=2)
    d = dispatcher([sink])
    d.start()
    await d.alert(GHOST_FILL, "fill for unknown order")
    await eventually(lambda: d.stats["failed"] == 1)
    assert sink.attempts == 3
    receiver.statuses = [400]
    await d.alert(ORDER_REJECTED, "AAPL rejected")
    await eventually(lambda: d.stats["failed"] == 2)
    assert sink.attempts == 4  # a 400 is not retried
    await d.stop()
    assert receiver.received == []


async def test_connection_errors_are_retried_then_given_up() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sink = fast_sink(f"http://127.0.0.1:{port}/hook", retries=2, timeout=2.0)
    d = dispatcher([sink])
    d.start()
    await d.alert(BROKER_DISCONNECTED, "alpaca down", "critical")
    await eventually(lambda: d.stats["failed"] == 1)
    assert sink.attempts == 3
    await d.stop()


@pytest.mark.parametrize(
    ("fmt", "key"), [("slack", "text"), ("discord", "content")]
)
async def test_chat_payload_shapes(receiver: Receiver, fmt: str, key: str) -> None:
    d = dispatcher([fast_sink(receiver.url, fmt)])
    d.start()
    await d.alert(KILL_SWITCH_TRIPPED, "daily loss limit hit", "critical", loss=-10234.5)
    await eventually(lambda: len(receiver.received) == 1)
    await d.stop()
    body = receiver.received[0]
    assert key in body and "kind" not in body
    text = body[key]
    assert "kill_switch_tripped" in text and "daily loss limit hit" in text and "CRITICAL" in text
    assert "loss: -10234.5" in text
    if fmt == "discord":
        assert body["allowed_mentions"] == {"parse": []}


def test_chat_payloads_are_truncated() -> None:
    alert = Alert(kind=GHOST_FILL, message="x" * 10_000, severity="warning", timestamp=START)
    assert len(webhook_payload(alert, "discord")["content"]) <= 2000
    assert len(webhook_payload(alert, "slack")["text"]) <= 3000
    generic = webhook_payload(Alert(kind=GHOST_FILL, message="m", fields={"at": START, "obj": object()}), "generic")
    json.dumps(generic)  # fields are made JSON-safe
    assert generic["fields"]["at"] == START.isoformat()


def test_bad_webhook_url_names_the_setting() -> None:
    with pytest.raises(ValueError, match=r"alerts\.webhook_url"):
        WebhookSink("ftp://example.invalid/x")
    with pytest.raises(ValueError, match=r"alerts\.webhook_format"):
        WebhookSink("http://127.0.0.1:1/x", "teams")  # type: ignore[arg-type]


# -- rate limiting ------------------------------------------------------------------------------------
async def test_identical_alerts_are_rate_limited() -> None:
    clock = SimulatedClock(START)
    sink = RecordingSink()
    d = dispatcher([sink], clock, min_interval_seconds=300)
    d.start()
    assert await d.alert(GHOST_FILL, "fill abc for unknown order") is True
    assert await d.alert(GHOST_FILL, "fill abc for unknown order") is False
    assert await d.alert(GHOST_FILL, "fill abc for unknown order") is False
    assert await d.alert(GHOST_FILL, "fill xyz for unknown order") is True  # another message
    assert await d.alert(ORDER_REJECTED, "fill abc for unknown order") is True  # another kind
    clock.advance(299)
    assert await d.alert(GHOST_FILL, "fill abc for unknown order") is False
    clock.advance(2)
    assert await d.alert(GHOST_FILL, "fill abc for unknown order") is True
    await eventually(lambda: len(sink.alerts) == 4)
    await d.stop()
    assert d.stats["suppressed"] == 3
    assert sink.alerts[-1].fields == {"suppressed_repeats": 3}
    assert sink.alerts[-1].timestamp == clock.now()


def capturing_logger() -> tuple[Any, list[dict[str, Any]]]:
    """A structlog logger whose events land in a list (independent of the global configuration)."""
    capture = structlog.testing.LogCapture()
    logger = structlog.wrap_logger(None, processors=[capture],
                                   wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG))
    return logger, capture.entries


async def test_every_alert_is_logged_even_without_sinks() -> None:
    logger, logs = capturing_logger()
    d = AlertDispatcher(AlertSettings(min_interval_seconds=300), SimulatedClock(START), [], logger=logger)
    await d.alert(KILL_SWITCH_TRIPPED, "tripped", "critical", reason="sigusr1")
    await d.alert(KILL_SWITCH_TRIPPED, "tripped", "critical", reason="sigusr1")
    events = [(e["event"], e["log_level"]) for e in logs]
    assert events == [("alert", "critical"), ("alert_suppressed", "debug")]
    assert logs[0]["reason"] == "sigusr1" and logs[0]["kind"] == KILL_SWITCH_TRIPPED


# -- never blocking -----------------------------------------------------------------------------------
async def test_hanging_receiver_blocks_neither_caller_nor_other_sinks(receiver: Receiver) -> None:
    receiver.hang.set()
    receiver.release.clear()
    recording = RecordingSink()
    d = dispatcher([fast_sink(receiver.url, timeout=60.0), recording], min_interval_seconds=0)
    d.start()
    for i in range(20):
        await asyncio.wait_for(d.alert(ORDER_REJECTED, f"order {i} rejected"), timeout=WAIT)
    await eventually(lambda: len(recording.alerts) == 20)  # the other sink is not held up
    assert len(receiver.requests) == 1  # the webhook sink is stuck on the first one
    receiver.release.set()
    await eventually(lambda: len(receiver.received) == 20)
    await d.stop()


async def test_full_queue_drops_instead_of_waiting(receiver: Receiver) -> None:
    receiver.hang.set()
    receiver.release.clear()
    d = AlertDispatcher(AlertSettings(min_interval_seconds=0), SimulatedClock(START),
                        [fast_sink(receiver.url, timeout=60.0)], queue_size=3)
    d.start()
    for i in range(10):
        await asyncio.wait_for(d.alert(ORDER_REJECTED, f"order {i}"), timeout=WAIT)
    assert d.stats["dropped"] >= 6
    await d.stop(drain_timeout=0.2)  # bounded even though the receiver still hangs


async def test_stop_drains_the_queue(receiver: Receiver) -> None:
    d = dispatcher([fast_sink(receiver.url)], min_interval_seconds=0)
    for i in range(5):  # queued before start: delivered once started
        await d.alert(ORDER_REJECTED, f"order {i}")
    d.start()
    await d.stop()
    assert [b["message"] for b in receiver.received] == [f"order {i}" for i in range(5)]


# -- other sinks --------------------------------------------------------------------------------------
async def test_journal_sink_writes_alert_rows(any_journal: Journal) -> None:
    journal = any_journal  # on SQLite and on PostgreSQL (the sink writes through Journal.run)
    sinks = build_alert_sinks(AlertSettings(), journal)
    assert [type(s) for s in sinks] == [JournalSink]
    d = dispatcher(sinks)
    d.start()
    await d.alert(KILL_SWITCH_TRIPPED, "tripped", "critical", reason="daily loss")
    await d.stop()
    rows = await journal.query("SELECT kind, severity, message, fields, ts FROM alerts")
    assert rows == [{
        "kind": KILL_SWITCH_TRIPPED, "severity": "critical", "message": "tripped",
        "fields": json.dumps({"reason": "daily loss"}), "ts": START.isoformat(),
    }]


def test_build_sinks_adds_webhook_when_configured() -> None:
    sinks = build_alert_sinks(AlertSettings(webhook_url="https://hooks.example.invalid/x", webhook_format="slack"))
    assert len(sinks) == 1 and isinstance(sinks[0], WebhookSink) and sinks[0].format == "slack"


async def test_log_sink_logs_at_severity() -> None:
    logger, logs = capturing_logger()
    await LogSink(logger).send(Alert(kind=GHOST_FILL, message="m", severity="critical", fields={"kind": "shadow"}))
    assert logs[0]["log_level"] == "critical" and logs[0]["kind"] == GHOST_FILL and logs[0]["field_kind"] == "shadow"


async def test_broker_down_alerts_once_per_outage() -> None:
    clock = SimulatedClock(START)
    sink = RecordingSink()
    d = dispatcher([sink], clock, min_interval_seconds=0)
    d.start()
    monitor = BrokerDownMonitor(d, clock, threshold_seconds=60)
    await monitor.check("alpaca", False)
    clock.advance(30)
    await monitor.check("alpaca", False)
    clock.advance(31)
    await monitor.check("alpaca", False)
    clock.advance(60)
    await monitor.check("alpaca", False)
    await monitor.check("alpaca", True)
    await monitor.check("alpaca", True)
    await d.stop()
    assert [a.kind for a in sink.alerts] == [BROKER_DISCONNECTED, BROKER_RECONNECTED]
    assert sink.alerts[0].fields == {"broker": "alpaca", "down_seconds": 61.0}


def test_alert_kinds_are_distinct() -> None:
    assert len(ALERT_KINDS) == 9
