"""The pure-Python murmur2 is Kafka's: the same hash and partition as aiokafka's (the Java
client's algorithm) for every key length and byte value."""

from __future__ import annotations

import random

from aiokafka.partitioner import DefaultPartitioner
from aiokafka.partitioner import murmur2 as aiokafka_murmur2

from streamapp.core.partitioning import HomePartitions, key_partition, murmur2


def test_murmur2_equals_aiokafkas_on_many_random_keys() -> None:
    rng = random.Random(20261204)
    keys = [b"", b"\x00", b"\xff" * 7, "ü-ñ".encode(), b"x" * 200]
    keys += [rng.randbytes(rng.randrange(0, 64)) for _ in range(20_000)]
    keys += [rng.randbytes(rng.randrange(64, 1024)) for _ in range(500)]
    for key in keys:
        assert murmur2(key) == aiokafka_murmur2(key), key


def test_key_partition_is_the_default_partitioners_choice() -> None:
    rng = random.Random(7)
    partitioner = DefaultPartitioner()
    for n in (1, 2, 3, 8, 12, 100, 1024):
        partitions = list(range(n))
        for _ in range(2_000):
            key = rng.randbytes(rng.randrange(0, 40))
            assert key_partition(key, n) == partitioner(key, partitions, partitions)


def test_home_partitions_remember_and_forget() -> None:
    home = HomePartitions(8, remember=3)
    ids = [f"user-{i}" for i in range(10)]
    assert [home(u) for u in ids] == [key_partition(u.encode(), 8) for u in ids]
    assert len(home._known) <= 3
    assert [home(u) for u in ids] == [key_partition(u.encode(), 8) for u in ids]
