"""Whether this worker serves lookups, a log line whenever that changes, and the serving
map (serving_map.py) that tells serving processes beside it what they may answer."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable
from typing import Any

from faust import Sensor

from streamapp.http.errors import not_ready
from streamapp.serving import serving_map
from streamapp.worker import tables, topics
from streamapp.worker.app import app, settings

log = logging.getLogger("streamapp")


def ready() -> bool:
    """True once table recovery has finished, the profile catalogs have caught up, no
    rebalance is under way, and the worker is not stopping (a graceful stop closes the tables
    while the web server still answers: a read then finds nothing)."""
    return not app.rebalancing and _ready_but_for_rebalances()


def _ready_but_for_rebalances() -> bool:
    recovery = app.tables.recovery
    return (
        not app.should_stop
        and recovery.completed.is_set()
        and not app.in_recovery
        and all(catalog.caught_up.is_set() for catalog in tables.catalogs)
    )


def _active_partitions() -> frozenset[int]:
    by_user = topics.interactions_by_user.get_topic_name()
    return frozenset(tp.partition for tp in app.assignor.assigned_actives() if tp.topic == by_user)


class RebalanceHold(Sensor):
    """Lookups during a rebalance, answered from the state this worker holds.

    aiokafka rebalances eagerly: every member stops ingesting while the group agrees on a
    new assignment, then each restores what it was given. Until the new assignment
    arrives, no one counts anything, so the partitions a ready worker owned when the
    rebalance began are still exactly as it left them; it answers for them (marked, with
    the age: since the rebalance began). Once the assignment is known, it goes on
    answering for the partitions it keeps (nobody else counted them meanwhile) until it
    is ready again; those it lost go to their new owner. faust closes the databases of
    lost partitions only when the assignment is handled (rocksdb.Store.on_rebalance),
    after the generation id has changed, and a read of a database that is not open is a
    503 (state_store.StateStore._held), never an empty answer.

    faust calls the sensor hooks from its consumer thread (at the start) and from the
    recovery (at the end); the attributes are written in an order that a reader on the
    event loop never sees half set: `since` last, and first cleared."""

    def __init__(self) -> None:
        super().__init__()
        self.partitions: frozenset[int] = frozenset()
        self.generation: int | None = None
        self.since: float | None = None  # monotonic; None: no rebalance held

    def on_rebalance_start(self, app_: Any) -> dict[str, Any]:
        if self.since is None and _ready_but_for_rebalances():
            self.partitions = _active_partitions()
            self.generation = app.consumer_generation_id
            self.since = time.monotonic()
        # else: not ready when it began (nothing to hold), or a rebalance within one held
        # already: what is held is narrowed at each new assignment (age()).
        return {}

    def on_rebalance_return(self, app_: Any, state: dict[str, Any]) -> None:
        self._follow()  # every assignment, also one no lookup saw

    def on_rebalance_end(self, app_: Any, state: dict[str, Any]) -> None:
        self.since = None

    def _follow(self) -> None:
        """Keep only what every assignment since the rebalance began gave this worker: a
        partition held elsewhere for one generation may have been counted there. A jump of
        the generation id by more than one is a generation this worker was not part of:
        then nothing is held."""
        generation = app.consumer_generation_id
        if generation == self.generation:
            return
        if self.generation is None or generation != self.generation + 1:
            self.partitions = frozenset()
        else:
            self.partitions = self.partitions & _active_partitions()
        self.generation = generation

    def age(self, partitions: Iterable[int]) -> float | None:
        """Seconds since the held rebalance began, if this worker may answer for all of
        `partitions` from its state now; else None."""
        since = self.since
        if since is None or app.should_stop:
            return None
        if not all(catalog.caught_up.is_set() for catalog in tables.catalogs):
            return None
        self._follow()  # a new assignment, before faust's sensors hear of it
        if not set(partitions) <= self.partitions or self.since is None:
            return None
        return time.monotonic() - since


hold = RebalanceHold()
app.sensors.add(hold)


def state_age(partitions: Iterable[int]) -> float | None:
    """None when this worker answers from live state; the age in seconds of the state it
    held when a rebalance began, when it answers from that; a 503 otherwise."""
    if ready():
        return None
    age = hold.age(partitions)
    if age is None:
        raise not_ready("recovering: state is being restored, retry shortly")
    return age


class StateLog:
    """One log line whenever readiness changes."""

    def __init__(self) -> None:
        self.ready: bool | None = None  # as last logged

    def note(self, now: bool) -> None:
        if now != self.ready:
            if now:
                log.info("streamapp: ready, serving lookups")
            else:
                log.info(
                    "streamapp: recovering state (rebalance or table restore); lookups answer 503"
                )
            self.ready = now


state_log = StateLog()


@app.timer(interval=0.5)
async def log_state_changes() -> None:
    state_log.note(ready())


def current_map() -> serving_map.ServingMap:
    if not ready():
        return _not_ready()
    by_user = topics.interactions_by_user.get_topic_name()
    owners = {
        partition: str(url)
        for url, by_topic in app.router.external_topics_metadata().items()
        for partition in by_topic.get(by_user, ())
    }
    active = sorted(tp.partition for tp in app.assignor.assigned_actives() if tp.topic == by_user)
    return serving_map.ServingMap(
        worker_pid=os.getpid(),
        worker_url=str(app.conf.canonical_url),
        ready=True,
        partitions=settings.partitions,
        stores={
            "pairs": {p: tables.pairs.path(p) for p in active},
        },
        catalogs={c.source: str(c.path) for c in tables.catalogs},
        owners=owners,
    )


def _not_ready() -> serving_map.ServingMap:
    return serving_map.ServingMap(
        worker_pid=os.getpid(),
        worker_url=str(app.conf.canonical_url),
        ready=False,
        partitions=settings.partitions,
        catalogs={c.source: str(c.path) for c in tables.catalogs},
    )


class MapPublisher:
    """Writes the serving map to the data dir whenever it changes."""

    def __init__(self) -> None:
        self.published: serving_map.ServingMap | None = None

    def publish(self, serving: serving_map.ServingMap) -> None:
        if serving != self.published:
            serving_map.write(settings.data_dir, serving)
            self.published = serving


publisher = MapPublisher()


@app.timer(interval=0.2)
async def publish_serving_map() -> None:
    publisher.publish(current_map())


@app.on_partitions_revoked.connect
async def _stop_serving(sender: Any, revoked: set[Any], **kwargs: Any) -> None:
    # At once, not at the next timer tick: from now on the partitions may be someone else's.
    publisher.publish(_not_ready())
