"""HTTP API on faust's web server: lookups served from the tables on this worker."""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web as aiohttp_web
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import TypeAdapter, ValidationError

from streamapp import metrics, openapi, routing, seller_index, tables
from streamapp.app import app, scoring, settings
from streamapp.errors import HTTPError
from streamapp.features import feature_vector
from streamapp.health import ready
from streamapp.http_input import parse_k
from streamapp.models import AffinityQuery, EntityId, iso_micros, now_us
from streamapp.pair_state import PairState, summary
from streamapp.parsing import describe
from streamapp.score import Ranked, top_k, user_seller_score

log = logging.getLogger(__name__)

_entity_id: TypeAdapter[str] = TypeAdapter(EntityId)


def _error(
    status: int, message: str, headers: dict[str, str] | None = None
) -> aiohttp_web.Response:
    return aiohttp_web.json_response({"error": message}, status=status, headers=headers)


@aiohttp_web.middleware
async def json_errors(
    request: aiohttp_web.Request,
    handler: Callable[[aiohttp_web.Request], Awaitable[aiohttp_web.StreamResponse]],
) -> aiohttp_web.StreamResponse:
    """Every error is JSON {"error": ...}; a request problem is a 4xx, never a 5xx.
    Also: the optional bearer token, and latency per endpoint."""
    started = time.perf_counter()
    route = request.match_info.route.resource
    endpoint = route.canonical if route is not None else "unmatched"
    try:
        if settings.api_token and request.path not in PUBLIC_PATHS:
            check_token(request.headers.get("Authorization", ""))
        routing.authenticate(request)  # internal headers only from workers (400 otherwise)
        response = await handler(request)
    except HTTPError as exc:
        response = _error(exc.status, exc.message, exc.headers)
    except aiohttp_web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = _error(exc.status, exc.reason or "error")
    except Exception:
        log.exception("unhandled error serving %s %s", request.method, request.path)
        response = _error(500, "internal error")
    metrics.request_seconds.labels(endpoint, str(response.status)).observe(
        time.perf_counter() - started
    )
    return response


PUBLIC_PATHS = frozenset({"/health", "/"})  # the page itself holds no data


def check_token(header: str) -> None:
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        token.strip().encode(), settings.api_token.encode()
    ):
        raise HTTPError(401, "missing or wrong bearer token", {"WWW-Authenticate": "Bearer"})


app.web.web_app.middlewares.append(json_errors)


def require_ready() -> None:
    if not ready():
        raise HTTPError(
            503, "recovering: state is being restored, retry shortly", {"Retry-After": "1"}
        )


# Id segments are "[^/]+" rather than aiohttp's default "[^{}/]+", which refused ids with
# braces. The router matches on the path with "%2F" still encoded, so ids with "/" match.


def valid_id(name: str, value: str) -> str:
    try:
        return _entity_id.validate_python(value)
    except ValidationError as exc:
        raise HTTPError(400, f"{name}: {exc.errors(include_url=False)[0]['msg']}") from None


def pair_state_of(user_id: str, seller_id: str) -> PairState | None:
    raw = tables.pairs.read(tables.home_partition(user_id), tables.pair_key(user_id, seller_id))
    return PairState.decode_for_lookup(raw) if raw else None


# Lookups and ingest share one event loop. Lookups compute one at a time (`lookup_turn`)
# and give the loop back every LOOKUP_SLICE pairs, and ingest yields every millisecond
# (ingest.Slicer): under a flood of bulk queries the loop alternates between about a
# millisecond of lookups and one of ingest, so neither can starve the other; queued lookups
# wait in line instead of taking turns from ingest. docs/performance.md has the figures.
lookup_turn = asyncio.Semaphore(1)
LOOKUP_SLICE = 64


async def vectors(pairs: list[tuple[str, str]], as_of_us: int) -> list[dict[str, Any]]:
    """Feature vectors of pairs this worker owns, one per input pair, at one as_of: the
    pairs of a partition read with multi-gets, each profile read once."""
    async with lookup_turn:
        return await _vectors(pairs, as_of_us)


