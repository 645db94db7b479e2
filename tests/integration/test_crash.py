"""Exact counts through failure: SIGKILLed workers, a restarted broker, graceful SIGTERM."""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import signal
import subprocess
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.dataset import DataSet
from tests.harness import ROOT, Namespace, Out, consume_all, free_port, produce, wait_until
from tests.integration.checks import (
    assert_matches_truth,
    assert_top_sellers_match_truth,
    wait_for_commits_at_end,
    wait_for_total,
)
from tests.integration.conftest import new_worker

pytestmark = pytest.mark.integration


def interactions(ns: Namespace, ds: DataSet, count: int, seed: int) -> list[Out]:
    """Interactions as real producers send them: keys none / the user id / random bytes;
    about 5% sent twice by a retrying producer (same id, key and record timestamp); about
    15% without `on`, whose Kafka CreateTime lies minutes to 60 days in the past (a
    backfill's timestamps) and so is their event time. About 10% go to three hot pairs,
    whose event times and ids spill into chunk records (pair_state.INLINE)."""
    rng = random.Random(seed)
    now = datetime.now(UTC)
    out = []
    for n in range(count):
        if rng.random() < 0.1:
            user, seller = rng.choice([("u1", "s1"), ("u2", "s1"), ("u3", "s2")])
        else:
            user, seller = f"u{rng.randrange(300)}", f"s{rng.randrange(60)}"
        body: dict[str, str] = {
            "id": f"c{seed}-{n}",
            "user_id": user,
            "seller_id": seller,
            "interaction_kind": rng.choice(["LIKE", "VIEW", "PURCHASE", "OTHER"]),
        }
        timestamp_ms = None
        if rng.random() < 0.15:
            timestamp_ms = int(
                (now - timedelta(seconds=rng.uniform(60, 60 * 86400))).timestamp() * 1000
            )
            on = datetime.fromtimestamp(timestamp_ms / 1000, UTC)
        else:
            on = now - timedelta(seconds=rng.uniform(0, 20 * 86400))
            body["on"] = on.isoformat()
        ds.truth.interact(body["id"], user, body["seller_id"], body["interaction_kind"], on)
        ds.counted_ids.append(body["id"])
        key = rng.choice([None, user.encode(), rng.randbytes(6)])
        record = Out(ns.topic("interactions"), json.dumps(body).encode(), key, timestamp_ms)
        out.append(record)
        if rng.random() < 0.05:  # a producer retry: the very same record again
            out.append(record)
    return out


class Stream(threading.Thread):
    """Produces `records` in chunks at about `rate` per second, in the background."""

    def __init__(self, bootstrap: str, records: list[Out], rate: float, chunk: int = 500) -> None:
        super().__init__(daemon=True)
        self.bootstrap, self.records, self.rate, self.chunk = bootstrap, records, rate, chunk
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            for i in range(0, len(self.records), self.chunk):
                started = time.monotonic()
                produce(self.bootstrap, self.records[i : i + self.chunk])
                time.sleep(max(0.0, self.chunk / self.rate - (time.monotonic() - started)))
        except BaseException as exc:
            self.error = exc


def test_sigkill_at_random_moments_loses_and_doubles_nothing(
    bootstrap: str, workers, tmp_path: Path
) -> None:
    ns = Namespace(bootstrap)
    ds = DataSet()
    size = int(os.environ.get("STREAMAPP_SOAK_INTERACTIONS", "24000"))  # `make soak` raises these
    rounds = int(os.environ.get("STREAMAPP_SOAK_KILLS", "4"))
    records = interactions(ns, ds, size, seed=1)
    worker = new_worker(workers, ns, tmp_path / "data", "crash").start()
    stream = Stream(bootstrap, records, rate=2_000)
    stream.start()
    rng = random.Random(5)
    kills = 0
    for round_ in range(rounds):
        time.sleep(rng.uniform(1.5, 3.5))
        worker.kill()
        kills += 1
        if round_ == 2:  # once, lose the local state too: it must come back from the changelog
            worker.data_dir = tmp_path / "data-empty"
        worker.start()
    stream.join(120 + size / 1000)
    assert not stream.is_alive() and stream.error is None
    wait_for_total(worker, ds, timeout=180 + size / 500)
    assert_matches_truth(worker, ds)
    assert_top_sellers_match_truth(worker, ds, users=10, ks=(5,))  # the ranking index too
    wait_for_commits_at_end(worker)
    print(f"\nsurvived {kills} SIGKILLs while {len(records)} interactions streamed")


