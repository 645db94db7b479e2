"""Which partition a key belongs to: Kafka's default partitioner, in pure Python.

Every Kafka producer that keys by user id (the Java client, aiokafka, the loader) puts a
record in partition `(murmur2(key) & 0x7fffffff) % partitions`, with the 32-bit MurmurHash2
variant of the Java client (org.apache.kafka.common.utils.Utils.murmur2, seed 0x9747b28c).
A user's pairs live in that partition of `<app>-interactions-by-user` (the worker re-keys
to it, the serving processes look there), so this must match the Java client bit for bit;
tests/unit/test_partitioning.py compares it with aiokafka's on many random keys. Here so
that the serving process and the domain code need no Kafka client.
"""

from __future__ import annotations

import struct

_SEED = 0x9747B28C
_MIX = 0x5BD1E995
_U32 = 0xFFFFFFFF
_WORDS = struct.Struct("<I")  # the Java client reads each 4 bytes as a little-endian int


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 of `data` as an unsigned 32-bit number (Java's int, its bits kept)."""
    length = len(data)
    whole = length - length % 4
    h = _SEED ^ length
    for (k,) in _WORDS.iter_unpack(data[:whole]):
        k = (k * _MIX) & _U32
        k ^= k >> 24
        k = (k * _MIX) & _U32
        h = ((h * _MIX) & _U32) ^ k
    if whole < length:
        # The 1-3 trailing bytes, XORed in at their little-endian positions.
        h ^= int.from_bytes(data[whole:], "little")
        h = (h * _MIX) & _U32
    h ^= h >> 13
    h = (h * _MIX) & _U32
    return h ^ (h >> 15)


def key_partition(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner gives `key` among `partitions`."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


class HomePartitions:
    """user id -> the partition of the user's data (`key_partition` of the UTF-8 id), with
    recent users remembered: murmur2 in Python costs microseconds, and the same users come
    again and again."""

    def __init__(self, partitions: int, remember: int = 500_000) -> None:
        self.partitions = partitions
        self.remember = remember
        self._known: dict[str, int] = {}

    def __call__(self, user_id: str) -> int:
        found = self._known.get(user_id)
        if found is None:
            if len(self._known) >= self.remember:
                self._known.clear()
            found = self._known[user_id] = key_partition(user_id.encode(), self.partitions)
        return found
