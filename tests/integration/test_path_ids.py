"""Ids with path characters work in every endpoint on every worker (issue 11 item 5).

Forwarded requests used to rebuild their URL from the decoded path: ("." , "s/dot") was
answered as ("s", "dot"), ids with "/" or ".." got 404 and "." on top-sellers a 503. With
two workers every user is owned by exactly one of them, so asking both sends one request
of each pair through a forward; both answers must equal the ground truth.
"""

from __future__ import annotations

import json
import urllib.parse
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from streamapp.http.internal_auth import derive_key, sign
from tests.harness import Namespace, Out, Worker, produce, wait_until
from tests.integration.conftest import new_worker
from tests.truth import Truth, assert_vector_equal, parse_time

pytestmark = pytest.mark.integration

SECRET = "path-ids-test-secret"
USERS = [
    "a/b", ".", "..", "%", "%2F", "?k=1", "#x", " ", "é/..", "日本", "{}", "a-b", "x\\y", "/",
    "a/../b", "plain", "~u", "+1",
]  # fmt: skip
SELLERS = [
    "s/dot", ".", "..", "%25", "?", "#", " s ", "ü", "a-b", "{", "/", "s.json", "p",
]  # fmt: skip
KINDS = ["LIKE", "VIEW", "PURCHASE", "CLICK"]


def q(entity_id: str) -> str:
    return urllib.parse.quote(entity_id, safe="")


def build(ns: Namespace) -> tuple[list[Out], Truth]:
    truth, records, now = Truth(), [], datetime.now(UTC)
    for i, user in enumerate(USERS):
        favorites = [f"c{i % 3}"]
        truth.favorites[user] = set(favorites)
        body = {"id": user, "age": 30, "favorite_categories": favorites}
        records.append(Out(ns.topic("users"), json.dumps(body).encode(), user.encode()))
    for j, seller in enumerate(SELLERS):
        categories = [f"c{j % 4}", "c9"]
        truth.categories[seller] = set(categories)
        body = {"id": seller, "categories": categories}
        records.append(Out(ns.topic("sellers"), json.dumps(body).encode(), seller.encode()))
    n = 0
    for i, user in enumerate(USERS):
        chosen = {SELLERS[i % len(SELLERS)], SELLERS[(i * 5 + 3) % len(SELLERS)]}
        if user == ".":
            chosen.add("s/dot")  # the example
        for seller in sorted(chosen):
            for _ in range(1 + n % 3):
                on = now - timedelta(hours=n % 50)
                kind = KINDS[n % len(KINDS)]
                body = {"id": f"p{n}", "user_id": user, "seller_id": seller}
                value = json.dumps({**body, "interaction_kind": kind, "on": on.isoformat()})
                records.append(Out(ns.topic("interactions"), value.encode(), user.encode()))
                truth.interact(f"p{n}", user, seller, kind, on)
                n += 1
    return records, truth


def owner_of(user: str, workers: list[Worker]) -> Worker:
    """The worker that serves `user` itself: a signed (worker-to-worker) request is answered
    only by the owner; the other says 503 rather than forwarding again. (Profiles are on
    every worker; a user's top sellers live with its owner.)"""
    key = derive_key(SECRET, "", "")
    path = f"/users/{q(user)}/top-sellers"
    answers = [
        w.get(path, headers=sign(key, "GET", path, None, datetime.now(UTC).timestamp()))
        for w in workers
    ]
    owners = [w for w, (status, _) in zip(workers, answers, strict=True) if status == 200]
    assert len(owners) == 1, (user, answers)
    return owners[0]


