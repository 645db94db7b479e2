"""Which worker owns a user's data, and forwarding HTTP requests to it.

A user's pairs, profile and top-k index live in the partition of `interactions-by-user`
that the user id hashes to (murmur2 of the raw id, as every Kafka producer does). faust's
assignor knows which worker is active for each partition of that topic; its table_route
hashes the JSON-encoded key instead (faust issue #514), so we route on the topic.
"""

from __future__ import annotations

import json
import time
from typing import Any

import aiohttp
from aiohttp import web as aiohttp_web
from yarl import URL

from streamapp import internal_auth, topics
from streamapp.app import app, settings
from streamapp.errors import HTTPError
from streamapp.http_input import fill_path

FORWARD_TIMEOUT = aiohttp.ClientTimeout(total=5.0)
_KEY = internal_auth.derive_key(settings.internal_secret, settings.app_id, settings.api_token)
_INTERNAL = "streamapp.internal"  # where authenticate() leaves its verdict on the request


def _ident(url: URL | str) -> tuple[str, int]:
    url = URL(str(url))
    return (url.host or "", url.port or 80)


def owner(user_id: str) -> URL | None:
    """The owner's base URL, or None when this worker owns the user."""
    try:
        url = app.router.external_topic_key_store(topics.interactions_by_user, user_id.encode())
    except (KeyError, TypeError):
        raise HTTPError(
            503, "partitions are being assigned, retry shortly", {"Retry-After": "1"}
        ) from None
    return None if _ident(url) == _ident(app.conf.canonical_url) else url


def _raw_path(request: Any) -> str:
    # What the sender signed: the path as it was on the wire, still percent-encoded.
    return str(request.raw_path).split("?", 1)[0]


def authenticate(request: Any) -> None:
    """Every request: is it a worker's forward (signed), a client's (no internal header),
    or a client posing as a worker (HTTPError 400)? Remembered on the request."""
    request[_INTERNAL] = internal_auth.verify(
        _KEY, request.method, _raw_path(request), request.headers, time.time()
    )


def _internal(request: Any) -> internal_auth.Internal | None:
    return request.get(_INTERNAL)


def remote_owner(request: Any, user_id: str) -> URL | None:
    """Where to forward `request` for `user_id`, or None to serve it here."""
    url = owner(user_id)
    if url is not None and _internal(request) is not None:
        # The sender thought we own it: assignments are moving. Never ping-pong.
        raise HTTPError(503, "partition ownership is moving, retry shortly", {"Retry-After": "1"})
    return url


def _headers(request: Any, method: str, url: URL, as_of_us: int | None = None) -> dict[str, str]:
    headers = internal_auth.sign(_KEY, method, url.raw_path, as_of_us, time.time())
    if "Authorization" in request.headers:
        headers["Authorization"] = request.headers["Authorization"]
    return headers


async def _call(
    method: str, url: URL, headers: dict[str, str], body: bytes | None
) -> tuple[int, bytes, str, dict[str, str]]:
    try:
        async with app.http_client.request(
            method, url, data=body, headers=headers, timeout=FORWARD_TIMEOUT
        ) as resp:
            extra = {k: v for k, v in resp.headers.items() if k == "Retry-After"}
            return resp.status, await resp.read(), resp.content_type, extra
    except (TimeoutError, aiohttp.ClientError) as exc:
        raise HTTPError(
            503,
            f"owner {url.host}:{url.port} unreachable ({type(exc).__name__}), retry shortly",
            {"Retry-After": "1"},
        ) from None


def forward_path(request: Any) -> str:
    """The encoded path of `request` rebuilt from its route and matched ids: request.path is
    decoded ("/affinity/./s/dot" for the ids "." and "s/dot"), and a URL built from it loses
    dot segments and the boundaries of ids with '/' or '?'."""
    return fill_path(request.match_info.route.resource.canonical, dict(request.match_info))


async def forward(request: Any, base: URL) -> aiohttp_web.Response:
    """The same request, answered by the worker at `base`."""
    url = base.with_path(forward_path(request), encoded=True).with_query(request.query)
    body = await request.read() if request.can_read_body else None
    headers = _headers(request, request.method, url)
    status, payload, content_type, extra = await _call(request.method, url, headers, body)
    return aiohttp_web.Response(
        body=payload, status=status, content_type=content_type, headers=extra
    )


async def forward_query(
    request: Any, base: URL, pairs: list[dict[str, str]], as_of_us: int
) -> list[dict[str, Any]]:
    """Part of a bulk query, answered by its owner at the same as_of."""
    body = json.dumps({"pairs": pairs}).encode()
    url = base.with_path("/affinity/query")
    headers = {**_headers(request, "POST", url, as_of_us), "Content-Type": "application/json"}
    status, payload, _, extra = await _call("POST", url, headers, body)
    answer = json.loads(payload)
    if status != 200:
        raise HTTPError(status, answer.get("error", "owner failed"), extra)
    return answer["results"]


def as_of_from(request: Any) -> int | None:
    """The as_of a worker chose for its split bulk query (verified and range-checked)."""
    internal = _internal(request)
    return internal.as_of_us if internal is not None else None
