"""Profiles are current before anything is published, wherever their producer put them.

- A worker started with an empty data dir on a backlog of thousands of sellers, users and
  interactions publishes no update computed before its profile catalogs caught up.
- User profiles placed on every partition (producers whose partitioner is not Java's
  murmur2, e.g. librdkafka's default) still reach the features.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from streamapp.core.partitioning import key_partition
from tests.dataset import DataSet
from tests.harness import Namespace, Out, consume_all, produce
from tests.integration.checks import assert_matches_truth, wait_for_total
from tests.integration.conftest import new_worker

pytestmark = pytest.mark.integration

CATEGORIES = [f"c{i}" for i in range(12)]


def profiles_and_interactions(
    ns: Namespace, ds: DataSet, users: int, sellers: int, count: int, misplace: bool
) -> list[Out]:
    rng = random.Random(11)
    out: list[Out] = []
    for n in range(sellers):
        sid = f"s{n}"
        cats = set(rng.sample(CATEGORIES, rng.randrange(0, 4)))
        ds.truth.categories[sid] = cats
        body = {"id": sid, "categories": sorted(cats)}
        out.append(Out(ns.topic("sellers"), json.dumps(body).encode(), sid.encode()))
    for n in range(users):
        uid = f"u{n}"
        fav = set(rng.sample(CATEGORIES, rng.randrange(1, 4)))
        ds.truth.favorites[uid] = fav
        body = {"id": uid, "age": 30, "favorite_categories": sorted(fav)}
        # Every partition, and for most users not the one murmur2 of the key picks.
        partition = n % ns.partitions if misplace else None
        out.append(Out(ns.topic("users"), json.dumps(body).encode(), uid.encode(), None, partition))
    now = datetime.now(UTC)
    for n in range(count):
        body = {
            "id": f"i{n}",
            "user_id": f"u{rng.randrange(users)}",
            "seller_id": f"s{rng.randrange(sellers)}",
            "interaction_kind": rng.choice(["LIKE", "VIEW", "PURCHASE"]),
            "on": (now - timedelta(hours=rng.uniform(0, 200))).isoformat(),
        }
        on = datetime.fromisoformat(body["on"])
        ds.truth.interact(
            body["id"], body["user_id"], body["seller_id"], body["interaction_kind"], on
        )
        ds.counted_ids.append(body["id"])
        key = body["user_id"].encode() if n % 2 else None
        out.append(Out(ns.topic("interactions"), json.dumps(body).encode(), key))
    return out


def test_no_update_is_published_before_the_profiles_are_loaded(
    bootstrap: str, workers, tmp_path: Path
) -> None:
    ns = Namespace(bootstrap)
    ds = DataSet()
    produce(bootstrap, profiles_and_interactions(ns, ds, 300, 5_000, 3_000, misplace=False))
    worker = new_worker(workers, ns, tmp_path / "empty", "fresh").start()
    wait_for_total(worker, ds, timeout=240)
    updates = consume_all(bootstrap, ns.topic("affinity-updates"), ns.partitions, expect=1)
    assert updates
    wrong = []
    for record in updates:
        u = json.loads(record.value)
        fav = ds.truth.favorites.get(u["user_id"], set())
        cats = ds.truth.categories.get(u["seller_id"], set())
        if (u["favorites_match"], u["category_overlap"]) != (bool(fav & cats), len(fav & cats)):
            wrong.append(u["id"])
    assert not wrong, f"{len(wrong)} of {len(updates)} updates used profiles not yet loaded"


def test_user_profiles_on_any_partition_reach_the_features(
    bootstrap: str, workers, tmp_path: Path
) -> None:
    ns = Namespace(bootstrap)
    ds = DataSet()
    records = profiles_and_interactions(ns, ds, 64, 40, 1_500, misplace=True)
    placed = [r for r in records if r.topic == ns.topic("users")]
    assert {r.partition for r in placed} == set(range(ns.partitions))
    assert sum(r.partition != key_partition(r.key, ns.partitions) for r in placed) > 40
    worker = new_worker(workers, ns, tmp_path / "data", "placed").start()
    produce(bootstrap, records)
    wait_for_total(worker, ds, timeout=180)
    assert_matches_truth(worker, ds)  # favorites_match, overlap, jaccard, the bonus
    for uid, fav in ds.truth.favorites.items():
        status, body = worker.get(f"/users/{uid}")
        assert status == 200 and set(body["favorite_categories"]) == fav
