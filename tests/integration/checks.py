"""Comparisons of what the worker answers with the ground truth, and shared steps."""

from __future__ import annotations

import math
import subprocess
import sys
from collections import Counter

from tests.dataset import DataSet
from tests.harness import ROOT, Namespace, Worker, committed_and_end, wait_until
from tests.truth import assert_vector_equal, parse_time

CHUNK = 500


def all_vectors(worker: Worker, pairs: list[tuple[str, str]]) -> list[dict]:
    out: list[dict] = []
    for i in range(0, len(pairs), CHUNK):
        out.extend(worker.query(pairs[i : i + CHUNK]))
    return out


def total_counted(worker: Worker, ds: DataSet) -> int:
    return sum(v["number_of_interactions"] for v in all_vectors(worker, ds.pairs))


def wait_for_total(worker: Worker, ds: DataSet, timeout: float = 120.0) -> None:
    try:
        wait_until(
            lambda: total_counted(worker, ds) == ds.total,
            timeout,
            interval=2.0,  # each poll reads every pair: leave the worker time to ingest
            what=f"{ds.total} interactions counted",
        )
    except TimeoutError:
        vectors = all_vectors(worker, ds.pairs)
        wrong = [
            f"{v['id']}: {v['number_of_interactions']} != {len(ds.truth.pairs[p])}"
            for p, v in zip(ds.pairs, vectors, strict=True)
            if v["number_of_interactions"] != len(ds.truth.pairs[p])
        ]
        counted = sum(v["number_of_interactions"] for v in vectors)
        raise AssertionError(
            f"{counted} counted, want {ds.total}; {len(wrong)} pairs wrong: {wrong[:20]}"
        ) from None


def wait_for_commits_at_end(worker: Worker, timeout: float = 60.0) -> None:
    """The group's committed offsets reach the end of every partition the worker reads:
    neither a commit held back (every restart would replay) nor one short of the end."""
    topics = [
        worker.ns.topic("interactions"),
        f"{worker.ns.prefix}{worker.ns.app_id}-interactions-by-user",
    ]
    last: dict[str, tuple[int, int]] = {}

    def at_end() -> bool:
        last.clear()
        last.update(
            committed_and_end(worker.ns.bootstrap, worker.ns.app_id, topics, worker.ns.partitions)
        )
        return bool(last) and all(c == e or (c == -1 and e == 0) for c, e in last.values())

    try:
        wait_until(at_end, timeout, interval=1.0, what="committed offsets at the end")
    except TimeoutError:
        behind = {k: v for k, v in last.items() if v[0] != v[1] and v != (-1, 0)}
        raise AssertionError(f"committed offsets short of the end: {behind}") from None


def metrics_text(worker: Worker) -> str:
    status, text = worker.get("/metrics")
    assert status == 200 and isinstance(text, str), text
    return text


def metric_total(worker: Worker, name: str) -> float:
    """The sum of every sample of `name` in the worker's /metrics (metric_sum)."""
    return metric_sum(metrics_text(worker), name)


def metric_sum(text: str, name: str) -> float:
    """The sum of every sample of `name` (all label sets) in Prometheus text; 0.0 when a
    labelled counter has no sample yet."""
    total = 0.0
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        series, _, value = line.rpartition(" ")
        if series.split("{", 1)[0] == name:
            total += float(value)
    return total


def assert_matches_truth(
    worker: Worker, ds: DataSet, extra_pairs: list[tuple[str, str]] = ()
) -> int:
    """Every pair's vector equals the truth at the as_of the worker reported."""
    pairs = ds.pairs + list(extra_pairs)
    vectors = all_vectors(worker, pairs)
    assert len(vectors) == len(pairs)
    for (user, seller), got in zip(pairs, vectors, strict=True):
        assert (got["user_id"], got["seller_id"]) == (user, seller)
        assert_vector_equal(got, ds.truth.vector(user, seller, parse_time(got["as_of"])))
    return len(pairs)


def eventually_matches_truth(worker: Worker, ds: DataSet, timeout: float = 60.0) -> int:
    """Profiles arrive on their own topics: allow them to catch up, then compare strictly."""

    def check() -> int:
        return assert_matches_truth(worker, ds)

    try:
        return wait_until(check, timeout, interval=1.0, what="vectors equal to truth")
    except TimeoutError:
        return assert_matches_truth(worker, ds)  # fail with the real difference


def truth_ranking(ds: DataSet, user: str, as_of) -> list[tuple[str, float, int]]:
    rows = []
    for u, s in ds.truth.pairs:
        if u == user:
            v = ds.truth.vector(u, s, as_of)
            rows.append((s, v["user_seller_score"], v["number_of_interactions"]))
    rows.sort(key=lambda r: (-r[1], -r[2], r[0]))
    return rows


def assert_ranking(got: list[dict], want: list[tuple[str, float, int]]) -> None:
    assert len(got) == len(want), (got, want)
    for g, (seller, score, n) in zip(got, want, strict=True):
        assert math.isclose(g["user_seller_score"], score, rel_tol=1e-6, abs_tol=1e-9), (
            g,
            seller,
            score,
        )
        tied = [w for w in want if math.isclose(w[1], score, rel_tol=1e-9) and w[2] == n]
        assert g["seller_id"] in {w[0] for w in tied}, (got, want)
    assert sorted(g["seller_id"] for g in got) == sorted(w[0] for w in want)


def assert_top_sellers_match_truth(
    worker: Worker, ds: DataSet, users: int = 15, ks: tuple[int, ...] = (1, 5, 1000)
) -> None:
    """top-k of the users with the most sellers (and of an unknown one) equals the ranking
    of the ground truth at the answer's as_of."""
    busiest = Counter(u for (u, _s) in ds.truth.pairs).most_common(users)
    for user, _ in [*busiest, ("nobody", 0)]:
        for k in ks:
            status, body = worker.get(f"/users/{user}/top-sellers?k={k}")
            assert status == 200, body
            assert body["user_id"] == user
            want = truth_ranking(ds, user, parse_time(body["as_of"]))[:k]
            assert_ranking(body["sellers"], want)


def delete_topics(ns: Namespace, names: list[str]) -> None:
    """The command the partition-mismatch refusal prints, run as printed."""
    done = subprocess.run(
        [sys.executable, "-m", "streamapp.admin", "delete-topics", *names],
        cwd=ROOT,
        env=ns.env(),
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [f"{n}: deleted (kafka://{ns.bootstrap})" for n in names]
