"""Alerts an operator must hear about, dispatched without ever blocking trading.

`AlertDispatcher.alert()` logs the alert at once (always), drops an identical repeat (same kind and message
within `[alerts] min_interval_seconds`, counted), and enqueues it for each sink. Every sink has its own
bounded queue and background task, so a slow or hanging chat webhook delays neither the caller nor the
other sinks. Sinks: `LogSink` (structlog), `WebhookSink` (generic JSON, Slack or Discord payloads, bounded
tenacity retries on 5xx / 429 / connection errors) and `JournalSink` (the journal's alerts table).
"""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from typing import Any, Literal
from urllib.parse import urlsplit

import aiohttp
import structlog
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from config.settings import AlertSettings
from pipeline.core.clock import Clock
from pipeline.core.models import Alert
from pipeline.core.ports import AlertSink
from pipeline.record.journal import Journal

KILL_SWITCH_TRIPPED = "kill_switch_tripped"
KILL_SWITCH_CLEARED = "kill_switch_cleared"
DAILY_LOSS_LIMIT = "daily_loss_limit"
CIRCUIT_BREAKER = "circuit_breaker"
RECONCILIATION_MISMATCH = "reconciliation_mismatch"
GHOST_FILL = "ghost_fill"
ORDER_REJECTED = "order_rejected"
BROKER_DISCONNECTED = "broker_disconnected"
BROKER_RECONNECTED = "broker_reconnected"
ALERT_KINDS = frozenset({
    KILL_SWITCH_TRIPPED, KILL_SWITCH_CLEARED, DAILY_LOSS_LIMIT, CIRCUIT_BREAKER, RECONCILIATION_MISMATCH,
    GHOST_FILL, ORDER_REJECTED, BROKER_DISCONNECTED, BROKER_RECONNECTED,
})
SEVERITIES = ("info", "warning", "critical")
WebhookFormat = Literal["generic", "slack", "discord"]

DEFAULT_QUEUE_SIZE = 1000
DEFAULT_DRAIN_TIMEOUT_SECONDS = 5.0
DEFAULT_SINK_TIMEOUT_SECONDS = 120.0
MAX_RATE_KEYS = 1000
SLACK_TEXT_LIMIT = 3000
DISCORD_CONTENT_LIMIT = 2000

_log = structlog.get_logger("ordergate.alerts")
_LOG_LEVEL = {"info": "info", "warning": "warning", "critical": "critical"}


class AlertDeliveryError(Exception):
    """A sink could not deliver an alert (final: not retried)."""


class RetryableDeliveryError(AlertDeliveryError):
    """The receiver answered 5xx or 429: worth another attempt."""


def _jsonable(value: Any) -> Any:
    """Fields made JSON-safe (datetimes as ISO text, anything unknown as str)."""
    return json.loads(json.dumps(value, default=_json_default))


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def format_text(alert: Alert) -> str:
    """One human line per alert plus one per field (Slack and Discord bodies)."""
    lines = [f"[{alert.severity.upper()}] {alert.kind}: {alert.message}"]
    lines.extend(f"- {key}: {value}" for key, value in sorted(alert.fields.items()))
    return "\n".join(lines)


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def webhook_payload(alert: Alert, fmt: WebhookFormat) -> dict[str, Any]:
    """The JSON body for a receiver: generic, Slack (`text`) or Discord (`content`, no pings)."""
    if fmt == "slack":
        return {"text": _truncate(format_text(alert), SLACK_TEXT_LIMIT)}
    if fmt == "discord":
        return {"content": _truncate(format_text(alert), DISCORD_CONTENT_LIMIT), "allowed_mentions": {"parse": []}}
    return {
        "kind": alert.kind,
        "severity": alert.severity,
        "message": alert.message,
        "fields": _jsonable(alert.fields),
        "timestamp": alert.timestamp.isoformat() if alert.timestamp is not None else None,
    }


class LogSink:
    """Writes each alert as one structured log line at its severity."""

    name = "log"

    def __init__(self, logger: Any = None) -> None:
        self.log = logger if logger is not None else _log

    async def send(self, alert: Alert) -> None:
        level = _LOG_LEVEL.get(alert.severity, "warning")
        getattr(self.log, level)("alert_delivered", kind=alert.kind, message=alert.message, **_safe_fields(alert))


def _safe_fields(alert: Alert) -> dict[str, Any]:
    reserved = {"event", "kind", "message", "severity", "level", "timestamp"}
    return {(f"field_{k}" if k in reserved else k): v for k, v in alert.fields.items()}


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, (RetryableDeliveryError, aiohttp.ClientError, TimeoutError))


