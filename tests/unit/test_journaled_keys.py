"""JournaledKeys never forgets a key it was given (no false "not journaled"), and rarely claims one it was not."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.record.journaled_keys import JournaledKeys

keys = st.one_of(st.text(max_size=40), st.tuples(st.sampled_from(["paper", "alpaca", "ibkr"]), st.text(max_size=30)))


@settings(max_examples=200, deadline=None)
@given(st.lists(keys, max_size=300))
def test_a_key_added_is_never_new_again(added: list[object]) -> None:
    filt = JournaledKeys()
    seen: set[object] = set()
    for key in added:
        new = filt.add_if_new(key)
        if key in seen:
            assert not new  # ... a false "new" never
        seen.add(key)
    assert not any(filt.add_if_new(key) for key in added)


def test_keys_never_added_are_almost_always_new() -> None:
    filt = JournaledKeys()
    for i in range(65_000):  # a million one-minute bars of one ticker: ~33 000 orders and as many fills
        filt.add_if_new(f"og-entry-{i:020x}")
    claimed = sum(not filt.add_if_new(f"og-exit-{i:020x}") for i in range(100_000))
    assert claimed < 100  # ~1e-5 of the first, rising to ~1e-4 as these are added: each then asked of the table
