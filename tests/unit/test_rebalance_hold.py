"""Lookups during a rebalance (readiness.RebalanceHold): a worker that was ready when a
rebalance began answers for the partitions it owned then, until the new assignment; after
it, for those it keeps, until it is ready again; never for partitions it lost or gained,
nor once it stops. faust's app is replaced by a stand-in whose rebalance state the test
sets step by step, in the order faust goes through it."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from faust.types import TP

import streamapp.app  # noqa: F401 - the worker as faust loads it
from streamapp.http.errors import NOT_READY_HEADER, HTTPError
from streamapp.worker import readiness

BY_USER = "interactions-by-user"


class Event:
    def __init__(self, value: bool) -> None:
        self.value = value

    def is_set(self) -> bool:
        return self.value


def fake_app(actives: set[int]) -> Any:
    assignor = SimpleNamespace(actives={TP(BY_USER, p) for p in actives})
    assignor.assigned_actives = lambda: assignor.actives
    return SimpleNamespace(
        rebalancing=False,
        should_stop=False,
        in_recovery=False,
        consumer_generation_id=7,
        tables=SimpleNamespace(recovery=SimpleNamespace(completed=Event(True))),
        assignor=assignor,
    )


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch) -> Any:
    app = fake_app({0, 1, 2})
    monkeypatch.setattr(readiness, "app", app)
    monkeypatch.setattr(readiness, "tables", SimpleNamespace(catalogs=[]))
    topics = SimpleNamespace(interactions_by_user=SimpleNamespace(get_topic_name=lambda: BY_USER))
    monkeypatch.setattr(readiness, "topics", topics)
    return app


def begin(app: Any, hold: readiness.RebalanceHold) -> None:
    """What faust does as a rebalance begins: the flag, then the sensors (consumer thread)."""
    app.rebalancing = True
    hold.on_rebalance_start(app)


def assign(app: Any, generation: int, actives: set[int]) -> None:
    """The new assignment: the assignor first, then the generation id (aiokafka, faust's
    rebalance listener), then recovery starts."""
    app.assignor.actives = {TP(BY_USER, p) for p in actives}
    app.consumer_generation_id = generation
    app.tables.recovery.completed = Event(False)
    app.in_recovery = True


def refused(
    hold: readiness.RebalanceHold, monkeypatch: pytest.MonkeyPatch, parts: set[int]
) -> bool:
    monkeypatch.setattr(readiness, "hold", hold)
    try:
        readiness.state_age(parts)
    except HTTPError as exc:
        assert exc.status == 503 and NOT_READY_HEADER in exc.headers
        return True
    return False


def test_ready_answers_from_live_state(app: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(readiness, "hold", readiness.RebalanceHold())
    assert readiness.state_age({0, 1, 2, 5}) is None  # ownership is checked elsewhere


def test_a_rebalance_is_answered_for_what_was_owned_until_it_is_lost(
    app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    hold = readiness.RebalanceHold()
    begin(app, hold)
    monkeypatch.setattr(readiness, "hold", hold)
    age = readiness.state_age({0, 2})
    assert age is not None and 0 <= age < 5
    assert refused(hold, monkeypatch, {3})  # never ours
    assert refused(hold, monkeypatch, {0, 3})  # a bulk part: all or nothing

    assign(app, 8, {0, 3})  # keeps 0, loses 1 and 2, gains 3
    assert readiness.state_age({0}) is not None  # still ours, restoring: no one else counted it
    for lost_or_gained in ({1}, {2}, {3}):
        assert refused(hold, monkeypatch, lost_or_gained)

    begin(app, hold)  # another round before recovery ended: narrowed again, not renewed
    assign(app, 9, {3})
    assert refused(hold, monkeypatch, {0})

    hold.on_rebalance_end(app, {})
    app.rebalancing, app.in_recovery = False, False
    app.tables.recovery.completed = Event(True)
    assert readiness.state_age({3}) is None  # ready: live state again


def test_nothing_is_held_when_the_rebalance_began_unready_or_while_stopping(
    app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    app.tables.recovery.completed = Event(False)  # still restoring when it began
    hold = readiness.RebalanceHold()
    begin(app, hold)
    assert refused(hold, monkeypatch, {0})

    app.tables.recovery.completed = Event(True)
    app.rebalancing = False
    hold = readiness.RebalanceHold()
    begin(app, hold)
    assert not refused(hold, monkeypatch, {0})
    app.should_stop = True  # a stop closes the tables
    assert refused(hold, monkeypatch, {0})


def test_a_generation_this_worker_missed_ends_the_hold(
    app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Generation 8 gave partition 0 to another worker, which counted it, and this worker
    was not part of 8 (dropped from the group); 9 gives 0 back: not held."""
    hold = readiness.RebalanceHold()
    begin(app, hold)
    assign(app, 9, {0, 1, 2})
    hold.on_rebalance_return(app, {})
    assert refused(hold, monkeypatch, {0})


def test_every_assignment_narrows_also_one_no_lookup_saw(
    app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    hold = readiness.RebalanceHold()
    begin(app, hold)
    assign(app, 8, {1})  # 0 counted elsewhere in generation 8 ...
    hold.on_rebalance_return(app, {})
    begin(app, hold)
    assign(app, 9, {0, 1})  # ... and back in 9
    hold.on_rebalance_return(app, {})
    assert refused(hold, monkeypatch, {0})
    assert not refused(hold, monkeypatch, {1})


def test_a_rebalance_is_not_answered_until_catalogs_caught_up(
    app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    hold = readiness.RebalanceHold()
    begin(app, hold)
    behind = SimpleNamespace(caught_up=Event(False))
    monkeypatch.setattr(readiness, "tables", SimpleNamespace(catalogs=[behind]))
    assert refused(hold, monkeypatch, {0})
