"""The lookup endpoints' HTTP handling, shared by the worker (worker/views.py) and the
serving process (serving/): validation, errors, splitting a bulk query by owner. No faust:
each side passes a `Node` that says who owns a user, whether it is ready, and how to
compute.

  GET  /affinity/{user_id}/{seller_id}
  POST /affinity/query                  {"pairs": [{"user_id", "seller_id"}, ...]}
  GET  /users/{user_id}/top-sellers?k=
"""

from __future__ import annotations

import asyncio
import hmac
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Protocol

import orjson
from aiohttp import web
from pydantic import TypeAdapter, ValidationError
from yarl import URL

from streamapp import metrics
from streamapp.core.config import Settings
from streamapp.core.lookup import results_text
from streamapp.core.models import AffinityQuery, EntityId
from streamapp.core.parsing import describe
from streamapp.core.times import now_us
from streamapp.http import provenance
from streamapp.http.errors import NOT_READY_HEADER, HTTPError, not_ready
from streamapp.http.forwarding import Forwarder
from streamapp.http.request_input import check_path_utf8, parse_k, query_pairs

log = logging.getLogger(__name__)

PUBLIC_PATHS = frozenset({"/health", "/live", "/"})  # the page itself holds no data
_entity_id: TypeAdapter[str] = TypeAdapter(EntityId)


class Node(Protocol):
    settings: Settings
    forwarder: Forwarder
    in_flight: int  # lookup requests admitted and not finished (_accounted keeps it)

    def remote_owner(self, request: Any, user_id: str) -> URL | None:
        """Where to send a request for `user_id`, or None to answer here."""

    def remote_owners(self, request: Any, user_ids: Iterable[str]) -> dict[str, URL | None]:
        """remote_owner of each user (a bulk query's users: readiness checked once)."""

    def state_age(self, user_ids: Iterable[str]) -> float | None:
        """How this node answers for these users now: None from live state, a number of
        seconds from the state it held when a rebalance began that long ago
        (provenance.HELD); HTTPError(503) when it cannot answer."""

    def admit(self) -> None:
        """HTTPError(503) when lookups must give way to ingest (lookup_share.py); a
        lookup that would not queue behind another (`in_flight` is 0) is always admitted."""

    def spent(self, seconds: float) -> None:
        """A lookup request took this long, all of its handling included."""

    async def vectors(self, pairs: list[tuple[str, str]], as_of_us: int) -> list[bytes]:
        """The pairs' feature vectors as JSON texts (lookup.vector_texts)."""

    async def top_sellers(self, user_id: str, k: int, as_of_us: int) -> dict[str, Any]: ...

    def holds_replica(self, user_ids: Iterable[str]) -> bool:
        """Whether this node holds a copy of these users' state that has every write their
        owner made (a worker's caught-up standby), to answer while the owner cannot."""

    def other_workers(self, owner: URL) -> list[URL]:
        """The workers that may hold a replica of `owner`'s state (neither this node nor
        the owner), to ask when this node holds none."""


def error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)


def json_response(body: Any, status: int = 200) -> web.Response:
    # orjson: several times faster than faust's json for the vectors of a bulk answer.
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


def json_text_response(text: bytes) -> web.Response:
    return web.Response(body=text, content_type="application/json")


def results_response(texts: list[bytes]) -> web.Response:
    return json_text_response(results_text(texts))