async def _vectors(pairs: list[tuple[str, str]], as_of_us: int) -> list[dict[str, Any]]:
    as_of_text = iso_micros(as_of_us)
    unique = list(dict.fromkeys(pairs))
    by_partition: dict[int, list[tuple[str, str]]] = {}
    for pair in unique:
        by_partition.setdefault(tables.home_partition(pair[0]), []).append(pair)
    favorites: dict[str, frozenset[str]] = {}
    catalog = tables.seller_catalog
    done: dict[tuple[str, str], dict[str, Any]] = {}
    slices = [
        (partition, whole[i : i + LOOKUP_SLICE])
        for partition, whole in by_partition.items()
        for i in range(0, len(whole), LOOKUP_SLICE)
    ]
    for n, (partition, group) in enumerate(slices):
        if n:
            await asyncio.sleep(0)  # ingest's turn
        keys = [tables.pair_key(u, s) for u, s in group]
        for (user_id, seller_id), key, raw in zip(
            group, keys, tables.pairs.read_many(partition, keys), strict=True
        ):
            fav = favorites.get(user_id)
            if fav is None:
                fav = favorites[user_id] = tables.user_catalog.categories(user_id)

            def load(suffix: bytes, key: bytes = key, p: int = partition) -> bytes | None:
                return tables.pairs.read(p, key + suffix)

            done[(user_id, seller_id)] = feature_vector(
                user_id,
                seller_id,
                PairState.decode_for_lookup(raw) if raw else None,
                fav,
                catalog.categories(seller_id),
                as_of_us,
                scoring,
                load,
                as_of_text,
            )
    return [done[pair] for pair in pairs]


def json_response(body: Any, status: int = 200) -> aiohttp_web.Response:
    # orjson: several times faster than faust's json for the vectors of a bulk answer.
    return aiohttp_web.Response(
        body=orjson.dumps(body), status=status, content_type="application/json"
    )


@app.page("/health")
class Health(View):
    async def get(self, request: Request) -> Response:
        if ready():
            return self.json({"status": "ok"})
        return self.json({"status": "recovering"}, status=503, headers={"Retry-After": "1"})


@app.page("/affinity/{user_id:[^/]+}/{seller_id:[^/]+}")
class Affinity(View):
    async def get(self, request: Request, user_id: str, seller_id: str) -> Response:
        user_id, seller_id = valid_id("user_id", user_id), valid_id("seller_id", seller_id)
        if (owner := routing.remote_owner(request, user_id)) is not None:
            return await routing.forward(request, owner)
        require_ready()
        return json_response((await vectors([(user_id, seller_id)], now_us()))[0])


@app.page("/affinity/query")
class AffinityBulk(View):
    async def post(self, request: Request) -> Response:
        body = await read_body(request)
        try:
            query = AffinityQuery.model_validate_json(body)
        except ValidationError as exc:
            raise HTTPError(
                400, describe(exc).replace("invalid message", "invalid query")
            ) from None
        if len(query.pairs) > settings.max_bulk_pairs:
            raise HTTPError(
                413, f"too many pairs: {len(query.pairs)} (limit {settings.max_bulk_pairs})"
            )
        # One moment for the whole answer, so rows compare (also across workers).
        as_of = routing.as_of_from(request) or now_us()
        by_owner: dict[Any, list[int]] = {}
        owners: dict[str, Any] = {}  # the usual query is one user and many sellers
        for i, pair in enumerate(query.pairs):
            user_id = pair.user_id
            if user_id not in owners:
                owners[user_id] = routing.remote_owner(request, user_id)
            by_owner.setdefault(owners[user_id], []).append(i)
        results: list[dict[str, Any] | None] = [None] * len(query.pairs)
        remote = [(url, idx) for url, idx in by_owner.items() if url is not None]
        if None in by_owner:
            require_ready()
            local = by_owner[None]
            found = await vectors(
                [(query.pairs[i].user_id, query.pairs[i].seller_id) for i in local], as_of
            )
            for i, vector in zip(local, found, strict=True):
                results[i] = vector
        answers = await asyncio.gather(
            *(
                routing.forward_query(
                    request, url, [query.pairs[i].model_dump() for i in idx], as_of
                )
                for url, idx in remote
            )
        )
        for (_, idx), part in zip(remote, answers, strict=True):
            for i, vector in zip(idx, part, strict=True):
                results[i] = vector
        return json_response({"results": results})


async def read_body(request: Request) -> bytes:
    length = request.content_length
    if length is not None and length > settings.max_body_bytes:
        raise HTTPError(413, f"body too large: {length} bytes (limit {settings.max_body_bytes})")
    # StreamReader.read(n) returns what has arrived so far, not n bytes: a body split across
    # TCP reads (a bulk query of long ids) was cut short. Read to the end, within the limit.
    parts: list[bytes] = []
    size = 0
    while chunk := await request.content.read(64 * 1024):  # type: ignore[attr-defined]
        size += len(chunk)
        if size > settings.max_body_bytes:
            raise HTTPError(413, f"body too large (limit {settings.max_body_bytes} bytes)")
        parts.append(chunk)
    return b"".join(parts)


