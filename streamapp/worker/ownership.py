"""Which worker owns a user's data; requests for it are forwarded (forwarding.py).

A user's pairs and top-k index live in the partition of `interactions-by-user`
that the user id hashes to (murmur2 of the raw id, as every Kafka producer does). faust's
assignor knows which worker is active for each partition of that topic; its table_route
hashes the JSON-encoded key instead (faust issue #514), so we route on the topic.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from faust.types import TP
from yarl import URL

from streamapp.http import internal_auth
from streamapp.http.errors import HTTPError, not_ready
from streamapp.http.forwarding import Forwarder
from streamapp.worker import tables, topics
from streamapp.worker.app import app, settings

forwarder = Forwarder(
    internal_auth.derive_key(settings.internal_secret, settings.app_id, settings.api_token),
    lambda: app.http_client,
)


def _ident(url: URL | str) -> tuple[str, int]:
    url = URL(str(url))
    return (url.host or "", url.port or 80)


class PartitionOwners:
    """Every partition's owner (None: this worker), computed once per assignment: faust's
    router builds a URL and hashes the key in pure Python on every call, about 20 µs, which
    a bulk query of 100 users paid 100 times."""

    def __init__(self) -> None:
        self.generation: int | None = None  # the assignment `urls` belong to
        self.urls: dict[int, URL | None] = {}

    def now(self) -> dict[int, URL | None]:
        generation = app.consumer_generation_id
        if self.generation != generation:
            me = _ident(app.conf.canonical_url)
            by_user = topics.interactions_by_user.get_topic_name()
            urls: dict[int, URL | None] = {}
            for url, by_topic in app.router.external_topics_metadata().items():
                for partition in by_topic.get(by_user, ()):
                    urls[partition] = None if _ident(url) == me else URL(str(url))
            if len(urls) < settings.partitions:  # the assignment is not complete yet
                return urls
            self.generation, self.urls = generation, urls
        return self.urls


partition_owners = PartitionOwners()


def remote_owners(request: Any, user_ids: Iterable[str]) -> dict[str, URL | None]:
    """Where to forward `request` for each user: the owner's base URL, or None to serve it
    here. The stop, the assignment and the request's headers are read once; the checks run
    user by user, in order, as one user's would (no user: nothing to check)."""
    owners: dict[str, URL | None] = {}
    users = list(user_ids)
    if not users:
        return owners
    if app.should_stop:  # a forward would race the stop closing the HTTP client
        raise not_ready("this worker is stopping, retry shortly")
    urls = partition_owners.now()
    home = tables.home_partition
    internal = forwarder.internal(request) is not None
    for user in users:
        partition = home(user)
        if partition not in urls:
            raise not_ready("partitions are being assigned, retry shortly")
        url = owners[user] = urls[partition]
        if url is not None and internal:
            # The sender thought we own it: assignments are moving. Never ping-pong.
            raise HTTPError(
                503, "partition ownership is moving, retry shortly", {"Retry-After": "1"}
            )
    return owners


def other_workers(owner: URL) -> list[URL]:
    """Every other worker of the group but `owner`, as the last assignment named them."""
    skip = {_ident(app.conf.canonical_url), _ident(owner)}
    urls = app.router.external_topics_metadata()
    return [URL(str(url)) for url in urls if _ident(url) not in skip]


def holds_replica(user_ids: Iterable[str]) -> bool:
    """Whether this worker's standbys of these users' partitions hold every write their
    owner made: the pair table's changelog partitions are standbys here, read to their end. The
    owner is down or restarting, so the end does not move. Standby records are written a
    fetch at a time (faust_fixes 11.); any that went faust's own way (it buffers up to
    1,000) are applied now, before the answer reads them."""
    standbys = app.assignor.assigned_standbys()
    recovery = app.tables.recovery
    partitions = {tables.home_partition(user) for user in user_ids}
    table = tables.pairs
    for partition in partitions:
        tp = TP(table.changelog, partition)
        if tp not in standbys:
            return False
        try:
            end = app.consumer.highwater(tp)
        except Exception:  # not assigned to the consumer (any more)
            return False
        last = recovery.standby_offsets.get(tp)
        if end is None or (end > 0 and (last is None or last < end - 1)):
            return False
    recovery.flush_buffers()
    for partition in partitions:
        # faust opens a standby's database when it reads its persisted offset at the
        # assignment; a read of one not open finds nothing, so make sure of it here.
        table.open(partition)
    return True
