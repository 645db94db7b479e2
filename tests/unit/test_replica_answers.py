"""When a user's owner cannot answer from its state (restarting, stopping, unreachable), a
worker holding a caught-up replica of that state answers, marked as such; a busy owner's
503 and any other answer pass through unchanged (lookup_api.answer_or_replica)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from aiohttp import web
from yarl import URL

from streamapp.http import lookup_api, provenance
from streamapp.http.errors import NOT_READY_HEADER, HTTPError, not_ready

OWNER = URL("http://127.0.0.1:1")


@pytest.fixture(autouse=True)
def no_outage_yet() -> None:
    lookup_api.outages.since.clear()


OTHERS = [URL("http://127.0.0.1:2"), URL("http://127.0.0.1:3")]


class Forwarder:
    def __init__(
        self, outcome: web.Response | HTTPError, others: dict[URL, web.Response | HTTPError]
    ) -> None:
        self.outcome = outcome
        self.others = others
        self.asked: list[tuple[URL, float | None]] = []  # replica-only requests sent

    async def forward(
        self, request: Any, base: URL, replica_age_s: float | None = None
    ) -> web.Response:
        if base == OWNER:
            assert replica_age_s is None
            outcome = self.outcome
        else:
            self.asked.append((base, replica_age_s))
            outcome = self.others[base]
        if isinstance(outcome, HTTPError):
            raise outcome
        return outcome


class Node:
    def __init__(
        self,
        outcome: web.Response | HTTPError,
        replica: bool,
        others: dict[URL, web.Response | HTTPError] | None = None,
    ) -> None:
        self.forwarder = Forwarder(outcome, others or {})
        self.replica = replica
        self.asked: list[list[str]] = []

    def other_workers(self, owner: URL) -> list[URL]:
        assert owner == OWNER
        return list(self.forwarder.others)

    def holds_replica(self, user_ids: list[str]) -> bool:
        self.asked.append(list(user_ids))
        return self.replica

    def state_age(self, user_ids: list[str]) -> float | None:
        return None


def run(node: Node) -> web.Response:
    async def here() -> web.Response:
        return lookup_api.json_response({"from": "here"})

    return asyncio.run(lookup_api.answer_or_replica(node, None, OWNER, ["u1"], here))  # type: ignore[arg-type]


def owner_says(status: int, not_ready_header: bool) -> web.Response:
    headers = {"Retry-After": "1", **({NOT_READY_HEADER: "1"} if not_ready_header else {})}
    return web.json_response({"error": "x"}, status=status, headers=headers)


@pytest.mark.parametrize(
    "outcome",
    [owner_says(503, True), not_ready("owner 127.0.0.1:1 unreachable (ClientError), retry")],
    ids=["owner restoring or stopping", "owner unreachable"],
)
def test_an_owner_that_cannot_answer_is_replaced_by_a_caught_up_replica(outcome: Any) -> None:
    node = Node(outcome, replica=True)
    answer = run(node)
    assert answer.status == 200 and answer.body == b'{"from":"here"}'
    assert answer.headers["X-Streamapp-Answered-By"] == "replica"
    assert answer.headers["X-Streamapp-Replica-Age-Ms"] == "0"  # the outage's first failure
    assert node.asked == [["u1"]]


def test_a_replicas_answer_says_for_how_long_the_owner_has_not_answered() -> None:
    lookup_api.outages.since[str(OWNER)] = time.monotonic() - 2.5  # first failed 2.5 s ago
    answer = run(Node(owner_says(503, True), replica=True))
    assert 2500 <= int(answer.headers["X-Streamapp-Replica-Age-Ms"]) < 3500
    run(Node(web.json_response({"ok": 1}), replica=True))  # the owner answers again
    assert lookup_api.outages.since == {}
    assert (
        run(Node(owner_says(503, True), replica=True)).headers["X-Streamapp-Replica-Age-Ms"] == "0"
    )


def test_without_a_caught_up_replica_the_owners_answer_stands() -> None:
    assert run(Node(owner_says(503, True), replica=False)).status == 503
    with pytest.raises(HTTPError) as info:
        run(Node(not_ready("unreachable"), replica=False))
    assert info.value.status == 503


def marked_answer() -> web.Response:
    return provenance.marked(web.json_response({"from": "other"}), provenance.REPLICA, 1.0)


def test_without_a_replica_here_the_other_workers_are_asked_for_theirs() -> None:
    """The owner cannot answer and this worker holds no standby of its state: the others
    are asked in turn for their replica answer (REPLICA_ONLY, with the outage's age); the
    first that holds one answers, marked by itself."""
    lookup_api.outages.since[str(OWNER)] = time.monotonic() - 2.0
    others = {OTHERS[0]: not_ready("no caught-up replica here"), OTHERS[1]: marked_answer()}
    node = Node(owner_says(503, True), replica=False, others=others)
    answer = run(node)
    assert answer is others[OTHERS[1]]
    assert [url for url, _ in node.forwarder.asked] == OTHERS
    assert all(1.9 < age < 3.0 for _, age in node.forwarder.asked)  # type: ignore[operator]


@pytest.mark.parametrize("owner", [owner_says(503, True), not_ready("unreachable")])
def test_when_no_worker_holds_a_replica_the_owners_refusal_stands(owner: Any) -> None:
    others = {url: not_ready("no caught-up replica here") for url in OTHERS}
    node = Node(owner, replica=False, others=others)
    if isinstance(owner, HTTPError):
        with pytest.raises(HTTPError) as info:
            run(node)
        assert info.value is owner
    else:
        assert run(node) is owner
    assert len(node.forwarder.asked) == 2


def test_a_worker_asked_for_its_replica_answers_only_from_one() -> None:
    async def here() -> web.Response:
        return lookup_api.json_response({"from": "here"})

    holding = Node(owner_says(503, True), replica=True)
    answer = asyncio.run(lookup_api.from_replica_only(holding, ["u1"], 4.2, here))  # type: ignore[arg-type]
    assert answer.headers["X-Streamapp-Answered-By"] == "replica"
    assert answer.headers["X-Streamapp-Replica-Age-Ms"] == "4200"
    with pytest.raises(HTTPError) as info:
        asyncio.run(
            lookup_api.from_replica_only(
                Node(owner_says(503, True), replica=False), ["u1"], 4.2, here
            )  # type: ignore[arg-type]
        )
    assert info.value.status == 503 and NOT_READY_HEADER in info.value.headers


def test_a_busy_owner_and_other_answers_pass_through_without_asking_for_a_replica() -> None:
    for outcome in (owner_says(503, False), web.json_response({"ok": 1}), owner_says(404, True)):
        node = Node(outcome, replica=True, others={url: marked_answer() for url in OTHERS})
        assert run(node) is outcome
        assert node.asked == [] and node.forwarder.asked == []
    busy = HTTPError(503, "lookups have used their share", {"Retry-After": "1"})
    with pytest.raises(HTTPError):
        run(Node(busy, replica=True))


def test_an_answer_of_several_parts_names_every_source_and_the_oldest_age() -> None:
    sources = provenance.Provenance()
    sources.add(provenance.HELD, None)  # live state: no mark
    assert "X-Streamapp-Answered-By" not in sources.mark(web.Response()).headers
    sources.add(provenance.HELD, 1.2)
    sources.add_headers(
        {"X-Streamapp-Answered-By": "replica", "X-Streamapp-Replica-Age-Ms": "3400"}
    )
    sources.add_headers({"Retry-After": "1"})  # an owner's live answer
    headers = sources.mark(web.Response()).headers
    assert headers["X-Streamapp-Answered-By"] == "rebalancing-owner, replica"
    assert headers["X-Streamapp-Replica-Age-Ms"] == "3400"
