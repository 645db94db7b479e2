"""A bulk query split by owner (lookup_api._bulk), with a node that says who owns what: the
answer keeps the query's order, a query whose users are all here is answered from this
node's state with its provenance, and an empty query is answered without asking for any
state (it holds none: a recovering worker still gives 200 {"results": []})."""

from __future__ import annotations

import asyncio
from typing import Any
from unittest import mock

import orjson
import pytest
from aiohttp.streams import StreamReader
from aiohttp.test_utils import make_mocked_request
from aiohttp.web import Response
from yarl import URL

from streamapp.core.config import load_settings
from streamapp.http import lookup_api
from streamapp.http.errors import not_ready

OTHER = URL("http://127.0.0.1:2")


class Forwarder:
    def __init__(self) -> None:
        self.parts: list[list[dict[str, str]]] = []

    def replica_only(self, request: Any) -> None:
        return None

    def as_of_from(self, request: Any) -> None:
        return None

    async def forward_query(
        self, request: Any, url: URL, part: list[dict[str, str]], as_of: int
    ) -> tuple[list[dict[str, str]], dict[str, str]]:
        self.parts.append(part)
        return [{"from": "other", **pair} for pair in part], {}


class Node:
    """Owns the users whose id starts with "here"; `age` is what state_age answers (a
    number: held through a rebalance; an exception: not ready)."""

    def __init__(self, age: float | Exception | None = None) -> None:
        self.settings = load_settings({})
        self.forwarder = Forwarder()
        self.age = age
        self.asked_state: list[list[str]] = []
        self.computed: list[list[tuple[str, str]]] = []

    def remote_owners(self, request: Any, user_ids: Any) -> dict[str, URL | None]:
        return {u: None if u.startswith("here") else OTHER for u in user_ids}

    def state_age(self, user_ids: Any) -> float | None:
        self.asked_state.append(list(user_ids))
        if isinstance(self.age, Exception):
            raise self.age
        return self.age

    async def vectors(self, pairs: list[tuple[str, str]], as_of_us: int) -> list[bytes]:
        self.computed.append(pairs)
        return [orjson.dumps({"from": "here", "user_id": u, "seller_id": s}) for u, s in pairs]


def ask(node: Node, pairs: list[tuple[str, str]]) -> Response:
    body = orjson.dumps({"pairs": [{"user_id": u, "seller_id": s} for u, s in pairs]})

    async def run() -> Response:
        payload = StreamReader(mock.Mock(_reading_paused=False), 2**16)
        payload.feed_data(body)
        payload.feed_eof()
        request = make_mocked_request(
            "POST",
            "/affinity/query",
            headers={"Content-Length": str(len(body))},
            payload=payload,
        )
        return await lookup_api._bulk(node, request)  # type: ignore[arg-type]

    return asyncio.run(run())


def results(response: Response) -> list[dict[str, str]]:
    assert response.status == 200
    return orjson.loads(response.body)["results"]  # type: ignore[arg-type]


def test_a_query_split_by_owner_keeps_its_order() -> None:
    node = Node()
    pairs = [("here-1", "a"), ("there-1", "b"), ("here-2", "c"), ("there-1", "d")]
    got = results(ask(node, pairs))
    assert [(r["user_id"], r["seller_id"], r["from"]) for r in got] == [
        ("here-1", "a", "here"),
        ("there-1", "b", "other"),
        ("here-2", "c", "here"),
        ("there-1", "d", "other"),
    ]
    assert node.computed == [[("here-1", "a"), ("here-2", "c")]]
    assert node.forwarder.parts == [
        [{"user_id": "there-1", "seller_id": "b"}, {"user_id": "there-1", "seller_id": "d"}]
    ]


@pytest.mark.parametrize("age", [None, 2.5])
def test_a_query_whose_users_are_all_here_is_answered_here_with_its_provenance(
    age: float | None,
) -> None:
    node = Node(age)
    pairs = [("here-1", "a"), ("here-2", "b"), ("here-1", "a")]
    response = ask(node, pairs)
    assert [(r["user_id"], r["seller_id"]) for r in results(response)] == pairs
    assert node.computed == [pairs] and node.forwarder.parts == []
    assert set(node.asked_state[0]) == {"here-1", "here-2"}
    if age is None:  # live state: no marks
        assert "X-Streamapp-Answered-By" not in response.headers
    else:
        assert response.headers["X-Streamapp-Answered-By"] == "rebalancing-owner"
        assert response.headers["X-Streamapp-Replica-Age-Ms"] == "2500"


def test_a_query_whose_users_are_here_is_refused_while_their_state_is_not_ready() -> None:
    node = Node(not_ready("recovering: state is being restored"))
    with pytest.raises(lookup_api.HTTPError) as info:
        ask(node, [("here-1", "a")])
    assert info.value.status == 503 and node.computed == []


@pytest.mark.parametrize("age", [None, 2.5, not_ready("recovering: state is being restored")])
def test_an_empty_query_is_answered_without_asking_for_state(age: Any) -> None:
    node = Node(age)
    response = ask(node, [])
    assert results(response) == []
    assert "X-Streamapp-Answered-By" not in response.headers
    assert node.asked_state == [] and node.computed == [] and node.forwarder.parts == []
