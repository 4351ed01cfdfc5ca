"""Config input is strict: no boolean for a number (or a number for a boolean), every number finite and
bounded above, config files read only when they are small regular files. Each refusal is one line naming
the field (exit status 2 from the CLI)."""

from __future__ import annotations

import os
import types
import typing
from pathlib import Path
from typing import Any

import pytest
from annotated_types import Le, Lt
from pydantic import BaseModel

from config.settings import ConfigError, Settings, load_settings
from tests.daemon_proc import base_env, cli

pytestmark = pytest.mark.timeout(60)


def _toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "ordergate.toml"
    path.write_text(text)
    return path


def _refusal(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        load_settings(_toml(tmp_path, text), state_dir=tmp_path / "state")
    message = str(caught.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("[executor]\ndaily_loss_limit = true", "executor.daily_loss_limit"),
        ("[executor]\nmax_risk_per_trade = true", "executor.max_risk_per_trade"),
        ("[executor]\nmax_concurrent_positions = true", "executor.max_concurrent_positions"),
        ("[reconcile]\nkill_notional_threshold = false", "reconcile.kill_notional_threshold"),
        ("[strategy]\nfast_cloud = [true, 12]", "strategy.fast_cloud"),
        ("[alpaca]\npaper = 0", "alpaca.paper"),  # 0 must not mean "live account"
        ("[pipeline]\nauto_kill_on_daily_loss = 1", "pipeline.auto_kill_on_daily_loss"),
    ],
)
def test_no_boolean_for_a_number_and_no_number_for_a_boolean(tmp_path: Path, text: str, field: str) -> None:
    message = _refusal(tmp_path, text)
    assert message.startswith(f"invalid setting {field}="), message


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("[broker]\nrequest_timeout_seconds = inf", "broker.request_timeout_seconds"),
        ("[broker]\nrequest_timeout_seconds = 1e400", "broker.request_timeout_seconds"),
        ("[reconcile]\nkill_notional_threshold = inf", "reconcile.kill_notional_threshold"),
        ("[reconcile]\ninterval_seconds = 1e400", "reconcile.interval_seconds"),
        ("[shutdown]\ntimeout_seconds = inf", "shutdown.timeout_seconds"),
        ("[options]\nrisk_free_rate = nan", "options.risk_free_rate"),
        ("[executor]\ntime_stop_minutes = 9999999999999999999", "executor.time_stop_minutes"),
        ("[executor]\nmin_account_equity = 1e300", "executor.min_account_equity"),
        ("[data]\nsynthetic_seed = -1", "data.synthetic_seed"),
        ("[strategy]\ntrend_cloud = [34, 99999999999]", "strategy.trend_cloud"),
    ],
)
def test_numbers_are_finite_and_bounded(tmp_path: Path, text: str, field: str) -> None:
    message = _refusal(tmp_path, text)
    assert message.startswith(f"invalid setting {field}"), message


def test_environment_numbers_are_bounded_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORDERGATE_BROKER__REQUEST_TIMEOUT_SECONDS", "inf")
    with pytest.raises(ConfigError, match=r"^invalid setting broker\.request_timeout_seconds="):
        load_settings(state_dir=tmp_path)
    monkeypatch.setenv("ORDERGATE_BROKER__REQUEST_TIMEOUT_SECONDS", "12.5")
    assert load_settings(state_dir=tmp_path).broker.request_timeout_seconds == 12.5  # strings still parse


def _scalar(annotation: Any) -> Any:
    """int for `int | None`, the annotation itself when it is not an optional."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return args[0] if len(args) == 1 else annotation
    return annotation


def _numeric_fields(model: type[BaseModel], prefix: str = "") -> list[tuple[str, Any]]:
    found = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            found += _numeric_fields(annotation, f"{prefix}{name}.")
            continue
        if _scalar(annotation) in (int, float):
            found.append((f"{prefix}{name}", field))
    return found


def test_every_number_has_an_upper_bound() -> None:
    unbounded = [path for path, field in _numeric_fields(Settings)
                 if not any(isinstance(m, Le | Lt) for m in field.metadata)]
    assert unbounded == []


@pytest.mark.parametrize("target", ["/dev/zero", "directory", "fifo", "big"])
def test_config_file_must_be_a_small_regular_file(tmp_path: Path, target: str) -> None:
    if target == "directory":
        path = str(tmp_path)
    elif target == "fifo":
        path = str(tmp_path / "config.fifo")
        os.mkfifo(path)
    elif target == "big":
        path = str(tmp_path / "big.toml")
        Path(path).write_text("# padding\n" * 200_000)
    else:
        path = target
    out = cli(tmp_path / "state", "--config", path, "config", "show", timeout=20)
    assert out.returncode == 2, (out.stdout, out.stderr)
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
    assert lines[0].startswith(f"ordergate: config file {path}: ")


def test_deeply_nested_toml_is_one_line(tmp_path: Path) -> None:
    message = _refusal(tmp_path, "x = " + "[" * 5000 + "]" * 5000)
    assert message.startswith("config file ") and "nested" in message


@pytest.mark.parametrize(
    ("variable", "value", "field"),
    [
        ("ORDERGATE_EXECUTOR__DAILY_LOSS_LIMIT", "1e400", "executor.daily_loss_limit"),
        ("ORDERGATE_EXECUTOR__TIME_STOP_MINUTES", "9999999999999999999", "executor.time_stop_minutes"),
    ],
)
def test_run_refuses_with_one_line_and_exit_2(tmp_path: Path, variable: str, value: str, field: str) -> None:
    out = cli(tmp_path / "state", "run", env=base_env(tmp_path / "state", **{variable: value}), timeout=30)
    assert out.returncode == 2, (out.stdout[-2000:], out.stderr)
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
    assert lines[0].startswith(f"ordergate: invalid setting {field}="), lines[0]


def test_run_refuses_a_boolean_loss_limit_in_the_config_file(tmp_path: Path) -> None:
    config = _toml(tmp_path, "[executor]\ndaily_loss_limit = true\n")
    out = cli(tmp_path / "state", "--config", str(config), "run", timeout=30)
    assert out.returncode == 2, (out.stdout[-2000:], out.stderr)
    assert out.stderr.strip().startswith("ordergate: invalid setting executor.daily_loss_limit=True: ")
