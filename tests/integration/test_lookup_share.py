"""A worker's lookups give way to ingest only when they would queue (issue 20): while the
worker works through a backlog, a lone client sending one bulk query at a time is answered
every time; a flood of concurrent ones gets answers or 503s with the share's JSON error
(whether the share refuses depends on how far ingest is behind: tests/unit/test_lookup_share.py
holds the rule); afterwards every interaction is counted exactly."""

from __future__ import annotations

import json
import re
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.harness import Namespace, Out, Worker, produce, wait_until

pytestmark = pytest.mark.integration

USERS, SELLERS, BACKLOG = 400, 50, 120_000


def counted(worker: Worker) -> int:
    _, text = worker.get("/metrics")
    found = re.search(r"^streamapp_interactions_counted_total (\S+)$", text, re.M)
    return int(float(found.group(1))) if found else 0


def test_a_lone_client_is_answered_and_a_flood_refused_while_ingesting(
    workers: list[Worker], bootstrap: str, tmp_path: Path
) -> None:
    ns = Namespace(bootstrap)
    # The smallest share, so that the flood meets it for sure.
    worker = Worker(ns, tmp_path / "data", "share", STREAMAPP_LOOKUP_SHARE="0.05")
    workers.append(worker)
    worker.start()  # creates the topics with their partition counts
    # Written while the worker is down, so that it starts behind all of it: written while
    # it ran, the records were counted about as fast as they came, and no backlog was left
    # for the lone client to meet once counting got faster.
    worker.stop()
    now = datetime.now(UTC)
    truth: dict[tuple[str, str], int] = {}
    records = []
    for n in range(BACKLOG):
        user, seller = f"u{n % USERS}", f"s{(n * 7) % SELLERS}"
        truth[(user, seller)] = truth.get((user, seller), 0) + 1
        body = {
            "id": f"i{n}",
            "user_id": user,
            "seller_id": seller,
            "interaction_kind": "VIEW",
            "on": (now - timedelta(seconds=n)).isoformat(),
        }
        records.append(Out(ns.topic("interactions"), json.dumps(body).encode(), user.encode()))
    produce(bootstrap, records)
    worker.start()
    pairs = sorted(truth)
    body = {"pairs": [{"user_id": u, "seller_id": s} for u, s in pairs[:100]]}

    # One client, one request at a time, for 3 s of the backlog (a quarter of it is left
    # for the flood).
    lone: list[int] = []
    until = time.monotonic() + 3.0
    while time.monotonic() < until and BACKLOG - counted(worker) > BACKLOG // 4:
        status, answer = worker.post("/affinity/query", body)
        lone.append(status)
        assert status == 200, answer
    behind = BACKLOG - counted(worker)
    assert behind > 0, "the backlog was gone before the lone client was done: no ingest to share"

    # Eight clients at once, while ingest is still waiting: the share refuses some.
    def flood(_: int) -> list[tuple[int, object]]:
        return [worker.post("/affinity/query", body) for _ in range(40)]

    with ThreadPoolExecutor(8) as pool:
        answers = [a for batch in pool.map(flood, range(8)) for a in batch]
    refused = [a for status, a in answers if status == 503]
    assert {status for status, _ in answers} <= {200, 503}
    assert all(isinstance(a, dict) and "share" in a["error"] for a in refused), refused[:3]

    # Nothing lost or doubled on the way.
    wait_until(lambda: counted(worker) == BACKLOG, 180, interval=1.0, what="backlog counted")
    results = []
    for i in range(0, len(pairs), 500):
        chunk = {"pairs": [{"user_id": u, "seller_id": s} for u, s in pairs[i : i + 500]]}
        status, answer = worker.post("/affinity/query", chunk)
        assert status == 200, answer
        results += answer["results"]
    wrong = [
        (p, r["number_of_interactions"])
        for p, r in zip(pairs, results, strict=True)
        if r["number_of_interactions"] != truth[p]
    ]
    assert not wrong, wrong[:10]
    assert len(lone) >= 3
