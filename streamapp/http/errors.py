"""The one exception the HTTP layer turns into a JSON error answer."""

from __future__ import annotations


class HTTPError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


# On a 503 of a process that cannot answer from its state now (restoring, stopping,
# unreachable), unlike one that is busy: a worker holding a replica of the state may answer
# in its place (lookup_api.answer_or_replica).
NOT_READY_HEADER = "X-Streamapp-Not-Ready"


def not_ready(message: str) -> HTTPError:
    return HTTPError(503, message, {"Retry-After": "1", NOT_READY_HEADER: "1"})
