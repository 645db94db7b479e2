"""The table's changelog is compacted: the worker creates it with segments that close after
STREAMAPP_CHANGELOG_SEGMENT_S, the broker's cleaner keeps the last record of each key in
the closed ones, and a worker rebuilt from an empty data dir out of the compacted changelog
answers exactly (compaction leaves offset gaps and drops every earlier value of a key)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from streamapp.core.partitioning import key_partition
from tests.dataset import build
from tests.harness import Namespace, Out, produce, wait_until
from tests.integration.checks import assert_matches_truth, wait_for_total
from tests.integration.conftest import new_worker

pytestmark = pytest.mark.integration


def topic_config(bootstrap: str, topic: str) -> dict[str, str]:
    async def run() -> dict[str, str]:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            [response] = await admin.describe_configs(
                [ConfigResource(ConfigResourceType.TOPIC, topic)]
            )
            [(_code, _message, _type, _name, entries)] = response.resources
            return {entry[0]: entry[1] for entry in entries}
        finally:
            await admin.close()

    return asyncio.run(asyncio.wait_for(run(), 30))


def records_and_end(bootstrap: str, topic: str, partitions: int) -> tuple[int, int]:
    """(records the topic holds now, the sum of its partitions' end offsets): every
    partition read from its start up to the end it had when the read began, so a slow
    read never passes for a compacted one."""

    async def run() -> tuple[int, int]:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        await consumer.start()
        try:
            tps = [TopicPartition(topic, p) for p in range(partitions)]
            ends = await consumer.end_offsets(tps)
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            held = 0
            while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
                batch = await consumer.getmany(timeout_ms=500)
                held += sum(1 for tp, msgs in batch.items() for m in msgs if m.offset < ends[tp])
            return held, sum(ends.values())
        finally:
            await consumer.stop()

    return asyncio.run(asyncio.wait_for(run(), 60))


def test_a_compacted_changelog_rebuilds_exact_state(
    bootstrap: str, workers, tmp_path: Path
) -> None:
    ns = Namespace(bootstrap)
    # Few pairs, many interactions: every pair's value is written again and again.
    ds = build(ns, seed=33, n_users=12, n_sellers=10, n_interactions=1500, bad_per_topic=1)
    worker = new_worker(workers, ns, tmp_path / "data", STREAMAPP_CHANGELOG_SEGMENT_S="1")
    worker.start()
    changelog = f"{ns.app_id}-pairs-changelog"
    config = topic_config(bootstrap, changelog)
    assert config["cleanup.policy"] == "compact"
    assert config["segment.ms"] == "1000"

    produce(bootstrap, ds.records)
    wait_for_total(worker, ds)
    # A segment closes when a record arrives after it is STREAMAPP_CHANGELOG_SEGMENT_S old:
    # one more interaction in every partition, each of a pair of its own, closes them all.
    time.sleep(1.5)
    extra: list[tuple[str, str]] = []
    for n in range(1000):
        user = f"closer-{n}"
        if key_partition(user.encode(), ns.partitions) not in {
            key_partition(u.encode(), ns.partitions) for u, _ in extra
        }:
            extra.append((user, "closer"))
        if len(extra) == ns.partitions:
            break
    on = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    closers = [
        Out(
            ns.topic("interactions"),
            json.dumps(
                {
                    "id": f"c-{user}",
                    "user_id": user,
                    "seller_id": seller,
                    "on": on,
                    "interaction_kind": "VIEW",
                }
            ).encode(),
            user.encode(),
        )
        for user, seller in extra
    ]
    produce(bootstrap, closers)

    def counted_closers() -> bool:
        return all(v["number_of_interactions"] == 1 for v in worker.query(extra))

    wait_until(counted_closers, 60, interval=0.5, what="the closing interactions counted")
    written = records_and_end(bootstrap, changelog, ns.partitions)[1]

    def compacted() -> int:
        kept, _ = records_and_end(bootstrap, changelog, ns.partitions)
        return kept if kept < written * 0.8 else 0

    # The broker's cleaner looks for work every 15 s (log.cleaner.backoff.ms).
    kept = wait_until(compacted, 120, interval=3.0, what=f"the cleaner to compact {changelog}")
    print(f"changelog: {written} records written, {kept} kept after compaction")

    worker.stop()
    worker.data_dir = tmp_path / "empty"
    worker.start()
    assert_matches_truth(worker, ds)
    assert all(v["number_of_interactions"] == 1 for v in worker.query(extra))
