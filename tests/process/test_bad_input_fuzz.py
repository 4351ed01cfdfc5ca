"""Hypothesis over every kind of input ordergate reads — TOML values, environment variables, CLI arguments,
control-socket requests, webhook bodies, replay CSV rows, state files. Each is accepted, or refused with one
line that names the field (exit status 2 for the CLI); nothing raises anything else, nothing hangs. Bounded:
a fixed number of examples per kind, no deadline per example (the machine is shared)."""

from __future__ import annotations

import asyncio
import json
import math
import os
import socket
import string
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from adapters.replay import load_bars
from adapters.webhook import parse_signal_body
from config.settings import ConfigError, Settings, StrategySpec, load_settings
from daemon.control import ControlServer, socket_path
from pipeline.safety.state_manager import read_state_file
from tests.daemon_proc import base_env, cli

pytestmark = pytest.mark.timeout(300)
FAST = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                          HealthCheck.too_slow])
SLOW = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                         HealthCheck.too_slow])


def _leaf_fields(model: type[BaseModel], prefix: str = "") -> list[str]:
    out: list[str] = []
    for name, field in model.model_fields.items():
        if prefix == "" and name in ("pipeline", "state_dir", "strategies"):
            # pipeline.executor_config is wired from [executor]; state_dir is not a TOML section; [[strategies]] is
            # an array of tables (test_strategies_value_is_accepted_or_named)
            continue
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            out += _leaf_fields(annotation, f"{prefix}{name}.")
        else:
            out.append(f"{prefix}{name}")
    return out


FIELDS = [*_leaf_fields(Settings), "pipeline.max_order_retries", "pipeline.dedup_window_seconds"]


def _field(path: str) -> Any:
    model: Any = Settings
    *sections, key = path.split(".")
    for section in sections:
        model = model.model_fields[section].annotation
    return model.model_fields[key].annotation


NUMERIC_FIELDS = {f: _field(f) for f in FIELDS if _field(f) in (int, float)}


def _flat(value: Any) -> list[Any]:
    return [x for v in value for x in _flat(v)] if isinstance(value, list) else [value]


def _has_bool(value: Any) -> bool:
    return any(isinstance(v, bool) for v in _flat(value))


def _has_non_finite(value: Any) -> bool:
    return any(isinstance(v, float) and not math.isfinite(v) for v in _flat(value))


def _has_huge(value: Any) -> bool:
    return any(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and abs(v) > 1e15
               for v in _flat(value))

# TOML values of every kind, including the ones that have bitten: booleans for numbers, huge and
# non-finite numbers, non-ASCII strings, deep arrays, tables where a scalar belongs.
scalars = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, 1, -1, 1e308, 9999999999999999999, 0.5, 100.0]),
    st.text(max_size=30),
    st.sampled_from(["株式", "ＡＡＰＬ", "AAPL", "", " ", "15:55", "paper", "alpaca", "inf", "nan", "true"]),
)
toml_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4), max_leaves=12)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string is a JSON string
    return "[" + ", ".join(_toml_value(v) for v in value) + "]"


def _assert_one_line_naming(message: str, *names: str) -> None:
    assert "\n" not in message and "Traceback" not in message, message
    assert any(name in message for name in names), (names, message)


@FAST
@given(field=st.sampled_from(FIELDS), value=toml_values)
def test_toml_value_is_accepted_or_named(tmp_path: Path, field: str, value: Any) -> None:
    section, key = field.rsplit(".", 1)
    config = tmp_path / "fuzz.toml"
    config.write_text(f"[{section}]\n{key} = {_toml_value(value)}\n", encoding="utf-8")
    kind = NUMERIC_FIELDS.get(field)
    must_refuse = kind is not None and (_has_bool(value) or _has_non_finite(value) or _has_huge(value))
    try:
        load_settings(config, state_dir=tmp_path / "state")
    except ConfigError as exc:
        # a cross-field rule (dte_min <= dte_max, fallback != primary, ...) names the section
        _assert_one_line_naming(str(exc), f"{section}.{key}", f"invalid setting {section}", "config file")
    else:
        assert not must_refuse, f"{field} = {_toml_value(value)} was accepted"


