"""synthetic_quote: one contract of the paper broker's synthetic chain, computed alone, equal to the chain's own."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from config.settings import OptionsSettings
from pipeline.instruments.occ import parse_occ
from pipeline.instruments.options import STRIKES_EACH_SIDE, strike_step, synthetic_chain, synthetic_quote

AS_OF = datetime(2024, 3, 13, 15, 30, tzinfo=UTC)


@pytest.mark.parametrize("spot", [3.17, 24.99, 25.0, 99.5, 187.43, 249.99, 612.0, 1234.5])
def test_every_contract_of_the_chain_is_the_same_quote_alone(spot: float) -> None:
    chain = synthetic_chain("msft", spot, AS_OF, OptionsSettings())
    assert chain
    for quote in chain:
        assert synthetic_quote(parse_occ(quote.occ_symbol), spot, AS_OF, OptionsSettings()) == quote


@settings(max_examples=60, deadline=None)
@given(spot=st.floats(0.5, 5000.0), hours=st.integers(0, 24 * 400))
def test_any_spot_and_day_agree_with_the_chain(spot: float, hours: int) -> None:
    as_of = AS_OF + timedelta(hours=hours)
    chain = synthetic_chain("AAPL", spot, as_of, OptionsSettings())
    for quote in chain[:: max(1, len(chain) // 25)]:
        assert synthetic_quote(parse_occ(quote.occ_symbol), spot, as_of, OptionsSettings()) == quote


def test_a_contract_the_chain_does_not_list_is_none() -> None:
    spot = 187.43
    listed = parse_occ(synthetic_chain("MSFT", spot, AS_OF, OptionsSettings())[0].occ_symbol)
    step = strike_step(spot)
    beyond = round(spot / step) * step + (STRIKES_EACH_SIDE + 1) * step
    for other in (dataclasses.replace(listed, strike=beyond),                       # past the last strike
                  dataclasses.replace(listed, strike=listed.strike + step / 2),      # between two strikes
                  dataclasses.replace(listed, expiry=listed.expiry + timedelta(days=1)),  # not a Friday
                  dataclasses.replace(listed, expiry=listed.expiry + timedelta(weeks=20))):  # past the horizon
        assert synthetic_quote(other, spot, AS_OF, OptionsSettings()) is None
    assert synthetic_quote(listed, float("nan"), AS_OF, OptionsSettings()) is None
