"""Finding and building the configured strategies.

A `[[strategies]]` table's `kind` is either the name of an entry point in the group `ordergate.strategies`
(the shipped ones are declared in pyproject.toml; a plug-in package declares its own) or a dotted path
`module:Class`. The thing it names is built with its `from_spec(spec, calendar=...)` classmethod (or, when it
has none, called as `factory(spec, calendar=...)`) and must satisfy the `Strategy` port. Anything wrong — an
unknown name, a module that does not import, a class without the port's members, bad params — is one
ConfigError line naming the strategy, raised at start before anything trades.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from importlib.metadata import entry_points
from typing import Any

from config.settings import ConfigError, Settings, StrategySpec
from pipeline.core.calendar import MarketCalendar
from pipeline.strategy.port import Strategy
from pipeline.strategy.strategy_set import StrategySet

ENTRY_POINT_GROUP = "ordergate.strategies"
# the shipped strategies, also reachable when the installed metadata predates their entry points
SHIPPED: dict[str, str] = {
    "ema_cloud": "pipeline.strategy.ema_cloud:EmaCloudStrategy",
    "daily_breakout": "pipeline.strategy.breakout:DailyBreakoutStrategy",
}
_PORT_MEMBERS = ("name", "timeframes", "tickers", "warmup_bars", "on_bar", "is_warm", "warm_up_minutes", "state")


def known_kinds() -> list[str]:
    """Every strategy name the entry points (and the shipped table) offer, sorted."""
    return sorted({ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)} | set(SHIPPED))


def _load_path(path: str, where: str) -> Any:
    module_name, _, attr = path.partition(":")
    if not module_name or not attr:
        raise ConfigError(f"{where}: {path!r} is not a module:Class path")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # ImportError, or the module itself failing: named, never a traceback at start
        raise ConfigError(f"{where}: cannot import module {module_name!r} of {path!r} "
                          f"({type(exc).__name__}: {exc})") from None
    target: Any = module
    for part in attr.split("."):
        target = getattr(target, part, None)
        if target is None:
            raise ConfigError(f"{where}: module {module_name!r} has no {attr!r} (from {path!r})")
    return target


def resolve(kind: str, where: str = "strategies.kind") -> Any:
    """The factory a `kind` names: an entry point of `ordergate.strategies`, or a `module:Class` path."""
    if ":" in kind:
        return _load_path(kind, where)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == kind:
            try:
                return ep.load()
            except Exception as exc:  # a broken plug-in package
                raise ConfigError(f"{where}: entry point {kind!r} ({ep.value}) does not load "
                                  f"({type(exc).__name__}: {exc})") from None
    if kind in SHIPPED:
        return _load_path(SHIPPED[kind], where)
    raise ConfigError(f"{where}: unknown strategy {kind!r}: no entry point of that name in group "
                      f"{ENTRY_POINT_GROUP} (known: {', '.join(known_kinds())}) and not a module:Class path")


def build_strategy(spec: StrategySpec, calendar: MarketCalendar | None = None) -> Strategy:
    """Build one configured strategy (ConfigError naming it when it cannot be)."""
    where = f"strategies.{spec.name}.kind"
    factory = resolve(spec.kind, where)
    build = getattr(factory, "from_spec", None)
    try:
        strategy = build(spec, calendar=calendar) if build is not None else factory(spec, calendar=calendar)
    except ConfigError:
        raise
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"strategies.{spec.name}: {spec.kind!r} refused its settings: {exc}") from None
    if not isinstance(strategy, Strategy):
        raise ConfigError(f"{where}: {spec.kind!r} built a {type(strategy).__name__}, which is not a Strategy "
                          f"(the port needs: {', '.join(_PORT_MEMBERS)})")
    if strategy.name != spec.name:
        strategy.name = spec.name  # the configured name is the one its signals, orders and trades carry
    return strategy


def build_strategies(settings: Settings, calendar: MarketCalendar | None = None) -> Any:
    """The daemon's strategies as one object for the engine (bars in, signals out) and the exits (clouds).

    Without [[strategies]] this is today's one EmaCloudStrategy itself (no wrapper on the hot path); otherwise
    a `StrategySet` of them.
    """
    specs = settings.effective_strategies()
    if not specs:
        raise ConfigError("strategies: every [[strategies]] entry is disabled; enable one or remove the section")
    strategies = [build_strategy(spec, calendar) for spec in specs]
    from pipeline.strategy.ema_cloud import EmaCloudStrategy

    only = strategies[0]
    if len(strategies) == 1 and type(only) is EmaCloudStrategy and only.tickers is None:
        return only  # it stamps its own signals and is its own cloud source
    return StrategySet(strategies, _exit_clouds(settings, strategies, calendar))


def _exit_clouds(settings: Settings, strategies: Sequence[Strategy], calendar: MarketCalendar | None) -> Any:
    """The EMA clouds the exits read (momentum exhaustion, cloud flip, trailing stop) for every position: an
    EMA-cloud member that sees every ticker on every timeframe, else a signal-less one of the [strategy]
    section on the union of the strategies' timeframes."""
    from pipeline.strategy.ema_cloud import EmaCloudStrategy

    timeframes = list(dict.fromkeys(tf for s in strategies for tf in s.timeframes))
    for s in strategies:
        if isinstance(s, EmaCloudStrategy) and s.tickers is None and set(timeframes) <= set(s.timeframes):
            return s
    quiet = settings.strategy.model_copy(update={"enabled": False, "timeframes": timeframes})
    return EmaCloudStrategy(quiet, calendar=calendar, name="exit_clouds")
