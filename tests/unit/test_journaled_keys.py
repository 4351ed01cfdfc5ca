"""JournaledKeys never forgets a key it was given (no false "not journaled"), and rarely claims one it was not."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.record.journaled_keys import JournaledKeys

keys = st.one_of(st.text(max_size=40), st.tuples(st.sampled_from(["paper", "alpaca", "ibkr"]), st.text(max_size=30)))


@settings(max_examples=200, deadline=None)
@given(st.lists(keys, max_size=300))
def test_every_key_added_is_perhaps_journaled(added: list[object]) -> None:
    filt = JournaledKeys()
    for key in added:
        filt.add(key)
    assert all(key in filt for key in added)


def test_keys_never_added_are_almost_always_certainly_absent() -> None:
    filt = JournaledKeys()
    for i in range(65_000):  # a million one-minute bars of one ticker: ~33 000 orders and as many fills
        filt.add(f"og-entry-{i:020x}")
    claimed = sum(f"og-exit-{i:020x}" in filt for i in range(100_000))
    assert claimed < 50  # ~1e-5 expected: a handful at most, each then asked of the table itself