@FAST
@given(key=st.sampled_from(sorted(StrategySpec.model_fields)), value=toml_values)
def test_strategies_value_is_accepted_or_named(tmp_path: Path, key: str, value: Any) -> None:
    config = tmp_path / "fuzz.toml"
    entry = {"name": '"s"', "kind": '"ema_cloud"', key: _toml_value(value)}
    config.write_text("[[strategies]]\n" + "".join(f"{k} = {v}\n" for k, v in entry.items()), encoding="utf-8")
    try:
        load_settings(config, state_dir=tmp_path / "state")
    except ConfigError as exc:
        _assert_one_line_naming(str(exc), f"strategies.0.{key}", "invalid setting strategies", "config file")


@FAST
@given(field=st.sampled_from(FIELDS), value=st.one_of(st.text(max_size=40), scalars.map(str)))
def test_environment_value_is_accepted_or_named(tmp_path: Path, field: str, value: str) -> None:
    if "\x00" in value:
        return  # the OS cannot hold it in an environment variable
    section, key = field.rsplit(".", 1)
    name = f"ORDERGATE_{section.upper()}__{key.upper()}"
    os.environ[name] = value
    try:
        load_settings(state_dir=tmp_path / "state")
    except ConfigError as exc:
        _assert_one_line_naming(str(exc), f"{section}.{key}", name, f"invalid setting {section}")
    finally:
        del os.environ[name]


# -- state files --------------------------------------------------------------------------------------------
state_documents = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20)),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=12), inner, max_size=4)),
    max_leaves=20,
)


@FAST
@given(raw=st.one_of(
    st.binary(max_size=300),
    state_documents.map(lambda d: json.dumps(d).encode()),
    st.integers(min_value=1, max_value=50_000).map(lambda n: b"[" * n + b"]" * n),
    st.integers(min_value=1, max_value=50_000).map(lambda n: b'{"a":' * n + b"1" + b"}" * n),
))
def test_state_file_is_read_or_fails_closed(tmp_path: Path, raw: bytes) -> None:
    path = tmp_path / "state.json"
    path.write_bytes(raw)
    state = read_state_file(path)
    if state["load_error"] is not None:
        assert state["kill_switch"]["active"] is True
        assert str(path) in state["load_error"] and "\n" not in state["load_error"]


# -- replay CSV rows ----------------------------------------------------------------------------------------
csv_cells = st.one_of(st.text(alphabet=string.printable.replace("\n", "").replace("\r", ""), max_size=25),
                      st.sampled_from(["9999-12-31T23:59:00Z", "0001-01-01T00:00:00+14:00", "1e400", "nan", "-1",
                                       "2026-03-02T15:00:00Z", "1772463600", "株式", "ＡＡＰＬ", "1e11"]))


valid_row = st.tuples(
    st.sampled_from(["2026-03-02T15:00:00Z", "2026-03-02T15:01:00Z", "9999-12-31T23:59:00Z",
                     "9999-12-31T23:59:00-05:00", "0001-01-01T00:00:00+14:00", "1772463600", "99999999999", "x"]),
    st.sampled_from(["AAPL", "株式", "ＡＡＰＬ", "", "MSFT"]),
).map(lambda t: [t[0], t[1], "100", "101", "99", "100.5", "1000"])


@FAST
@given(rows=st.lists(st.lists(csv_cells, min_size=0, max_size=9) | valid_row, min_size=1, max_size=6))
def test_replay_rows_are_bars_or_named_problems(tmp_path: Path, rows: list[list[str]]) -> None:
    csv = tmp_path / "bars.csv"
    lines = ["timestamp,symbol,open,high,low,close,volume", *(",".join(r) for r in rows)]
    csv.write_text("\n".join(lines) + "\n", encoding="utf-8")
    try:
        bars, problems = load_bars(csv)
    except ValueError as exc:  # a file-level problem (no usable header, ...) is one line
        assert "\n" not in str(exc)
        return
    for problem in problems:
        assert problem.line >= 0 and problem.reason and "\n" not in problem.reason
    for bar in bars:
        assert bar.symbol.isascii() and 1970 <= bar.timestamp.year <= 2200


# -- webhook bodies -----------------------------------------------------------------------------------------
SIGNAL_FIELDS = ["ticker", "direction", "signal_type", "timeframe", "conviction", "entry_price", "stop_loss",
                 "target_price", "timestamp", "source"]
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20),
              st.sampled_from(["株式", "ＡＡＰＬ", "AAPL", "long", "manual", "5m"])),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)),
    max_leaves=10,
)


tickers = st.one_of(st.text(max_size=8), st.sampled_from(["株式", "ＡＡＰＬ", "AAPL", "brk.b", "ÄPPLE", "A\u200b"]))