def check_token(header: str, token: str) -> None:
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        given.strip().encode(), token.encode()
    ):
        raise HTTPError(401, "missing or wrong bearer token", {"WWW-Authenticate": "Bearer"})


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def json_errors(settings: Settings, forwarder: Forwarder) -> Any:
    """Middleware: every error is JSON {"error": ...}, a request problem is a 4xx, never a
    5xx. Also: the optional bearer token, internal headers only from workers, and latency
    per endpoint."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        route = request.match_info.route.resource
        endpoint = route.canonical if route is not None else "unmatched"
        try:
            if settings.api_token and request.path not in PUBLIC_PATHS:
                check_token(request.headers.get("Authorization", ""), settings.api_token)
            forwarder.authenticate(request)  # 400 for a client posing as a worker
            response = await handler(request)
        except HTTPError as exc:
            response = error(exc.status, exc.message, exc.headers)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            allow = exc.headers.get("Allow")  # a 405 says which methods there are
            response = error(exc.status, exc.reason or "error", {"Allow": allow} if allow else None)
        except Exception:
            log.exception("unhandled error serving %s %s", request.method, request.path)
            response = error(500, "internal error")
        metrics.request_seconds.labels(endpoint, str(response.status)).observe(
            time.perf_counter() - started
        )
        return response

    return middleware


def valid_id(name: str, value: str) -> str:
    try:
        return _entity_id.validate_python(value)
    except ValidationError as exc:
        raise HTTPError(400, f"{name}: {exc.errors(include_url=False)[0]['msg']}") from None


async def read_body(request: Any, max_bytes: int) -> bytes:
    length = request.content_length
    if length is not None and length > max_bytes:
        raise HTTPError(413, f"body too large: {length} bytes (limit {max_bytes})")
    # StreamReader.read(n) returns what has arrived so far, not n bytes: a body split across
    # TCP reads (a bulk query of long ids) was cut short. Read to the end, within the limit.
    # One timer for the whole body (asyncio.wait_for per read made a task per read).
    parts: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(BODY_READ_S):
            while True:
                chunk = await request.content.read(64 * 1024)
                if not chunk:
                    return b"".join(parts)
                size += len(chunk)
                if size > max_bytes:
                    raise HTTPError(413, f"body too large (limit {max_bytes} bytes)")
                parts.append(chunk)
    except TimeoutError:
        raise HTTPError(408, f"the request body did not arrive within {BODY_READ_S:g} s") from None


# The web server's limits for a request line and a header (aiohttp's default is 8190 bytes,
# answered in plain text): long enough that an id over MAX_ID_LENGTH reaches the handler and
# gets the JSON 400 every other bad id gets.
SERVER_LIMITS = {"max_line_size": 64 * 1024, "max_field_size": 64 * 1024}
BODY_READ_S = 10.0  # a client holding a partial body must not hold a connection for ever


def _owner_cannot(status: int, headers: Any) -> bool:
    return status == 503 and NOT_READY_HEADER in headers


class Outages:
    """Since when each owner has not answered from its state, as this process saw it: the
    age of a replica's answer (the owner counted nothing this process saw since then)."""

    def __init__(self) -> None:
        self.since: dict[str, float] = {}

    def failed(self, owner: URL) -> float:
        """Seconds since the first failure of this outage (0 for the first one)."""
        now = time.monotonic()
        return now - self.since.setdefault(str(owner), now)

    def answered(self, owner: URL) -> None:
        self.since.pop(str(owner), None)


outages = Outages()


async def answer_or_replica(
    node: Node,
    request: Any,
    owner: URL,
    user_ids: list[str],
    here: Callable[[], Awaitable[web.Response]],
) -> web.Response:
    """The owner's answer; while the owner cannot answer from its state (restarting,
    stopping, unreachable), an answer from a replica of that state with every write the
    owner made: this node's, or another worker's."""
    try:
        response = await node.forwarder.forward(request, owner)
    except HTTPError as exc:
        if not _owner_cannot(exc.status, exc.headers):
            raise
        refusal: HTTPError | web.Response = exc
    else:
        if not _owner_cannot(response.status, response.headers):
            outages.answered(owner)
            return response
        refusal = response
    age = outages.failed(owner)
    if node.holds_replica(user_ids):
        node.state_age(user_ids)  # holds_replica: ready, so live state
        return provenance.marked(await here(), provenance.REPLICA, age)
    for other in node.other_workers(owner):
        try:
            answer = await node.forwarder.forward(request, other, replica_age_s=age)
        except HTTPError:
            continue
        if answer.status == 200:
            return answer  # marked by the worker that answered
    if isinstance(refusal, HTTPError):
        raise refusal
    return refusal


async def from_replica_only(
    node: Node, user_ids: list[str], age_s: float, here: Callable[[], Awaitable[web.Response]]
) -> web.Response:
    """Another worker asks for this worker's replica answer: it could reach neither the
    owner's state nor a replica of its own."""
    if not node.holds_replica(user_ids):
        raise not_ready("no caught-up replica of this state here")
    node.state_age(user_ids)
    return provenance.marked(await here(), provenance.REPLICA, age_s)


async def _for_one_user(
    node: Node, request: Any, user_id: str, here: Callable[[], Awaitable[web.Response]]
) -> web.Response:
    """A lookup of one user's data: a worker's request for this worker's replica answer,
    the owner's answer (or a replica's) when that is another worker, else this node's."""
    if (age_s := node.forwarder.replica_only(request)) is not None:
        return await from_replica_only(node, [user_id], age_s, here)
    if (owner := node.remote_owner(request, user_id)) is not None:
        return await answer_or_replica(node, request, owner, [user_id], here)
    age = node.state_age([user_id])
    return provenance.marked(await here(), provenance.HELD, age)


async def _affinity(node: Node, request: Any, user_id: str, seller_id: str) -> web.Response:
    check_path_utf8(request.raw_path)
    user_id = valid_id("user_id", user_id)
    seller_id = valid_id("seller_id", seller_id)

    async def here() -> web.Response:
        return json_text_response((await node.vectors([(user_id, seller_id)], now_us()))[0])

    return await _for_one_user(node, request, user_id, here)


