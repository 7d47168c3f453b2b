"""Where a keyed record goes: aiokafka's default partitioner, with each key's hash kept.

The default partitioner (the Java client's rule: murmur2 of the key's bytes, made positive,
modulo the number of partitions) hashes in pure Python, 2.5 µs for a 13-byte key and 6 µs
for a UUID's text, on every record. An audit trail's keys are its users: few, and sent again
and again. The hash does not depend on the partitions, so it is kept per key (at most
`MAX_KEYS`, all forgotten at once when full: a cache that misses costs one dict insert) and
the choice among the partitions is still made on every call, from the list the producer
passes. The answers are the default partitioner's, record for record.
"""

import random
from typing import Final

from aiokafka.partitioner import murmur2

MAX_KEYS: Final = 8192


class KeyHashPartitioner:
    """aiokafka's `DefaultPartitioner` rule with each key's hash remembered: a keyed record
    to `partitions[hash % len(partitions)]`, a keyless one to a random available partition
    (any partition when none is available)."""

    __slots__ = ("_hashes",)

    def __init__(self) -> None:
        self._hashes: dict[bytes, int] = {}

    def __call__(self, key: bytes | None, all_partitions: list[int], available: list[int]) -> int:
        """The partition for a record with `key` (its bytes) among `all_partitions` (sorted
        ids), as the producer calls its partitioner."""
        if key is None:
            return random.choice(available or all_partitions)  # noqa: S311 - spread, not secrecy
        hashed = self._hashes.get(key)
        if hashed is None:
            if len(self._hashes) >= MAX_KEYS:
                self._hashes.clear()
            hashed = self._hashes[key] = murmur2(key) & 0x7FFFFFFF
        return all_partitions[hashed % len(all_partitions)]
