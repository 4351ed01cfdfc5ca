"""The shipped instrument catalogs: sector -> leveraged ETF pair, and ticker -> sector.

Both are TOML files under config/ (`etf_catalog.toml`, `sectors.toml`), read once per path and cached as
read-only mappings. A malformed file raises `CatalogError` naming the file, the entry and what is wrong.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType
from typing import Any

from config.files import TomlFileError, load_toml
from pipeline.core.models import Direction

CONFIG_DIR = Path(__file__).resolve().parents[2] / "config"
ETF_CATALOG_PATH = CONFIG_DIR / "etf_catalog.toml"
SECTORS_PATH = CONFIG_DIR / "sectors.toml"
DEFAULT_LEVERAGE = 3.0
MAX_LEVERAGE = 5.0


class CatalogError(ValueError):
    """A catalog file is missing or malformed; the message names the file and the entry."""


@dataclass(frozen=True, slots=True)
class ETFPair:
    """The bull and bear leveraged funds of one sector."""

    sector: str
    bull: str
    bear: str
    leverage: float = DEFAULT_LEVERAGE
    name: str = ""

    def fund_for(self, direction: str) -> str:
        """The fund to buy for a signal direction: bull for long, bear for short."""
        return self.bull if direction == Direction.LONG else self.bear


def _read(path: Path) -> dict[str, Any]:
    try:
        return load_toml(path)
    except TomlFileError as exc:
        raise CatalogError(f"{path}: {exc}") from None


def _symbol(path: Path, where: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip() or not value.strip().replace(".", "").isalnum():
        raise CatalogError(f"{path}: {where}: must be a non-empty ticker symbol, got {value!r}")
    return value.strip().upper()


def _etf_pair(path: Path, sector: str, entry: Any) -> ETFPair:
    if not isinstance(entry, dict):
        raise CatalogError(f"{path}: [{sector}] must be a table with bull, bear and leverage, got {entry!r}")
    unknown = set(entry) - {"bull", "bear", "leverage", "name"}
    if unknown:
        raise CatalogError(f"{path}: [{sector}] unknown keys {sorted(unknown)}; allowed: bull, bear, leverage, name")
    bull = _symbol(path, f"[{sector}] bull", entry.get("bull"))
    bear = _symbol(path, f"[{sector}] bear", entry.get("bear"))
    if bull == bear:
        raise CatalogError(f"{path}: [{sector}] bull and bear must differ, both are {bull!r}")
    leverage = entry.get("leverage", DEFAULT_LEVERAGE)
    if isinstance(leverage, bool) or not isinstance(leverage, (int, float)) or not 1.0 < leverage <= MAX_LEVERAGE:
        raise CatalogError(f"{path}: [{sector}] leverage: must be a number in (1, {MAX_LEVERAGE}], got {leverage!r}")
    name = entry.get("name", "")
    if not isinstance(name, str):
        raise CatalogError(f"{path}: [{sector}] name: must be a string, got {name!r}")
    return ETFPair(sector=sector, bull=bull, bear=bear, leverage=float(leverage), name=name)


def parse_etf_catalog(data: Mapping[str, Any], path: Path = ETF_CATALOG_PATH) -> Mapping[str, ETFPair]:
    """Validate parsed TOML of an ETF catalog into sector -> ETFPair."""
    if not data:
        raise CatalogError(f"{path}: no sectors defined")
    catalog = {str(sector).lower(): _etf_pair(path, str(sector).lower(), entry) for sector, entry in data.items()}
    return MappingProxyType(catalog)


def parse_sectors(data: Mapping[str, Any], path: Path = SECTORS_PATH) -> Mapping[str, str]:
    """Validate parsed TOML of a sector map (`[sectors] name = [tickers]`) into ticker -> sector."""
    sectors = data.get("sectors")
    if not isinstance(sectors, dict) or not sectors:
        raise CatalogError(f"{path}: needs a non-empty [sectors] table of sector = [tickers]")
    extra = set(data) - {"sectors"}
    if extra:
        raise CatalogError(f"{path}: unknown top-level keys {sorted(extra)}; only [sectors] is allowed")
    mapping: dict[str, str] = {}
    for sector, tickers in sectors.items():
        sector_name = str(sector).lower()
        if not isinstance(tickers, list):
            raise CatalogError(f"{path}: sectors.{sector}: must be a list of tickers, got {tickers!r}")
        for index, raw in enumerate(tickers):
            ticker = _symbol(path, f"sectors.{sector}[{index}]", raw)
            if ticker in mapping and mapping[ticker] != sector_name:
                raise CatalogError(
                    f"{path}: sectors.{sector}: {ticker} is already listed under {mapping[ticker]!r}"
                )
            mapping[ticker] = sector_name
    return MappingProxyType(mapping)


@lru_cache(maxsize=8)
def _load_etf_catalog(path: Path) -> Mapping[str, ETFPair]:
    return parse_etf_catalog(_read(path), path)


@lru_cache(maxsize=8)
def _load_sectors(path: Path) -> Mapping[str, str]:
    return parse_sectors(_read(path), path)


def load_etf_catalog(path: str | Path | None = None) -> Mapping[str, ETFPair]:
    """Sector -> ETFPair from `path` (default config/etf_catalog.toml); cached per path, read-only."""
    return _load_etf_catalog(Path(path or ETF_CATALOG_PATH).resolve())


def load_sectors(path: str | Path | None = None) -> Mapping[str, str]:
    """Ticker (upper case) -> sector from `path` (default config/sectors.toml); cached per path, read-only."""
    return _load_sectors(Path(path or SECTORS_PATH).resolve())


def clear_catalog_cache() -> None:
    """Forget cached catalogs (a SIGHUP reload or a test that rewrites a file)."""
    _load_etf_catalog.cache_clear()
    _load_sectors.cache_clear()
