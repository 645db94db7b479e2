"""Which worker owns a user's data; requests for it are forwarded (forwarding.py).

A user's pairs, profile and top-k index live in the partition of `interactions-by-user`
that the user id hashes to (murmur2 of the raw id, as every Kafka producer does). faust's
assignor knows which worker is active for each partition of that topic; its table_route
hashes the JSON-encoded key instead (faust issue #514), so we route on the topic.
"""

from __future__ import annotations

from typing import Any

from yarl import URL

from streamapp import internal_auth, topics
from streamapp.app import app, settings
from streamapp.errors import HTTPError
from streamapp.forwarding import Forwarder

forwarder = Forwarder(
    internal_auth.derive_key(settings.internal_secret, settings.app_id, settings.api_token),
    lambda: app.http_client,
)
authenticate = forwarder.authenticate
as_of_from = forwarder.as_of_from
forward = forwarder.forward
forward_query = forwarder.forward_query


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
    if url is not None and forwarder.internal(request) is not None:
        # The sender thought we own it: assignments are moving. Never ping-pong.
        raise HTTPError(503, "partition ownership is moving, retry shortly", {"Retry-After": "1"})
    return url
