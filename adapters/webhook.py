"""Webhook signal intake: `POST /v1/signals` with a bearer token turns a JSON body into a `TradeSignal`.

The body's fields are the `TradeSignal` fields. They are checked by `SignalPayload` (pydantic), whose
validator runs `pipeline.core.models.signal_problems()` — the same rules the signal guard applies — so every
error names its field. Answers:

- 202 `{"signal_id": "..."}`: accepted and journaled (by the `submit` callable), now in the pipeline.
- 400 `{"errors": [{"field": "...", "message": "..."}]}`: invalid JSON, not an object, or bad fields.
- 401: missing or wrong `Authorization: Bearer <token>` (compared in constant time).
- 408: an authorised request whose body did not arrive within `[webhook] body_timeout_seconds` (10).
- 413: body above `[webhook] max_body_bytes` (64 KiB by default).
- 429: more than `[webhook] rate_per_minute` requests from one source in a wall-clock minute (token bucket, even
  in a replay); `Retry-After` given.
- 503: the daemon is shutting down or the pipeline is unavailable; `Retry-After` given.
- 404 / 405: any other path or method.

`submit(signal) -> signal_id` is the daemon's: it gives the signal its id, journals it and hands it to the
pipeline. It may raise `PipelineUnavailable` (or TimeoutError / ConnectionError) -> 503 with a retry hint,
ValueError -> 400; anything else is logged and answered 503 — never a 500. A submit that takes longer than
`submit_timeout` is answered 503 but left to finish (the guard's dedup window absorbs a retried duplicate).

Resources are bounded: at most `[webhook] max_connections` (256) connections are open at a time (more are
answered 503 and closed at once); a connection must send a complete request head within
`idle_timeout_seconds` (15) of connecting or of its last answer, or it is closed; a body must arrive within
`body_timeout_seconds`. The token is checked on the head, before any body is read.

The server binds 127.0.0.1 by default and stays off unless a token is configured
(`ORDERGATE_WEBHOOK__TOKEN`). The token and the Authorization header are never logged.

TradingView alert template
--------------------------
TradingView sends the alert "Message" as the POST body (as `application/json` when it is valid JSON) but
cannot add an `Authorization` header, and ordergate listens on loopback only. Put a TLS reverse proxy in
front (nginx, Caddy) that accepts TradingView's published webhook source addresses only, adds the header
and forwards to 127.0.0.1:8787, e.g. nginx:

    location = /v1/signals {
        allow <TradingView webhook IPs>; deny all;
        proxy_set_header Authorization "Bearer <your token>";
        proxy_pass http://127.0.0.1:8787;
    }

The alert message (one alert per strategy condition; `direction` and `signal_type` are fixed per alert):

    {
      "ticker": "{{ticker}}",
      "direction": "long",
      "signal_type": "cloud_cross_bullish",
      "timeframe": "{{interval}}",
      "conviction": 75,
      "entry_price": {{close}},
      "stop_loss": {{plot_0}},
      "target_price": {{plot_1}},
      "timestamp": "{{timenow}}",
      "source": "tradingview"
    }

- `direction`: "long" | "short". `signal_type`: one of `pipeline.core.models.SignalType` (cloud_cross_bullish,
  cloud_cross_bearish, cloud_flip_bullish, cloud_flip_bearish, trend_aligned_long, trend_aligned_short,
  pullback_entry_long, pullback_entry_short, manual).
- `timeframe`: 1m 2m 3m 5m 10m 15m 30m 1h 2h 4h 1d; TradingView's `{{interval}}` values ("5", "60", "240",
  "D", "1D") are mapped onto these.
- `conviction`: 0-100. Prices: finite and positive; the stop must be below the entry for a long (above for a
  short), the optional target on the profitable side. `{{plot_0}}`/`{{plot_1}}` stand for whichever plots of
  your script carry the stop and target (or write numbers); drop `target_price` if you have none.
- `timestamp` (optional, ISO-8601 with a zone; `{{timenow}}` is UTC): the guard rejects stale signals.
  Without it the time of receipt is used. `source` (optional, <= 64 chars) names the sender and keys the
  rate limit; without it the remote address does.
- Unknown fields are rejected (a misspelt `stop_loss` must not pass silently).

Try it by hand:

    curl -sS -X POST http://127.0.0.1:8787/v1/signals -H "Authorization: Bearer $ORDERGATE_WEBHOOK__TOKEN" \\
      -H 'Content-Type: application/json' \\
      -d '{"ticker":"AAPL","direction":"long","signal_type":"manual","timeframe":"5m",
           "conviction":70,"entry_price":190.5,"stop_loss":188.0}'
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
import traceback
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from enum import StrEnum
from typing import Any

import structlog
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from adapters.http_server import CappedHttpServer
from config.settings import STRATEGY_NAME_PATTERN, WebhookSettings, scrub_secrets
from pipeline.core.clock import Clock, monotonic
from pipeline.core.enum_values import is_value_of
from pipeline.core.models import Direction, SignalType, TradeSignal, signal_problems
from pipeline.core.rate_limit import KeyedBuckets

SIGNALS_PATH = "/v1/signals"
MAX_SOURCE_LEN = 64
MIN_TOKEN_LEN = 16
MAX_REPORTED_ERRORS = 20
MAX_FIELD_NAME_LEN = 64
MAX_RATE_BUCKETS = 10_000
UNAVAILABLE_RETRY_AFTER_SECONDS = 5
DEFAULT_SUBMIT_TIMEOUT_SECONDS = 10.0
LINGERING_SECONDS = 2.0  # reading (and discarding) an unread body after the answer, e.g. after a 401

# TradingView `{{interval}}` values -> ordergate timeframes.
TRADINGVIEW_INTERVALS: dict[str, str] = {
    "1": "1m", "2": "2m", "3": "3m", "5": "5m", "10": "10m", "15": "15m", "30": "30m",
    "60": "1h", "120": "2h", "240": "4h", "D": "1d", "1D": "1d",
}

SignalSubmit = Callable[[TradeSignal], Awaitable[str]]
FieldError = dict[str, str]

_log = structlog.get_logger("ordergate.webhook")
LOG_INFO = web.RequestKey("ordergate_log_info", dict)


class PipelineUnavailable(Exception):
    """Raised by a `submit` callable when the pipeline cannot take signals right now (answered 503)."""


class SignalProblems(ValueError):
    """The signal rules failed; `problems` holds (field, message) pairs."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{field}: {message}" for field, message in problems))
        self.problems = problems


