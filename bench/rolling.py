"""The rolling-restart stage's clients (issue 23): lookups through a load balancer and the
group's ingest pauses, while the workers behind them are bounced one after another.

The stage itself (bench/run.py, stage_rolling_restart) starts three workers, produces
interactions at a steady rate, and restarts each worker in turn; these two watch from the
outside, as a ranking service and an operator would.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any, Protocol
from urllib.parse import quote

import aiohttp

from bench.common import summary_ms


class Backend(Protocol):
    @property
    def url(self) -> str: ...


class Balancer:
    """What a load balancer with health checks does in front of the workers: it asks each
    worker's GET /health every `check_s` and sends each lookup to the next healthy worker in
    turn; a request whose connection fails or that is answered 503 is retried once on another
    (nginx's `proxy_next_upstream error http_503`, Envoy's retry on 503): a worker that holds
    no standby of a restarting owner's users says 503, the one that does answers. Lookups
    are sent open loop at `rate`, for pairs whose truth does not change during the run, and
    every 200 is compared with it."""

    def __init__(
        self,
        backends: Sequence[Backend],
        truth: dict[tuple[str, str], int],
        rate: float,
        check_s: float = 0.5,
        timeout_s: float = 2.0,
    ) -> None:
        self.backends = list(backends)
        self.pairs = list(truth.items())
        self.rate = rate
        self.check_s = check_s
        self.timeout_s = timeout_s
        self.healthy: list[Backend] = list(backends)
        self.statuses: Counter[str] = Counter()
        self.wrong: list[str] = []
        self.refusals: Counter[str] = Counter()  # the 503s' error texts
        self.latencies: list[float] = []
        self.retried = 0
        self.by_replica = 0
        self.phase = "bounces"  # what the stage is doing now (set by it)
        self.phases: dict[str, Counter[str]] = {}  # statuses and marks, per phase

    async def run(self, stop: asyncio.Event) -> None:
        timeout = aiohttp.ClientTimeout(total=self.timeout_s)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            checks = asyncio.ensure_future(self._check(session, stop))
            try:
                await self._send(session, stop)
            finally:
                checks.cancel()

    async def _check(self, session: aiohttp.ClientSession, stop: asyncio.Event) -> None:
        while not stop.is_set():
            codes = await asyncio.gather(*(self._health(session, b) for b in self.backends))
            self.healthy = [b for b, code in zip(self.backends, codes, strict=True) if code == 200]
            await asyncio.sleep(self.check_s)

    @staticmethod
    async def _health(session: aiohttp.ClientSession, backend: Backend) -> int | None:
        try:
            async with session.get(f"{backend.url}/health") as response:
                return response.status
        except (aiohttp.ClientError, TimeoutError):
            return None

    async def _send(self, session: aiohttp.ClientSession, stop: asyncio.Event) -> None:
        start, tasks = time.monotonic(), set()
        turn = itertools.count()
        for i in itertools.count():
            if stop.is_set():
                break
            due = start + i / self.rate
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            task = asyncio.ensure_future(self._one(session, i, next(turn)))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.wait(tasks, timeout=self.timeout_s * 2 + 1)

    async def _one(self, session: aiohttp.ClientSession, i: int, turn: int) -> None:
        (user, seller), want = self.pairs[i % len(self.pairs)]
        pool = self.healthy or self.backends  # none healthy: try them all, as LBs do
        began = time.monotonic()
        for attempt in range(2):
            backend = pool[(turn + attempt) % len(pool)]
            url = f"{backend.url}/affinity/{quote(user, safe='')}/{quote(seller, safe='')}"
            try:
                async with session.get(url) as response:
                    body = await response.json(content_type=None)
                    status = response.status
                    replica = response.headers.get("X-Streamapp-Answered-By") == "replica"
                    marks = {k: v for k, v in response.headers.items() if k.startswith("X-Str")}
            except (aiohttp.ClientConnectionError, OSError):
                if attempt == 0 and len(pool) > 1:
                    self.retried += 1
                    continue  # connection refused or reset: the next upstream
                self.statuses["connection error"] += 1
                return
            except TimeoutError:
                self.statuses["timeout"] += 1
                return
            if status == 503 and attempt == 0 and len(pool) > 1:
                self.retried += 1
                continue
            self.statuses[str(status)] += 1
            self.by_replica += replica
            phase = self.phases.setdefault(self.phase, Counter())
            phase[str(status)] += 1
            if status == 200 and (by := marks.get("X-Streamapp-Answered-By")):
                phase[f"200 from {by}"] += 1
            if status == 503 and isinstance(body, dict):  # why, without the numbers
                self.refusals[re.sub(r"[0-9.:]+", "#", str(body.get("error")))[:80]] += 1
            if status == 200:
                self.latencies.append(time.monotonic() - began)
                if body.get("number_of_interactions") != want:
                    how = "replica" if replica else "owner or forward"
                    self.wrong.append(
                        f"{user}/{seller}: {body.get('number_of_interactions')} from "
                        f"{backend.url} ({how}, {marks}) at {time.time():.3f}"
                    )
            return

    def summary(self) -> dict[str, Any]:
        sent = sum(self.statuses.values())
        return {
            "rate": self.rate,
            "sent": sent,
            "statuses": dict(self.statuses),
            "answered_share": round(self.statuses["200"] / sent, 4) if sent else None,
            "answered_by_replica": self.by_replica,
            "retried_on_another": self.retried,
            "refusals": dict(self.refusals.most_common(5)),
            "phases": {
                name: {
                    "statuses": dict(counts),
                    "answered_share": round(counts["200"] / total, 4) if total else None,
                }
                for name, counts in self.phases.items()
                for total in [sum(n for k, n in counts.items() if not k.startswith("200 "))]
            },
            "wrong": len(self.wrong),
            "wrong_examples": self.wrong[:5],
            "latency_ms": summary_ms(sorted(self.latencies)),
        }


class PauseWatch:
    """The longest time the group's output did not grow while interactions were produced:
    `covered` (interactions covered by affinity-updates so far) is sampled every `every_s`."""

    def __init__(self, covered: Callable[[], int], every_s: float = 0.1) -> None:
        self.covered = covered
        self.every_s = every_s
        self.longest_s = 0.0
        self.longest_at = 0.0  # seconds after the watch started

    async def run(self, stop: asyncio.Event) -> None:
        began = last_growth = time.monotonic()
        last = self.covered()
        while not stop.is_set():
            await asyncio.sleep(self.every_s)
            now, covered = time.monotonic(), self.covered()
            if covered > last:
                last, last_growth = covered, now
            elif now - last_growth > self.longest_s:
                self.longest_s, self.longest_at = now - last_growth, last_growth - began