class WebhookSink:
    """POSTs alerts as JSON to a chat or generic webhook, retrying 5xx / 429 / connection errors.

    The URL is treated as a secret (Slack and Discord URLs are credentials): only its host is logged.
    """

    name = "webhook"

    def __init__(
        self,
        url: str,
        format: WebhookFormat = "generic",
        retries: int = 3,
        timeout: float = 5.0,
        *,
        backoff_initial: float = 0.5,
        backoff_max: float = 10.0,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("alerts.webhook_url: must be an http(s) URL")
        if format not in ("generic", "slack", "discord"):
            raise ValueError(f"alerts.webhook_format: must be generic, slack or discord, got {format!r}")
        self.url = url
        self.host = parts.hostname
        self.format: WebhookFormat = format
        self.retries = max(0, int(retries))
        self.timeout = timeout
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.attempts = 0
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        return self._session

    async def send(self, alert: Alert) -> None:
        """Deliver one alert; raises AlertDeliveryError (or the last connection error) when it gives up."""
        body = json.dumps(webhook_payload(alert, self.format), default=_json_default).encode("utf-8")
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.retries + 1),
            wait=wait_exponential_jitter(initial=self.backoff_initial, max=self.backoff_max,
                                         jitter=self.backoff_initial),
            retry=retry_if_exception(_retryable),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                await self._post_once(body)

    async def _post_once(self, body: bytes) -> None:
        self.attempts += 1
        headers = {"Content-Type": "application/json"}
        async with self._client().post(self.url, data=body, headers=headers) as response:
            await response.read()
            if response.status >= 500 or response.status == 429:
                raise RetryableDeliveryError(f"alert webhook {self.host} answered {response.status}")
            if response.status >= 400:
                raise AlertDeliveryError(f"alert webhook {self.host} answered {response.status}")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class JournalSink:
    """Writes each alert to the journal's `alerts` table."""

    name = "journal"

    def __init__(self, journal: Journal) -> None:
        self.journal = journal

    async def send(self, alert: Alert) -> None:
        row = (
            alert.kind, alert.severity, alert.message,
            json.dumps(alert.fields, default=_json_default, sort_keys=True),
            alert.timestamp.isoformat() if alert.timestamp is not None else None,
        )

        def _write(conn: Any) -> None:
            conn.execute("INSERT INTO alerts(kind, severity, message, fields, ts) VALUES (?,?,?,?,?)", row)

        await self.journal.run(_write)


def build_alert_sinks(settings: AlertSettings, journal: Journal | None = None) -> list[AlertSink]:
    """The configured sinks beyond the log (the dispatcher itself always logs)."""
    sinks: list[AlertSink] = []
    if journal is not None:
        sinks.append(JournalSink(journal))
    if settings.webhook_url is not None:
        sinks.append(WebhookSink(settings.webhook_url.get_secret_value(), settings.webhook_format, settings.retries))
    if settings.apprise_urls:
        from adapters.apprise_sink import AppriseSink

        sinks.append(AppriseSink([u.get_secret_value() for u in settings.apprise_urls]))
    return sinks


class _SinkWorker:
    """One sink's bounded queue and the task that drains it."""

    def __init__(self, sink: AlertSink, queue_size: int) -> None:
        self.sink = sink
        self.name = str(getattr(sink, "name", type(sink).__name__))
        self.queue: asyncio.Queue[Alert] = asyncio.Queue(queue_size)
        self.task: asyncio.Task[None] | None = None


