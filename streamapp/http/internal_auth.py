"""Worker-to-worker requests: signed, so a client cannot pose as another worker.

A forwarded request carries X-Streamapp-Routed (the sender's clock, unix seconds),
X-Streamapp-Signature (HMAC-SHA256 of method, raw path, as_of and that time under a key
every worker of the deployment shares) and, for a split bulk query, X-Streamapp-As-Of.
A request carrying any of these headers that does not verify is refused with a 400, so a
client can neither choose an answer's as_of nor suppress routing. Pure: no faust.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass

from streamapp.core.times import EVENT_RANGE_TEXT, in_event_range
from streamapp.http.errors import HTTPError

ROUTED = "X-Streamapp-Routed"  # a forwarded request: serve locally, never forward again
AS_OF = "X-Streamapp-As-Of"  # one as_of for every part of a split bulk query
SIGNATURE = "X-Streamapp-Signature"
# "Answer from your standby only": a worker that could reach neither the owner's state nor
# a replica of its own asks the others; the value is its outage's age in ms. Outside the
# signature, so workers of the previous release verify these requests as before (and,
# not knowing it, answer as owner or say 503); altered on the way, it can only turn an
# answer into a marked replica answer or a 503.
REPLICA_ONLY = "X-Streamapp-Replica-Only"
HEADERS = (ROUTED, AS_OF, SIGNATURE, REPLICA_ONLY)
# How far the sender's clock may be from ours. A captured request can be replayed within
# this window, but it only repeats a lookup the sender was entitled to make.
MAX_SKEW_S = 300
_VERSION = "streamapp-internal-v1"
_TIME = re.compile(r"[0-9]{1,12}")
_HEX = re.compile(r"[0-9a-f]{64}")
_MICROS = re.compile(r"[0-9]{1,19}")
REFUSED = (
    "X-Streamapp-* headers are for requests between workers and did not verify"
    " (check that every worker has the same STREAMAPP_INTERNAL_SECRET)"
)


def derive_key(secret: str, app_id: str, api_token: str) -> bytes:
    """The signing key: from STREAMAPP_INTERNAL_SECRET, else from the app id and the API
    token (so the workers of one deployment agree without configuration; without a token
    that default is guessable, hence the README's advice to set a secret across hosts)."""
    material = f"secret\0{secret}" if secret else f"default\0{app_id}\0{api_token}"
    return hashlib.sha256(f"{_VERSION}\0{material}".encode()).digest()


def _mac(key: bytes, method: str, path: str, as_of: str, timestamp: str) -> str:
    message = "\n".join((_VERSION, method.upper(), path, as_of, timestamp))
    return hmac.new(key, message.encode(), hashlib.sha256).hexdigest()


def sign(key: bytes, method: str, path: str, as_of_us: int | None, now_s: float) -> dict[str, str]:
    """Headers for a request to another worker. `path` is the raw (percent-encoded) path
    without the query, exactly as it goes on the wire."""
    timestamp = str(int(now_s))
    as_of = "" if as_of_us is None else str(as_of_us)
    headers = {ROUTED: timestamp, SIGNATURE: _mac(key, method, path, as_of, timestamp)}
    if as_of_us is not None:
        headers[AS_OF] = as_of
    return headers


@dataclass(frozen=True)
class Internal:
    """A verified worker-to-worker request."""

    as_of_us: int | None
    replica_age_ms: int | None = None  # REPLICA_ONLY's value, when it was sent


def verify(
    key: bytes, method: str, path: str, headers: Mapping[str, str], now_s: float
) -> Internal | None:
    """None for a client request (no internal header); Internal for a request another
    worker signed; HTTPError(400) for anything else. `headers` is case-insensitive in the
    web server (aiohttp's CIMultiDict)."""
    if not any(name in headers for name in HEADERS):
        return None
    timestamp, signature = headers.get(ROUTED), headers.get(SIGNATURE)
    as_of = headers.get(AS_OF)
    if (
        timestamp is None
        or signature is None
        or _TIME.fullmatch(timestamp) is None
        or _HEX.fullmatch(signature) is None
        or (as_of is not None and _MICROS.fullmatch(as_of) is None)
        or not hmac.compare_digest(signature, _mac(key, method, path, as_of or "", timestamp))
    ):
        raise HTTPError(400, REFUSED)
    if abs(now_s - int(timestamp)) > MAX_SKEW_S:
        raise HTTPError(400, f"{ROUTED}: signed more than {MAX_SKEW_S} s away from this clock")
    # Signed by a worker, but still never trusted to be formattable.
    if as_of is not None and not in_event_range(int(as_of)):
        raise HTTPError(400, f"{AS_OF}: must lie in {EVENT_RANGE_TEXT}")
    replica_age = headers.get(REPLICA_ONLY)
    if replica_age is not None and _TIME.fullmatch(replica_age) is None:
        raise HTTPError(400, f"{REPLICA_ONLY}: milliseconds, a whole number")
    return Internal(
        int(as_of) if as_of is not None else None,
        int(replica_age) if replica_age is not None else None,
    )
