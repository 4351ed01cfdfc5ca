"""The settings schema: defaults < TOML file < environment (ORDERGATE_*) < CLI flags.

`Settings` is the whole configuration of the daemon. `ExecutorConfig` and `PipelineConfig` carry the
names and defaults of the order-execution spec so the domain classes can be built from them alone.
Secrets are `SecretStr` and never printed.
"""

from __future__ import annotations

import os
from contextvars import ContextVar
from enum import StrEnum
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from config.files import MAX_CONFIG_BYTES, TomlFileError, load_toml
from config.symbols import symbol_problem

_TOML_DATA: ContextVar[dict[str, Any] | None] = ContextVar("ordergate_toml_data", default=None)
DEFAULT_TOML = Path(__file__).with_name("default.toml")
BrokerName = Literal["paper", "alpaca", "ibkr"]
EmaPeriod = Annotated[int, Field(ge=1, le=1000)]
# Upper bounds: generous for any real use, small enough that no arithmetic on them overflows.
MAX_DOLLARS = 1e12
MINUTES_PER_YEAR = 366 * 24 * 60
SECONDS_PER_DAY = 24 * 3600
SECONDS_PER_WEEK = 7 * SECONDS_PER_DAY
MAX_TICKERS = 5000
MIN_SCRUBBED_SECRET = 8  # shorter "secrets" would blank ordinary words out of the text they are scrubbed from
REDACTED = "[REDACTED]"


def scrub_secrets(text: str, secrets: list[str] | tuple[str, ...]) -> str:
    """`text` with every one of `secrets` (longest first, see Settings.secret_values) blanked out."""
    for secret in secrets:
        if secret and secret in text:
            text = text.replace(secret, REDACTED)
    return text
SECRET_FIELD_WORDS = ("key", "token", "secret", "webhook_url", "password", "dsn")
MAX_UNIX_SOCKET_PATH = 107  # sun_path holds 108 bytes with the NUL (daemon/control.py binds <state_dir>/control.sock)
TIMEFRAMES = ("1m", "2m", "3m", "5m", "10m", "15m", "30m", "1h", "2h", "4h", "1d")


class InstrumentMode(StrEnum):
    """Which instrument an entry signal is traded through."""

    STOCK = "stock"
    OPTIONS = "options"
    LEVERAGED_ETF = "leveraged_etf"
    BOTH = "both"


def _scalar_type(annotation: Any) -> Any:
    """`int` for `int`, `int | None` and `tuple[int, int]`; the annotation itself otherwise."""
    args = [a for a in get_args(annotation) if a is not type(None)]
    origin = get_origin(annotation)
    if origin is Annotated:
        return _scalar_type(args[0])
    if origin in (Union, UnionType) and len(args) == 1:
        return _scalar_type(args[0])
    if origin in (tuple, list) and args and all(a == args[0] for a in args):
        return _scalar_type(args[0])
    return annotation


