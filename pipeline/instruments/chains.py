"""PrefetchedChains: a venue's option chains, fetched in the background and answered from memory.

The orchestrator asks the chain port synchronously inside a decision, so a real venue (Alpaca, IB) cannot be asked
then. Its adapter gives this cache an async `fetch(underlying, as_of)`; the cache refreshes the configured tickers
every `options.chain_refresh_seconds` on the injected clock and keeps one time-stamped chain per underlying
(at most `chain_max_underlyings`). `chain()` answers only a chain younger than `chain_max_age_seconds` by the
injected clock; a stale or missing chain raises OptionChainUnavailable saying why (never older prices, never
invented ones). An underlying asked for that is not prefetched is fetched in the background for next time.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime

import structlog

from config.settings import InstrumentMode, OptionsSettings, Settings
from pipeline.core.clock import Clock
from pipeline.core.ports import ChainFetch
from pipeline.instruments.options import OptionChainUnavailable, OptionQuote

log = structlog.get_logger("ordergate.chains")


@dataclass(frozen=True, slots=True)
class ChainSnapshot:
    """One underlying's chain as fetched at `fetched_at` (the injected clock's time)."""

    underlying: str
    quotes: tuple[OptionQuote, ...]
    fetched_at: datetime


def chain_tickers(settings: Settings) -> list[str]:
    """The underlyings whose chains are prefetched: options.chain_tickers, else the tickers options may be routed
    for (routing.options_liquid_tickers; in instrument_mode=options also data.tickers); none when the mode never
    routes to options."""
    mode = InstrumentMode(settings.executor.instrument_mode)
    if mode not in (InstrumentMode.OPTIONS, InstrumentMode.BOTH):
        return []
    if settings.options.chain_tickers:
        names = list(settings.options.chain_tickers)
    else:
        names = list(settings.routing.options_liquid_tickers)
        if mode is InstrumentMode.OPTIONS:
            names += settings.data.tickers
    return list(dict.fromkeys(names))[: settings.options.chain_max_underlyings]


class PrefetchedChains:
    """The option chain port over a venue: a bounded, time-stamped cache refreshed in the background."""

    def __init__(
        self, fetch: ChainFetch, clock: Clock, tickers: list[str], settings: OptionsSettings, source: str,
    ) -> None:
        self._fetch = fetch
        self.clock = clock
        self.settings = settings
        self.source = source
        self.tickers = [t.strip().upper() for t in tickers][: settings.chain_max_underlyings]
        self._chains: OrderedDict[str, ChainSnapshot] = OrderedDict()
        self._errors: dict[str, str] = {}
        self._wanted: OrderedDict[str, None] = OrderedDict()  # asked for, not prefetched: fetched on the next pass
        self._task: asyncio.Task[None] | None = None
        self._on_demand: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._started = False
        self.fetches = 0
        self.failures = 0

    @property
    def chain_label(self) -> str:
        return f"{self.source} option chain"

    # -- the port -------------------------------------------------------------------------------------
    def chain(self, underlying: str, spot: float, as_of: datetime) -> list[OptionQuote]:
        """The fresh chain of `underlying`; OptionChainUnavailable with the reason when it is missing or stale."""
        name = underlying.strip().upper()
        snapshot = self._chains.get(name)
        error = self._errors.get(name)
        if snapshot is None:
            if error is not None:
                why = f"fetching it failed: {error}"
            elif name in self.tickers or name in self._wanted:
                why = "not fetched yet"
            else:
                why = "not among the prefetched tickers (options.chain_tickers); fetching it for next time"
                self._want(name)
            raise OptionChainUnavailable(f"no {self.source} option chain for {name}: {why}")
        age = (self.clock.now() - snapshot.fetched_at).total_seconds()
        limit = self.settings.chain_max_age_seconds
        if age > limit:
            last = f"; the last refresh failed: {error}" if error else ""
            raise OptionChainUnavailable(
                f"{self.source} option chain for {name} is stale: fetched {age:.0f}s ago > "
                f"options.chain_max_age_seconds {limit:g}{last}"
            )
        return list(snapshot.quotes)

    def snapshot(self, underlying: str) -> ChainSnapshot | None:
        """The chain held for `underlying`, fresh or not (diagnostics)."""
        return self._chains.get(underlying.strip().upper())

    def status(self) -> dict[str, object]:
        """What the cache holds: per underlying its age and size, or its last error."""
        now = self.clock.now()
        return {
            "source": self.source, "fetches": self.fetches, "failures": self.failures,
            "chains": {name: {"contracts": len(s.quotes), "age_s": round((now - s.fetched_at).total_seconds(), 1)}
                       for name, s in self._chains.items()},
            "errors": dict(self._errors),
        }

    def reconfigure(self, settings: OptionsSettings, tickers: list[str]) -> None:
        """New windows, limits and tickers from now on (a SIGHUP reload); the next pass fetches the new set."""
        self.settings = settings
        self.tickers = [t.strip().upper() for t in tickers][: settings.chain_max_underlyings]
        if self._started and self._task is None and self.tickers:
            self._task = asyncio.get_running_loop().create_task(self.run(), name=f"{self.source}-option-chains")

    # -- refreshing -----------------------------------------------------------------------------------
    async def refresh(self, underlyings: list[str] | None = None) -> dict[str, str | None]:
        """Fetch each underlying now (default: the prefetched tickers and those asked for); its error or None."""
        names = underlyings if underlyings is not None else [*self.tickers, *self._wanted]
        outcome: dict[str, str | None] = {}
        async with self._lock:
            for name in dict.fromkeys(n.strip().upper() for n in names):
                outcome[name] = await self._refresh_one(name)
        return outcome

    async def _refresh_one(self, name: str) -> str | None:
        self.fetches += 1
        try:
            quotes = await self._fetch(name, self.clock.now())
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the venue failing keeps the old chain until it is stale, and says why
            self.failures += 1
            error = f"{type(exc).__name__}: {exc}"[:300]
            self._errors[name] = error
            log.warning("option_chain_fetch_failed", source=self.source, underlying=name, error=error)
            return error
        fetched_at = self.clock.now()
        self._errors.pop(name, None)
        self._chains[name] = ChainSnapshot(name, tuple(quotes[: self.settings.chain_max_contracts]), fetched_at)
        self._chains.move_to_end(name)
        while len(self._chains) > self.settings.chain_max_underlyings:
            evicted, _ = self._chains.popitem(last=False)
            self._wanted.pop(evicted, None)
        log.info("option_chain_fetched", source=self.source, underlying=name, contracts=len(quotes))
        return None

    def _want(self, name: str) -> None:
        self._wanted[name] = None
        while len(self.tickers) + len(self._wanted) > self.settings.chain_max_underlyings and self._wanted:
            self._wanted.popitem(last=False)
        if name not in self._wanted or not self._started:
            return  # not started (or no room): the name waits for the next pass, if any
        if self._on_demand is None or self._on_demand.done():
            self._on_demand = asyncio.get_running_loop().create_task(self.refresh([name]),
                                                                    name=f"{self.source}-chain-{name}")

    async def run(self) -> None:
        """Refresh every `chain_refresh_seconds` (the injected clock) until cancelled."""
        while True:
            await self.refresh()
            await self.clock.sleep(self.settings.chain_refresh_seconds)

    def start(self) -> None:
        """Start the background refresh (the first pass at once; no loop without tickers, only on-demand fetches)."""
        self._started = True
        if self._task is None and self.tickers:
            self._task = asyncio.get_running_loop().create_task(self.run(), name=f"{self.source}-option-chains")

    async def stop(self) -> None:
        self._started = False
        for task in (self._task, self._on_demand):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        self._task = self._on_demand = None
