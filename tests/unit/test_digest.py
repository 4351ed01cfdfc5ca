"""The ids of the decision path hash with CPython's builtin sha256: the same digests as hashlib's (ids already in a
journal or at a broker must not change with it)."""

from __future__ import annotations

import hashlib

from hypothesis import given
from hypothesis import strategies as st

from pipeline.core.digest import sha256_hex
from pipeline.core.models import client_order_id_for
from pipeline.execution.smart_router import child_client_order_id
from pipeline.record.recorder import signal_id_for
from tests.conftest import make_signal


@given(st.binary(max_size=300))
def test_same_digest_as_hashlib(data: bytes) -> None:
    assert sha256_hex(data) == hashlib.sha256(data).hexdigest()


def test_ids_are_those_hashlib_gives() -> None:
    signal = make_signal("AAPL", 100.0)
    key = (f"AAPL|long|cloud_cross_bullish|5m|{signal.timestamp.isoformat()}|test|100.0|98.0")
    assert signal_id_for(signal) == "sig-" + hashlib.sha256(key.encode()).hexdigest()[:20]
    assert client_order_id_for("sig-1", "entry") == "og-entry-" + hashlib.sha256(b"sig-1|entry").hexdigest()[:20]
    parent = "og-entry-" + "x" * 45  # too long for a suffix: shortened with a hash of it
    assert hashlib.sha256(parent.encode()).hexdigest()[:10] in child_client_order_id(parent, 1)
