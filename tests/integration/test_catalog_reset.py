"""Issue 22: a worker restarted on a deleted and recreated `users` topic, with its data dir
kept, no longer serves the profiles the old topic held.

The profile catalogs keep their own offsets, outside the tables' reset checks
(local_state.py); each records the topic id it was built from and is read again from the
beginning when the topic there is another one, whatever the new topic holds.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from tests.harness import Namespace, Out, Worker, produce, wait_until
from tests.integration.checks import delete_topics
from tests.integration.conftest import new_worker

pytestmark = pytest.mark.integration

REBUILT = "users catalog: {topic} is not the topic it was built from (topic id "


def user(uid: str, favorites: list[str]) -> bytes:
    return json.dumps({"id": uid, "age": 30, "favorite_categories": favorites}).encode()


def load_first_profiles(ns: Namespace, worker: Worker) -> None:
    """User 123 likes books, seller 456 sells books: their favourites match."""
    produce(
        ns.bootstrap,
        [
            Out(
                ns.topic("sellers"),
                json.dumps({"id": "456", "categories": ["books"]}).encode(),
                b"456",
            ),
            Out(ns.topic("users"), user("123", ["books"]), b"123", partition=0),
        ],
    )
    wait_until(
        lambda: worker.get("/affinity/123/456")[1]["favorites_match"],
        60,
        what="the first profiles applied",
    )
    assert worker.get("/users/123") == (
        200,
        {"id": "123", "age": 30, "favorite_categories": ["books"]},
    )


def test_profiles_of_a_deleted_users_topic_are_not_served(
    bootstrap: str, workers, tmp_path: Path
) -> None:
    """The issue's own steps: the refusal's advice (delete the topics it names), then a
    start with the new partition count; the recreated `users` topic is empty."""
    ns = Namespace(bootstrap)
    worker = new_worker(workers, ns, tmp_path / "data").start()
    load_first_profiles(ns, worker)
    worker.stop()

    ns.partitions = 4  # STREAMAPP_PARTITIONS=4 make run: refused, with the way out
    worker.start(wait=False)
    wait_until(lambda: not worker.alive(), 90, what="the refused start to exit")
    assert worker.proc is not None and worker.proc.returncode == 2
    (refusal,) = [line for line in worker.tail(80).splitlines() if "delete-topics" in line]
    names = refusal.split(" delete-topics ", 1)[1].split()
    assert ns.topic("users") in names
    delete_topics(ns, names)

    worker.start()
    assert worker.get("/users/123") == (404, {"error": "unknown user: 123"})
    status, vector = worker.get("/affinity/123/456")
    assert status == 200
    assert (vector["favorites_match"], vector["category_overlap"]) == (False, 0)
    log = worker.log_path.read_text()
    assert log.count(REBUILT.format(topic=ns.topic("users"))) == 1


def test_a_recreated_users_topic_with_more_records_is_read_from_its_beginning(
    bootstrap: str, workers, tmp_path: Path
) -> None:
    """The new topic holds more records than the catalog had read, so every stored offset
    lies within it: only the topic id tells it is another topic. Its first record is the
    new profile of user 123, which resuming from the stored offset would skip."""
    ns = Namespace(bootstrap)
    worker = new_worker(workers, ns, tmp_path / "data").start()
    load_first_profiles(ns, worker)
    worker.stop()

    users = ns.topic("users")
    delete_topics(ns, [users])

    async def create() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            config = {"cleanup.policy": "compact"}
            await admin.create_topics([NewTopic(users, ns.partitions, 1, topic_configs=config)])
        finally:
            await admin.close()

    asyncio.run(asyncio.wait_for(create(), 60))
    fillers = [f"filler-{n}" for n in range(4)]
    produce(
        bootstrap,
        [Out(users, user("123", ["games"]), b"123", partition=0)]
        + [Out(users, user(f, ["toys"]), f.encode(), partition=0) for f in fillers],
    )

    worker.start()
    assert worker.get("/users/123") == (
        200,
        {"id": "123", "age": 30, "favorite_categories": ["games"]},
    )
    assert all(worker.get(f"/users/{f}")[0] == 200 for f in fillers)
    status, vector = worker.get("/affinity/123/456")
    assert status == 200
    assert (vector["favorites_match"], vector["category_overlap"]) == (False, 0)
    assert worker.log_path.read_text().count(REBUILT.format(topic=users)) == 1

    # A restart on the same topic keeps the catalog: no second rebuild, same answers.
    worker.stop()
    worker.start()
    assert worker.log_path.read_text().count(REBUILT.format(topic=users)) == 1
    assert worker.get("/users/123") == (
        200,
        {"id": "123", "age": 30, "favorite_categories": ["games"]},
    )
