"""HTTP API on faust's web server: lookups served from the tables on this worker.

The lookup endpoints' handling is shared with the serving process (lookup_api.py); here
is what is the worker's own: its tables, faust's ownership, readiness, and the turn-taking
with ingest on one event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterable
from typing import Any, TypeVar

from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from yarl import URL

from streamapp import metrics
from streamapp.core import lookup
from streamapp.http import lookup_api, openapi, page
from streamapp.http.errors import HTTPError, not_ready
from streamapp.http.lookup_api import valid_id
from streamapp.http.lookup_share import LookupShare
from streamapp.http.request_input import check_path_utf8
from streamapp.kafka import changelog_restore
from streamapp.worker import agents, faust_fixes, ownership, readiness, tables
from streamapp.worker.app import app, scoring, settings
from streamapp.worker.readiness import ready

app.web.web_app.middlewares.append(lookup_api.json_errors(settings, ownership.forwarder))
faust_fixes.set_web_server_limits(app.web.web_app, lookup_api.SERVER_LIMITS)


def require_ready() -> None:
    if not ready():
        raise not_ready("recovering: state is being restored, retry shortly")


# Id segments are "[^/]+" rather than aiohttp's default "[^{}/]+", which refused ids with
# braces. The router matches on the path with "%2F" still encoded, so ids with "/" match.


# Lookups and ingest share one event loop. Lookups compute one at a time (`lookup_turn`)
# and give the loop back every lookup.SLICE pairs, and ingest yields every millisecond
# (ingest.Slicer): under a flood of bulk queries the loop alternates between about a
# millisecond of lookups and one of ingest, so neither can starve the other; queued lookups
# wait in line instead of taking turns from ingest. For lookups that never wait for ingest,
# run serving processes beside the worker (streamapp/serving/). docs/performance.md has the figures.
lookup_turn = asyncio.Semaphore(1)
share = LookupShare(settings.lookup_share)
# What aiohttp and faust's web layer spend on a request outside its handler (parsing,
# routing, the response), which the handler cannot time: about 0.4 ms on the benchmark's
# machine, where 1,000 single GETs/s took half of ingest's rate with only the handlers
# counted. Refused requests are charged it too.
REQUEST_OVERHEAD_S = 0.0004
T = TypeVar("T")


class WorkerNode:
    """This worker, as lookup_api sees it."""

    settings = settings
    forwarder = ownership.forwarder
    in_flight = 0

    sources = lookup.Sources(
        pairs=tables.pairs,
        users=tables.user_catalog,
        sellers=tables.seller_catalog,
        home_partition=tables.home_partition,
        scoring=scoring,
    )

    def remote_owner(self, request: Any, user_id: str) -> URL | None:
        return ownership.remote_owners(request, (user_id,))[user_id]

    def remote_owners(self, request: Any, user_ids: Iterable[str]) -> dict[str, URL | None]:
        return ownership.remote_owners(request, user_ids)

    def state_age(self, user_ids: Iterable[str]) -> float | None:
        # The users' partitions matter only while not ready: computed only then.
        home = tables.home_partition
        return readiness.state_age(home(user) for user in user_ids)

    def holds_replica(self, user_ids: Iterable[str]) -> bool:
        return ready() and ownership.holds_replica(user_ids)

    def other_workers(self, owner: URL) -> list[URL]:
        return ownership.other_workers(owner)

    async def vectors(self, pairs: list[tuple[str, str]], as_of_us: int) -> list[bytes]:
        users = {user for user, _ in pairs}
        return await self._in_turn(lookup.vector_texts(self.sources, pairs, as_of_us), users)

    async def top_sellers(self, user_id: str, k: int, as_of_us: int) -> dict[str, Any]:
        return await self._in_turn(
            lookup.top_sellers(self.sources, user_id, k, as_of_us), [user_id]
        )

    async def _in_turn(self, work: Coroutine[Any, Any, T], user_ids: Iterable[str]) -> T:
        """One lookup computes at a time; one that waited for its turn while the share ran
        out is refused then (a 503 at once beats a place in a queue that only grows)."""
        try:
            waited = lookup_turn.locked()
            async with lookup_turn:
                self.refuse_unless(waited)
                answer = await work
                # A lookup gives the loop back between slices; a stop or a revocation meanwhile
                # may have closed what it read from, and an empty read looks like no data.
                self.state_age(user_ids)
                return answer
        finally:
            work.close()  # never started when refused: no "never awaited" warning

    def admit(self) -> None:
        # Only lookups that would queue give way: a lone client, one request at a time,
        # is answered (slower while ingest is busy: they take turns).
        self.refuse_unless(self.in_flight > 0)

    @staticmethod
    def refuse_unless(queued: bool) -> None:
        if not share.admits(queued, agents.ingest_waiting()):
            metrics.lookups_refused.inc()
            raise HTTPError(
                503,
                "lookups have used their share of this worker while it ingests "
                "(STREAMAPP_LOOKUP_SHARE); retry shortly, or ask a serving process",
                {"Retry-After": "1"},
            )

    @staticmethod
    def spent(seconds: float) -> None:
        share.spend(seconds + REQUEST_OVERHEAD_S)


node = WorkerNode()


@app.page("/health")
class Health(View):
    async def get(self, request: Request) -> Response:
        if ready():
            return self.json({"status": "ok"})
        body: dict[str, Any] = {"status": "recovering"}
        rebuild = changelog_restore.progress.as_dict()
        if rebuild is not None:  # a rebuild from the changelogs, with how far it got
            body["rebuild"] = rebuild
        return self.json(body, status=503, headers={"Retry-After": "1"})


@app.page("/live")
class Live(View):
    """Liveness, apart from readiness: 200 whenever the event loop answers, also while the
    worker restores for minutes (a liveness probe on /health would restart it then)."""

    async def get(self, request: Request) -> Response:
        return self.json({"status": "alive", "ready": ready()})


@app.page("/affinity/{user_id:[^/]+}/{seller_id:[^/]+}")
class Affinity(View):
    async def get(self, request: Request, user_id: str, seller_id: str) -> Response:
        return await lookup_api.affinity(node, request, user_id, seller_id)


@app.page("/affinity/query")
class AffinityBulk(View):
    async def post(self, request: Request) -> Response:
        return await lookup_api.bulk(node, request)


@app.page("/users/{user_id:[^/]+}/top-sellers")
class TopSellersView(View):
    async def get(self, request: Request, user_id: str) -> Response:
        return await lookup_api.top_sellers(node, request, user_id)


def profile_response(
    view: View, request: Request, read: Callable[[str], Any], kind: str, entity_id: str
) -> Response:
    check_path_utf8(request.raw_path)  # "%FF" must not be taken for the id "%25FF"
    entity_id = valid_id(f"{kind}_id", entity_id)
    require_ready()
    found = read(entity_id)
    if found is None:
        raise HTTPError(404, f"unknown {kind}: {entity_id}")
    return view.json(found)


@app.page("/users/{user_id:[^/]+}")
class UserView(View):
    async def get(self, request: Request, user_id: str) -> Response:
        return profile_response(self, request, tables.user_catalog.get, "user", user_id)


@app.page("/sellers/{seller_id:[^/]+}")
class SellerView(View):
    async def get(self, request: Request, seller_id: str) -> Response:
        return profile_response(self, request, tables.seller_catalog.get, "seller", seller_id)


_openapi_document = openapi.build(settings)


@app.page("/openapi.json")
class OpenAPIView(View):
    async def get(self, request: Request) -> Response:
        return self.json(_openapi_document)


@app.page("/metrics")
class MetricsView(View):
    async def get(self, request: Request) -> Response:
        refresh_gauges()
        return self.bytes(generate_latest(), content_type=CONTENT_TYPE_LATEST.split(";")[0])


@app.page("/")
class IndexView(View):
    """A small live page (no build step, no CDN): counters, pair lookup, top sellers."""

    async def get(self, request: Request) -> Response:
        return self.html(page.index_html())


@app.page("/stats")
class StatsView(View):
    """The counters of /metrics as JSON, for the page."""

    async def get(self, request: Request) -> Response:
        refresh_gauges()
        return self.json(
            {
                "ready": ready(),
                "interactions_counted": int(metrics.value(metrics.counted)),
                "duplicates": int(metrics.value(metrics.duplicates)),
                "affinity_updates": int(metrics.value(metrics.updates)),
                "dead_letters": {
                    source: int(metrics.value(metrics.dead_letters.labels(source)))
                    for source in ("interactions", "users", "sellers")
                },
                "consumer_lag": int(sum(lag_by_partition().values())),
                "longest_event_loop_stall_ms": round(
                    metrics.value(metrics.loop_stall_max) * 1e3, 3
                ),
            }
        )


def lag_by_partition() -> dict[tuple[str, int], int]:
    consumer = app.consumer
    changelogs = {table.changelog_topic.get_topic_name() for table in app.tables.values()}
    lags = {}
    for tp in consumer.assignment():
        if tp.topic in changelogs:
            continue
        highwater = consumer.highwater(tp)
        read = faust_fixes.read_offset(consumer, tp)
        if highwater is not None:
            lags[(tp.topic, tp.partition)] = max(
                0, highwater - (read + 1 if read is not None else 0)
            )
    return lags


def restore_remaining() -> dict[tuple[str, int], int]:
    """Changelog records still to read per table partition: the bulk rebuild's, then those
    faust's recovery reads (its highwater minus its offset, while it recovers)."""
    out = {(tp.topic, tp.partition): n for tp, n in changelog_restore.progress.remaining.items()}
    recovery = app.tables.recovery
    if app.in_recovery:
        for tp, highwater in recovery.active_highwaters.items():
            offset = recovery.active_offsets.get(tp, -1)
            out.setdefault((tp.topic, tp.partition), max(0, highwater - offset))
    return out


consumer_lag_series = metrics.SeriesSet(metrics.consumer_lag)
restore_series = metrics.SeriesSet(metrics.restore_remaining)


def refresh_gauges() -> None:
    metrics.ready.set(1 if ready() else 0)
    metrics.recovering.set(1 if app.in_recovery else 0)
    consumer_lag_series.replace({(t, str(p)): n for (t, p), n in lag_by_partition().items()})
    restore_series.replace({(t, str(p)): n for (t, p), n in restore_remaining().items()})
