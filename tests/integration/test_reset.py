"""A broker reset with the local data dir kept: the worker rebuilds its state by itself.

This is what `KAFKA_LOCAL_FRESH=1 scripts/kafka-local.sh start` followed by `make run` does,
and a Docker `down`/`up` where the workers keep their volumes and Kafka does not.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.dataset import CATEGORIES, build
from tests.harness import LocalBroker, Namespace, Out, produce
from tests.integration.checks import assert_matches_truth, wait_for_total
from tests.integration.conftest import new_worker

pytestmark = pytest.mark.integration


def test_fresh_broker_with_local_state_kept_rebuilds_exactly(
    local_broker: LocalBroker, workers, tmp_path: Path
) -> None:
    bootstrap = local_broker.start()
    ns = Namespace(bootstrap)
    data_dir = tmp_path / "data"
    sizes = {"n_users": 30, "n_sellers": 20, "n_interactions": 300, "bad_per_topic": 1}

    # Before the reset: state built from the old topics, including a seller that the new
    # topics will not have (its categories would overlap with every user's favorites).
    before = build(ns, seed=1, **sizes)
    everything = json.dumps({"id": "seller-gone", "categories": CATEGORIES}).encode()
    before.records.append(Out(ns.topic("sellers"), everything, b"seller-gone"))
    worker = new_worker(workers, ns, data_dir).start()
    produce(bootstrap, before.records)
    wait_for_total(worker, before)
    worker.stop()

    local_broker.stop()
    local_broker.start(fresh=True)  # same port, empty broker; the data dir is kept

    # Without the check the worker died here with faust's ConsistencyError.
    worker.start()
    assert "belongs to topics that no longer exist" in worker.log_path.read_text()
    after = build(ns, seed=2, **sizes)
    produce(bootstrap, after.records)
    wait_for_total(worker, after)
    # Exactly the new topics' state: old pairs are unknown (counts 0), and the seller only
    # the old topics had has no categories any more (the seller catalog was rebuilt too).
    old_pairs = sorted(set(before.pairs) - set(after.pairs))
    fan = next(u for u, favorites in sorted(after.truth.favorites.items()) if favorites)
    assert_matches_truth(worker, after, [*old_pairs, (fan, "seller-gone")])
    assert worker.get("/sellers/seller-gone")[0] == 404

    # A later restart on the same topics keeps the (now matching) state.
    worker.stop()
    worker.start()
    assert worker.log_path.read_text().count("belongs to topics that no longer exist") == 1
    assert_matches_truth(worker, after)