@app.page("/users/{user_id:[^/]+}/top-sellers")
class TopSellersView(View):
    async def get(self, request: Request, user_id: str) -> Response:
        user_id = valid_id("user_id", user_id)
        k = parse_k(request.query.get("k"), settings.max_top_k)
        if (owner := routing.remote_owner(request, user_id)) is not None:
            return await routing.forward(request, owner)
        require_ready()
        async with lookup_turn:
            return json_response(await top_sellers(user_id, k, now_us()))


async def top_sellers(user_id: str, k: int, as_of: int) -> dict[str, Any]:
    """Rank the user's sellers from the pairs' stored headers alone (no full decode)."""
    partition = tables.home_partition(user_id)

    def load(key: bytes) -> bytes | None:
        return tables.user_sellers.read(partition, key)

    candidates = seller_index.sellers(user_id.encode(), load)
    favorites = tables.user_catalog.categories(user_id)
    ranked = []
    catalog = tables.seller_catalog
    step = 16 * LOOKUP_SLICE  # a header costs far less than a vector
    for start in range(0, len(candidates), step):
        if start:
            await asyncio.sleep(0)  # ingest's turn (a user may have 100,000 sellers)
        part = candidates[start : start + step]
        keys = [tables.pair_key(user_id, s) for s in part]
        for seller_id, raw in zip(part, tables.pairs.read_many(partition, keys), strict=True):
            if not raw:
                continue
            head = summary(raw)
            match = bool(favorites) and not favorites.isdisjoint(catalog.categories(seller_id))
            score = user_seller_score(head, match, as_of, scoring)
            ranked.append(Ranked(score, head.total, seller_id))
    return {
        "user_id": user_id,
        "as_of": iso_micros(as_of),
        "sellers": [
            {
                "seller_id": r.seller_id,
                "user_seller_score": r.score,
                "number_of_interactions": r.number_of_interactions,
            }
            for r in top_k(ranked, k)
        ],
    }


def profile_response(view: View, read: Callable[[str], Any], kind: str, entity_id: str) -> Response:
    entity_id = valid_id(f"{kind}_id", entity_id)
    require_ready()
    found = read(entity_id)
    if found is None:
        raise HTTPError(404, f"unknown {kind}: {entity_id}")
    return view.json(found)


@app.page("/users/{user_id:[^/]+}")
class UserView(View):
    async def get(self, request: Request, user_id: str) -> Response:
        return profile_response(self, tables.user_catalog.get, "user", user_id)


@app.page("/sellers/{seller_id:[^/]+}")
class SellerView(View):
    async def get(self, request: Request, seller_id: str) -> Response:
        return profile_response(self, tables.seller_catalog.get, "seller", seller_id)


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


STATIC = Path(__file__).resolve().parent / "static"


@app.page("/")
class IndexView(View):
    """A small live page (no build step, no CDN): counters, pair lookup, top sellers."""

    async def get(self, request: Request) -> Response:
        return self.html((STATIC / "index.html").read_text())


@app.page("/stats")
class StatsView(View):
    """The counters of /metrics as JSON, for the page."""

    async def get(self, request: Request) -> Response:
        refresh_gauges()
        return self.json(
            {
                "ready": ready(),
                "interactions_counted": int(metrics.counted._value.get()),
                "duplicates": int(metrics.duplicates._value.get()),
                "affinity_updates": int(metrics.updates._value.get()),
                "dead_letters": {
                    source: int(metrics.dead_letters.labels(source)._value.get())
                    for source in ("interactions", "users", "sellers")
                },
                "consumer_lag": int(sum(lag_by_partition().values())),
                "longest_event_loop_stall_ms": round(metrics.loop_stall_max._value.get() * 1e3, 3),
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
        # faust keeps the last offset it read per partition; there is no public accessor.
        read = consumer._read_offset.get(tp)
        if highwater is not None:
            lags[(tp.topic, tp.partition)] = max(
                0, highwater - (read + 1 if read is not None else 0)
            )
    return lags


def refresh_gauges() -> None:
    metrics.ready.set(1 if ready() else 0)
    metrics.recovering.set(1 if app.in_recovery else 0)
    for (topic, partition), behind in lag_by_partition().items():
        metrics.consumer_lag.labels(topic, str(partition)).set(behind)
