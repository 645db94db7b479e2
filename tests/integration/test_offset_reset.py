"""The group's offsets against the log: an operator's reset to the earliest offsets
(`kafka-consumer-groups --reset-offsets --to-earliest`, which commits 0 on a partition
whose log starts at 0) makes the workers read everything again, recognise every record as
already counted, and count what comes after; and a group offline longer than the topic's
retention, whose commits are below the log start, goes on from there.

A commit of exactly 0 is the one aiokafka 0.14 does not seek to (faust_fixes 14.).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete
from aiokafka.structs import OffsetAndMetadata

from streamapp.worker import faust_fixes
from tests.dataset import DataSet
from tests.harness import Namespace, committed_and_end, produce, wait_until
from tests.integration.checks import (
    assert_matches_truth,
    metric_total,
    wait_for_commits_at_end,
    wait_for_total,
)
from tests.integration.conftest import new_worker
from tests.integration.test_crash import interactions

pytestmark = pytest.mark.integration


def test_a_commit_of_0_is_sought_after_records_were_fetched(bootstrap: str) -> None:
    """On a real broker: the position after a fetch, then aiokafka's seek to the committed
    offsets (which leaves it there when the commit is 0), then faust_fixes' (which does
    not)."""
    ns = Namespace(bootstrap)
    topic, tp = ns.topic("zero"), TopicPartition(ns.topic("zero"), 0)

    async def run() -> tuple[int, int, int, int]:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
        await producer.start()
        try:
            for n in range(10):
                await producer.send_and_wait(topic, str(n).encode(), partition=0)
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=f"{ns.app_id}-zero",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        await consumer.start()
        try:
            consumer.assign([tp])
            await consumer.commit({tp: OffsetAndMetadata(0, "")})
            read = 0
            while read < 10:
                batch = await consumer.getmany(tp, timeout_ms=1000)
                read += len(batch.get(tp, []))
            fetched_to = await consumer.position(tp)
            await consumer.seek_to_committed()
            after_plain = await consumer.position(tp)
            offsets = await faust_fixes.seek_all_to_committed(consumer)
            after_fixed = await consumer.position(tp)
            first = (await consumer.getmany(tp, timeout_ms=5000))[tp][0].offset
            assert offsets == {tp: 0}
            return fetched_to, after_plain, after_fixed, first
        finally:
            await consumer.stop()

    fetched_to, after_plain, after_fixed, first = asyncio.run(asyncio.wait_for(run(), 60))
    assert fetched_to == 10
    assert after_plain == 10  # aiokafka's own: if this fails, upstream fixed it (14.)
    assert (after_fixed, first) == (0, 0)


def reset_group_to_earliest(bootstrap: str, group: str) -> int:
    """Commit 0 on every partition the group has a commit for (the group must be empty),
    as `kafka-consumer-groups --reset-offsets --to-earliest --all-topics` does on topics
    whose log starts at 0. Returns how many partitions were reset."""

    async def run() -> int:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            committed = await admin.list_consumer_group_offsets(group)
        finally:
            await admin.close()
        consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
        )
        await consumer.start()
        try:
            consumer.assign(list(committed))
            await consumer.commit({tp: OffsetAndMetadata(0, "") for tp in committed})
        finally:
            await consumer.stop()
        return len(committed)

    return asyncio.run(asyncio.wait_for(run(), 60))


def test_a_reset_to_the_earliest_offsets_counts_nothing_twice(
    bootstrap: str, workers, tmp_path: Path
) -> None:
    """Every source record is read again after the reset (two workers joining at once, so
    the group rebalances while the commits are still 0) and recognised as a replay: the
    counts stay exact, and interactions produced afterwards are counted once."""
    ns = Namespace(bootstrap)
    ds = DataSet()
    before = interactions(ns, ds, 3_000, seed=31)
    counted_before = ds.total
    env = {"STREAMAPP_STATIC_MEMBERSHIP": "0"}  # a stopped worker leaves the group at once
    first = new_worker(workers, ns, tmp_path / "a", "a", **env).start()
    produce(bootstrap, before)
    wait_for_total(first, ds)
    wait_for_commits_at_end(first)
    assert first.stop() == 0
    assert reset_group_to_earliest(bootstrap, ns.app_id) >= ns.partitions

    second = new_worker(workers, ns, tmp_path / "b", "b", **env)
    first.start(wait=False)
    second.start(wait=False)
    first.wait_ready()
    second.wait_ready()

    def replayed() -> float:
        return sum(metric_total(w, "streamapp_interactions_replayed_total") for w in workers)

    # Each record is read again at least once (a re-keyed one twice: its old copy in
    # interactions-by-user, and the copy routed anew from interactions).
    wait_until(lambda: replayed() >= len(before), 180, interval=1.0, what="every record re-read")
    after = interactions(ns, ds, 1_000, seed=32)
    produce(bootstrap, after)
    wait_for_total(first, ds, timeout=180)
    assert_matches_truth(first, ds)
    assert_matches_truth(second, ds)
    counted = sum(metric_total(w, "streamapp_interactions_counted_total") for w in workers)
    assert counted == ds.total - counted_before  # the new ones, each once; no replay again
    wait_for_commits_at_end(first)


def delete_everything_before_the_end(bootstrap: str, topic: str, partitions: int) -> None:
    """What retention does to records older than it: the log start moves to the end."""

    async def run() -> None:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await consumer.start()
        await admin.start()
        try:
            tps = [TopicPartition(topic, p) for p in range(partitions)]
            ends = await consumer.end_offsets(tps)
            await admin.delete_records({tp: RecordsToDelete(ends[tp]) for tp in tps})
        finally:
            await admin.close()
            await consumer.stop()

    return asyncio.run(asyncio.wait_for(run(), 60))


def test_records_deleted_before_the_group_read_them_are_committed_past(
    bootstrap: str, workers, tmp_path: Path
) -> None:
    """The worker is stopped; interactions arrive and the topic's retention deletes them
    before it is back (its commits are now below the log start). It counts what comes
    after, reports what it never saw, and its commits reach the end: they waited at the
    old commit for good, and the watchdog read the partition again every few seconds."""
    ns = Namespace(bootstrap)
    ds = DataSet()
    before = interactions(ns, ds, 1_000, seed=41)
    worker = new_worker(workers, ns, tmp_path / "data", "ret").start()
    produce(bootstrap, before)
    wait_for_total(worker, ds)
    wait_for_commits_at_end(worker)
    assert worker.stop() == 0
    topic = ns.topic("interactions")
    produce(bootstrap, interactions(ns, DataSet(), 600, seed=42))  # never counted
    delete_everything_before_the_end(bootstrap, topic, ns.partitions)
    # (the group's commit, the partition's end = its new log start): a partition with a
    # commit skips from it to the log start; one without starts at the log start anyway.
    offsets = committed_and_end(bootstrap, ns.app_id, [topic], ns.partitions)
    unread = sum(end - commit for commit, end in offsets.values() if commit >= 0)
    assert unread > 0
    after = interactions(ns, ds, 500, seed=43)
    produce(bootstrap, after)
    worker.start()
    wait_for_total(worker, ds, timeout=180)
    assert_matches_truth(worker, ds)
    wait_for_commits_at_end(worker)
    assert metric_total(worker, "streamapp_records_deleted_unread_total") == unread
