"""Tickers are ASCII broker symbols: `株式` and `ＡＡＰＬ` (full-width) are refused at every boundary —
the webhook over HTTP, the CLI, config tickers, the trading service — naming the field."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest
from pydantic import SecretStr

from adapters.webhook import SIGNALS_PATH, WebhookServer
from config.settings import ConfigError, WebhookSettings, load_settings
from pipeline.core.clock import SimulatedClock
from pipeline.core.models import Direction, SignalType, TradeSignal, signal_problems
from pipeline.trading_service import normalize_ticker
from tests.daemon_proc import base_env, cli

pytestmark = pytest.mark.timeout(60)
BAD = ["株式", "ＡＡＰＬ", "AAPL\u200b", "ÄPPLE", "A\u0301"]
GOOD = ["AAPL", "brk.b", "BF-B", " msft "]
TOKEN = "ticker-token-0123456789abcdef"


def _signal(ticker: str) -> TradeSignal:
    return TradeSignal(signal_type=SignalType.MANUAL, direction=Direction.LONG, ticker=ticker, timeframe="5m",
                       conviction=70, entry_price=100.0, stop_loss=98.0, timestamp=datetime.now(UTC))


@pytest.mark.parametrize("ticker", BAD)
def test_signal_rules_refuse_non_ascii(ticker: str) -> None:
    assert any(p.startswith("ticker: ") for p in signal_problems(_signal(ticker)))


@pytest.mark.parametrize("ticker", BAD)
def test_trading_service_refuses_non_ascii(ticker: str) -> None:
    with pytest.raises(ValueError, match=r"^ticker: "):
        normalize_ticker(ticker)


@pytest.mark.parametrize("ticker", GOOD)
def test_broker_symbols_pass_normalised(ticker: str) -> None:
    assert normalize_ticker(ticker) == ticker.strip().upper()
    assert signal_problems(_signal(ticker.strip().upper())) == []


async def test_webhook_refuses_non_ascii_tickers() -> None:
    server = WebhookServer(WebhookSettings(host="127.0.0.1", port=0, token=SecretStr(TOKEN)), _never_submit,
                           SimulatedClock(datetime(2026, 3, 2, 15, 0, tzinfo=UTC)))
    await server.start()
    try:
        async with aiohttp.ClientSession() as session:
            for ticker in BAD:
                body = {"ticker": ticker, "direction": "long", "signal_type": "manual", "timeframe": "5m",
                        "conviction": 70, "entry_price": 100.0, "stop_loss": 98.0}
                async with session.post(f"http://127.0.0.1:{server.port}{SIGNALS_PATH}", json=body,
                                        headers={"Authorization": f"Bearer {TOKEN}"}) as resp:
                    answer = await resp.json()
                assert resp.status == 400, (ticker, answer)
                assert [e["field"] for e in answer["errors"]] == ["ticker"]
    finally:
        await server.stop()


async def _never_submit(signal: TradeSignal) -> str:
    raise AssertionError(f"a bad ticker reached the pipeline: {signal.ticker!r}")


@pytest.mark.parametrize(("section", "key"), [("data", "tickers"), ("routing", "options_liquid_tickers")])
@pytest.mark.parametrize("ticker", ["株式", "ＡＡＰＬ"])
def test_config_tickers_refuse_non_ascii(tmp_path: Path, section: str, key: str, ticker: str) -> None:
    config = tmp_path / "ordergate.toml"
    config.write_text(f"[{section}]\n{key} = [\"AAPL\", \"{ticker}\"]\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=rf"^invalid setting {section}\.{key}"):
        load_settings(config, state_dir=tmp_path)


def test_config_tickers_are_normalised(tmp_path: Path) -> None:
    settings = load_settings(state_dir=tmp_path, data={"tickers": [" aapl", "brk.b"]},
                             routing={"options_liquid_tickers": ["spy"]})
    assert settings.data.tickers == ["AAPL", "BRK.B"]
    assert settings.routing.options_liquid_tickers == ["SPY"]


def test_environment_tickers_refuse_non_ascii(tmp_path: Path) -> None:
    env = base_env(tmp_path / "state", ORDERGATE_DATA__TICKERS=json.dumps(["ＡＡＰＬ"]))
    out = cli(tmp_path / "state", "run", env=env)
    assert out.returncode == 2, (out.stdout[-2000:], out.stderr)
    assert out.stderr.startswith("ordergate: invalid setting data.tickers") and "Traceback" not in out.stderr


@pytest.mark.parametrize(
    "args",
    [["signal", "--ticker", "株式", "--direction", "long", "--entry", "100", "--stop", "98"],
     ["buy", "ＡＡＰＬ", "--dollars", "100"],
     ["sell", "株式", "--shares", "1"]],
    ids=["signal", "buy", "sell"],
)
def test_cli_refuses_non_ascii_tickers(tmp_path: Path, args: list[str]) -> None:
    out = cli(tmp_path / "state", *args)
    assert out.returncode == 2, (out.stdout, out.stderr)
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "ticker" in lines[0] and "Traceback" not in out.stderr, out.stderr
