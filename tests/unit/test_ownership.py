"""Who answers a lookup (ownership.remote_owners): the owner's URL for users another worker
owns, None for this worker's; a 503 when the assignment is incomplete, when this worker
stops, and, for a request another worker forwarded, when it names a user this worker does
not own (never forwarded twice). The checks run user by user, in the query's order.
faust's app, the assignment and the request are stand-ins."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from yarl import URL

import streamapp.app  # noqa: F401 - the worker as faust loads it
from streamapp.http.errors import NOT_READY_HEADER, HTTPError
from streamapp.worker import ownership

OTHER = URL("http://127.0.0.1:6067")
HOMES = {"mine": 0, "mine2": 1, "theirs": 2, "nowhere": 3}


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    state = SimpleNamespace(should_stop=False, internal=None, urls={0: None, 1: None, 2: OTHER})
    monkeypatch.setattr(ownership, "app", state)  # its should_stop is all that is read
    monkeypatch.setattr(ownership.partition_owners, "now", lambda: state.urls)
    monkeypatch.setattr(ownership.tables, "home_partition", HOMES.__getitem__)
    monkeypatch.setattr(ownership.forwarder, "internal", lambda request: state.internal)
    return state


def outcome(users: Any) -> Any:
    try:
        return ownership.remote_owners(object(), users)
    except HTTPError as exc:
        return exc.status, exc.message, exc.headers.get(NOT_READY_HEADER)


MOVING = (503, "partition ownership is moving, retry shortly", None)
ASSIGNING = (503, "partitions are being assigned, retry shortly", "1")


def test_owners_and_refusals(world: SimpleNamespace) -> None:
    assert outcome(["mine", "theirs", "mine2"]) == {"mine": None, "theirs": OTHER, "mine2": None}
    assert outcome(("mine",)) == {"mine": None}
    assert outcome(dict.fromkeys(["theirs"])) == {"theirs": OTHER}
    assert outcome(["mine", "nowhere"]) == ASSIGNING
    # A forwarded request: this worker's users are answered here, another's refused.
    world.internal = object()
    assert outcome(["mine", "mine2"]) == {"mine": None, "mine2": None}
    assert outcome(["mine", "theirs"]) == MOVING
    # In the query's order: the first user that fails decides which 503 it is (they differ
    # in the not-ready mark, which decides whether the sender tries a replica).
    assert outcome(["theirs", "nowhere"]) == MOVING
    assert outcome(["nowhere", "theirs"]) == ASSIGNING
    world.should_stop = True
    assert outcome(["mine"]) == (503, "this worker is stopping, retry shortly", "1")
    assert outcome([]) == {}  # an empty query has nothing to refuse