def _as_enum(enum: type[StrEnum], value: str) -> StrEnum | str:
    """The enum member when the value names one (the rules report the others by field)."""
    return enum(value) if is_value_of(enum, value) else value


def _split_problem(problem: str) -> tuple[str, str]:
    field, sep, message = problem.partition(": ")
    return (field, message) if sep else ("body", problem)


class SignalPayload(BaseModel):
    """The JSON body of `POST /v1/signals`: the `TradeSignal` fields, checked by `signal_problems()`."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    ticker: str = Field(max_length=64)
    direction: str = Field(max_length=32)
    signal_type: str = Field(max_length=64)
    timeframe: str = Field(max_length=16)
    conviction: float
    entry_price: float
    stop_loss: float
    target_price: float | None = None
    timestamp: datetime | None = None
    source: str | None = Field(default=None, min_length=1, max_length=MAX_SOURCE_LEN)
    strategy: str | None = Field(default=None, pattern=STRATEGY_NAME_PATTERN,
                                 description="the configured strategy it belongs to; none: [webhook] strategy")

    @field_validator("conviction", "entry_price", "stop_loss", "target_price", mode="before")
    @classmethod
    def _no_booleans(cls, value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError("must be a number, not a boolean")
        return value

    @field_validator("ticker", mode="after")
    @classmethod
    def _upper_ticker(cls, value: str) -> str:
        return value.upper()

    @field_validator("direction", "signal_type", mode="after")
    @classmethod
    def _lower(cls, value: str) -> str:
        return value.lower()

    @field_validator("timeframe", mode="after")
    @classmethod
    def _map_interval(cls, value: str) -> str:
        return TRADINGVIEW_INTERVALS.get(value, value)

    @model_validator(mode="after")
    def _check_rules(self) -> SignalPayload:
        problems = signal_problems(self._build())
        if problems:
            raise SignalProblems([_split_problem(p) for p in problems])
        return self

    def _build(self, received: datetime | None = None, strategy: str = "webhook") -> TradeSignal:
        return TradeSignal(
            signal_type=_as_enum(SignalType, self.signal_type),
            direction=_as_enum(Direction, self.direction),
            ticker=self.ticker,
            timeframe=self.timeframe,
            conviction=self.conviction,
            entry_price=self.entry_price,
            stop_loss=self.stop_loss,
            target_price=self.target_price,
            timestamp=self.timestamp if self.timestamp is not None else received,
            source=self.source or "webhook",
            strategy=self.strategy or strategy,
        )

    def to_signal(self, received: datetime | None = None, strategy: str = "webhook") -> TradeSignal:
        """The `TradeSignal` (no id yet); `received` stands in for a missing timestamp, `strategy` for a missing
        strategy name."""
        return self._build(received, strategy)


def validation_errors(exc: ValidationError) -> list[FieldError]:
    """Flatten a pydantic error into `[{"field", "message"}]`, each naming its field."""
    errors: list[FieldError] = []
    for error in exc.errors(include_url=False, include_input=False):
        cause = (error.get("ctx") or {}).get("error")
        if isinstance(cause, SignalProblems):
            errors.extend({"field": field, "message": message} for field, message in cause.problems)
            continue
        loc = ".".join(str(part) for part in error.get("loc", ())) or "body"
        message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
        if error.get("type") == "extra_forbidden":
            message = "unknown field"
        errors.append({"field": loc[:MAX_FIELD_NAME_LEN], "message": message})
    return errors


def decode_json_body(raw: bytes) -> tuple[Any, list[FieldError]]:
    """(decoded JSON, []) or (None, [error on "body"]) for bytes that are not UTF-8 JSON."""
    try:
        return json.loads(raw.decode("utf-8")), []
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        return None, [{"field": "body", "message": f"not valid UTF-8 JSON: {str(exc)[:120]}"}]


def parse_signal_body(raw: bytes) -> tuple[SignalPayload | None, list[FieldError]]:
    """Decode and validate a request body: (payload, []) or (None, errors naming the fields)."""
    data, errors = decode_json_body(raw)
    if errors:
        return None, errors
    return validate_signal_data(data)


def validate_signal_data(data: Any) -> tuple[SignalPayload | None, list[FieldError]]:
    """Validate decoded JSON: (payload, []) or (None, errors naming the fields)."""
    if not isinstance(data, dict):
        return None, [{"field": "body", "message": f"must be a JSON object, got {type(data).__name__}"}]
    try:
        return SignalPayload.model_validate(data), []
    except ValidationError as exc:
        return None, validation_errors(exc)
    except RecursionError:
        return None, [{"field": "body", "message": "nested too deeply"}]


def _json_response(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(body, status=status, headers=headers)


def _error_response(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return _json_response(status, {"errors": [{"field": "request", "message": message}]}, headers)


def _retry_after(seconds: float) -> dict[str, str]:
    return {"Retry-After": str(max(1, int(seconds + 0.999)))}


def _unavailable(message: str) -> web.Response:
    return _error_response(503, message, _retry_after(UNAVAILABLE_RETRY_AFTER_SECONDS))


class WebhookServer:
    """The aiohttp intake server. `start()` binds it (or does nothing without a token), `stop()` closes it."""

    def __init__(
        self,
        settings: WebhookSettings,
        submit: SignalSubmit,
        clock: Clock,
        logger: Any = None,
        *,
        submit_timeout: float = DEFAULT_SUBMIT_TIMEOUT_SECONDS,
        secrets: Sequence[str] = (),
        rate_clock: Callable[[], float] = monotonic,
    ) -> None:
        """`clock` stamps the signals (the market's time: simulated in a replay); `rate_clock` (seconds, the wall
        clock by default) meters `rate_per_minute`, since the requests arrive in real time whatever the market
        clock does (a replay's simulated minute passes in a fraction of a second)."""
        self.settings = settings
        self.submit = submit
        self.clock = clock
        self.log = logger if logger is not None else _log
        self.submit_timeout = submit_timeout
        self.limiter = KeyedBuckets(settings.rate_per_minute, rate_clock, MAX_RATE_BUCKETS)
        self.port: int | None = None
        self._token = self._token_bytes(settings)
        self._token_digest = hashlib.sha256(self._token or b"").digest()
        # the token and every other configured secret are blanked out of a signal's free text before it is
        # handed on (and journaled): a sender may paste one into `source`
        own = [self._token.decode("utf-8")] if self._token else []
        self._secrets = sorted({*own, *(x for x in secrets if x)}, key=len, reverse=True)
        self._http = CappedHttpServer(self.log)
        self._shutting_down = False
        self._pending: set[asyncio.Task[str]] = set()

    def reconfigure(self, settings: WebhookSettings) -> None:
        """Take a reloaded [webhook] section: its rate limit applies to the next request. The listener's fields
        (host, port, token, sizes, timeouts) need a restart; config/reload.py keeps them at their running values."""
        self.settings = settings
        self.limiter.reconfigure(settings.rate_per_minute)

    @staticmethod
    def _token_bytes(settings: WebhookSettings) -> bytes | None:
        token = settings.token.get_secret_value() if settings.token is not None else ""
        if token and len(token.strip()) < MIN_TOKEN_LEN:
            raise ValueError(f"webhook.token: must be at least {MIN_TOKEN_LEN} characters (use a random secret)")
        return token.strip().encode("utf-8") if token else None

    @property
    def enabled(self) -> bool:
        return self._token is not None

    @property
    def shutting_down(self) -> bool:
        return self._shutting_down

    @property
    def open_connections(self) -> int:
        """Connections the server holds now (at most `[webhook] max_connections`)."""
        return self._http.open_connections

    # -- lifecycle ------------------------------------------------------------------------------------
    def build_app(self) -> web.Application:
        """The aiohttp application (bodies are capped at max_body_bytes)."""
        app = web.Application(client_max_size=self.settings.max_body_bytes, middlewares=[self._middleware])
        app.router.add_post(SIGNALS_PATH, self._handle_signal)
        return app

    async def start(self) -> int | None:
        """Bind host:port (0 = ephemeral) and return the bound port; None (and no socket) without a token."""
        if not self.enabled:
            self.log.info("webhook_disabled", reason="no token configured")
            return None
        if self._http.running:
            return self.port
        # keepalive_timeout also closes a connection that sends no complete request head in time (aiohttp
        # arms it at connect), so idle and slowloris connections cannot hold a descriptor past it.
        self.port = await self._http.start(
            self.build_app(), self.settings.host, self.settings.port, self.settings.max_connections,
            keepalive_timeout=self.settings.idle_timeout_seconds,
            lingering_time=min(LINGERING_SECONDS, self.settings.body_timeout_seconds))
        self._shutting_down = False
        self.log.info("webhook_listening", host=self.settings.host, port=self.port, path=SIGNALS_PATH,
                      max_connections=self.settings.max_connections,
                      idle_timeout_seconds=self.settings.idle_timeout_seconds)
        return self.port

    def begin_shutdown(self) -> None:
        """Answer 503 to every new request from now on (the daemon is stopping intake)."""
        self._shutting_down = True

    async def stop(self) -> None:
        """Stop intake and close the server."""
        self.begin_shutdown()
        if self._pending:
            await asyncio.wait(self._pending, timeout=self.submit_timeout)
        if await self._http.stop():
            self.log.info("webhook_stopped")

    # -- request handling -----------------------------------------------------------------------------
    @web.middleware
    async def _middleware(self, request: web.Request, handler: Callable[..., Awaitable[Any]]) -> web.StreamResponse:
        started = time.perf_counter()
        info: dict[str, Any] = {}
        request[LOG_INFO] = info
        try:
            if self._shutting_down:
                response: web.StreamResponse = _unavailable("shutting down")
            else:
                response = await handler(request)
        except web.HTTPException as exc:  # 404, 405 (and 413 raised by aiohttp itself)
            response = _error_response(exc.status, exc.reason, {"Allow": exc.headers["Allow"]}
                                       if "Allow" in exc.headers else None)
        except Exception as exc:
            self._log_failure("webhook_internal_error", exc, path=request.path[:200])
            response = _unavailable("internal error, retry later")
        self._log_request(request, response.status, started, info)
        return response

    def _log_request(self, request: web.Request, status: int, started: float, info: dict[str, Any]) -> None:
        level = "info" if status < 400 else "warning"
        fields = {
            "method": request.method[:16],
            "path": request.path[:200],
            "status": status,
            "remote": request.remote,
            "duration_ms": round((time.perf_counter() - started) * 1000, 3),
            **info,
        }
        getattr(self.log, level)("webhook_request", **{k: self._redact(v) for k, v in fields.items()})

    def _log_failure(self, event: str, exc: BaseException, **fields: Any) -> None:
        """Log an exception with its traceback, the token blanked out of both."""
        trace = "".join(traceback.format_exception(exc))
        self.log.error(event, error=self._redact(f"{type(exc).__name__}: {exc}"), traceback=self._redact(trace),
                       **fields)

    def _redact(self, value: Any) -> Any:
        """Blank the token out of a logged value (a sender may have pasted it into the body)."""
        if isinstance(value, str):
            return self._scrub(value)
        if isinstance(value, list):
            return [self._redact(v) for v in value]
        return value

    def _authorized(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        scheme, _, presented = header.strip().partition(" ")
        # compare digests: constant time, and the token's length does not leak either
        presented_digest = hashlib.sha256(presented.strip().encode("utf-8", "replace")).digest()
        matches = hmac.compare_digest(presented_digest, self._token_digest)
        return scheme.lower() == "bearer" and bool(presented) and matches

    def _declared_too_large(self, request: web.Request) -> bool:
        length = request.content_length
        return length is not None and length > self.settings.max_body_bytes

    async def _read_body(self, request: web.Request) -> bytes | web.Response:
        """The body, or the error response: 413 above max_body_bytes, 400 when it cannot be decoded."""
        too_large = _error_response(413, f"body larger than {self.settings.max_body_bytes} bytes")
        try:
            async with asyncio.timeout(self.settings.body_timeout_seconds):
                raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return too_large
        except TimeoutError:
            response = _error_response(408, f"body not received within {self.settings.body_timeout_seconds:g}s")
            response.force_close()
            request.content.feed_eof()
            return response
        except web.RequestPayloadError as exc:  # broken Content-Encoding or chunking
            response = _json_response(400, {"errors": [{"field": "body", "message": f"unreadable: {exc!s:.120}"}]})
            response.force_close()
            request.content.feed_eof()  # nothing more to read: no lingering re-read of the broken stream
            return response
        return raw if len(raw) <= self.settings.max_body_bytes else too_large

    def _submit_done(self, task: asyncio.Future[str]) -> None:
        """Forget a finished submission (its error is retrieved, so one that outlived its request is not lost)."""
        self._pending.discard(task)  # type: ignore[arg-type]
        if not task.cancelled() and task.exception() is not None:
            self.log.debug("webhook_submit_error", error_type=type(task.exception()).__name__)

    def _rate_key(self, request: web.Request, data: Any) -> str:
        source = data.get("source") if isinstance(data, dict) else None
        if isinstance(source, str) and 0 < len(source.strip()) <= MAX_SOURCE_LEN:
            return "source:" + source.strip()
        return "addr:" + (request.remote or "unknown")

    async def _handle_signal(self, request: web.Request) -> web.Response:
        info = request[LOG_INFO]
        if not self._authorized(request):
            return _error_response(401, "missing or invalid bearer token", {"WWW-Authenticate": "Bearer"})
        if self._declared_too_large(request):
            return _error_response(413, f"body larger than {self.settings.max_body_bytes} bytes")
        raw = await self._read_body(request)
        if isinstance(raw, web.Response):
            return raw
        data, errors = decode_json_body(raw)
        if errors:
            info["errors"] = 1
            return _json_response(400, {"errors": errors})
        key = self._rate_key(request, data)
        info["rate_key"] = key[:80]
        wait = self.limiter.acquire(key)
        if wait > 0:
            return _error_response(429, "rate limit exceeded", _retry_after(wait))
        payload, errors = validate_signal_data(data)
        if payload is None:
            info["errors"] = len(errors)
            info["error_fields"] = sorted({e["field"] for e in errors})[:MAX_REPORTED_ERRORS]
            return _json_response(400, {"errors": errors[:MAX_REPORTED_ERRORS]})
        return await self._submit(payload, info)

    def _scrub(self, text: str) -> str:
        return scrub_secrets(text, self._secrets)

    async def _submit(self, payload: SignalPayload, info: dict[str, Any]) -> web.Response:
        signal = payload.to_signal(received=self.clock.now(), strategy=self.settings.strategy)
        signal.source = self._scrub(signal.source)
        info.update(ticker=signal.ticker, direction=signal.direction, source=signal.source)
        task = asyncio.ensure_future(self.submit(signal))
        self._pending.add(task)
        task.add_done_callback(self._submit_done)
        try:
            signal_id = await asyncio.wait_for(asyncio.shield(task), self.submit_timeout)
        except ValueError as exc:
            info["errors"] = 1
            return _json_response(400, {"errors": [{"field": "body", "message": str(exc)[:300]}]})
        except (PipelineUnavailable, TimeoutError, ConnectionError) as exc:
            info["unavailable"] = type(exc).__name__
            return _unavailable("pipeline unavailable, retry later")
        except Exception as exc:
            self._log_failure("webhook_submit_failed", exc, ticker=signal.ticker)
            return _unavailable("pipeline error, retry later")
        info["signal_id"] = signal_id
        return _json_response(202, {"signal_id": signal_id})
