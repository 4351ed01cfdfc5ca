"""validate_alpaca_settings: the [alpaca] problems the CLI reports before starting."""

from __future__ import annotations

from adapters.alpaca import validate_alpaca_settings
from config.settings import Settings


def _settings(**sections: dict) -> Settings:
    return Settings(**sections)


def test_primary_alpaca_without_keys_names_both_fields() -> None:
    problems = validate_alpaca_settings(_settings(broker={"primary": "alpaca"}))
    assert len(problems) == 2
    assert problems[0].startswith("alpaca.api_key:") and "ORDERGATE_ALPACA__API_KEY" in problems[0]
    assert problems[1].startswith("alpaca.secret_key:") and "broker.primary" in problems[1]


def test_alpaca_data_source_needs_keys_too() -> None:
    problems = validate_alpaca_settings(_settings(data={"source": "alpaca"}, alpaca={"api_key": "k"}))
    assert problems == [problems[0]] and problems[0].startswith("alpaca.secret_key:") and "data.source" in problems[0]


def test_complete_or_unused_settings_pass() -> None:
    assert validate_alpaca_settings(_settings()) == []
    ok = _settings(broker={"primary": "alpaca"}, alpaca={"api_key": "k", "secret_key": "s",
                                                         "base_url": "http://127.0.0.1:1234"})
    assert validate_alpaca_settings(ok) == []


def test_bad_urls_named() -> None:
    bad = _settings(broker={"primary": "paper", "fallback": "alpaca"}, alpaca={
        "api_key": "k", "secret_key": "s", "base_url": "https://paper-api.alpaca.markets/v2",
        "trading_stream_url": "https://x/stream"})
    problems = validate_alpaca_settings(bad)
    assert [p.split(":")[0] for p in problems] == ["alpaca.trading_stream_url", "alpaca.base_url"]


def test_bad_data_url_named() -> None:
    for url, why in (("wss://data.alpaca.markets", "must start with http:// or https://"),
                     ("https://data.alpaca.markets/v2", "without /v2")):
        bad = _settings(data={"source": "alpaca"}, alpaca={"api_key": "k", "secret_key": "s", "data_url": url})
        (problem,) = validate_alpaca_settings(bad)
        assert problem.startswith("alpaca.data_url:") and why in problem and url in problem
