"""Webhook intake: a real aiohttp server on loopback, a real client, a real journal on tmp_path."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import structlog
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from adapters.webhook import (
    SIGNALS_PATH,
    PipelineUnavailable,
    SignalPayload,
    WebhookServer,
    parse_signal_body,
)
from config.settings import WebhookSettings
from pipeline.core.clock import SimulatedClock
from pipeline.core.models import TradeSignal
from pipeline.record.journal import Journal

TOKEN = "tok-3f9a1c7e5b2d4e6f8a0b1c2d3e4f5a6b"
START = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
VALID: dict[str, Any] = {
    "ticker": "AAPL", "direction": "long", "signal_type": "cloud_cross_bullish", "timeframe": "5m",
    "conviction": 75, "entry_price": 190.5, "stop_loss": 188.0, "target_price": 195.5,
    "timestamp": "2026-03-02T14:59:30Z", "source": "tradingview",
}
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class JournalingSubmit:
    """The submit callable the daemon provides: give the signal an id, journal it, return the id."""

    def __init__(self, journal: Journal, clock: SimulatedClock) -> None:
        self.journal = journal
        self.clock = clock
        self.ids: list[str] = []
        self.fail_with: BaseException | None = None
        self.hold: asyncio.Event | None = None

    async def __call__(self, signal: TradeSignal) -> str:
        if self.fail_with is not None:
            raise self.fail_with
        if self.hold is not None:
            await self.hold.wait()
        signal.signal_id = f"sig-{uuid.uuid4().hex[:12]}"
        self.journal.record_signal(signal, received=self.clock.now())
        await self.journal.flush()
        self.ids.append(signal.signal_id)
        return signal.signal_id


def capturing_logger(buffer: io.StringIO) -> Any:
    """A structlog logger that renders JSON lines into `buffer` (what the daemon would write)."""
    return structlog.wrap_logger(
        structlog.PrintLogger(buffer),
        processors=[structlog.processors.add_log_level, structlog.processors.format_exc_info,
                    structlog.processors.JSONRenderer()],
        wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG),
    )


class Harness:
    def __init__(self, server: WebhookServer, submit: JournalingSubmit, journal: Journal,
                 session: aiohttp.ClientSession, clock: SimulatedClock, log: io.StringIO) -> None:
        self.server, self.submit, self.journal, self.session = server, submit, journal, session
        self.clock, self.log = clock, log

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.port}{SIGNALS_PATH}"

    async def post(self, body: Any = None, *, raw: bytes | None = None, headers: dict[str, str] | None = None,
                   url: str | None = None) -> tuple[int, Any, Any]:
        data = raw if raw is not None else json.dumps(body).encode()
        hdrs = {"Content-Type": "application/json", **(AUTH if headers is None else headers)}
        async with self.session.post(url or self.url, data=data, headers=hdrs) as resp:
            text = await resp.text()
            try:
                parsed = json.loads(text)
            except ValueError:
                parsed = text
            return resp.status, parsed, resp.headers

    async def journaled(self, signal_id: str) -> dict[str, Any] | None:
        rows = await self.journal.query("SELECT * FROM signals WHERE signal_id=?", (signal_id,))
        return rows[0] if rows else None


HarnessFactory = Callable[..., Awaitable[Harness]]


@pytest.fixture
async def make_harness(tmp_path: Path) -> AsyncIterator[HarnessFactory]:
    cleanups: list[Callable[[], Awaitable[None]]] = []

    async def build(**overrides: Any) -> Harness:
        values: dict[str, Any] = {"host": "127.0.0.1", "port": 0, "token": SecretStr(TOKEN), **overrides}
        clock = SimulatedClock(START)
        journal = Journal(tmp_path / f"journal-{len(cleanups)}.sqlite", synchronous="NORMAL")
        await journal.open()
        submit = JournalingSubmit(journal, clock)
        log = io.StringIO()
        server = WebhookServer(WebhookSettings(**values), submit, clock, logger=capturing_logger(log),
                               rate_clock=lambda: clock.now().timestamp())  # the test moves the rate clock too
        await server.start()
        session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))

        async def cleanup() -> None:
            await session.close()
            await server.stop()
            await journal.close()

        cleanups.append(cleanup)
        return Harness(server, submit, journal, session, clock, log)

    yield build
    for cleanup in cleanups:
        await cleanup()


@pytest.fixture
async def harness(make_harness: HarnessFactory) -> Harness:
    return await make_harness()


# -- 202 ----------------------------------------------------------------------------------------------
async def test_valid_signal_is_accepted_and_journaled(harness: Harness) -> None:
    status, body, _ = await harness.post(VALID)
    assert status == 202, body
    row = await harness.journaled(body["signal_id"])
    assert row is not None
    assert (row["ticker"], row["direction"], row["timeframe"], row["source"]) == ("AAPL", "long", "5m", "tradingview")
    assert row["entry_price"] == 190.5 and row["stop_loss"] == 188.0 and row["target_price"] == 195.5
    assert row["ts"] == "2026-03-02T14:59:30+00:00"


async def test_missing_timestamp_uses_receipt_time_and_tradingview_interval(harness: Harness) -> None:
    body = {k: v for k, v in VALID.items() if k not in ("timestamp", "source", "target_price")}
    status, answer, _ = await harness.post({**body, "timeframe": "60", "ticker": " msft "})
    assert status == 202, answer
    row = await harness.journaled(answer["signal_id"])
    assert row is not None
    assert (row["ticker"], row["timeframe"], row["source"]) == ("MSFT", "1h", "webhook")
    assert row["ts"] == START.isoformat()


# -- 400 ----------------------------------------------------------------------------------------------
def _raw(**changes: Any) -> bytes:
    return json.dumps({**VALID, **changes}).encode()


BAD_BODIES = [
    pytest.param(_raw().replace(b'"entry_price": 190.5', b'"entry_price": NaN'), "entry_price", id="nan-literal"),
    pytest.param(_raw(entry_price="NaN"), "entry_price", id="nan-string"),
    pytest.param(_raw(stop_loss=float("inf")), "stop_loss", id="infinite-stop"),
    pytest.param(_raw(entry_price=-5.0), "entry_price", id="negative-price"),
    pytest.param(_raw(stop_loss=191.0), "stop_loss", id="stop-above-entry-for-long"),
    pytest.param(_raw(direction="short", target_price=None), "stop_loss", id="stop-below-entry-for-short"),
    pytest.param(_raw(timeframe="7m"), "timeframe", id="unknown-timeframe"),
    pytest.param(_raw(conviction=150), "conviction", id="conviction-150"),
    pytest.param(_raw(ticker=""), "ticker", id="empty-ticker"),
    pytest.param(_raw(ticker="   "), "ticker", id="blank-ticker"),
    pytest.param(_raw(direction="sideways"), "direction", id="bad-direction"),
    pytest.param(_raw(signal_type="moon"), "signal_type", id="bad-signal-type"),
    pytest.param(_raw(conviction=True), "conviction", id="boolean-number"),
    pytest.param(_raw(timestamp="2026-03-02T14:59:30"), "timestamp", id="naive-timestamp"),
    pytest.param(_raw(stop_los=1.0), "stop_los", id="unknown-field"),
    pytest.param(json.dumps({k: v for k, v in VALID.items() if k != "stop_loss"}).encode(), "stop_loss",
                 id="missing-field"),
    pytest.param(b'{"ticker": "AAPL",', "body", id="invalid-json"),
    pytest.param(b"\xff\xfe\x00garbage", "body", id="not-utf8"),
    pytest.param(b"[1, 2, 3]", "body", id="array-body"),
    pytest.param(b'"just a string"', "body", id="string-body"),
    pytest.param(b"", "body", id="empty-body"),
    pytest.param(b"[" * 5000 + b"]" * 5000, "body", id="deeply-nested"),
]


@pytest.mark.parametrize(("raw", "field"), BAD_BODIES)
async def test_bad_body_is_400_naming_the_field(harness: Harness, raw: bytes, field: str) -> None:
    status, body, _ = await harness.post(raw=raw)
    assert status == 400, body
    fields = [e["field"] for e in body["errors"]]
    assert field in fields, body
    assert all(e["message"] for e in body["errors"])
    assert harness.submit.ids == []


def test_payload_model_reuses_the_signal_rules() -> None:
    payload, errors = parse_signal_body(_raw())
    assert errors == [] and isinstance(payload, SignalPayload)
    signal = payload.to_signal()
    assert (signal.ticker, signal.entry_price, signal.source) == ("AAPL", 190.5, "tradingview")
    _, errors = parse_signal_body(_raw(entry_price=-1, conviction=500))
    assert {e["field"] for e in errors} == {"entry_price", "conviction"}


# -- 401 ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="missing"),
        pytest.param({"Authorization": "Bearer wrong-token"}, id="wrong-token"),
        pytest.param({"Authorization": f"Bearer {TOKEN}x"}, id="token-plus-one"),
        pytest.param({"Authorization": f"Basic {TOKEN}"}, id="wrong-scheme"),
        pytest.param({"Authorization": TOKEN}, id="no-scheme"),
        pytest.param({"Authorization": "Bearer "}, id="empty-bearer"),
        pytest.param({"Authorization": "Bearer tökén"}, id="non-ascii"),
    ],
)
async def test_unauthorized_is_401(harness: Harness, headers: dict[str, str]) -> None:
    status, body, resp_headers = await harness.post(VALID, headers=headers)
    assert status == 401, body
    assert resp_headers.get("WWW-Authenticate") == "Bearer"
    assert harness.submit.ids == []


async def test_bearer_scheme_is_case_insensitive(harness: Harness) -> None:
    status, body, _ = await harness.post(VALID, headers={"Authorization": f"bearer {TOKEN}"})
    assert status == 202, body


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br"])
async def test_undecodable_content_encoding_is_400(harness: Harness, encoding: str) -> None:
    headers = {**AUTH, "Content-Encoding": encoding}
    status, body, _ = await harness.post(raw=b"definitely not compressed", headers=headers)
    assert status == 400, body
    status, body, _ = await harness.post(VALID)
    assert status == 202, body


# -- 413 ----------------------------------------------------------------------------------------------
async def test_oversize_body_is_413(make_harness: HarnessFactory) -> None:
    h = await make_harness(max_body_bytes=1024)
    big = json.dumps({**VALID, "source": "x" * 2000}).encode()
    status, body, _ = await h.post(raw=big)
    assert status == 413, body

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: chunked transfer encoding
        for _ in range(8):
            yield b" " * 256

    headers = {**AUTH, "Content-Type": "application/json"}
    async with h.session.post(h.url, data=chunks(), headers=headers) as resp:
        assert resp.status == 413
    status, body, _ = await h.post(VALID)  # an ordinary request still works afterwards
    assert status == 202, body
    assert len(h.submit.ids) == 1


async def test_body_at_the_limit_is_read(make_harness: HarnessFactory) -> None:
    raw = _raw()
    h = await make_harness(max_body_bytes=len(raw))
    status, body, _ = await h.post(raw=raw)
    assert status == 202, body


# -- 429 ----------------------------------------------------------------------------------------------
async def test_rate_limit_per_source_is_429(make_harness: HarnessFactory) -> None:
    h = await make_harness(rate_per_minute=3)
    statuses = [(await h.post(VALID))[0] for _ in range(3)]
    assert statuses == [202, 202, 202]
    status, body, headers = await h.post(VALID)
    assert status == 429, body
    assert int(headers["Retry-After"]) >= 1
    status, _, _ = await h.post({**VALID, "source": "other-desk"})  # another source has its own bucket
    assert status == 202
    no_source = {k: v for k, v in VALID.items() if k != "source"}
    assert [(await h.post(no_source))[0] for _ in range(4)] == [202, 202, 202, 429]  # keyed by address
    h.clock.advance(20)  # 3 a minute: one token back every 20 s
    assert (await h.post(VALID))[0] == 202
    assert (await h.post(VALID))[0] == 429
    assert len(h.submit.ids) == 3 + 1 + 3 + 1


# -- 503 ----------------------------------------------------------------------------------------------
async def test_shutting_down_is_503(harness: Harness) -> None:
    harness.server.begin_shutdown()
    status, body, headers = await harness.post(VALID)
    assert status == 503, body
    assert "Retry-After" in headers
    assert harness.submit.ids == []


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        pytest.param(PipelineUnavailable("bus closed"), 503, id="unavailable"),
        pytest.param(TimeoutError(), 503, id="timeout"),
        pytest.param(RuntimeError("bug"), 503, id="unexpected"),
        pytest.param(ValueError("duplicate signal"), 400, id="rejected-by-intake"),
    ],
)
async def test_submit_failures_never_give_500(harness: Harness, error: BaseException, expected: int) -> None:
    harness.submit.fail_with = error
    status, body, headers = await harness.post(VALID)
    assert status == expected, body
    if expected == 503:
        assert "Retry-After" in headers


async def test_slow_submit_is_503_and_still_completes(harness: Harness) -> None:
    harness.server.submit_timeout = 0.2
    harness.submit.hold = asyncio.Event()
    status, body, headers = await harness.post(VALID)
    assert status == 503, body
    assert "Retry-After" in headers
    harness.submit.hold.set()
    await harness.server.stop()  # waits for the submission it accepted to finish
    assert len(harness.submit.ids) == 1
    assert await harness.journaled(harness.submit.ids[0]) is not None


async def test_other_paths_and_methods(harness: Harness) -> None:
    async with harness.session.get(harness.url, headers=AUTH) as resp:
        assert resp.status == 405
    status, _, _ = await harness.post(VALID, url=harness.url.replace("/v1/signals", "/v1/other"))
    assert status == 404


# -- disabled -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("token", [None, SecretStr("")])
async def test_disabled_without_token(tmp_path: Path, token: SecretStr | None) -> None:
    async def submit(signal: TradeSignal) -> str:
        raise AssertionError("must not be called")

    server = WebhookServer(WebhookSettings(port=0, token=token), submit, SimulatedClock(START))
    assert server.enabled is False
    assert await server.start() is None
    assert server.port is None
    await server.stop()


async def test_short_token_is_refused(tmp_path: Path) -> None:
    async def submit(signal: TradeSignal) -> str:
        return "x"

    with pytest.raises(ValueError, match=r"at least 16 characters"):  # the settings refuse it first
        WebhookSettings(port=0, token=SecretStr("short"))
    with pytest.raises(ValueError, match=r"webhook\.token"):  # and the server on its own too
        WebhookServer(WebhookSettings.model_construct(port=0, token=SecretStr("short")), submit, SimulatedClock(START))


# -- the token never reaches a log --------------------------------------------------------------------
async def test_token_never_logged(
    harness: Harness, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with structlog.testing.capture_logs() as captured:
        await harness.post(VALID)                                                      # 202
        await harness.post({**VALID, "conviction": 500})                               # 400
        await harness.post(VALID, headers={"Authorization": f"Bearer {TOKEN[:-1]}"})  # 401
        await harness.post(VALID, headers={"Authorization": f"Token {TOKEN}"})         # 401
        await harness.post({**VALID, "source": f"paste {TOKEN}"})                      # token pasted in the body
        await harness.post({**VALID, "token": TOKEN})                                  # 400, unknown field
        harness.submit.fail_with = RuntimeError(f"boom {TOKEN}")
        await harness.post({**VALID, "source": "s2"})                                  # 503, logged exception
    rendered = harness.log.getvalue()
    lines = rendered.splitlines()
    assert sum('"webhook_request"' in line for line in lines) == 7
    assert any('"status": 202' in line for line in lines) and any('"status": 401' in line for line in lines)
    out = capsys.readouterr()
    everything = "\n".join([rendered, repr(captured), out.out, out.err, caplog.text])
    assert TOKEN not in everything
    assert "Authorization" not in rendered


# -- property: arbitrary input never gives a 5xx, every 202 is journaled ---------------------------------
JSON_LEAVES = (
    st.none() | st.booleans() | st.integers(min_value=-(10**12), max_value=10**12) | st.floats()
    | st.text(max_size=12)
)
JSON_VALUES = st.recursive(
    JSON_LEAVES,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=8,
)
FIELD_VALUES = st.one_of(
    JSON_VALUES,
    st.floats(min_value=0.01, max_value=2000),
    st.sampled_from(["long", "short", "LONG", "5m", "1D", "60", "manual", "cloud_flip_bearish", "", " "]),
)


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["mutated", "mutated", "mutated", "json", "bytes"]))
    if kind == "bytes":
        return draw(st.binary(max_size=64))
    if kind == "json":
        return json.dumps(draw(JSON_VALUES)).encode()
    body: dict[str, Any] = dict(VALID)
    for key in draw(st.lists(st.sampled_from(sorted(VALID)), max_size=3, unique=True)):
        if draw(st.booleans()):
            body[key] = draw(FIELD_VALUES)
        else:
            del body[key]
    if draw(st.integers(0, 5)) == 0:
        body[draw(st.text(max_size=8))] = draw(JSON_VALUES)
    return json.dumps(body).encode()  # json.dumps writes NaN / Infinity literals for such floats


HEADER_TEXT = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40)
HEADER_NAMES = st.from_regex(r"X-[A-Za-z0-9-]{1,12}", fullmatch=True) | st.sampled_from(
    ["Content-Type", "Content-Encoding", "Accept", "User-Agent", "X-Forwarded-For", "Authorization"]
)
AUTH_HEADERS = st.sampled_from([f"Bearer {TOKEN}", f"Bearer {TOKEN}", "Bearer nope", "", f"Basic {TOKEN}"])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(raw=bodies(), auth=AUTH_HEADERS, extra=st.dictionaries(HEADER_NAMES, HEADER_TEXT, max_size=3))
async def test_arbitrary_input_never_5xx_and_accepted_means_journaled(
    make_harness: HarnessFactory, raw: bytes, auth: str, extra: dict[str, str]
) -> None:
    h = await _shared_harness(make_harness)
    headers = {**extra, "Authorization": auth} if auth else {k: v for k, v in extra.items() if k != "Authorization"}
    status, body, _ = await h.post(raw=raw, headers=headers)
    assert status < 500, (status, body)
    if status == 202:
        assert await h.journaled(body["signal_id"]) is not None
    else:
        assert isinstance(body, dict) and body["errors"], body
    status, body, _ = await h.post(VALID)  # the server is still alive and well
    assert status == 202, body
    assert await h.journaled(body["signal_id"]) is not None


async def _shared_harness(factory: HarnessFactory) -> Harness:
    """One server per test (hypothesis runs the body many times with the same fixture)."""
    shared = getattr(factory, "shared", None)
    if shared is None:
        shared = await factory(rate_per_minute=1_000_000)
        factory.shared = shared  # type: ignore[attr-defined]
    return shared


# -- strategies ---------------------------------------------------------------------------------------
async def test_a_webhook_signal_names_its_strategy_or_gets_the_configured_one(make_harness: HarnessFactory) -> None:
    harness = await make_harness(strategy="alerts")
    status, answer, _ = await harness.post(VALID)
    assert status == 202, answer
    assert (await harness.journaled(answer["signal_id"]))["strategy"] == "alerts"
    status, answer, _ = await harness.post({**VALID, "strategy": "breakout", "ticker": "MSFT"})
    assert status == 202, answer
    assert (await harness.journaled(answer["signal_id"]))["strategy"] == "breakout"
    status, answer, _ = await harness.post({**VALID, "strategy": "Not A Name"})
    assert status == 400 and [e["field"] for e in answer["errors"]] == ["strategy"], answer


async def test_the_default_webhook_strategy_is_webhook(harness: Harness) -> None:
    status, answer, _ = await harness.post(VALID)
    assert status == 202, answer
    assert (await harness.journaled(answer["signal_id"]))["strategy"] == "webhook"