def signed_bulk_is_answered_by_the_owner_only(
    workers: list[Worker], owners: dict[str, Worker], pairs: list[tuple[str, str]]
) -> None:
    """A forwarded (signed) bulk part is answered by the worker that owns all its users; one
    that owns none or only some says 503 rather than forwarding it again (a ping-pong
    while assignments move)."""
    key = derive_key(SECRET, "", "")
    now = datetime.now(UTC)
    as_of = int(now.timestamp() * 1_000_000)
    for w in workers:
        own = [p for p in pairs if owners[p[0]] is w]
        other = [p for p in pairs if owners[p[0]] is not w]
        for part, served in ((own, True), (other, False), (own[:1] + other[:1], False)):
            headers = sign(key, "POST", "/affinity/query", as_of, now.timestamp())
            body = {"pairs": [{"user_id": u, "seller_id": s} for u, s in part]}
            status, answer = w.post("/affinity/query", body, headers=headers)
            if served:
                assert status == 200, (w.name, answer)
                got = [(r["user_id"], r["seller_id"]) for r in answer["results"]]
                assert got == part
            else:
                assert status == 503, (w.name, part, answer)
                assert answer == {"error": "partition ownership is moving, retry shortly"}


def test_ids_with_path_characters_on_two_workers(
    bootstrap: str, workers: list[Worker], tmp_path: Path
) -> None:
    ns = Namespace(bootstrap)
    env = {"STREAMAPP_INTERNAL_SECRET": SECRET}
    w1 = new_worker(workers, ns, tmp_path / "w1", "w1", **env).start()
    w2 = new_worker(workers, ns, tmp_path / "w2", "w2", **env).start()
    both = [w1, w2]
    wait_until(lambda: all(w.get("/health")[0] == 200 for w in both), 90, what="both ready")
    records, truth = build(ns)
    produce(bootstrap, records)
    pairs = sorted(truth.pairs)
    total = sum(len(v) for v in truth.pairs.values())

    def all_counted() -> bool:
        for w in both:
            results = w.query(pairs)
            if sum(r["number_of_interactions"] for r in results) != total:
                return False
        return all(w.get(f"/users/{q(USERS[-1])}")[0] == 200 for w in both)

    wait_until(all_counted, 120, interval=0.5, what="every interaction counted on both")
    owners = {user: owner_of(user, both) for user in USERS}
    assert set(owners.values()) == set(both), "each worker should own some of the users"
    signed_bulk_is_answered_by_the_owner_only(both, owners, pairs)

    for w in both:
        # The bulk query is split by owner and forwarded in parts.
        for (user, seller), got in zip(pairs, w.query(pairs), strict=True):
            assert (got["user_id"], got["seller_id"]) == (user, seller)
            assert_vector_equal(got, truth.vector(user, seller, parse_time(got["as_of"])))
        for user, seller in pairs:
            status, got = w.get(f"/affinity/{q(user)}/{q(seller)}")
            assert status == 200, (w.name, user, seller, got)
            assert (got["user_id"], got["seller_id"]) == (user, seller)
            assert_vector_equal(got, truth.vector(user, seller, parse_time(got["as_of"])))
        for user in USERS:
            status, got = w.get(f"/users/{q(user)}/top-sellers?k=5")
            assert status == 200 and got["user_id"] == user, (w.name, user, got)
            as_of = parse_time(got["as_of"])
            want = {s: truth.vector(u, s, as_of) for u, s in pairs if u == user}
            assert {r["seller_id"] for r in got["sellers"]} == set(want)
            for row in got["sellers"]:
                assert (
                    row["number_of_interactions"]
                    == want[row["seller_id"]]["number_of_interactions"]
                )
            status, got = w.get(f"/users/{q(user)}")
            assert status == 200 and got["id"] == user, (w.name, user, got)
            assert set(got["favorite_categories"]) == truth.favorites[user]
        for seller in SELLERS:
            status, got = w.get(f"/sellers/{q(seller)}")
            assert status == 200 and got["id"] == seller, (w.name, seller, got)
        # The request: "." and "s/dot" without encoding the dot.
        status, got = w.get("/affinity/./s%2Fdot")
        assert status == 200 and (got["user_id"], got["seller_id"]) == (".", "s/dot"), got
        assert got["number_of_interactions"] == len(truth.pairs[(".", "s/dot")])