def _refuse_type_punning(expected: Any, value: Any) -> None:
    """TOML `true` is not the number 1, and `0` is not `false` (pydantic's lax mode would take both)."""
    values = value if isinstance(value, list | tuple) else [value]
    if expected in (int, float) and any(isinstance(v, bool) for v in values):
        raise PydanticCustomError("number_type", "must be a number, not a boolean")
    if expected is bool and any(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        raise PydanticCustomError("bool_type", "must be true or false, not a number")


def _symbols(value: list[str]) -> list[str]:
    """Each ticker stripped, upper-cased and checked as a broker symbol (config/symbols.py)."""
    if len(value) > MAX_TICKERS:
        raise ValueError(f"at most {MAX_TICKERS} tickers, got {len(value)}")
    cleaned = []
    for ticker in value:
        symbol = ticker.strip().upper()
        problem = symbol_problem(symbol)
        if problem is not None:
            raise ValueError(f"ticker {problem}")
        cleaned.append(symbol)
    return cleaned


class _Section(BaseModel):
    """A settings section: unknown keys refused, numbers finite, no boolean/number punning; frozen once built
    (a new value comes from a new object: `model_copy(update=...)` or a reload, never an assignment)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True, defer_build=True)

    @field_validator("*", mode="before")
    @classmethod
    def _strict_scalars(cls, value: Any, info: ValidationInfo) -> Any:
        field = cls.model_fields.get(info.field_name or "")
        if field is not None:
            _refuse_type_punning(_scalar_type(field.annotation), value)
        return value


def _hhmm(value: str) -> str:
    try:
        hours, minutes = value.split(":")
        if not (0 <= int(hours) < 24 and 0 <= int(minutes) < 60 and len(minutes) == 2):
            raise ValueError
    except ValueError:
        raise ValueError(f"must be a time HH:MM, got {value!r}") from None
    return value


class ExecutorConfig(_Section):
    """Risk limits, exits and instrument choice (the spec's ExecutorConfig and its defaults)."""

    instrument_mode: InstrumentMode = InstrumentMode.BOTH
    max_risk_per_trade: float = Field(0.05, gt=0, le=1)
    max_concurrent_positions: int = Field(10, ge=1, le=10_000)
    daily_loss_limit: float = Field(0.10, gt=0, le=1)
    max_single_stock_exposure: float = Field(0.15, gt=0, le=1)
    max_sector_exposure: float = Field(0.30, gt=0, le=1)
    min_account_equity: float = Field(25_000.0, ge=0, le=MAX_DOLLARS)
    min_position_value: float = Field(100.0, ge=0, le=MAX_DOLLARS,
                                      description="smallest entry worth sending, in dollars")
    allow_add_to_winner: bool = True
    primary_broker: BrokerName = "alpaca"
    fallback_broker: BrokerName | None = "ibkr"
    reward_to_risk_target: float = Field(2.0, gt=0, le=100)
    time_stop_minutes: int = Field(120, ge=1, le=MINUTES_PER_YEAR)
    eod_close_time: str = "15:55"
    trailing_stop_cloud: Literal["pullback", "fast", "trend"] = "pullback"
    momentum_exhaustion_candles: int = Field(3, ge=1, le=1000)
    consecutive_loss_threshold: int = Field(3, ge=1, le=1000)
    circuit_breaker_cooldown_minutes: int = Field(60, ge=0, le=MINUTES_PER_YEAR)
    market_hours_bypass_timeframes: list[str] = ["1d"]

    _check_eod = field_validator("eod_close_time")(_hhmm)

    @property
    def eod_minutes_before_close(self) -> int:
        """Minutes before a normal 16:00 close that `eod_close_time` stands for (5 by default)."""
        hours, minutes = (int(x) for x in self.eod_close_time.split(":"))
        return 16 * 60 - (hours * 60 + minutes)


class PipelineConfig(_Section):
    """The hardened BotOrchestrator pipeline (the spec's PipelineConfig and its defaults)."""

    executor_config: ExecutorConfig = Field(default_factory=ExecutorConfig)
    enable_signal_recording: bool = True
    enable_unified_risk: bool = True
    enable_feedback_loop: bool = True
    enable_alerting: bool = True
    enable_analytics: bool = True
    max_order_retries: int = Field(3, ge=0, le=20)
    retry_backoff_base: float = Field(1.0, ge=0, le=60)
    retry_backoff_max: float = Field(30.0, gt=0, le=3600)
    state_dir: str = ".bot_state"
    max_signal_age_seconds: float = Field(120.0, gt=0, le=SECONDS_PER_WEEK)
    dedup_window_seconds: float = Field(300.0, ge=0, le=SECONDS_PER_WEEK)
    auto_kill_on_daily_loss: bool = True
    feedback_adjust_every_n_trades: int = Field(50, ge=1, le=100_000)
    feedback_window_trades: int = Field(50, ge=2, le=100_000)
    feedback_weight_min: float = Field(0.5, gt=0, le=10)
    feedback_weight_max: float = Field(1.5, gt=0, le=10)
    max_correlation: float = Field(0.80, gt=0, le=1)
    correlation_lookback_bars: int = Field(60, ge=5, le=100_000)
    var_limit: float = Field(0.05, gt=0, le=1, description="95% one-day portfolio VaR, fraction of equity")
    order_timeout_seconds: float = Field(10.0, gt=0, le=600)
    fill_timeout_seconds: float = Field(30.0, gt=0, le=3600)
    fill_slippage_tolerance: float = Field(0.02, ge=0, le=1, description="fraction of the reference price")
    max_entry_deviation: float = Field(
        0.02, gt=0, le=1, description="a signal's entry_price this far (fraction) from the market is rejected"
    )
    expected_slippage: float = Field(
        0.005, ge=0, lt=0.5, description="fraction a market entry fills away from the last price; sized and reserved"
    )

    @model_validator(mode="after")
    def _weights_ordered(self) -> PipelineConfig:
        if self.feedback_weight_min > self.feedback_weight_max:
            raise ValueError("feedback_weight_min must not exceed feedback_weight_max")
        return self


class BrokerSettings(_Section):
    """Which broker gets entries first, which one takes over when it is down."""

    primary: BrokerName = "paper"
    fallback: BrokerName | None = None
    request_timeout_seconds: float = Field(10.0, gt=0, le=300)
    down_after_failures: int = Field(3, ge=1, le=1000)
    breaker_reset_seconds: float = Field(30.0, gt=0, le=3600)
    # an order its broker has not heard of this long after the first miss (and on two lookups) is never_reached
    never_reached_after_seconds: float = Field(120.0, ge=0, le=86_400)
    # a broker clock this far from ours (measured at start) is alerted
    max_clock_skew_seconds: float = Field(2.0, gt=0, le=3600)

    @model_validator(mode="after")
    def _distinct(self) -> BrokerSettings:
        if self.fallback is not None and self.fallback == self.primary:
            raise ValueError(f"fallback broker must differ from primary ({self.primary!r})")
        return self


class PaperSettings(_Section):
    """The simulated broker."""

    initial_cash: float = Field(100_000.0, gt=0, le=MAX_DOLLARS)
    slippage_bps: float = Field(2.0, ge=0, le=10_000)
    commission_per_share: float = Field(0.0, ge=0, le=100)
    persistent: bool = True


class AlpacaSettings(_Section):
    """Alpaca credentials and endpoints (keys are secrets)."""

    api_key: SecretStr | None = None
    secret_key: SecretStr | None = None
    paper: bool = True
    base_url: str | None = None
    trading_stream_url: str | None = None
    data_stream_url: str | None = None
    data_url: str | None = None  # historical bars REST (warm-up, gap backfill); None = Alpaca's data API
    feed: Literal["iex", "sip"] = "iex"
    requests_per_minute: int = Field(200, ge=1, le=100_000)
    request_timeout_seconds: float = Field(10.0, gt=0, le=300)


class IBKRSettings(_Section):
    """Interactive Brokers TWS / IB Gateway connection."""

    host: str = "127.0.0.1"
    port: int = Field(7497, ge=1, le=65535)
    client_id: int = Field(1, ge=0, le=2**31 - 1)
    account: str = ""
    request_timeout_seconds: float = Field(10.0, gt=0, le=300)


class DataSettings(_Section):
    """Where bars come from."""

    source: Literal["synthetic", "replay", "alpaca"] = "synthetic"
    tickers: list[str] = ["AAPL", "MSFT", "NVDA", "AMD", "JPM", "XOM", "GOOGL", "TSLA"]
    replay_file: Path | None = None
    synthetic_seed: int = Field(7, ge=0, le=2**63 - 1)
    synthetic_days: int = Field(5, ge=1, le=1000)
    bars_per_second: float = Field(
        50.0, ge=0, le=10_000_000,
        description="pace of bar timestamps in synthetic/replay runs; 0 = as fast as possible",
    )

    @field_validator("tickers")
    @classmethod
    def _tickers(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("tickers must be a non-empty list of non-empty symbols")
        return _symbols(value)


class StrategySettings(_Section):
    """EMA-cloud strategy."""

    enabled: bool = True
    timeframes: list[str] = ["5m"]
    fast_cloud: tuple[EmaPeriod, EmaPeriod] = (5, 12)
    pullback_cloud: tuple[EmaPeriod, EmaPeriod] = (8, 9)
    trend_cloud: tuple[EmaPeriod, EmaPeriod] = (34, 50)
    volume_lookback: int = Field(20, ge=1, le=10_000)
    min_conviction: int = Field(50, ge=0, le=100)

    @field_validator("timeframes")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        for tf in value:
            if tf not in TIMEFRAMES:
                raise ValueError(f"unknown timeframe {tf!r}; allowed: {', '.join(TIMEFRAMES)}")
        return value


STRATEGY_NAME_PATTERN = r"^[a-z][a-z0-9_-]{0,31}$"
DEFAULT_STRATEGY = "ema_cloud"  # the name (and kind) of the one strategy run when [[strategies]] is absent


class StrategySpec(_Section):
    """One strategy of the daemon (a `[[strategies]]` table): what it is, what it trades, and its own risk budget
    inside the account-wide limits of [executor] (both are checked).

    `kind` names an entry point of the group `ordergate.strategies` (the shipped ones: ema_cloud,
    daily_breakout) or a dotted path `module:Class`; it is resolved at start (an unknown one stops the start).
    """

    name: str = Field(pattern=STRATEGY_NAME_PATTERN, description="unique; carried by its signals, orders, trades")
    kind: str = Field(min_length=1, max_length=200)
    enabled: bool = True
    tickers: list[str] | None = Field(None, description="symbols it trades; none: every [data] ticker")
    timeframes: list[str] = ["5m"]
    params: dict[str, Any] = Field(default_factory=dict, description="the strategy's own parameters")
    max_positions: int | None = Field(None, ge=1, le=10_000, description="open positions of this strategy")
    equity_share: float | None = Field(None, gt=0, le=1, description="most of equity its positions may hold")
    daily_loss: float | None = Field(None, gt=0, le=1, description="daily loss limit, share of starting equity")

    @field_validator("timeframes")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("must name at least one timeframe")
        for tf in value:
            if tf not in TIMEFRAMES:
                raise ValueError(f"unknown timeframe {tf!r}; allowed: {', '.join(TIMEFRAMES)}")
        return value

    @field_validator("tickers")
    @classmethod
    def _tickers(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        if not value:
            raise ValueError("must be a non-empty list of symbols (leave it out for every [data] ticker)")
        return _symbols(value)


class OptionsSettings(_Section):
    """Option contract selection windows."""

    dte_min: int = Field(7, ge=0, le=3650)
    dte_max: int = Field(45, ge=0, le=3650)
    delta_min: float = Field(0.30, gt=0, lt=1)
    delta_max: float = Field(0.60, gt=0, lt=1)
    min_open_interest: int = Field(100, ge=0, le=1_000_000_000)
    max_spread_pct: float = Field(0.10, gt=0, le=1)
    risk_free_rate: float = Field(0.04, ge=-1, le=1)
    # real chains (Alpaca, IB): fetched in the background for the option tickers, used only while fresh
    chain_tickers: list[str] = []  # prefetched underlyings; [] = routing.options_liquid_tickers (+ data.tickers
    #                                in instrument_mode=options)
    chain_refresh_seconds: float = Field(60.0, gt=0, le=86_400)
    chain_max_age_seconds: float = Field(300.0, gt=0, le=86_400)  # an older chain is no chain: no option
    chain_max_underlyings: int = Field(50, ge=1, le=1000)
    chain_max_contracts: int = Field(4000, ge=10, le=100_000)  # per underlying, both rights, the DTE window
    chain_strikes_each_side: int = Field(8, ge=1, le=100)  # IB: strikes around spot given market data lines

    @field_validator("chain_tickers")
    @classmethod
    def _chain_tickers(cls, value: list[str]) -> list[str]:
        return _symbols(value)

    @model_validator(mode="after")
    def _windows(self) -> OptionsSettings:
        if self.dte_min > self.dte_max:
            raise ValueError("dte_min must not exceed dte_max")
        if self.delta_min > self.delta_max:
            raise ValueError("delta_min must not exceed delta_max")
        return self


class RoutingSettings(_Section):
    """How InstrumentMode.BOTH chooses, and what happens to a ticker with no sector."""

    options_min_conviction: int = Field(80, ge=0, le=100)
    options_liquid_tickers: list[str] = ["SPY", "QQQ", "AAPL", "MSFT", "NVDA", "AMD", "TSLA", "AMZN", "META"]
    no_sector_fallback: Literal["stock", "reject"] = "stock"

    @field_validator("options_liquid_tickers")
    @classmethod
    def _liquid(cls, value: list[str]) -> list[str]:
        return _symbols(value)


def _long_enough(value: SecretStr | None) -> SecretStr | None:
    if value is not None and value.get_secret_value() and len(value.get_secret_value().strip()) < 16:
        raise ValueError("must be at least 16 characters (use a random secret, e.g. `openssl rand -hex 32`)")
    return value


# a shared secret a client sends as `Authorization: Bearer` (the webhook, the dashboard); unset = disabled
BearerToken = Annotated[SecretStr | None, AfterValidator(_long_enough)]


class WebhookSettings(_Section):
    """Signal intake over HTTP (disabled unless a token is set)."""

    host: str = "127.0.0.1"
    port: int = Field(8787, ge=0, le=65535)
    token: BearerToken = None
    strategy: str = Field("webhook", pattern=STRATEGY_NAME_PATTERN,
                          description="the strategy a webhook signal belongs to when it names none")
    max_body_bytes: int = Field(65_536, ge=1, le=16 * 1024 * 1024)
    rate_per_minute: int = Field(60, ge=1, le=1_000_000)
    max_connections: int = Field(256, ge=1, le=16_384, description="open connections; more are answered 503")
    idle_timeout_seconds: float = Field(
        15.0, gt=0, le=3600, description="to send a request head after connecting or after the last answer"
    )
    body_timeout_seconds: float = Field(10.0, gt=0, le=600, description="to send the body once the head is in")


class DashboardSettings(_Section):
    """The live web dashboard on loopback (disabled unless a token is set; the page asks for it)."""

    host: str = "127.0.0.1"
    port: int = Field(8789, ge=0, le=65535)
    token: BearerToken = None
    max_connections: int = Field(32, ge=1, le=4096, description="open connections; more are answered 503")
    max_streams: int = Field(8, ge=1, le=256, description="live (SSE) views at a time")
    push_interval_seconds: float = Field(1.0, ge=0.1, le=60, description="how often a changed view is pushed")
    idle_timeout_seconds: float = Field(15.0, gt=0, le=3600)
    page_rows: int = Field(50, ge=1, le=1000, description="decision feed rows per page")


class TelegramSettings(_Section):
    """Control from a phone: a Telegram bot answering /status /positions /kill /resume /flatten, to the
    allow-listed chats only (off unless a token is set)."""

    token: SecretStr | None = None
    allowed_chat_ids: list[Annotated[int, Field(ge=-(2**53), le=2**53)]] = Field(default_factory=list, max_length=100)
    base_url: str = Field("https://api.telegram.org/bot", max_length=500, description="Bot API base (before the token)")
    poll_timeout_seconds: int = Field(25, ge=0, le=50, description="long-poll timeout of getUpdates")
    max_message_age_seconds: float = Field(120.0, ge=1, le=SECONDS_PER_DAY,
                                           description="older commands (queued while the daemon was down) are ignored")
    confirm_seconds: float = Field(60.0, ge=5, le=600, description="time to confirm /flatten")

    @model_validator(mode="after")
    def _allow_list(self) -> TelegramSettings:
        if self.token is not None and self.token.get_secret_value().strip() and not self.allowed_chat_ids:
            raise ValueError("allowed_chat_ids: required when a token is set (the chats the bot may answer)")
        parts = urlsplit(self.base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("base_url: must be an http(s) URL")
        return self


class MetricsSettings(_Section):
    """Prometheus endpoint on loopback (port 0 disables)."""

    host: str = "127.0.0.1"
    port: int = Field(9108, ge=0, le=65535)


class AlertSettings(_Section):
    """Alert sinks beyond the log. The webhook URL is a secret (Slack and Discord URLs are credentials)."""

    webhook_url: SecretStr | None = None
    webhook_format: Literal["generic", "slack", "discord"] = "generic"
    apprise_urls: list[SecretStr] = Field(default_factory=list, max_length=20,
                                          description="apprise URLs (tgram://, ntfys://, pover://, mailtos://, ...)")
    min_interval_seconds: float = Field(300.0, ge=0, le=SECONDS_PER_DAY)
    retries: int = Field(3, ge=0, le=100)
    broker_down_alert_seconds: float = Field(60.0, ge=0, le=SECONDS_PER_DAY)

    @field_validator("webhook_url")
    @classmethod
    def _http_url(cls, value: SecretStr | None) -> SecretStr | None:
        url = value.get_secret_value().strip() if value is not None else ""
        if not url:
            return None
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http(s) URL")
        return SecretStr(url)


class ReconcileSettings(_Section):
    """Broker vs ledger reconciliation.

    `policy` is what happens to a difference in ordergate's *own* positions that persists (alert only, or make
    the ledger match the broker); `external` is what happens to positions ordergate did not open (ignore:
    shown and counted as risk, never traded; adopt: managed from then on, with a stop `adopt_stop_pct` away).
    """

    interval_seconds: float = Field(60.0, gt=0, le=SECONDS_PER_DAY)
    policy: Literal["alert", "adopt"] = "alert"
    kill_notional_threshold: float = Field(10_000.0, ge=0, le=MAX_DOLLARS,
                                           description="total unexplained notional that trips")
    external: Literal["ignore", "adopt"] = "ignore"
    grace_seconds: float = Field(
        30.0, ge=0, le=3600, description="a symbol with order activity this recent is not judged (broker views lag)"
    )
    confirm_seconds: float = Field(2.0, ge=0, le=300, description="pause before the start-up's confirming second check")
    adopt_stop_pct: float = Field(0.05, gt=0, lt=1, description="stop distance of an adopted position")


class SmartRouterSettings(_Section):
    """Venue scoring and order splitting (off by default)."""

    enabled: bool = False
    split_notional_threshold: float = Field(50_000.0, gt=0, le=MAX_DOLLARS)
    slices: int = Field(5, ge=1, le=1000)
    slice_interval_seconds: float = Field(30.0, ge=0, le=3600)


INSTANCE_NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,39}$"  # a systemd instance name that is also a safe file name


class InstanceSettings(_Section):
    """This daemon's name on the desk (`ordergate --instance NAME`, systemd's ordergate@NAME): the rows it writes
    to a shared (PostgreSQL) journal carry it."""

    name: str = Field("default", pattern=INSTANCE_NAME_PATTERN)


class JournalSettings(_Section):
    """The journal of record: a SQLite file in the state directory, or a (desk-wide) PostgreSQL database."""

    enabled: bool = True
    backend: Literal["sqlite", "postgresql"] = "sqlite"
    # postgresql: where the desk's database is, e.g. postgresql://ordergate:PASSWORD@db.example:5432/desk
    dsn: SecretStr | None = None
    connect_timeout_seconds: float = Field(10.0, gt=0, le=600)
    synchronous: Literal["FULL", "NORMAL"] = "FULL"
    batch_interval_ms: int = Field(50, ge=1, le=60_000)
    # full: intents and fills committed (fsync'd) before they are acted on. batched: a simulated throwaway run
    # (replay, bench) commits in batches, unsynced; only honoured on a simulated clock
    durability: Literal["full", "batched"] = "full"

    @model_validator(mode="after")
    def _dsn_for_postgresql(self) -> JournalSettings:
        if self.backend == "postgresql":
            dsn = self.dsn.get_secret_value().strip() if self.dsn is not None else ""
            if not dsn:
                raise ValueError("journal.dsn is required when journal.backend = 'postgresql'")
            if urlsplit(dsn).scheme not in ("postgresql", "postgres"):
                raise ValueError("journal.dsn must be a postgresql:// URL")
        return self


class LoggingSettings(_Section):
    """Log level and format."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["auto", "json", "console"] = "auto"


class ShutdownSettings(_Section):
    """Graceful stop."""

    cancel_inflight_entries: bool = True
    timeout_seconds: float = Field(20.0, gt=0, le=600)


class ExitsSettings(_Section):
    """Protective stops held at the broker (issue 13): a position stays protected while the daemon is down."""

    broker_stop: bool = True
    trail_broker_stop: bool = True
    stop_replace_min_seconds: float = Field(30.0, ge=0, le=86_400, description="rate limit of moving a resting stop")
    stop_confirm_timeout_seconds: float = Field(10.0, gt=0, le=600,
                                                description="wait for a cancelled stop to be final")


def _default_state_dir() -> Path:
    # systemd's StateDirectory= exports STATE_DIRECTORY=/var/lib/ordergate
    return Path(os.environ.get("STATE_DIRECTORY", ".ordergate"))


class Settings(BaseSettings):
    """Everything the daemon is configured with."""

    model_config = SettingsConfigDict(
        env_prefix="ORDERGATE_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    state_dir: Path = Field(default_factory=_default_state_dir)
    instance: InstanceSettings = Field(default_factory=InstanceSettings)
    executor: ExecutorConfig = Field(default_factory=ExecutorConfig)
    pipeline: PipelineConfig = Field(default_factory=PipelineConfig)
    broker: BrokerSettings = Field(default_factory=BrokerSettings)
    paper: PaperSettings = Field(default_factory=PaperSettings)
    alpaca: AlpacaSettings = Field(default_factory=AlpacaSettings)
    ibkr: IBKRSettings = Field(default_factory=IBKRSettings)
    data: DataSettings = Field(default_factory=DataSettings)
    strategy: StrategySettings = Field(default_factory=StrategySettings)
    strategies: tuple[StrategySpec, ...] = Field(default_factory=tuple, max_length=64)
    options: OptionsSettings = Field(default_factory=OptionsSettings)
    routing: RoutingSettings = Field(default_factory=RoutingSettings)
    webhook: WebhookSettings = Field(default_factory=WebhookSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    dashboard: DashboardSettings = Field(default_factory=DashboardSettings)
    telegram: TelegramSettings = Field(default_factory=TelegramSettings)
    alerts: AlertSettings = Field(default_factory=AlertSettings)
    reconcile: ReconcileSettings = Field(default_factory=ReconcileSettings)
    smart_router: SmartRouterSettings = Field(default_factory=SmartRouterSettings)
    journal: JournalSettings = Field(default_factory=JournalSettings)
    logging: LoggingSettings = Field(default_factory=LoggingSettings)
    shutdown: ShutdownSettings = Field(default_factory=ShutdownSettings)
    exits: ExitsSettings = Field(default_factory=ExitsSettings)

    @field_validator("state_dir")
    @classmethod
    def _usable_path(cls, value: Path) -> Path:
        text = str(value)
        if not text.strip() or "\x00" in text:
            raise ValueError("must be a directory path")
        socket_bytes = len(os.fsencode(value / "control.sock"))
        if socket_bytes > MAX_UNIX_SOCKET_PATH:
            raise ValueError(f"is too long: its control socket path would be {socket_bytes} bytes, a unix socket "
                             f"allows {MAX_UNIX_SOCKET_PATH}; use a shorter directory")
        return value

    @field_validator("strategies")
    @classmethod
    def _unique_names(cls, value: tuple[StrategySpec, ...]) -> tuple[StrategySpec, ...]:
        seen: set[str] = set()
        for spec in value:
            if spec.name in seen:
                raise ValueError(f"strategy name {spec.name!r} is used twice; each [[strategies]] needs its own name")
            seen.add(spec.name)
        return value

    def effective_strategies(self) -> list[StrategySpec]:
        """The strategies the daemon runs: the enabled [[strategies]], or without that section the one EMA-cloud
        strategy of [strategy] (today's behaviour)."""
        if self.strategies:
            return [spec for spec in self.strategies if spec.enabled]
        params = self.strategy.model_dump(mode="json", exclude={"timeframes"})
        return [StrategySpec(name=DEFAULT_STRATEGY, kind=DEFAULT_STRATEGY, timeframes=list(self.strategy.timeframes),
                             params=params)]

    @model_validator(mode="after")
    def _wire(self) -> Settings:
        # The [broker] section is the operator's switch; the executor's spec fields follow it, and the
        # pipeline carries the executor config and state dir it runs with.
        executor = self.executor.model_copy(
            update={"primary_broker": self.broker.primary, "fallback_broker": self.broker.fallback}
        )
        object.__setattr__(self, "executor", executor)
        pipeline = self.pipeline.model_copy(
            update={"executor_config": executor, "state_dir": str(self.state_dir)}
        )
        object.__setattr__(self, "pipeline", pipeline)
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # init (CLI overrides) > env > TOML files (passed through _toml_data) > field defaults
        return (init_settings, env_settings, InitSettingsSource(settings_cls, _TOML_DATA.get() or {}))

    def entry_slippage(self) -> float:
        """The slippage entries are sized and reserved with: [pipeline] expected_slippage, or the paper broker's
        slippage_bps when it trades and fills further away."""
        slippage = self.pipeline.expected_slippage
        if "paper" in (self.broker.primary, self.broker.fallback):
            slippage = max(slippage, self.paper.slippage_bps / 10_000.0)
        return slippage

    def secret_values(self) -> list[str]:
        """Every configured secret (API keys, tokens, webhook URLs), longest first, for scrubbing free text."""
        found: list[str] = []

        def walk(model: BaseModel) -> None:
            for name in type(model).model_fields:
                value = getattr(model, name)
                if isinstance(value, BaseModel):
                    walk(value)
                    continue
                for item in value if isinstance(value, list) else [value]:  # a SecretStr or a list of them
                    if isinstance(item, SecretStr) and len(item.get_secret_value().strip()) >= MIN_SCRUBBED_SECRET:
                        found.append(item.get_secret_value().strip())

        walk(self)
        return sorted(set(found), key=len, reverse=True)

    def masked(self) -> dict[str, Any]:
        """The effective settings as plain data, secrets masked."""
        return self.model_dump(mode="json", exclude={"pipeline": {"executor_config"}})


class ConfigError(Exception):
    """A configuration problem, said in one line naming the field, the value and what is allowed."""


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return load_toml(path, MAX_CONFIG_BYTES)
    except TomlFileError as exc:
        raise ConfigError(f"config file {path}: {exc}") from None


def format_validation_error(exc: ValidationError) -> str:
    """One line per problem: the field path, the offending value and what is allowed."""
    lines = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "settings"
        value = err.get("input")
        shown = "***" if any(word in field for word in SECRET_FIELD_WORDS) else repr(value)
        if isinstance(value, dict):
            shown = "{...}"
        message = err["msg"].removeprefix("Value error, ")
        lines.append(f"invalid setting {field}={shown}: {message}")
    return "; ".join(lines)


def load_settings(config_file: str | Path | None = None, **overrides: Any) -> Settings:
    """Build the settings: shipped defaults < TOML file < ORDERGATE_* env < `overrides` (CLI).

    The file comes from `config_file` or `ORDERGATE_CONFIG`. Raises ConfigError with one readable line.
    """
    data = _read_toml(DEFAULT_TOML)
    path = config_file or os.environ.get("ORDERGATE_CONFIG")
    if path:
        data = _deep_merge(data, _read_toml(Path(path)))
    token = _TOML_DATA.set(data)
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc)) from None
    except SettingsError as exc:
        raise ConfigError(_environment_error(exc)) from None
    finally:
        _TOML_DATA.reset(token)


def _environment_error(exc: SettingsError) -> str:
    """One line naming the ORDERGATE_* variables of the field pydantic-settings could not parse (values are
    not shown: they may be secrets)."""
    message = str(exc)
    field = message.split('"')[1] if message.count('"') >= 2 else ""
    prefix = f"ORDERGATE_{field.upper()}"
    names = sorted(k for k in os.environ if k.upper() == prefix or k.upper().startswith(prefix + "__"))
    shown = ", ".join(names) or f"ORDERGATE_{field.upper()}*"
    return (f"invalid environment {shown}: not valid JSON (a list or table from the environment must be JSON, "
            f"e.g. ORDERGATE_DATA__TICKERS='[\"AAPL\", \"MSFT\"]')")