async def _bulk(node: Node, request: Any) -> web.Response:
    settings = node.settings
    body = await read_body(request, settings.bulk_body_bytes)
    pairs = query_pairs(body)
    if pairs is None:  # not plainly valid: the model says what is wrong
        try:
            query = AffinityQuery.model_validate_json(body)
        except ValidationError as exc:
            raise HTTPError(
                400, describe(exc).replace("invalid message", "invalid query")
            ) from None
        pairs = [(p.user_id, p.seller_id) for p in query.pairs]
    if len(pairs) > settings.max_bulk_pairs:
        raise HTTPError(413, f"too many pairs: {len(pairs)} (limit {settings.max_bulk_pairs})")
    # One moment for the whole answer, so rows compare (also across workers).
    as_of = node.forwarder.as_of_from(request) or now_us()
    if (age_s := node.forwarder.replica_only(request)) is not None:
        users = [user for user, _ in pairs]

        async def here() -> web.Response:
            return results_response(await node.vectors(pairs, as_of))

        return await from_replica_only(node, users, age_s, here)
    owners = node.remote_owners(request, dict.fromkeys(user for user, _ in pairs))
    if owners and all(owner is None for owner in owners.values()):  # every user's is here
        age = node.state_age(owners)
        answer = results_response(await node.vectors(pairs, as_of))
        return provenance.marked(answer, provenance.HELD, age)
    by_owner: dict[Any, list[int]] = {}
    for i, (user_id, _) in enumerate(pairs):
        by_owner.setdefault(owners[user_id], []).append(i)
    results: list[bytes] = [b""] * len(pairs)
    remote = [(url, idx) for url, idx in by_owner.items() if url is not None]
    sources = provenance.Provenance()  # of the parts not answered from live state
    if None in by_owner:
        local = by_owner[None]
        sources.add(provenance.HELD, node.state_age([pairs[i][0] for i in local]))
        found = await node.vectors([pairs[i] for i in local], as_of)
        for i, vector in zip(local, found, strict=True):
            results[i] = vector

    async def part_of(url: Any, idx: list[int]) -> list[bytes]:
        part = [{"user_id": pairs[i][0], "seller_id": pairs[i][1]} for i in idx]
        users = [pairs[i][0] for i in idx]
        try:
            answer, marks = await node.forwarder.forward_query(request, url, part, as_of)
        except HTTPError as exc:
            if not _owner_cannot(exc.status, exc.headers):
                raise
            age = outages.failed(url)
            if not node.holds_replica(users):
                for other in node.other_workers(url):  # a replica elsewhere
                    try:
                        answer, marks = await node.forwarder.forward_query(
                            request, other, part, as_of, replica_age_s=age
                        )
                    except HTTPError:
                        continue
                    sources.add_headers(marks)
                    return [orjson.dumps(vector) for vector in answer]
                raise
        else:
            outages.answered(url)
            sources.add_headers(marks)
            return [orjson.dumps(vector) for vector in answer]
        node.state_age(users)  # holds_replica: ready, so live state
        sources.add(provenance.REPLICA, age)
        return await node.vectors([pairs[i] for i in idx], as_of)

    answers = await asyncio.gather(*(part_of(url, idx) for url, idx in remote))
    for (_, idx), part in zip(remote, answers, strict=True):
        for i, vector in zip(idx, part, strict=True):
            results[i] = vector
    return sources.mark(results_response(results))


async def _top_sellers(node: Node, request: Any, user_id: str) -> web.Response:
    check_path_utf8(request.raw_path)
    user_id = valid_id("user_id", user_id)
    k = parse_k(request.query.getall("k", []), node.settings.max_top_k)

    async def here() -> web.Response:
        return json_response(await node.top_sellers(user_id, k, now_us()))

    return await _for_one_user(node, request, user_id, here)


async def _accounted(node: Node, work: Awaitable[web.Response]) -> web.Response:
    """Admission first (a refusal costs next to nothing), then the whole handling counted:
    parsing, owners, computing, serialising."""
    started = time.perf_counter()
    admitted = False
    try:
        node.admit()
        admitted = True
        node.in_flight += 1
        return await work
    finally:
        if admitted:
            node.in_flight -= 1
        node.spent(time.perf_counter() - started)
        if inspect.iscoroutine(work):
            work.close()  # never started when refused: no "never awaited" warning


async def affinity(node: Node, request: Any, user_id: str, seller_id: str) -> web.Response:
    return await _accounted(node, _affinity(node, request, user_id, seller_id))


async def bulk(node: Node, request: Any) -> web.Response:
    return await _accounted(node, _bulk(node, request))


async def top_sellers(node: Node, request: Any, user_id: str) -> web.Response:
    return await _accounted(node, _top_sellers(node, request, user_id))
