"""The one OCC codec (pipeline.instruments.occ) and each broker's form of it."""

from __future__ import annotations

from datetime import date

import pytest

from pipeline.instruments.occ import OccError, is_occ, occ_contract, occ_symbol, parse_occ, to_ours, try_parse_occ


@pytest.mark.parametrize(("args", "symbol"), [
    (("AAPL", date(2024, 1, 19), "C", 190), "AAPL  240119C00190000"),
    (("SPY", date(2024, 12, 20), "P", 587.5), "SPY   241220P00587500"),
    (("NVDA", date(2025, 3, 21), "C", 12.5), "NVDA  250321C00012500"),
    (("SPXW", date(2026, 1, 2), "put", 6025), "SPXW  260102P06025000"),
    (("BRK.B", date(2026, 6, 18), "C", 0.5), "BRK.B 260618C00000500"),
])
def test_round_trip(args: tuple, symbol: str) -> None:
    assert occ_symbol(*args) == symbol and len(symbol) == 21
    contract = parse_occ(symbol)
    assert (contract.root, contract.expiry, contract.strike) == (args[0], args[1], float(args[3]))
    assert contract.symbol == symbol
    assert parse_occ(contract.compact) == contract  # the compact (Alpaca) form reads the same
    assert contract.compact == symbol.replace(" ", "")
    assert contract.ib_expiry == args[1].strftime("%Y%m%d")


def test_forms() -> None:
    assert to_ours("AAPL240119C00100000") == "AAPL  240119C00100000"
    assert to_ours(" aapl  240119c00100000 ") == "AAPL  240119C00100000"
    assert to_ours("AAPL") == "AAPL" and to_ours("BRK.B") == "BRK.B"
    assert is_occ("SPY   260320P00500000") and is_occ("SPY260320P00500000")
    assert not is_occ("SPY") and not is_occ("") and try_parse_occ("TSLA") is None


@pytest.mark.parametrize(("text", "words"), [
    ("AAPL", "expected ROOT"),
    ("AAPL  240119X00100000", "right 'X'"),
    ("AAPL  241319C00100000", "not a calendar date"),
    ("AAPL  24O119C00100000", "not YYMMDD"),
    ("AAPL  240119C0010000A", "not 8 digits"),
    ("AAPL  240119C00000000", "strike is zero"),
    ("TOOLONGX240119C00100000", "expected ROOT"),
    ("AA PL 240119C00100000", "space inside"),
    ("1AAPL 240119C00100000", "starting with a letter"),
    ("ＡＡＰＬ  240119C00100000", "1-6 letters"),
    ("AAPL  240119C00100000\nrm -rf /", "expected ROOT"),
])
def test_bad_symbols_get_one_line_errors(text: str, words: str) -> None:
    with pytest.raises(OccError) as caught:
        parse_occ(text)
    message = str(caught.value)
    assert words in message, message
    assert "\n" not in message and len(message) < 200, message
    assert message.startswith("option symbol") or message.startswith("option root")


@pytest.mark.parametrize(("args", "field"), [
    (("TOOLONGX", date(2024, 1, 19), "C", 10), "root"), (("AAPL", date(2024, 1, 19), "X", 10), "right"),
    (("AAPL", date(2024, 1, 19), "C", -1), "strike"), (("AAPL", date(2024, 1, 19), "C", 1e6), "strike"),
    (("AAPL", date(2024, 1, 19), "C", float("nan")), "strike"), (("AAPL", date(2024, 1, 19), "C", 1.2345), "decimals"),
    (("AAPL", "2024-01-19", "C", 10), "expiry"), (("AAPL", date(1999, 1, 19), "C", 10), "expiry"),
])
def test_bad_fields_name_the_field(args: tuple, field: str) -> None:
    with pytest.raises(OccError, match=field):
        occ_contract(*args)
    with pytest.raises(ValueError):  # an OccError is a ValueError
        occ_symbol(*args)


def test_not_a_string() -> None:
    with pytest.raises(OccError, match="must be a string"):
        parse_occ(None)  # type: ignore[arg-type]
