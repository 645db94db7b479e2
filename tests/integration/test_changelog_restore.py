"""Reading a changelog in bulk (kafka/changelog_restore.py) against a real broker: the
final value of every key, deletes included, and the offset reached per partition, also
when the reading stops early and resumes from there."""

from __future__ import annotations

import asyncio
import random
import uuid

import pytest
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from streamapp.core.config import load_settings
from streamapp.kafka import changelog_restore
from tests.harness import Out, produce

pytestmark = pytest.mark.integration
PARTITIONS = 3


def records(topic: str, n: int) -> tuple[list[Out], dict[int, dict[bytes, bytes]]]:
    """n writes over 200 keys (about one in ten a delete), each key in a fixed partition;
    and the final state per partition, computed here."""
    rng = random.Random(7)
    out, truth = [], {p: {} for p in range(PARTITIONS)}
    for i in range(n):
        key = f"k{rng.randrange(200)}".encode()
        partition = int(key[1:]) % PARTITIONS
        value = None if rng.random() < 0.1 else f"v{i}".encode()
        out.append(Out(topic, value, key, partition=partition))
        if value is None:
            truth[partition].pop(key, None)
        else:
            truth[partition][key] = value
    return out, truth


async def create(bootstrap: str, topic: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, PARTITIONS, 1)])
    finally:
        await admin.close()


def restore_into(
    bootstrap: str,
    state: dict[int, dict[bytes, bytes]],
    starts: dict[TopicPartition, int],
    budget_s: float,
    ends: dict[TopicPartition, int] | None = None,
) -> dict[TopicPartition, int]:
    """Restore into `state`; with `ends`, also check the per-partition progress /metrics
    shows (records still to read) before every batch."""
    settings = load_settings({"KAFKA_BROKER": f"kafka://{bootstrap}"})
    last_applied: dict[TopicPartition, int] = {}

    def apply(tp: TopicPartition, batch: list[tuple[bytes, bytes | None]], last: int) -> None:
        assert last > last_applied.get(tp, -1)  # in offset order
        if ends is not None:
            read_to = last_applied.get(tp, starts[tp] - 1) + 1
            assert changelog_restore.progress.remaining[tp] == ends[tp] - read_to
            assert changelog_restore.progress.total == sum(ends[t] - starts[t] for t in ends)
        last_applied[tp] = last
        for key, value in batch:
            if value is None:
                state[tp.partition].pop(key, None)
            else:
                state[tp.partition][key] = value

    reached = asyncio.run(changelog_restore.restore(settings, starts, apply, budget_s))
    assert reached == last_applied
    assert changelog_restore.progress.remaining == {}  # no series once done
    return reached


def test_a_changelog_read_in_bulk_gives_every_keys_final_value(bootstrap: str) -> None:
    topic = f"t{uuid.uuid4().hex[:10]}-pairs-changelog"
    asyncio.run(create(bootstrap, topic))
    written, truth = records(topic, 30_000)
    produce(bootstrap, written)
    tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    ends = {tp: sum(1 for r in written if r.partition == tp.partition) for tp in tps}
    everything = {tp: ends[tp] - 1 for tp in tps}

    state: dict[int, dict[bytes, bytes]] = {p: {} for p in range(PARTITIONS)}
    assert restore_into(bootstrap, state, dict.fromkeys(tps, 0), 60, ends) == everything
    assert state == truth

    # Stopped after its first fetch (no time budget), then resumed from where it stopped.
    state = {p: {} for p in range(PARTITIONS)}
    first = restore_into(bootstrap, state, dict.fromkeys(tps, 0), budget_s=0)
    assert sum(offset + 1 for offset in first.values()) < len(written)
    resume = {tp: first.get(tp, -1) + 1 for tp in tps}
    rest = restore_into(bootstrap, state, resume, budget_s=60)
    assert {**first, **rest} == everything
    assert state == truth

    # Nothing left to read: nothing applied.
    assert restore_into(bootstrap, state, {tp: ends[tp] for tp in tps}, budget_s=60) == {}
