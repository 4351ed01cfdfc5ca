"""TradingEngine: the per-bar path through the domain — marks, strategy, entries, exits.

    batch of bars -> bar listeners (paper broker marks) -> ledger marks + price history
                  -> strategy -> BotOrchestrator.process_signal (direct await, serialised)
                  -> LifecycleManager.check_exits (index by ticker + clock deadlines)

A batch is a list of `Bar`s (live, synthetic) or a `BarBatch` of columns (a replay's reader): then the strategy
takes the whole step at once and the exits build bars only for held tickers, with the same decisions in the
same order as bar by bar. Used by the daemon for live and synthetic data and by `ordergate replay` and the
benchmarks. In simulated
time `settle()` waits for in-flight orders and their broker events after each step that sent one, so a
replay is deterministic: the same file gives the same trades.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import structlog

from pipeline.core.batch import BarBatch
from pipeline.core.models import Bar, PipelineResult, TradeSignal
from pipeline.orchestrator import BotOrchestrator
from pipeline.positions.lifecycle import LifecycleManager
from pipeline.strategy.port import BatchStrategy, Strategy

log = structlog.get_logger("ordergate.engine")
BarListener = Callable[[list[Bar]], Any]  # returns how many resting broker orders the bars filled (paper)


class TradingEngine:
    """Drives bars through the strategy (one, or a StrategySet of several), orchestrator and lifecycle."""

    def __init__(
        self,
        orchestrator: BotOrchestrator,
        lifecycle: LifecycleManager,
        strategy: Strategy | None,
        *,
        bar_listeners: list[BarListener] | None = None,
        settle: Callable[[], Awaitable[None]] | None = None,
        pruners: list[Callable[[], object]] | None = None,
    ) -> None:
        self.orchestrator = orchestrator
        self.lifecycle = lifecycle
        self.strategy = strategy
        # a replay's columns go to the strategy whole when it takes them (others get the step bar by bar)
        self.batched = strategy is None or isinstance(strategy, BatchStrategy)
        self.bar_listeners = bar_listeners or []
        self.pruners: list[Callable[[], object]] = pruners or []  # in-memory brokers' bookkeeping (Prunable)
        self._settle = settle
        self.bars = 0
        self.batches = 0
        self.signals = 0
        self.entries = 0
        self.exits = 0

    async def on_batch(self, batch: Sequence[Bar]) -> None:
        """One time step: every bar of the batch shares its timestamp."""
        self.batches += 1
        self.bars += len(batch)
        triggered = 0
        for listener in self.bar_listeners:
            triggered += listener(batch) or 0
        if triggered and self._settle is not None:
            await self._settle()  # a resting stop that filled on this bar is booked before the exits look at it
        self.lifecycle.update_positions(batch)
        if isinstance(batch, BarBatch) and self.batched:
            sent = await self._signals_of_columns(batch)
        else:
            sent = await self._signals_of_bars(batch)
        exits = self.lifecycle.check_exits(batch)
        if exits:
            self.exits += len(exits)
            sent = True
        if sent and self._settle is not None:
            await self._settle()
        if self.batches % 1_000 == 0:
            self.prune()

    async def _signals_of_bars(self, batch: Sequence[Bar]) -> bool:
        """The step bar by bar: each bar's price, then its signals; whether any signal was sent."""
        prices = self.orchestrator.prices
        sent = False
        strategy = self.strategy
        for bar in batch:
            prices.update(bar.symbol, bar.close, bar.timeframe)
            if strategy is not None:
                for signal in strategy.on_bar(bar):
                    sent = await self.submit_signal(signal) or sent
        return sent

    async def _signals_of_columns(self, batch: BarBatch) -> bool:
        """The step of a BarBatch (a replay): the strategy takes the whole step at once; each signal is decided
        with the price history up to its own bar, as bar by bar (the prices of the bars after it come later)."""
        n = len(batch)
        symbols, closes, tf, checked = batch.symbols, batch.closes(), batch.timeframe, batch.checked
        update_many = self.orchestrator.prices.update_many
        sent = False
        done = 0
        if self.strategy is not None:
            for j, signal in self.strategy.on_batch(batch):  # type: ignore[union-attr]
                if j >= done:
                    update_many(symbols, closes, tf, checked, done, j + 1)
                    done = j + 1
                sent = await self.submit_signal(signal) or sent
        if done < n:
            update_many(symbols, closes, tf, checked, done, n)
        return sent

    def warm_up(self, batch: Sequence[Bar]) -> None:
        """History from before the daemon started: it feeds the strategy's clouds and the price history of the
        correlation/VaR checks only. No signal, no exit, no fill comes of it (those prices are gone)."""
        prices = self.orchestrator.prices
        strategy = self.strategy
        if isinstance(batch, BarBatch) and self.batched:
            prices.update_many(batch.symbols, batch.closes(), batch.timeframe)
            if strategy is not None:
                strategy.on_batch(batch)  # type: ignore[union-attr]
            return
        for bar in batch:
            prices.update(bar.symbol, bar.close, bar.timeframe)
            if strategy is not None:
                strategy.on_bar(bar)

    def prune(self) -> None:
        """Bounded memory in long runs: finished orders are forgotten by the lifecycle and in-memory brokers."""
        self.lifecycle.prune(keep=2_000)
        for pruner in self.pruners:
            pruner()

    async def submit_signal(self, signal: TradeSignal) -> bool:
        """Run a signal through the orchestrator; True when it produced an order."""
        result = await self.decide_signal(signal)
        return result.success and result.intent is not None

    async def decide_signal(self, signal: TradeSignal) -> PipelineResult:
        """Run a signal through the orchestrator; the result says where it stopped and why."""
        self.signals += 1
        result = await self.orchestrator.process_signal(signal)
        if result.success and result.intent is not None:
            self.entries += 1
        return result

