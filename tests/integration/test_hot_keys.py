"""Hot keys: one pair with tens of thousands of interactions, one user with tens of
thousands of sellers, ids at the 256-character limit. The worker keeps running and every
answer stays exact (the stored values are bounded: pair_state chunks; a user's sellers are
the keys of its pairs, one record each)."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.dataset import DataSet
from tests.harness import Namespace, Out, produce
from tests.integration.checks import (
    assert_matches_truth,
    assert_ranking,
    truth_ranking,
    wait_for_total,
)
from tests.integration.conftest import new_worker
from tests.truth import assert_vector_equal, parse_time

pytestmark = pytest.mark.integration

HOT_PAIR = 20_000
HOT_USER = 20_000


def long_id(prefix: str, n: int) -> str:
    return f"{prefix}{n}".ljust(256, "x")


def test_hot_pair_and_hot_user_stay_exact(bootstrap: str, workers, tmp_path: Path) -> None:
    ns = Namespace(bootstrap)
    ds = DataSet()
    rng = random.Random(3)
    now = datetime.now(UTC)
    records: list[Out] = []
    hot_user, hot_seller = long_id("hot-user-", 0), long_id("hot-seller-", 0)

    def interact(iid: str, user: str, seller: str, on: datetime) -> None:
        body = {"id": iid, "user_id": user, "seller_id": seller, "interaction_kind": "VIEW"}
        body["on"] = on.isoformat()
        ds.truth.interact(iid, user, seller, "VIEW", on)
        ds.counted_ids.append(iid)
        record = Out(ns.topic("interactions"), json.dumps(body).encode(), user.encode())
        records.append(record)
        if rng.random() < 0.05:
            records.append(record)  # producer retry

    for n in range(HOT_PAIR):  # out of order over 40 days, many in the last day
        ago = rng.uniform(0, 86400) if n % 2 else rng.uniform(0, 40 * 86400)
        interact(long_id("hp-", n), hot_user, hot_seller, now - timedelta(seconds=ago))
    for n in range(HOT_USER):
        seller = long_id("s-", n)
        interact(long_id("hu-", n), hot_user, seller, now - timedelta(seconds=rng.uniform(0, 9e5)))
    worker = new_worker(workers, ns, tmp_path / "data", "hot").start()
    produce(bootstrap, records)

    wait_for_total(worker, ds, timeout=600)
    assert_matches_truth(worker, ds)  # every pair, the hot one included, field by field
    status, got = worker.get(f"/affinity/{hot_user}/{hot_seller}")
    assert status == 200
    assert_vector_equal(got, ds.truth.vector(hot_user, hot_seller, parse_time(got["as_of"])))
    status, body = worker.get(f"/users/{hot_user}/top-sellers?k=1000")
    assert status == 200, body
    assert_ranking(body["sellers"], truth_ranking(ds, hot_user, parse_time(body["as_of"]))[:1000])
    assert worker.alive() and worker.starts == 1