class AlertDispatcher:
    """Fan alerts out to sinks in the background; `alert()` never waits on a sink."""

    def __init__(
        self,
        settings: AlertSettings,
        clock: Clock,
        sinks: list[AlertSink],
        *,
        logger: Any = None,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        sink_timeout: float = DEFAULT_SINK_TIMEOUT_SECONDS,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.log = logger if logger is not None else _log
        self.sink_timeout = sink_timeout
        self._workers = [_SinkWorker(sink, queue_size) for sink in sinks]
        self._last_sent: dict[tuple[str, str], datetime] = {}
        self._repeats: dict[tuple[str, str], int] = {}
        self.stats: dict[str, int] = {"accepted": 0, "suppressed": 0, "dropped": 0, "delivered": 0, "failed": 0}

    @property
    def sinks(self) -> list[AlertSink]:
        return [w.sink for w in self._workers]

    def reconfigure(self, settings: AlertSettings) -> None:
        """Take a reloaded [alerts] section: the repeat interval applies to the next alert. The sinks (webhook URL,
        format, retries) need a restart; config/reload.py keeps them at their running values."""
        self.settings = settings

    # -- intake ---------------------------------------------------------------------------------------
    async def alert(self, kind: str, message: str, severity: str = "warning", **fields: Any) -> bool:
        """Log and enqueue an alert; False when it was suppressed as a repeat. Never waits on a sink."""
        return self.alert_nowait(kind, message, severity, **fields)

    def alert_nowait(self, kind: str, message: str, severity: str = "warning", **fields: Any) -> bool:
        """`alert()` for synchronous callers."""
        severity = severity.lower() if severity.lower() in SEVERITIES else "warning"
        now = self.clock.now()
        key = (kind, message)
        if self._is_repeat(key, now):
            self._repeats[key] = self._repeats.get(key, 0) + 1
            self.stats["suppressed"] += 1
            self.log.debug("alert_suppressed", kind=kind, message=message, repeats=self._repeats[key])
            return False
        repeats = self._repeats.pop(key, 0)
        if repeats:
            fields["suppressed_repeats"] = repeats
        self._remember(key, now)
        alert = Alert(kind=kind, message=message, severity=severity, fields=fields, timestamp=now)
        getattr(self.log, _LOG_LEVEL[severity])("alert", kind=kind, message=message, **_safe_fields(alert))
        self.stats["accepted"] += 1
        self._enqueue(alert)
        return True

    def _is_repeat(self, key: tuple[str, str], now: datetime) -> bool:
        last = self._last_sent.get(key)
        interval = self.settings.min_interval_seconds
        return last is not None and interval > 0 and (now - last).total_seconds() < interval

    def _remember(self, key: tuple[str, str], now: datetime) -> None:
        if len(self._last_sent) >= MAX_RATE_KEYS:
            interval = self.settings.min_interval_seconds
            stale = [k for k, t in self._last_sent.items() if (now - t).total_seconds() >= interval]
            for k in stale or list(self._last_sent)[: MAX_RATE_KEYS // 10]:
                self._last_sent.pop(k, None)
                self._repeats.pop(k, None)
        self._last_sent[key] = now

    def _enqueue(self, alert: Alert) -> None:
        for worker in self._workers:
            try:
                worker.queue.put_nowait(alert)
            except asyncio.QueueFull:
                self.stats["dropped"] += 1
                self.log.error("alert_dropped", sink=worker.name, kind=alert.kind, reason="sink queue full")

    # -- delivery -------------------------------------------------------------------------------------
    def start(self) -> None:
        """Start one delivery task per sink (idempotent)."""
        for worker in self._workers:
            if worker.task is None or worker.task.done():
                worker.task = asyncio.create_task(self._run(worker), name=f"alerts-{worker.name}")

    async def _run(self, worker: _SinkWorker) -> None:
        while True:
            alert = await worker.queue.get()
            try:
                await self._deliver(worker, alert)
            finally:
                worker.queue.task_done()

    async def _deliver(self, worker: _SinkWorker, alert: Alert) -> None:
        try:
            await asyncio.wait_for(worker.sink.send(alert), self.sink_timeout)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.stats["failed"] += 1
            self.log.error("alert_delivery_failed", sink=worker.name, kind=alert.kind, error=str(exc)[:200],
                           error_type=type(exc).__name__)
        else:
            self.stats["delivered"] += 1

    async def stop(self, drain_timeout: float = DEFAULT_DRAIN_TIMEOUT_SECONDS) -> None:
        """Deliver what is queued (up to `drain_timeout` seconds), then stop the tasks and close the sinks."""
        running = [w for w in self._workers if w.task is not None and not w.task.done()]
        if running:
            drains = [asyncio.ensure_future(w.queue.join()) for w in running]
            _done, pending = await asyncio.wait(drains, timeout=drain_timeout)
            for fut in pending:
                fut.cancel()
            undelivered = sum(w.queue.qsize() for w in running)
            if undelivered:
                self.log.warning("alerts_undelivered_at_stop", count=undelivered)
        for worker in running:
            assert worker.task is not None
            worker.task.cancel()
        await asyncio.gather(*(w.task for w in running if w.task is not None), return_exceptions=True)
        for worker in self._workers:
            worker.task = None
            close = getattr(worker.sink, "close", None)
            if close is not None:
                try:
                    await close()
                except Exception as exc:
                    self.log.warning("alert_sink_close_failed", sink=worker.name, error=str(exc)[:200])


class BrokerDownMonitor:
    """Alerts BROKER_DISCONNECTED once per outage longer than `[alerts] broker_down_alert_seconds`.

    Call `check(broker, connected)` from a periodic health loop; a reconnect after an alerted outage
    sends BROKER_RECONNECTED.
    """

    def __init__(self, dispatcher: AlertDispatcher, clock: Clock, threshold_seconds: float) -> None:
        self.dispatcher = dispatcher
        self.clock = clock
        self.threshold_seconds = threshold_seconds
        self._down_since: dict[str, datetime] = {}
        self._alerted: set[str] = set()

    def reconfigure(self, threshold_seconds: float) -> None:
        """A new outage length before the alert (a SIGHUP reload); outages under way are measured against it."""
        self.threshold_seconds = threshold_seconds

    async def check(self, broker: str, connected: bool) -> None:
        now = self.clock.now()
        if connected:
            self._down_since.pop(broker, None)
            if broker in self._alerted:
                self._alerted.discard(broker)
                await self.dispatcher.alert(BROKER_RECONNECTED, f"broker {broker} reconnected", "info", broker=broker)
            return
        since = self._down_since.setdefault(broker, now)
        down_for = (now - since).total_seconds()
        if broker not in self._alerted and down_for >= self.threshold_seconds:
            self._alerted.add(broker)
            await self.dispatcher.alert(
                BROKER_DISCONNECTED, f"broker {broker} disconnected", "critical",
                broker=broker, down_seconds=round(down_for, 1),
            )

