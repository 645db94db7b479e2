"""`interactions` deleted and created again under the same name: its offsets start over,
and each pair's highest applied source offset (how a redelivered record is told from a new
one) would take the new topic's records for replays and drop them without a word. The
worker records the topic's id with its state (kafka/baked_settings.py), stops once the
topic under that name is another one, and a restart refuses with one line and the way out.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from streamapp.core.config import load_settings
from streamapp.kafka.baked_settings import SOURCE_KEY
from streamapp.kafka.topic_catalog import TopicCatalog
from streamapp.kafka.topic_ids import topic_ids
from tests.dataset import build
from tests.harness import Namespace, Out, Worker, produce, wait_until
from tests.integration.checks import assert_matches_truth, delete_topics, wait_for_total
from tests.integration.conftest import new_worker

pytestmark = pytest.mark.integration

LINE = "is not the topic the state of app {app!r} was counted from (topic id "


def topic_id(ns: Namespace, name: str) -> str | None:
    ids = asyncio.run(topic_ids(load_settings(ns.env()), [name]))
    assert ids is not None, "the test broker has topic ids"
    return ids[name]


def create_again(ns: Namespace, name: str, old_id: str) -> None:
    """`name` as a new topic: created once the deletion is through (the running worker's
    metadata requests may create it first: the broker creates topics on first use)."""

    async def create() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=ns.bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(name, ns.partitions, 1)])
        except TopicAlreadyExistsError:
            pass  # the deletion is not through, or the topic is new already: see below
        finally:
            await admin.close()

    def created_again() -> bool:
        asyncio.run(asyncio.wait_for(create(), 30))
        return topic_id(ns, name) not in (None, old_id)

    wait_until(created_again, 60, what=f"{name} created again")


def exited_with_the_line(worker: Worker, ns: Namespace, times: int) -> None:
    wait_until(lambda: not worker.alive(), 120, what="the worker to stop")
    assert worker.proc is not None and worker.proc.returncode == 2
    said = [  # the one line on stderr of each stop (the log's own line is dated)
        line
        for line in worker.log_path.read_text().splitlines()
        if line.startswith("streamapp: ") and LINE.format(app=ns.app_id) in line
    ]
    assert len(said) == times, worker.tail(40)


def test_a_recreated_interactions_topic_stops_the_worker_and_refuses_a_restart(
    bootstrap: str, workers: list[Worker], tmp_path: Path
) -> None:
    ns = Namespace(bootstrap)
    ds = build(ns, seed=11, n_users=20, n_sellers=10, n_interactions=300, bad_per_topic=0)
    worker = new_worker(workers, ns, tmp_path / "data").start()
    produce(bootstrap, ds.records)
    wait_for_total(worker, ds)

    # Deleted and created again while the worker runs: it stops, as a crash does.
    interactions = ns.topic("interactions")
    old_id = topic_id(ns, interactions)
    assert old_id is not None
    delete_topics(ns, [interactions])
    create_again(ns, interactions, old_id)
    exited_with_the_line(worker, ns, times=1)

    # The new topic's records: a restart refuses before it counts any of them.
    fresh = {"id": "after-1", "user_id": "123", "seller_id": "456", "interaction_kind": "LIKE"}
    produce(bootstrap, [Out(interactions, json.dumps(fresh).encode(), b"123")])
    worker.start(wait=False)
    exited_with_the_line(worker, ns, times=2)


def test_the_same_topic_after_a_restart_is_counted_on(
    bootstrap: str, workers: list[Worker], tmp_path: Path
) -> None:
    """The check's other side: a restart on the topic the state was counted from goes on
    counting it, exactly. The id recorded at the first start is the one compared: a later
    record of another id (as a racing worker's would be) changes nothing."""
    ns = Namespace(bootstrap)
    first = build(ns, seed=12, n_users=15, n_sellers=8, n_interactions=200, bad_per_topic=0)
    worker = new_worker(workers, ns, tmp_path / "data").start()
    produce(bootstrap, first.records)
    wait_for_total(worker, first)
    worker.stop()
    epoch = TopicCatalog.of(load_settings(ns.env())).epoch
    produce(bootstrap, [Out(epoch, b"0" * 32, SOURCE_KEY.encode(), partition=0)])
    worker.start()
    assert "was counted from" not in worker.log_path.read_text()
    assert_matches_truth(worker, first)
