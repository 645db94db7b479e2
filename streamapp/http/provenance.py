"""Where an answer came from, when not from its owner's live state: two response headers.

  X-Streamapp-Answered-By: replica            a worker's caught-up standby, while the owner
                                              cannot answer (restarting, stopping, down)
  X-Streamapp-Answered-By: rebalancing-owner  the owner, from the state it held when a
                                              rebalance began (no one counts meanwhile)
  X-Streamapp-Replica-Age-Ms: <ms>            since when that state has not moved, about

Either way the answer counts every interaction counted until then, none since. A bulk
answer made of several parts names every source (comma-separated) and the oldest age.
"""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web

from streamapp import metrics

ANSWERED_BY = "X-Streamapp-Answered-By"
AGE = "X-Streamapp-Replica-Age-Ms"
HEADERS = (ANSWERED_BY, AGE)
REPLICA = "replica"
HELD = "rebalancing-owner"


class Provenance:
    """The sources of one answer's parts that were not live state, and the oldest age."""

    def __init__(self) -> None:
        self.sources: set[str] = set()
        self.age_s: float | None = None

    def add(self, source: str, age_s: float | None) -> None:
        """A part this process answered (counted in its /metrics)."""
        if age_s is not None:  # None: live state
            metrics.answers_not_live.labels(source).inc()
            self._note(source, age_s)

    def _note(self, source: str, age_s: float) -> None:
        self.sources.add(source)
        self.age_s = max(age_s, self.age_s or 0.0)

    def add_headers(self, headers: Mapping[str, str]) -> None:
        """An owner's (forwarded) answer's own marks."""
        by = headers.get(ANSWERED_BY)
        if by:
            try:
                age_s = int(headers.get(AGE, "0")) / 1000
            except ValueError:
                age_s = 0.0
            for source in by.split(","):
                self._note(source.strip(), age_s)

    def mark(self, response: web.Response) -> web.Response:
        if self.sources:
            response.headers[ANSWERED_BY] = ", ".join(sorted(self.sources))
            response.headers[AGE] = str(round((self.age_s or 0.0) * 1000))
        return response


def marked(response: web.Response, source: str, age_s: float | None) -> web.Response:
    """`response` with the marks of one source (none for live state)."""
    provenance = Provenance()
    provenance.add(source, age_s)
    return provenance.mark(response)
