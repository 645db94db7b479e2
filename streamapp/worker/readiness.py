"""Whether this worker serves lookups, a log line whenever that changes, and the serving
map (serving_map.py) that tells serving processes beside it what they may answer."""

from __future__ import annotations

import logging
import os
from typing import Any

from streamapp.serving import serving_map
from streamapp.worker import tables, topics
from streamapp.worker.app import app, settings

log = logging.getLogger("streamapp")


def ready() -> bool:
    """True once table recovery has finished, the profile catalogs have caught up, no
    rebalance is under way, and the worker is not stopping (a graceful stop closes the tables
    while the web server still answers: a read then finds nothing)."""
    recovery = app.tables.recovery
    return (
        not app.should_stop
        and recovery.completed.is_set()
        and not app.in_recovery
        and not app.rebalancing
        and all(catalog.caught_up.is_set() for catalog in tables.catalogs)
    )


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
            "user_sellers": {p: tables.user_sellers.path(p) for p in active},
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
