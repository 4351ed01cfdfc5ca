"""InstrumentRouter, the ETF/sector catalogs and option contract selection."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from config.settings import ExecutorConfig, InstrumentMode, OptionsSettings, RoutingSettings
from pipeline.core.models import AssetClass, InstrumentType, TradeSignal
from pipeline.instruments.catalog import CatalogError, load_etf_catalog, load_sectors
from pipeline.instruments.instrument_router import LEVERAGED_ETF_CATALOG, InstrumentRouter
from pipeline.instruments.options import (
    OptionQuote,
    SyntheticChainProvider,
    contract_problems,
    select_contract,
    synthetic_chain,
    weekly_expiries,
)
from pipeline.instruments.pricing import bs_delta, bs_price

NOW = datetime(2024, 6, 12, 15, 0, tzinfo=UTC)


def sig(ticker: str = "NVDA", direction: str = "long", conviction: float = 85, entry: float = 850.0) -> TradeSignal:
    stop = entry * 0.98 if direction == "long" else entry * 1.02
    return TradeSignal("trend_aligned_long", direction, ticker, "5m", conviction, entry, stop, timestamp=NOW)


def router(mode: InstrumentMode, routing: dict[str, Any] | None = None, options: OptionsSettings | None = None,
           **kwargs: Any) -> InstrumentRouter:
    kwargs.setdefault("chain_provider", SyntheticChainProvider(options or OptionsSettings()))
    return InstrumentRouter(ExecutorConfig(instrument_mode=mode), RoutingSettings(**(routing or {})),
                            options or OptionsSettings(), **kwargs)


# -- catalogs ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("sector", "bull", "bear"), [
    ("nasdaq", "TQQQ", "SQQQ"), ("sp500", "SPXL", "SPXS"), ("semiconductors", "SOXL", "SOXS"),
    ("technology", "TECL", "TECS"), ("financials", "FAS", "FAZ"), ("russell2000", "TNA", "TZA"),
    ("energy", "ERX", "ERY"), ("biotech", "LABU", "LABD"),
])
def test_etf_catalog_pairs(sector: str, bull: str, bear: str) -> None:
    pair = LEVERAGED_ETF_CATALOG[sector]
    assert (pair.bull, pair.bear) == (bull, bear)
    assert pair.leverage >= 2.0


@pytest.mark.parametrize(("ticker", "sector"), [
    ("NVDA", "semiconductors"), ("AMD", "semiconductors"), ("AVGO", "semiconductors"), ("INTC", "semiconductors"),
    ("MU", "semiconductors"), ("AAPL", "technology"), ("MSFT", "technology"), ("GOOGL", "technology"),
    ("META", "technology"), ("JPM", "financials"), ("BAC", "financials"), ("GS", "financials"),
    ("XOM", "energy"), ("CVX", "energy"), ("TSLA", "nasdaq"), ("AMZN", "nasdaq"),
])
def test_sector_map(ticker: str, sector: str) -> None:
    assert load_sectors()[ticker] == sector


def test_sector_map_is_broad_and_read_only() -> None:
    sectors = load_sectors()
    assert len(sectors) >= 60
    assert load_sectors() is sectors  # cached
    with pytest.raises(TypeError):
        sectors["NVDA"] = "x"  # type: ignore[index]


@pytest.mark.parametrize(("text", "message"), [
    ("[tech\nbull = 1", "malformed TOML"),
    ('[tech]\nbear = "TECS"', "[tech] bull"),
    ('[tech]\nbull = "TECL"\nbear = "TECL"', "must differ"),
    ('[tech]\nbull = "TECL"\nbear = "TECS"\nleverage = 0.5', "leverage"),
    ('[tech]\nbull = "TECL"\nbear = "TECS"\ncolour = "red"', "unknown keys"),
    ('tech = "TECL"', "must be a table"),
])
def test_malformed_etf_catalog(tmp_path: Path, text: str, message: str) -> None:
    error, path = _refused(load_etf_catalog, tmp_path / "etf.toml", text)
    assert message in error and str(path) in error


@pytest.mark.parametrize(("text", "message"), [
    ("[sectors]\ntech = ['AAPL', 'AAPL']\nsemis = ['AAPL']", "already listed"),
    ("[sectors]\ntech = 'AAPL'", "must be a list"),
    ("[sectors]\ntech = ['']", "sectors.tech[0]"),
    ("[other]\nx = 1", "[sectors]"),
])
def test_malformed_sectors(tmp_path: Path, text: str, message: str) -> None:
    error, _ = _refused(load_sectors, tmp_path / "sectors.toml", text)
    assert message in error


def _refused(loader: Any, path: Path, text: str) -> tuple[str, Path]:
    """The CatalogError message `loader` gives for a file holding `text`."""
    path.write_text(text)
    with pytest.raises(CatalogError) as err:
        loader(path)
    return str(err.value), path


def test_missing_catalog_file(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="not found"):
        load_sectors(tmp_path / "nope.toml")


# -- leveraged ETF mode ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("ticker", "direction", "symbol"), [
    ("NVDA", "long", "SOXL"), ("NVDA", "short", "SOXS"), ("AAPL", "long", "TECL"), ("JPM", "short", "FAZ"),
    ("TSLA", "long", "TQQQ"), ("XOM", "short", "ERY"), ("IWM", "long", "TNA"),
])
def test_leveraged_etf_routing(ticker: str, direction: str, symbol: str) -> None:
    decision = router(InstrumentMode.LEVERAGED_ETF).route(sig(ticker, direction))
    assert decision.approved
    assert decision.instrument_type == InstrumentType.LEVERAGED_ETF
    assert decision.symbol == symbol
    assert decision.leverage == LEVERAGED_ETF_CATALOG[decision.sector].leverage
    assert symbol in decision.reason


@pytest.mark.parametrize("ticker", ["ZZZZ", "KO"])  # no sector / a sector without a fund
def test_no_sector_fallback_stock(ticker: str) -> None:
    decision = router(InstrumentMode.LEVERAGED_ETF, {"no_sector_fallback": "stock"}).route(sig(ticker, "short"))
    assert decision.approved
    assert (decision.instrument_type, decision.symbol) == (InstrumentType.STOCK, ticker)
    assert "no_sector_fallback=stock" in decision.reason


@pytest.mark.parametrize("ticker", ["ZZZZ", "KO"])
def test_no_sector_fallback_reject(ticker: str) -> None:
    decision = router(InstrumentMode.LEVERAGED_ETF, {"no_sector_fallback": "reject"}).route(sig(ticker))
    assert not decision.approved
    assert decision.symbol == ""
    assert "no_sector_fallback=reject" in decision.reason


def test_stock_mode() -> None:
    decision = router(InstrumentMode.STOCK).route(sig("NVDA", "short"))
    assert (decision.instrument_type, decision.symbol, decision.approved) == (InstrumentType.STOCK, "NVDA", True)
    assert decision.sector == "semiconductors"


# -- options mode --------------------------------------------------------------------------------------------

WINDOWS = [OptionsSettings(), OptionsSettings(dte_min=20, dte_max=40, delta_min=0.2, delta_max=0.3),
           OptionsSettings(dte_min=1, dte_max=10, delta_min=0.45, delta_max=0.55, max_spread_pct=0.05)]


@pytest.mark.parametrize("settings", WINDOWS, ids=["default", "20-40d/0.2-0.3", "1-10d/atm"])
@pytest.mark.parametrize(("direction", "right"), [("long", "C"), ("short", "P")])
def test_options_contract_inside_windows(settings: OptionsSettings, direction: str, right: str) -> None:
    decision = router(InstrumentMode.OPTIONS, options=settings).route(sig("NVDA", direction), NOW)
    assert decision.approved, decision.reason
    quote: OptionQuote = decision.option
    assert decision.instrument_type == InstrumentType.OPTIONS and decision.asset_class == AssetClass.OPTION
    assert decision.symbol == quote.occ_symbol and len(quote.occ_symbol) == 21
    assert quote.right == right
    assert settings.dte_min <= quote.dte(NOW) <= settings.dte_max
    assert settings.delta_min <= abs(quote.delta) <= settings.delta_max
    assert (quote.delta > 0) == (right == "C")
    assert quote.open_interest >= settings.min_open_interest
    assert (quote.ask - quote.bid) / quote.mid <= settings.max_spread_pct


def test_options_best_is_closest_to_window_middle() -> None:
    settings = OptionsSettings()
    chain = synthetic_chain("NVDA", 850.0, NOW, settings)
    best = select_contract(chain, "long", NOW, settings)
    assert best is not None
    eligible = [q for q in chain if not contract_problems(q, "C", NOW, settings)]
    target = (settings.delta_min + settings.delta_max) / 2
    assert abs(abs(best.delta) - target) == min(abs(abs(q.delta) - target) for q in eligible)


def test_options_no_contract_is_rejected() -> None:
    settings = OptionsSettings(min_open_interest=1_000_000)
    decision = router(InstrumentMode.OPTIONS, options=settings).route(sig(), NOW)
    assert not decision.approved and "open interest" in decision.reason


def test_filters_matter_in_the_synthetic_chain() -> None:
    settings = OptionsSettings()
    chain = synthetic_chain("AAPL", 180.0, NOW, settings)
    problems = [p.split()[0] for q in chain for p in contract_problems(q, q.right, NOW, settings)]
    assert {"dte", "|delta|", "open_interest", "spread"} <= set(problems)
    assert synthetic_chain("AAPL", 180.0, NOW, settings) == chain  # deterministic


def test_weekly_expiries_are_fridays_within_horizon() -> None:
    expiries = weekly_expiries(date(2024, 6, 12))
    assert expiries[0] == date(2024, 6, 14)
    assert all(d.weekday() == 4 for d in expiries)
    assert (expiries[-1] - date(2024, 6, 12)).days <= 63 and len(expiries) >= 8
    assert weekly_expiries(date(2024, 6, 14))[0] == date(2024, 6, 21)


def test_black_scholes_parity_and_delta() -> None:
    s, k, t, r, v = 100.0, 105.0, 0.25, 0.04, 0.3
    call, put = bs_price(s, k, t, r, v, "C"), bs_price(s, k, t, r, v, "P")
    assert call - put == pytest.approx(s - k * 2.718281828459045 ** (-r * t), abs=1e-9)
    assert bs_delta(s, k, t, r, v, "C") - bs_delta(s, k, t, r, v, "P") == pytest.approx(1.0)
    assert 0 < bs_delta(s, k, t, r, v, "C") < 1
    assert bs_price(s, 90.0, 0.0, r, v, "C") == 10.0


# -- BOTH ------------------------------------------------------------------------------------------------

class FailingChain:
    def chain(self, underlying: str, spot: float, as_of: datetime) -> list:
        raise ConnectionError("chain source down")


@pytest.mark.parametrize(("ticker", "conviction", "kwargs", "kind", "symbol", "why"), [
    ("NVDA", 85, {}, InstrumentType.OPTIONS, None, "is liquid"),
    ("NVDA", 79, {}, InstrumentType.LEVERAGED_ETF, "SOXL", "conviction 79 < options_min_conviction 80"),
    ("NVDA", 85, {"chain_provider": FailingChain()}, InstrumentType.LEVERAGED_ETF, "SOXL", "chain source down"),
    ("JPM", 95, {}, InstrumentType.LEVERAGED_ETF, "FAS", "JPM not in options_liquid_tickers"),
    ("ZZZZ", 95, {}, InstrumentType.STOCK, "ZZZZ", "ZZZZ has no sector"),
    ("KO", 95, {}, InstrumentType.STOCK, "KO", "sector consumer has no leveraged ETF"),
])
def test_both_mode(ticker: str, conviction: float, kwargs: dict, kind: InstrumentType, symbol: str | None,
                   why: str) -> None:
    decision = router(InstrumentMode.BOTH, **kwargs).route(sig(ticker, conviction=conviction), NOW)
    assert decision.approved
    assert decision.instrument_type == kind
    if symbol is not None:
        assert decision.symbol == symbol
    assert why in decision.reason, decision.reason


def test_both_uses_signal_timestamp_when_now_is_missing() -> None:
    decision = router(InstrumentMode.BOTH).route(sig("NVDA", conviction=90))
    assert decision.instrument_type == InstrumentType.OPTIONS
