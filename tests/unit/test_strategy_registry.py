"""Strategies as plug-ins: the port, entry points and dotted paths, [[strategies]] in config, one-line errors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest

from config.settings import ConfigError, StrategySpec, load_settings
from daemon.cli import main
from pipeline.core.models import Bar, TradeSignal
from pipeline.strategy.breakout import DailyBreakoutStrategy
from pipeline.strategy.ema_cloud import EmaCloudStrategy
from pipeline.strategy.port import Strategy
from pipeline.strategy.registry import ENTRY_POINT_GROUP, build_strategies, build_strategy, resolve
from pipeline.strategy.strategy_set import StrategySet


class EveryBarLong:
    """A plug-in found by its dotted path: one long signal on every bar of a ticker it trades."""

    def __init__(self, spec: StrategySpec, *, calendar: Any = None) -> None:
        self.name = spec.name
        self.timeframes = tuple(spec.timeframes)
        self.tickers = tuple(spec.tickers) if spec.tickers else None
        self.warmup_bars = 0
        self.bars = 0

    def on_bar(self, bar: Bar) -> list[TradeSignal]:
        self.bars += 1
        return [TradeSignal("manual", "long", bar.symbol, "1m", 70, bar.close, bar.close * 0.99,
                            timestamp=bar.timestamp, strategy="someone_else")]

    def is_warm(self, symbol: str, timeframe: str) -> bool:
        return True

    def warm_up_minutes(self) -> int:
        return 0

    def state(self) -> dict[str, Any]:
        return {"bars": self.bars}


class NotAStrategy:
    def __init__(self, spec: StrategySpec, *, calendar: Any = None) -> None:
        self.name = spec.name


HERE = f"{__name__}"


def _spec(**fields: Any) -> StrategySpec:
    return StrategySpec(**{"name": "s", "kind": "ema_cloud", **fields})


def _bar(symbol: str = "AAPL", minute: int = 0) -> Bar:
    ts = datetime(2026, 11, 24, 15, 0, tzinfo=UTC) + timedelta(minutes=minute)
    return Bar(symbol, ts, 100.0, 101.0, 99.0, 100.5, 1000.0, "1m")


def test_the_shipped_strategies_are_entry_points_and_satisfy_the_port() -> None:
    names = {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}
    assert names["ema_cloud"] == "pipeline.strategy.ema_cloud:EmaCloudStrategy"
    assert names["daily_breakout"] == "pipeline.strategy.breakout:DailyBreakoutStrategy"
    assert resolve("ema_cloud") is EmaCloudStrategy and resolve("daily_breakout") is DailyBreakoutStrategy
    for kind, timeframes in (("ema_cloud", ["5m"]), ("daily_breakout", ["1d"])):
        strategy = build_strategy(_spec(name=f"my_{kind}", kind=kind, timeframes=timeframes))
        assert isinstance(strategy, Strategy)
        assert strategy.name == f"my_{kind}" and strategy.timeframes == tuple(timeframes)
        assert strategy.warmup_bars > 0 and not strategy.is_warm("AAPL", timeframes[0])
        assert isinstance(strategy.state(), dict)


def test_a_dotted_path_builds_a_plug_in_and_the_set_stamps_its_signals() -> None:
    spec = _spec(name="echo", kind=f"{HERE}:EveryBarLong", tickers=["AAPL"], timeframes=["1m"])
    plug = build_strategy(spec)
    assert isinstance(plug, EveryBarLong) and isinstance(plug, Strategy)
    ema = build_strategy(_spec(name="clouds", timeframes=["5m"]))
    both = StrategySet([ema, plug], clouds=ema)
    signals = both.on_bar(_bar("AAPL"))
    assert [s.strategy for s in signals] == ["echo"]  # a strategy cannot speak for another
    assert both.on_bar(_bar("MSFT", 1)) == [] and plug.bars == 1  # MSFT is not one of echo's tickers
    assert both.signals_by_strategy == {"clouds": 0, "echo": 1}


@pytest.mark.parametrize(("kind", "message"), [
    ("no_such_strategy", "strategies.s.kind: unknown strategy 'no_such_strategy': no entry point of that name in "
                         "group ordergate.strategies (known: daily_breakout, ema_cloud"),
    ("no.such.module:Thing", "strategies.s.kind: cannot import module 'no.such.module'"),
    (f"{HERE}:Missing", f"strategies.s.kind: module '{HERE}' has no 'Missing'"),
    (f"{HERE}:NotAStrategy", "strategies.s.kind: 'tests.unit.test_strategy_registry:NotAStrategy' built a "
                             "NotAStrategy, which is not a Strategy (the port needs: name, timeframes, tickers"),
    ("pipeline.strategy.ema_cloud:", "strategies.s.kind: 'pipeline.strategy.ema_cloud:' is not a module:Class"),
])
def test_a_kind_that_cannot_be_built_is_one_config_error_naming_it(kind: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        build_strategy(_spec(kind=kind))
    assert str(err.value).startswith(message), str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(("kind", "params", "message"), [
    ("daily_breakout", {"channel": 1}, "strategies.s: 'daily_breakout' refused its settings: strategies.s.params: "
                                       "invalid setting channel=1"),
    ("daily_breakout", {"chanel": 20}, "strategies.s: 'daily_breakout' refused its settings: strategies.s.params: "
                                       "invalid setting chanel=20: Extra inputs are not permitted"),
    ("ema_cloud", {"min_conviction": 500}, "strategies.s: 'ema_cloud' refused its settings: strategies.s.params: "
                                           "invalid setting min_conviction=500"),
])
def test_bad_params_are_one_config_error_naming_the_field(kind: str, params: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        build_strategy(_spec(kind=kind, params=params, timeframes=["1d"]))
    assert str(err.value).startswith(message), str(err.value)


def test_without_a_strategies_section_the_one_ema_cloud_strategy_of_strategy_runs(tmp_path: Path) -> None:
    settings = load_settings(state_dir=tmp_path, strategy={"timeframes": ["15m"], "min_conviction": 70})
    (spec,) = settings.effective_strategies()
    assert (spec.name, spec.kind, spec.timeframes) == ("ema_cloud", "ema_cloud", ["15m"])
    strategy = build_strategies(settings)
    assert type(strategy) is EmaCloudStrategy  # itself, no wrapper on the hot path
    assert strategy.name == "ema_cloud" and strategy.min_conviction == 70 and strategy.timeframes == ("15m",)


def test_strategies_from_toml(tmp_path: Path) -> None:
    path = tmp_path / "two.toml"
    path.write_text('''
[[strategies]]
name = "clouds"
kind = "ema_cloud"
timeframes = ["5m", "15m"]
params = { min_conviction = 60 }
max_positions = 4
equity_share = 0.6

[[strategies]]
name = "breakout"
kind = "daily_breakout"
tickers = ["aapl", "MSFT"]
timeframes = ["1d"]
params = { channel = 55, atr_stop = 3.0 }
daily_loss = 0.02

[[strategies]]
name = "off"
kind = "no_such_kind_but_disabled"
enabled = false
''')
    settings = load_settings(path, state_dir=tmp_path)
    assert [s.name for s in settings.effective_strategies()] == ["clouds", "breakout"]
    built = build_strategies(settings)
    assert isinstance(built, StrategySet)
    clouds, breakout = built.members
    assert clouds.min_conviction == 60 and clouds.timeframes == ("5m", "15m")
    assert breakout.tickers == ("AAPL", "MSFT") and breakout.params.channel == 55
    # the exits read clouds on every timeframe any strategy trades: a quiet set of clouds beside them
    assert built.clouds is not clouds and built.clouds.timeframes == ("5m", "15m", "1d") and not built.clouds.enabled


@pytest.mark.parametrize(("entry", "message"), [
    ({"name": "Bad Name", "kind": "ema_cloud"}, "invalid setting strategies.0.name='Bad Name'"),
    ({"name": "x", "kind": "ema_cloud", "timeframes": ["7m"]}, "invalid setting strategies.0.timeframes"),
    ({"name": "x", "kind": "ema_cloud", "equity_share": 1.5}, "invalid setting strategies.0.equity_share=1.5"),
    ({"name": "x", "kind": "ema_cloud", "max_positions": 0}, "invalid setting strategies.0.max_positions=0"),
    ({"name": "x", "kind": "ema_cloud", "limit": 3}, "invalid setting strategies.0.limit=3: Extra inputs"),
])
def test_a_bad_strategies_table_is_one_line_naming_the_field(tmp_path: Path, entry: dict[str, Any],
                                                            message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(state_dir=tmp_path, strategies=[entry])
    assert str(err.value).startswith(message), str(err.value)


def test_two_strategies_of_one_name_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="strategy name 'a' is used twice"):
        load_settings(state_dir=tmp_path, strategies=[{"name": "a", "kind": "ema_cloud"},
                                                      {"name": "a", "kind": "daily_breakout"}])


def test_ordergate_stops_at_start_with_one_line_naming_an_unknown_strategy(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[[strategies]]\nname = "mine"\nkind = "mystery"\n')
    code = main(["--config", str(path), "replay", "embedded"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("ordergate: strategies.mine.kind: unknown strategy 'mystery'"), err
    assert len(err.splitlines()) == 1


def test_status_shows_each_strategy_when_there_are_several() -> None:
    from daemon.tables import render_status

    line = {"kind": "ema_cloud", "open_positions": 1, "market_value": 5000.0, "unrealized_pnl": 12.5,
            "daily_pnl": -40.0, "max_positions": 3, "equity_share": 0.5, "daily_loss": None}
    two = {"running": True, "kill_switch": {"active": False}, "daily_pnl": 0.0, "open_positions": 1,
           "strategies": {"clouds": line, "breakout": {**line, "kind": "daily_breakout", "open_positions": 0}}}
    text = render_status(two, colour=False)
    assert "strategies" in text and "clouds" in text and "daily_breakout" in text and "-40.00" in text
    one = {**two, "strategies": {"ema_cloud": line}}
    assert "strategies" not in render_status(one, colour=False)  # one strategy: the status reads as before