@FAST
@given(ticker=tickers, direction=st.sampled_from(["long", "short", "LONG", "sideways"]))
def test_webhook_ticker_is_an_ascii_symbol_or_refused(ticker: str, direction: str) -> None:
    long = direction.lower() == "long"
    body = {"ticker": ticker, "direction": direction, "signal_type": "manual", "timeframe": "5m", "conviction": 70,
            "entry_price": 100.0, "stop_loss": 98.0 if long else 102.0}
    payload, errors = parse_signal_body(json.dumps(body).encode())
    if payload is None:
        assert {e["field"] for e in errors} <= {"ticker", "direction"}, errors
    else:
        symbol = payload.to_signal().ticker
        assert symbol.isascii() and symbol == symbol.strip().upper() and symbol


@FAST
@given(body=st.one_of(
    st.dictionaries(st.sampled_from([*SIGNAL_FIELDS, "extra"]), json_values, max_size=11),
    json_values,
).map(lambda v: json.dumps(v).encode()) | st.binary(max_size=200)
  | st.integers(min_value=1, max_value=60_000).map(lambda n: b"[" * n + b"]" * n))
def test_webhook_body_is_a_signal_or_named_errors(body: bytes) -> None:
    payload, errors = parse_signal_body(body)
    if payload is None:
        assert errors
        for error in errors:
            assert error["field"] and error["message"] and "\n" not in error["message"]
    else:
        signal = payload.to_signal()
        assert signal.ticker.isascii() and signal.ticker == signal.ticker.upper()


# -- control-socket requests over a real unix socket --------------------------------------------------------
@pytest.fixture(scope="module")
def control_socket(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A ControlServer on its own event loop thread (as in the daemon, with a handler that echoes)."""
    path = socket_path(tmp_path_factory.mktemp("ctl"))
    loop = asyncio.new_event_loop()

    async def echo(args: dict[str, Any]) -> dict[str, Any]:
        return {"args": len(json.dumps(args))}

    server = ControlServer(path, {"status": echo})
    started = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(server.start())
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert started.wait(10)
    yield path
    asyncio.run_coroutine_threadsafe(server.stop(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()


def _exchange(path: Path, payload: bytes) -> dict[str, Any]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(str(path))
        sock.sendall(payload)
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            assert chunk, f"connection closed without an answer to {payload[:80]!r}"
            data += chunk
    return json.loads(data)


@FAST
@given(request=st.one_of(
    st.fixed_dictionaries({"cmd": st.sampled_from(["status", "kill", "nope", ""]) | st.text(max_size=10)},
                          optional={"args": json_values}).map(lambda v: json.dumps(v).encode()),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=100).filter(lambda b: b"\n" not in b and b.strip()),
    st.integers(min_value=33, max_value=30_000).map(lambda n: b'{"cmd": "status", "args": ' + b"[" * n + b"]" * n
                                                    + b"}"),
))
def test_control_request_gets_one_answer(control_socket: Path, request: bytes) -> None:
    answer = _exchange(control_socket, request + b"\n")
    assert isinstance(answer, dict) and answer["ok"] in (True, False)
    if not answer["ok"]:
        assert answer["error"] and "\n" not in answer["error"]


# -- CLI arguments (the real command, as a subprocess: few examples) ----------------------------------------
cli_words = st.sampled_from(["status", "kill", "resume", "positions", "journal", "signal", "buy", "sell",
                             "rebalance", "replay", "config", "show", "--json", "--ticker", "--dollars",
                             "--shares", "--day", "--reason", "--entry", "--stop", "--target", "--conviction",
                             "--direction", "long", "--state-dir", "--config", "株式", "ＡＡＰＬ", "AAPL",
                             "-1", "0", "101", "1e400", "nan", "9999-99-99", "2026-03-02", "/dev/zero", "/dev/null",
                             "", "x" * 300])


@SLOW
@given(argv=st.lists(cli_words, min_size=1, max_size=6))
def test_cli_arguments_answer_in_one_line(tmp_path: Path, argv: list[str]) -> None:
    state_dir = tmp_path / "state"
    try:
        out = cli(state_dir, *argv, env=base_env(state_dir), timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail(f"ordergate {argv} did not finish")
    assert "Traceback" not in out.stdout + out.stderr, (argv, out.stderr[-2000:])
    assert out.returncode in (0, 1, 2), (argv, out.returncode, out.stderr)
    if out.returncode == 2:
        assert len([line for line in out.stderr.splitlines() if line.strip()]) == 1, (argv, out.stderr)
