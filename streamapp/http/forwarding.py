"""Requests passed on to the worker that owns the data, signed (internal_auth.py) so the
receiver knows they come from one of us. No faust: the worker (worker/ownership.py) and the
serving process (serving/node.py) each give it their own HTTP client."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import orjson
from aiohttp import web as aiohttp_web
from yarl import URL

from streamapp.http import internal_auth, provenance
from streamapp.http.errors import NOT_READY_HEADER, HTTPError, not_ready
from streamapp.http.request_input import fill_path

log = logging.getLogger(__name__)

FORWARD_TIMEOUT = aiohttp.ClientTimeout(total=5.0)
_INTERNAL = "streamapp.internal"  # where authenticate() leaves its verdict on the request
# An owner's headers that its answer keeps on the way back to the client.
_KEPT_HEADERS = frozenset({"Retry-After", NOT_READY_HEADER, *provenance.HEADERS})


def _raw_path(request: Any) -> str:
    # What the sender signed: the path as it was on the wire, still percent-encoded.
    return str(request.raw_path).split("?", 1)[0]


def forward_path(request: Any) -> str:
    """The encoded path of `request` rebuilt from its route and matched ids: request.path is
    decoded ("/affinity/./s/dot" for the ids "." and "s/dot"), and a URL built from it loses
    dot segments and the boundaries of ids with '/' or '?'."""
    return fill_path(request.match_info.route.resource.canonical, dict(request.match_info))


async def call(
    client: aiohttp.ClientSession,
    method: str,
    url: URL,
    headers: dict[str, str],
    body: bytes | None,
    who: str,
) -> tuple[int, bytes, str, dict[str, str]]:
    """One request to another of our processes; a 503 with Retry-After when it cannot be
    reached (it is restarting, or partitions are moving), and when this process is stopping
    (its client closes under requests still being forwarded)."""
    if client.closed:
        raise not_ready("stopping, retry shortly")
    try:
        async with client.request(
            method, url, data=body, headers=headers, timeout=FORWARD_TIMEOUT
        ) as resp:
            return resp.status, await resp.read(), resp.content_type, dict(resp.headers)
    except (TimeoutError, aiohttp.ClientError) as exc:
        raise not_ready(
            f"{who} {url.host}:{url.port} unreachable ({type(exc).__name__}), retry shortly"
        ) from None
    except RuntimeError:
        if not client.closed:
            raise
        # aiohttp 3.x: "Session is closed", raised when the stop closed it meanwhile.
        raise not_ready("stopping, retry shortly") from None


class Forwarder:
    def __init__(self, key: bytes, client: Callable[[], aiohttp.ClientSession]) -> None:
        self.key = key
        self.client = client

    def authenticate(self, request: Any) -> None:
        """Every request: is it a worker's forward (signed), a client's (no internal
        header), or a client posing as a worker (HTTPError 400)? Remembered on it."""
        request[_INTERNAL] = internal_auth.verify(
            self.key, request.method, _raw_path(request), request.headers, time.time()
        )

    @staticmethod
    def internal(request: Any) -> internal_auth.Internal | None:
        return request.get(_INTERNAL)

    def replica_only(self, request: Any) -> float | None:
        """For a worker's request for this worker's replica answer (REPLICA_ONLY): the age
        in seconds the requester saw; None for any other request."""
        internal = self.internal(request)
        if internal is None or internal.replica_age_ms is None:
            return None
        return internal.replica_age_ms / 1000

    def as_of_from(self, request: Any) -> int | None:
        """The as_of a worker chose for its split bulk query (verified and range-checked)."""
        internal = self.internal(request)
        return internal.as_of_us if internal is not None else None

    def _headers(
        self,
        request: Any,
        method: str,
        url: URL,
        as_of_us: int | None = None,
        replica_age_s: float | None = None,
    ) -> dict[str, str]:
        headers = internal_auth.sign(self.key, method, url.raw_path, as_of_us, time.time())
        if replica_age_s is not None:
            headers[internal_auth.REPLICA_ONLY] = str(round(replica_age_s * 1000))
        if "Authorization" in request.headers:
            headers["Authorization"] = request.headers["Authorization"]
        return headers

    async def _call(
        self, method: str, url: URL, headers: dict[str, str], body: bytes | None
    ) -> tuple[int, bytes, str, dict[str, str]]:
        status, payload, content_type, got = await call(
            self.client(), method, url, headers, body, "owner"
        )
        kept = {k: v for k, v in got.items() if k in _KEPT_HEADERS}
        return status, payload, content_type, kept

    async def forward(
        self, request: Any, base: URL, replica_age_s: float | None = None
    ) -> aiohttp_web.Response:
        """The same request, answered by the worker at `base` (with `replica_age_s`: from
        its standby only, see internal_auth.REPLICA_ONLY)."""
        url = base.with_path(forward_path(request), encoded=True).with_query(request.query)
        body = await request.read() if request.can_read_body else None
        headers = self._headers(request, request.method, url, replica_age_s=replica_age_s)
        status, payload, content_type, extra = await self._call(request.method, url, headers, body)
        return aiohttp_web.Response(
            body=payload, status=status, content_type=content_type, headers=extra
        )

    async def forward_query(
        self,
        request: Any,
        base: URL,
        pairs: list[dict[str, str]],
        as_of_us: int,
        replica_age_s: float | None = None,
    ) -> tuple[list[dict[str, Any]], dict[str, str]]:
        """Part of a bulk query, answered by its owner at the same as_of; with the owner's
        headers the answer keeps (provenance.py)."""
        body = orjson.dumps({"pairs": pairs})
        url = base.with_path("/affinity/query")
        headers = {
            **self._headers(request, "POST", url, as_of_us, replica_age_s),
            "Content-Type": "application/json",
        }
        status, payload, _, extra = await self._call("POST", url, headers, body)
        try:
            answer = orjson.loads(payload)
        except ValueError:  # not JSON: a proxy's error page, say; the owner cannot answer
            log.warning("owner %s:%s answered %d without JSON", url.host, url.port, status)
            raise not_ready(
                f"owner {url.host}:{url.port} gave an unreadable answer ({status}), retry shortly"
            ) from None
        if status != 200:
            error = answer.get("error") if isinstance(answer, dict) else None
            raise HTTPError(status, error if isinstance(error, str) else "owner failed", extra)
        return answer["results"], extra  # our own answer (any other shape is a bug: a 500)
