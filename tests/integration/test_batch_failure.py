"""A batch whose output cannot be delivered is never acknowledged: the worker stops before
faust can commit it, and after the fault is fixed every interaction is counted exactly
once and covered by an affinity update (nothing lost, nothing doubled)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from tests.dataset import DataSet
from tests.harness import Namespace, consume_all, produce, wait_until
from tests.integration.checks import assert_matches_truth, wait_for_total
from tests.integration.conftest import new_worker
from tests.integration.test_crash import interactions

pytestmark = pytest.mark.integration


def admin_call(bootstrap: str, call) -> None:
    async def run() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            await call(admin)
        finally:
            await admin.close()

    asyncio.run(asyncio.wait_for(run(), 60))


def test_undeliverable_output_stops_the_worker_before_the_ack(
    bootstrap: str, workers, tmp_path: Path
) -> None:
    ns = Namespace(bootstrap)
    updates = ns.topic("affinity-updates")
    # A broker-side fault the worker cannot fix: every affinity update is too large.
    tiny = NewTopic(updates, ns.partitions, 1, topic_configs={"max.message.bytes": "200"})
    admin_call(bootstrap, lambda a: a.create_topics([tiny]))
    ds = DataSet()
    records = interactions(ns, ds, 1_500, seed=31)
    worker = new_worker(workers, ns, tmp_path / "data", "fail").start()
    produce(bootstrap, records)
    wait_until(lambda: not worker.alive(), 120, what="the worker to stop on the failed batch")
    assert worker.proc is not None and worker.proc.returncode == 70
    assert "stopping so it is replayed" in worker.tail(200)

    fixed = ConfigResource(ConfigResourceType.TOPIC, updates, {"max.message.bytes": "1048588"})
    admin_call(bootstrap, lambda a: a.alter_configs([fixed]))
    worker.start()
    wait_for_total(worker, ds, timeout=180)
    assert_matches_truth(worker, ds)
    # Every interaction is covered by an update (at least once: the failed batch's pairs
    # were written locally before the failure, so they are re-published as replays).
    covered: set[str] = set()
    for record in consume_all(bootstrap, updates, ns.partitions, expect=1, settle=3):
        update = json.loads(record.value)
        assert update["interaction_ids"] is not None
        covered.update(update["interaction_ids"])
    assert covered == set(ds.counted_ids)
