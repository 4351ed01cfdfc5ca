"""JournaledKeys: which order and fill keys a batched journal may already hold, in a fixed amount of memory.

A batched journal (replay) puts its order intents and fills into its open transaction in bulk, like its other
rows, instead of one INSERT OR IGNORE each as they come (in a replay's loop each of those ran on cold caches at
2x the cost of the same rows in bulk). The caller still needs the INSERT OR IGNORE's answer at once: is this client
order id, this (broker, fill id), journaled already? This filter answers "certainly not" for a key never added
(the row is buffered and the answer is "written"), and "perhaps" for one added (a repeat, or now and then another
key sharing its bits): the journal then asks the table itself. One call asks and adds (`add_if_new`): a key the
journal is about to write is in the filter from then on. It never says "not journaled" of a key it was
given, so a repeat is never written or sent twice.

A Bloom filter: BITS bits (1 MiB, allocated once, whatever the run's length) and 3 bit positions per key from
the key's hash (double hashing). With n keys its false "perhaps" rate is about (1 - e^(-3 n / BITS))^3: ~1e-5 at
65 000 keys (a million one-minute bars of one ticker), ~3e-2 at a million (each a table lookup, never a mistake).
"""

from __future__ import annotations

from collections.abc import Hashable

BITS = 1 << 23
_MASK = BITS - 1


class JournaledKeys:
    """A fixed-size Bloom filter of hashable keys: `add_if_new(key)` (True: never added before, and now added)."""

    __slots__ = ("_bits", "count")

    def __init__(self) -> None:
        self._bits = bytearray(BITS // 8)
        self.count = 0  # keys added (a diagnostic)

    def add_if_new(self, key: Hashable) -> bool:
        """Add `key`; True when it was certainly not there, False when it may have been (added before, or another
        key's bits)."""
        h = hash(key) & 0xFFFFFFFFFFFFFFFF
        first, step = h & 0xFFFFFFFF, (h >> 32) | 1
        a, b, c = first & _MASK, (first + step) & _MASK, (first + 2 * step) & _MASK
        bits = self._bits
        fa, fb, fc = 1 << (a & 7), 1 << (b & 7), 1 << (c & 7)
        a, b, c = a >> 3, b >> 3, c >> 3
        if bits[a] & fa and bits[b] & fb and bits[c] & fc:
            return False
        bits[a] |= fa
        bits[b] |= fb
        bits[c] |= fc
        self.count += 1
        return True
