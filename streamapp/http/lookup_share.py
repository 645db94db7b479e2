"""How much of a worker's event loop its lookups have used lately, so that a flood of
lookups cannot starve ingest (issue 10). No faust.

The worker's lookups and its ingest run on one event loop. Turn-taking (views.lookup_turn,
ingest's 1 ms slices) decides the order, not the amounts: requests keep arriving, and each
brings parsing and serialisation on top of its computation. So the worker also counts the
seconds its lookup requests take (worker/views.py adds a fixed 0.4 ms per request for
the web server's work outside the handler), as a sum that decays over about a second, and
while ingest has records read and waiting and that sum is above STREAMAPP_LOOKUP_SHARE of
the window, a lookup that would queue behind another (one is in flight) is refused at once
with 503 and Retry-After instead of joining a queue that would only grow. A lone client, one
request at a time, is always answered (issue 20).
A serving process (streamapp/serving/) has no ingest to protect and never refuses.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable


class LookupShare:
    def __init__(
        self, share: float, window_s: float = 1.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.share = share
        self.window_s = window_s
        self.clock = clock
        self.used = 0.0  # seconds of computation, decayed with time constant window_s
        self.at = clock()

    def _decay(self) -> None:
        now = self.clock()
        if now > self.at:
            self.used *= math.exp(-(now - self.at) / self.window_s)
            self.at = now

    def spend(self, seconds: float) -> None:
        self._decay()
        self.used += seconds

    def exhausted(self) -> bool:
        """Lookups have used their share of the last window or so."""
        if self.share >= 1.0:
            return False
        self._decay()
        return self.used > self.share * self.window_s

    def admits(self, queued: bool, ingest_waiting: bool) -> bool:
        """Whether a lookup may go ahead: it would `queued` behind another lookup (one in
        flight), ingest has records waiting. Only a lookup that would queue, over the share,
        while ingest waits, is refused: a lone client is always answered."""
        return not (queued and ingest_waiting and self.exhausted())
