"""Several workers share the partitions; any worker answers any request exactly.

Loads a data set into 2 workers, compares every pair on each and each standby copy of a
partition with its owner's database; SIGKILLs one while interactions keep flowing and
compares again; starts a third and compares again. A poller checks throughout that an
answer is either exact or a 503 with Retry-After, never a wrong number. Rebalance and
recovery times are printed for the closing note.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from streamapp.serving import serving_map
from streamapp.serving.secondaries import open_secondary
from tests import dataset
from tests.harness import Namespace, Worker, produce, wait_until
from tests.integration.checks import (
    assert_matches_truth,
    assert_ranking,
    truth_ranking,
)
from tests.integration.conftest import new_worker
from tests.integration.test_crash import Stream, interactions
from tests.truth import parse_time

pytestmark = pytest.mark.integration

FAST_FAILOVER = {"STREAMAPP_SESSION_TIMEOUT": "6s"}


class Poller(threading.Thread):
    """Asks for `pairs` (whose truth no longer changes) again and again, on every live worker."""

    def __init__(self, workers: list[Worker], pairs: list[tuple[str, str]], want: dict) -> None:
        super().__init__(daemon=True)
        self.workers, self.pairs, self.want = workers, pairs, want
        self.stop_event = threading.Event()
        self.ok = self.unavailable = 0
        self.marked: Counter[str] = Counter()  # answers not from live state, by source
        self.wrong: list[str] = []

    def run(self) -> None:
        body = {"pairs": [{"user_id": u, "seller_id": s} for u, s in self.pairs]}
        while not self.stop_event.is_set():
            for w in [w for w in self.workers if w.alive()]:
                try:
                    status, answer, headers = w.with_headers("POST", "/affinity/query", body)
                except OSError:
                    continue  # the worker was just killed
                if status == 200:
                    self.ok += 1
                    if by := headers.get("X-Streamapp-Answered-By"):
                        self.marked[by] += 1
                        assert int(headers["X-Streamapp-Replica-Age-Ms"]) >= 0
                    for got in answer["results"]:
                        n = self.want[(got["user_id"], got["seller_id"])]
                        if got["number_of_interactions"] != n:
                            self.wrong.append(
                                f"{w.name}: {got['id']} {got['number_of_interactions']} != {n}"
                            )
                elif status == 503:
                    self.unavailable += 1
                    assert isinstance(answer, dict) and answer.get("error")
                else:
                    self.wrong.append(f"{w.name}: HTTP {status} {answer}")
            time.sleep(0.05)


def wait_exact(ws: list[Worker], ds: dataset.DataSet, timeout: float) -> float:
    started = time.monotonic()

    def exact() -> bool:
        for w in ws:
            assert_matches_truth(w, ds)
        return True

    try:
        wait_until(exact, timeout, interval=1.0, what="every worker exact")
    except TimeoutError:
        exact()  # fail with the real difference
    return time.monotonic() - started


def two_loaded_workers(
    workers: list[Worker], ns: Namespace, ds: dataset.DataSet, tmp_path: Path
) -> tuple[Worker, Worker]:
    """Two workers sharing the partitions, with `ds` produced and exact on both."""
    w1 = new_worker(workers, ns, tmp_path / "w1", "w1", **FAST_FAILOVER).start()
    w2 = new_worker(workers, ns, tmp_path / "w2", "w2", **FAST_FAILOVER).start()
    wait_until(lambda: all(w.get("/health")[0] == 200 for w in (w1, w2)), 60, what="both ready")
    produce(ns.bootstrap, ds.records)
    wait_exact([w1, w2], ds, 120)
    return w1, w2


def database_contents(path: str, scratch: Path) -> list[tuple[bytes, bytes]]:
    """Every key and value of a worker's partition database, read as a RocksDB secondary
    (the worker keeps it open), as of now."""
    db = open_secondary(path, scratch)
    try:
        return list(db.items())
    finally:
        db.close()


def assert_standbys_equal_owners(owners: list[Worker], tmp_path: Path) -> None:
    """Every partition of the pair table, as each worker holds it: the other worker's
    standby copy (written from the owner's changelog, faust_fixes 11.) holds exactly the
    owner's keys and values, faust's offset record included, once it has caught up."""
    maps = {w.name: serving_map.read(w.data_dir) for w in owners}
    checked = 0
    for owner in owners:
        served = maps[owner.name]
        assert served is not None and served.ready, owner.name
        for partition, path in served.stores["pairs"].items():
            for other in owners:
                if other is owner:
                    continue
                copy = str(other.data_dir / Path(path).relative_to(owner.data_dir))
                scratch = tmp_path / f"secondary-{owner.name}-{other.name}-{partition}"

                def equal(path: str = path, copy: str = copy, scratch: Path = scratch) -> bool:
                    if not Path(copy).exists():
                        return False
                    mine = database_contents(path, scratch / "owner")
                    return bool(mine) and mine == database_contents(copy, scratch / "copy")

                wait_until(equal, 60, interval=0.5, what=f"{other.name}'s copy of {path}")
                checked += 1
    assert checked == 8, checked  # STREAMAPP_PARTITIONS: every partition has a standby


def test_workers_share_partitions_and_route_exactly(
    bootstrap: str, workers, tmp_path: Path
) -> None:
    ns = Namespace(bootstrap)
    ds = dataset.build(ns, n_users=200, n_sellers=100, n_interactions=3000, seed=21, hot_share=0.4)
    w1, w2 = two_loaded_workers(workers, ns, ds, tmp_path)
    assert_standbys_equal_owners([w1, w2], tmp_path)

    # Each worker owns some users and forwards the rest: single, bulk, top-k, profiles agree.
    for user, seller in ds.pairs[:: max(1, len(ds.pairs) // 30)]:
        answers = [w.get(f"/affinity/{user}/{seller}")[1] for w in (w1, w2)]
        assert answers[0]["number_of_interactions"] == answers[1]["number_of_interactions"]
        assert answers[0]["number_of_interactions"] == len(ds.truth.pairs[(user, seller)])
    for uid in ds.user_ids[:40]:
        for w in (w1, w2):
            status, body = w.get(f"/users/{uid}/top-sellers?k=5")
            assert status == 200, body
            assert_ranking(body["sellers"], truth_ranking(ds, uid, parse_time(body["as_of"]))[:5])
            status, body = w.get(f"/users/{uid}")
            assert status == (200 if uid in ds.truth.favorites else 404), body
    # Phase 2: kill w2 while new users' interactions stream in; stable pairs are polled.
    stable = ds.pairs[:: max(1, len(ds.pairs) // 200)]
    poller = Poller([w1, w2], stable, {p: len(ds.truth.pairs[p]) for p in stable})
    poller.start()
    more = interactions(ns, ds, 6000, seed=22)
    stream = Stream(bootstrap, more, rate=1500)
    stream.start()
    time.sleep(2)
    killed_at = time.monotonic()
    w2.kill()
    # Serving alone: every stable pair answered, including those w2 owned (503 until moved).
    wait_until(lambda: w1.query(stable), 120, interval=0.2, what="w1 serving alone")
    takeover = time.monotonic() - killed_at
    stream.join(120)
    assert stream.error is None
    exact_after_kill = wait_exact([w1], ds, 180)

    # Phase 3: a third worker joins while interactions flow; partitions move to it.
    more = interactions(ns, ds, 4000, seed=23)
    stream = Stream(bootstrap, more, rate=1500)
    stream.start()
    joined_at = time.monotonic()
    w3 = new_worker(workers, ns, tmp_path / "w3", "w3", **FAST_FAILOVER).start(wait=False)
    poller.workers.append(w3)
    w3.wait_ready(120)
    join_ready = time.monotonic() - joined_at
    stream.join(120)
    assert stream.error is None
    exact_after_join = wait_exact([w1, w3], ds, 180)
    poller.stop_event.set()
    poller.join(30)

    # A bulk query spanning every owner, asked of each worker, in order with duplicates.
    rng = random.Random(1)
    spanning = rng.sample(ds.pairs, 300) + [("nobody", "456")] + ds.pairs[:3] * 2
    for w in (w1, w3):
        results = w.query(spanning)
        assert [(r["user_id"], r["seller_id"]) for r in results] == spanning
        assert len({r["as_of"] for r in results}) == 1

    print(
        f"\ntakeover after SIGKILL: serving in {takeover:.1f}s,"
        f" exact in {exact_after_kill:.1f}s more;"
        f" join: ready in {join_ready:.1f}s, exact in {exact_after_join:.1f}s more;"
        f" poller: {poller.ok} exact answers ({dict(poller.marked)} not from live state),"
        f" {poller.unavailable} x 503, {len(poller.wrong)} wrong"
    )
    assert not poller.wrong, poller.wrong[:10]
    assert poller.ok > 0
