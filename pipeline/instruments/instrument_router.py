"""InstrumentRouter: which instrument trades a signal — the stock, a sector leveraged ETF, or an option.

Modes (ExecutorConfig.instrument_mode):
- STOCK: the signal's ticker, in the signal's direction.
- LEVERAGED_ETF: the sector's 3x fund from LEVERAGED_ETF_CATALOG; long buys the bull fund, short buys the bear
  fund (the ETF position is long). A ticker with no sector (or a sector with no fund) follows
  routing.no_sector_fallback: trade the stock, or reject.
- OPTIONS: a contract from the option chain port (calls for long, puts for short) inside the DTE and delta
  windows with enough open interest and a tight spread, named by its OCC symbol; none -> reject. Only a real
  chain counts: without a chain provider there is none (the synthetic chain is the paper broker's).
- BOTH: options when conviction >= routing.options_min_conviction, the ticker is in
  routing.options_liquid_tickers and a contract qualifies; else the sector ETF if there is one; else the stock.

A routed ETF with no price (`priced`) falls back to the stock in BOTH and is rejected in LEVERAGED_ETF.
A decision with approved=False carries the reason; the orchestrator rejects the signal.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime

from config.settings import ExecutorConfig, InstrumentMode, OptionsSettings, RoutingSettings
from pipeline.core.models import AssetClass, Direction, InstrumentDecision, InstrumentType, TradeSignal
from pipeline.core.ports import LabelledChain, OptionChainProvider
from pipeline.instruments.catalog import ETFPair, load_etf_catalog, load_sectors
from pipeline.instruments.options import NoOptionChain, OptionChainUnavailable, OptionQuote, select_contract

LEVERAGED_ETF_CATALOG: Mapping[str, ETFPair] = load_etf_catalog()


class InstrumentRouter:
    """Routes an approved signal to an instrument (the spec's InstrumentRouter.route)."""

    def __init__(
        self,
        config: ExecutorConfig,
        routing: RoutingSettings | None = None,
        options: OptionsSettings | None = None,
        catalog: Mapping[str, ETFPair] | None = None,
        sectors: Mapping[str, str] | None = None,
        chain_provider: OptionChainProvider | None = None,
    ) -> None:
        self.config = config
        self.routing = routing or RoutingSettings()
        self.options = options or OptionsSettings()
        self.catalog = LEVERAGED_ETF_CATALOG if catalog is None else catalog
        self.sectors = load_sectors() if sectors is None else sectors
        # no chain unless one is given: invented contracts must never reach a real broker
        self.chain_provider: OptionChainProvider = chain_provider or NoOptionChain("no configured source")
        self._liquid = {t.upper() for t in self.routing.options_liquid_tickers}

    def reconfigure(self, config: ExecutorConfig, routing: RoutingSettings, options: OptionsSettings) -> None:
        """Route with a new instrument mode, routing rules and option windows from now on (a SIGHUP reload)."""
        self.config = config
        self.routing = routing
        self.options = options
        self._liquid = {t.upper() for t in routing.options_liquid_tickers}

    def sector_of(self, ticker: str) -> str | None:
        return self.sectors.get(ticker.strip().upper())

    def etf_for(self, ticker: str) -> ETFPair | None:
        """The leveraged ETF pair of the ticker's sector, if any."""
        sector = self.sector_of(ticker)
        return self.catalog.get(sector) if sector is not None else None

    def route(self, signal: TradeSignal, now: datetime | None = None) -> InstrumentDecision:
        """The instrument for `signal`; `now` (default: the signal's timestamp) dates the option chain."""
        mode = self.config.instrument_mode
        if mode.__class__ is not InstrumentMode:
            mode = InstrumentMode(mode)
        if mode is InstrumentMode.STOCK:
            return self._stock(signal, "instrument_mode=stock")
        if mode is InstrumentMode.LEVERAGED_ETF:
            return self._leveraged_etf(signal)
        if mode is InstrumentMode.OPTIONS:
            quote, why = self._option(signal, now)
            if quote is None:
                return self._reject(signal, f"options: {why}")
            return self._option_decision(signal, quote, "instrument_mode=options")
        return self._both(signal, now)

    def priced(
        self, signal: TradeSignal, decision: InstrumentDecision, price_of: Callable[[str], float | None]
    ) -> InstrumentDecision:
        """A routed leveraged ETF must have a price to be sized and sent. Without one (no bars, no quote) mode
        `both` trades the stock itself and says why; mode `leveraged_etf` rejects saying what to add."""
        if not decision.approved or decision.instrument_type != InstrumentType.LEVERAGED_ETF:
            return decision
        if price_of(decision.symbol) is not None:
            return decision
        missing = f"no price for {decision.symbol} (no bars, no quote)"
        if InstrumentMode(self.config.instrument_mode) is InstrumentMode.BOTH:
            return self._stock(signal, f"both: {missing}, so")
        return self._reject(signal, f"leveraged_etf: {missing}: add {decision.symbol}'s bars to the data (the "
                            f"replay file, data.tickers) or use instrument_mode=both or stock")

    # -- the instruments ------------------------------------------------------------------------------------

    def _stock(self, signal: TradeSignal, reason: str) -> InstrumentDecision:
        ticker = signal.ticker.strip().upper()
        return InstrumentDecision(InstrumentType.STOCK, ticker, f"{reason}: {ticker} stock {signal.direction}",
                                  sector=self.sectors.get(ticker))

    def _reject(self, signal: TradeSignal, reason: str) -> InstrumentDecision:
        return InstrumentDecision(InstrumentType.STOCK, "", reason, approved=False,
                                  sector=self.sector_of(signal.ticker))

    def _etf_decision(self, signal: TradeSignal, pair: ETFPair, reason: str) -> InstrumentDecision:
        fund = pair.fund_for(signal.direction)
        kind = "bull" if fund == pair.bull else "bear"
        return InstrumentDecision(
            InstrumentType.LEVERAGED_ETF, fund,
            f"{reason}: {signal.ticker} is in {pair.sector}; {signal.direction} -> buy {fund} "
            f"({pair.leverage:g}x {kind})",
            leverage=pair.leverage, sector=pair.sector,
        )

    def _leveraged_etf(self, signal: TradeSignal) -> InstrumentDecision:
        pair = self.etf_for(signal.ticker)
        if pair is not None:
            return self._etf_decision(signal, pair, "instrument_mode=leveraged_etf")
        sector = self.sector_of(signal.ticker)
        missing = f"{signal.ticker} has no sector" if sector is None else f"sector {sector} has no leveraged ETF"
        if self.routing.no_sector_fallback == "stock":
            return self._stock(signal, f"{missing}; no_sector_fallback=stock")
        return self._reject(signal, f"leveraged_etf: {missing}; no_sector_fallback=reject")

    def _option(self, signal: TradeSignal, now: datetime | None) -> tuple[OptionQuote | None, str]:
        as_of = now or signal.timestamp
        if as_of is None:
            return None, "no as-of time for the option chain"
        ticker = signal.ticker.strip().upper()
        try:
            chain = self.chain_provider.chain(ticker, signal.entry_price, as_of)
        except OptionChainUnavailable as exc:
            return None, str(exc)
        except Exception as exc:  # a chain source failing must not crash routing
            return None, f"option chain for {ticker} unavailable ({type(exc).__name__}: {exc})"
        quote = select_contract(chain, signal.direction, as_of, self.options)
        if quote is None:
            o = self.options
            right = "call" if signal.direction == Direction.LONG else "put"
            return None, (
                f"no {right} for {ticker} among {len(chain)} quotes "
                f"with DTE in [{o.dte_min}, {o.dte_max}], |delta| in [{o.delta_min}, {o.delta_max}], "
                f"open interest >= {o.min_open_interest}, spread <= {o.max_spread_pct:.0%}"
            )
        return quote, ""

    def _option_decision(self, signal: TradeSignal, quote: OptionQuote, reason: str) -> InstrumentDecision:
        kind = "call" if quote.right == "C" else "put"
        source = self.chain_provider.chain_label if isinstance(self.chain_provider, LabelledChain) \
            else "the broker chain"
        return InstrumentDecision(
            InstrumentType.OPTIONS, quote.occ_symbol,
            f"{reason}: {signal.direction} -> buy {kind} {quote.occ_symbol} (strike {quote.strike:g}, "
            f"expiry {quote.expiry.isoformat()}, delta {quote.delta:+.2f}, OI {quote.open_interest}; from "
            f"{source})",
            asset_class=AssetClass.OPTION, option=quote, sector=self.sector_of(signal.ticker),
        )

    def _both(self, signal: TradeSignal, now: datetime | None) -> InstrumentDecision:
        ticker = signal.ticker.strip().upper()
        threshold = self.routing.options_min_conviction
        if signal.conviction < threshold:
            why_not = f"conviction {signal.conviction:g} < options_min_conviction {threshold}"
        elif ticker not in self._liquid:
            why_not = f"{ticker} not in options_liquid_tickers"
        else:
            quote, why_not = self._option(signal, now)
            if quote is not None:
                return self._option_decision(
                    signal, quote, f"both: conviction {signal.conviction:g} >= {threshold} and {ticker} is liquid"
                )
        pair = self.etf_for(ticker)
        if pair is not None:
            return self._etf_decision(signal, pair, f"both: no options ({why_not})")
        sector = self.sector_of(ticker)
        no_etf = f"{ticker} has no sector" if sector is None else f"sector {sector} has no leveraged ETF"
        return self._stock(signal, f"both: no options ({why_not}), {no_etf}")
