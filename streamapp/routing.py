"""Which worker owns a user's data, and forwarding HTTP requests to it.

A user's pairs, profile and top-k index live in the partition of `interactions-by-user`
that the user id hashes to (murmur2 of the raw id, as every Kafka producer does). faust's
assignor knows which worker is active for each partition of that topic; its table_route
hashes the JSON-encoded key instead (faust issue #514), so we route on the topic.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp
from aiohttp import web as aiohttp_web
from yarl import URL

from streamapp import topics
from streamapp.app import app
from streamapp.errors import HTTPError

ROUTED = "X-Streamapp-Routed"  # set on forwarded requests: serve locally, never forward again
AS_OF = "X-Streamapp-As-Of"  # one as_of for every part of a split bulk query
FORWARD_TIMEOUT = aiohttp.ClientTimeout(total=5.0)


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


def remote_owner(request: Any, user_id: str) -> URL | None:
    """Where to forward `request` for `user_id`, or None to serve it here."""
    url = owner(user_id)
    if url is not None and request.headers.get(ROUTED):
        # The sender thought we own it: assignments are moving. Never ping-pong.
        raise HTTPError(503, "partition ownership is moving, retry shortly", {"Retry-After": "1"})
    return url


def _headers(request: Any, extra: dict[str, str] | None = None) -> dict[str, str]:
    headers = {ROUTED: "1", **(extra or {})}
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


async def forward(request: Any, base: URL) -> aiohttp_web.Response:
    """The same request, answered by the worker at `base`."""
    url = base.with_path(request.path).with_query(request.query)
    body = await request.read() if request.can_read_body else None
    status, payload, content_type, extra = await _call(request.method, url, _headers(request), body)
    return aiohttp_web.Response(
        body=payload, status=status, content_type=content_type, headers=extra
    )


async def forward_query(
    request: Any, base: URL, pairs: list[dict[str, str]], as_of_us: int
) -> list[dict[str, Any]]:
    """Part of a bulk query, answered by its owner at the same as_of."""
    body = json.dumps({"pairs": pairs}).encode()
    headers = _headers(request, {AS_OF: str(as_of_us), "Content-Type": "application/json"})
    status, payload, _, extra = await _call(
        "POST", base.with_path("/affinity/query"), headers, body
    )
    answer = json.loads(payload)
    if status != 200:
        raise HTTPError(status, answer.get("error", "owner failed"), extra)
    return answer["results"]


def as_of_from(request: Any) -> int | None:
    raw = request.headers.get(AS_OF) if request.headers.get(ROUTED) else None
    return int(raw) if raw and raw.isdigit() else None