def test_broker_restart_mid_stream(workers, tmp_path: Path) -> None:
    """The broker is stopped and started again three times while interactions stream in
    and batches are being delivered, with a CPU hog beside it: the worker rides it out
    (retrying delivery in order), stays up and loses and doubles nothing."""
    port, cport = free_port(), free_port()
    env = {
        **os.environ,
        "KAFKA_LOCAL_PORT": str(port),
        "KAFKA_LOCAL_CONTROLLER_PORT": str(cport),
        "KAFKA_LOCAL_FRESH": "1",
    }
    script = ROOT / "scripts" / "kafka-local.sh"
    started = subprocess.run(
        [script, "start"], env=env, capture_output=True, text=True, timeout=300
    )
    assert started.returncode == 0, started.stderr
    env.pop("KAFKA_LOCAL_FRESH")
    bootstrap = f"127.0.0.1:{port}"
    hog = multiprocessing.Process(target=_spin, daemon=True)
    try:
        ns = Namespace(bootstrap)
        ds = DataSet()
        batches = [interactions(ns, ds, 1_500, seed=20 + n) for n in range(4)]
        worker = new_worker(workers, ns, tmp_path / "data", "brk").start()
        hog.start()
        for n, records in enumerate(batches):
            produce(bootstrap, records)
            if n == len(batches) - 1:
                break
            time.sleep(0.5)  # part of it processed, part in flight
            subprocess.run([script, "stop"], env=env, capture_output=True, timeout=120, check=True)
            time.sleep(3)
            assert worker.alive(), worker.tail()
            subprocess.run([script, "start"], env=env, capture_output=True, timeout=300, check=True)
        wait_until(worker.alive, 5)
        wait_for_total(worker, ds, timeout=240)
        assert_matches_truth(worker, ds)
        assert worker.starts == 1 and worker.alive()
    finally:
        if hog.is_alive():
            hog.kill()
            hog.join(5)
        for w in workers:
            w.kill()
        subprocess.run([script, "stop"], env=env, capture_output=True, timeout=120)


def _spin() -> None:  # a CPU hog for the test's length, killed in its finally
    while True:
        pass


def test_sigterm_commits_so_a_restart_replays_nothing(
    bootstrap: str, workers, tmp_path: Path
) -> None:
    ns = Namespace(bootstrap)
    ds = DataSet()
    records = interactions(ns, ds, 4_000, seed=4)
    # One update per counted interaction in this mode: replays would show as extras.
    worker = new_worker(workers, ns, tmp_path / "data", "term", STREAMAPP_UPDATES="each").start()
    produce(bootstrap, records)
    wait_for_total(worker, ds)
    assert worker.stop(signal.SIGTERM) == 0
    worker.start()
    assert_matches_truth(worker, ds)
    time.sleep(3)  # anything replayed would show up as extra updates by now
    updates = consume_all(
        bootstrap, ns.topic("affinity-updates"), ns.partitions, expect=ds.total, settle=3
    )
    assert len(updates) == ds.total
    got = sorted(json.loads(u.value)["interaction_id"] for u in updates)
    assert got == sorted(ds.counted_ids)
    assert all(json.loads(u.value)["interactions_covered"] == 1 for u in updates)
    _status, text = worker.get("/metrics")
    assert "streamapp_interactions_replayed_total 0.0" in text
    assert "streamapp_interactions_counted_total 0.0" in text  # nothing re-counted after restart
