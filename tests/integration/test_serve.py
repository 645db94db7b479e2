"""A serving process beside a worker answers like the workers do: exact, routed, 4xx on bad
input, 503 (never a wrong number) while its worker is gone, and it follows the worker's
state as it changes and after a restart.

Two workers share the partitions; the serving process sits beside w1, so it answers w1's
partitions from w1's databases and forwards the rest to w2.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from tests import dataset
from tests.harness import Namespace, Server, Worker, produce, wait_until
from tests.integration.checks import (
    assert_matches_truth,
    assert_ranking,
    metric_sum,
    metrics_text,
    truth_ranking,
    wait_for_total,
)
from tests.integration.test_crash import interactions
from tests.integration.test_scale_out import two_loaded_workers, wait_exact
from tests.truth import parse_time

pytestmark = pytest.mark.integration


def partitions_of(ns: Namespace, users: list[str]) -> dict[int, list[str]]:
    from aiokafka.partitioner import murmur2

    out: dict[int, list[str]] = {}
    for user in users:
        out.setdefault((murmur2(user.encode()) & 0x7FFFFFFF) % ns.partitions, []).append(user)
    return out


def metric_sample(text: str, name: str, endpoint: str, status: str = "200") -> float:
    want = f'{name}{{endpoint="{endpoint}",status="{status}"}}'
    lines = [line for line in text.splitlines() if line.startswith(want + " ")]
    return float(lines[0].split()[-1]) if lines else 0.0


def partitions_owned_by(serve: Server) -> list[int]:
    """The partitions the serving map says its worker owns now."""
    serving = json.loads((serve.worker.data_dir / "serving.json").read_text())
    return sorted(serving["stores"]["pairs"])


def test_serving_process_answers_exactly_and_follows_its_worker(
    bootstrap: str, workers, tmp_path: Path
) -> None:
    ns = Namespace(bootstrap)
    ds = dataset.build(ns, n_users=150, n_sellers=80, n_interactions=2500, seed=31)
    w1, w2 = two_loaded_workers(workers, ns, ds, tmp_path)
    serve = Server(w1)
    workers.append(serve)
    serve.start()

    # Every pair (local to w1 or forwarded to w2), in bulk: exact.
    wait_until(lambda: assert_matches_truth(serve, ds), 30, interval=1.0, what="serve exact")
    # Single lookups and top-k for users of every partition, and profiles (passed to w1).
    by_partition = partitions_of(ns, ds.user_ids)
    assert len(by_partition) == ns.partitions
    singles = 0
    sellers_of: dict[str, list[str]] = {}
    for user, seller in ds.pairs:
        sellers_of.setdefault(user, []).append(seller)
    for users in by_partition.values():
        for user in [u for u in users if u in sellers_of][:3]:
            seller = sellers_of[user][0]
            status, got = serve.get(f"/affinity/{user}/{seller}")
            assert status == 200, got
            singles += 1
            want = ds.truth.vector(user, seller, parse_time(got["as_of"]))
            assert got["number_of_interactions"] == want["number_of_interactions"]
            status, body = serve.get(f"/users/{user}/top-sellers?k=5")
            assert status == 200, body
            assert_ranking(body["sellers"], truth_ranking(ds, user, parse_time(body["as_of"]))[:5])
            assert serve.get(f"/users/{user}") == w2.get(f"/users/{user}")

    # A bulk query spanning both owners keeps its order, duplicates and one as_of.
    rng = random.Random(3)
    spanning = rng.sample(ds.pairs, 200) + [("nobody", "s/.%?#é")] + ds.pairs[:3] * 2
    results = serve.query(spanning)
    assert [(r["user_id"], r["seller_id"]) for r in results] == spanning
    assert len({r["as_of"] for r in results}) == 1
    assert results[200]["number_of_interactions"] == 0

    # Bad requests: a 4xx with a JSON error, as from a worker.
    for status, body in (
        serve.post("/affinity/query", raw=b"{not json"),
        serve.post("/affinity/query", {"pairs": [{"user_id": "u"}]}),
        serve.post("/affinity/query", {"pairs": [{"user_id": "u", "seller_id": "s"}] * 1001}),
        serve.get("/users/u1/top-sellers?k=0"),
        serve.get("/affinity/u1/s1", headers={"X-Streamapp-As-Of": "1"}),
    ):
        assert 400 <= status < 500 and isinstance(body, dict) and body["error"], (status, body)

    # New interactions reach the serving process (it follows w1's writes).
    more = interactions(ns, ds, 1500, seed=32)
    produce(bootstrap, more)
    wait_exact([w1, w2], ds, 120)
    wait_until(lambda: assert_matches_truth(serve, ds), 30, interval=1.0, what="serve caught up")

    # Its own /metrics: its requests, its catch-ups, none of the worker's ingest series.
    assert serve.get("/live") == (200, {"status": "alive", "ready": True})
    text = metrics_text(serve)
    single = "/affinity/{user_id}/{seller_id}"
    assert metric_sample(text, "streamapp_http_request_duration_seconds_count", single) == singles
    assert metric_sum(text, "streamapp_serve_ready") == 1
    assert metric_sum(text, "streamapp_serve_catch_ups_total") > 0
    assert metric_sum(text, "streamapp_serve_partitions") == len(partitions_owned_by(serve))
    assert "streamapp_serve_catch_up_lag_seconds" in text
    assert "streamapp_interactions_counted_total" not in text
    assert metric_sum(metrics_text(w1), "streamapp_interactions_counted_total") > 0

    # Its worker killed: 503s, never a wrong number; back and exact once w1 is restarted.
    w1.kill()
    wait_until(lambda: serve.get("/health")[0] == 503, 10, interval=0.2, what="serve unready")
    assert serve.get("/live") == (200, {"status": "alive", "ready": False})  # not a restart
    status, body = serve.post("/affinity/query", {"pairs": [{"user_id": "u1", "seller_id": "s1"}]})
    assert status == 503 and body["error"], (status, body)
    w1.start()
    wait_until(lambda: serve.get("/health")[0] == 200, 60, interval=0.5, what="serve ready again")
    wait_until(lambda: assert_matches_truth(serve, ds), 60, interval=1.0, what="serve exact again")


def test_serving_processes_share_one_port(bootstrap: str, workers, tmp_path: Path) -> None:
    """STREAMAPP_SERVE_REUSE_PORT=1: N serving processes behind one port (SO_REUSEPORT); the
    port keeps answering exactly while one of them stops. Without it a second process on a
    taken port exits with one clear line."""
    ns = Namespace(bootstrap)
    ds = dataset.build(ns, n_users=40, n_sellers=30, n_interactions=600, seed=37)
    worker = Worker(ns, tmp_path / "w", "w")
    workers.append(worker)
    worker.start()
    produce(bootstrap, ds.records)
    wait_for_total(worker, ds)
    a = Server(worker, "serve-a", STREAMAPP_SERVE_REUSE_PORT="1")
    b = Server(worker, "serve-b", STREAMAPP_SERVE_REUSE_PORT="1")
    b.port = a.port
    workers += [a, b]
    a.start()
    b.start()
    wait_until(lambda: assert_matches_truth(a, ds), 30, interval=1.0, what="serve exact")
    # b's /health was answered by a, maybe: wait for b's own listening line.
    wait_until(lambda: "streamapp serve: http://" in b.tail(), 60, what="serve-b listening")
    a.stop()
    assert b.alive()
    assert_matches_truth(b, ds)  # the same port, answered by b alone

    c = Server(worker, "serve-c")  # no reuse: the port is b's
    c.port = b.port
    workers.append(c)
    c.start(wait=False)
    wait_until(lambda: not c.alive(), 30, what="serve-c exits")
    assert "address already in use" in c.tail().lower() or "in use" in c.tail(), c.tail()
