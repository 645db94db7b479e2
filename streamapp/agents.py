"""Agents: each source topic is read in batches and handed to ingest.py.

  interactions ─┬─ (already in the user's partition) ─────────────┬─> pairs, user_sellers
                └─> <app>-interactions-by-user ──────────────────┘     └─> affinity-updates
  users ──────────> <app>-interactions-by-user ──> user_profiles
  sellers ────────> (validated here; every worker's seller catalog applies them)
  bad records ────> <source>-dlq

A batch body must never raise: faust acks the whole batch when it is left, processed or
not. outbox.run_guarded finishes it or stops the process before that ack.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence

from faust.types import EventT, StreamT

from streamapp import ingest, metrics, tables, topics
from streamapp.app import app, settings
from streamapp.outbox import run_guarded

log = logging.getLogger(__name__)

Handler = Callable[[Sequence[EventT]], Awaitable[None]]


async def in_batches(stream: StreamT, handler: Handler, what: str) -> None:
    async for events in stream.take_events(settings.batch_max, settings.batch_wait_s):
        await run_guarded(handler(events), what)


@app.agent(topics.interactions)
async def count_interactions(stream: StreamT) -> None:
    """Validate every interaction; count it, or re-key it to its user's partition."""
    await in_batches(stream, ingest.on_interactions, "interactions")


@app.agent(topics.interactions_by_user)
async def count_routed(stream: StreamT) -> None:
    """Re-keyed interactions and user profiles, in their user's partition."""
    await in_batches(stream, ingest.on_routed, "interactions-by-user")


@app.agent(topics.users)
async def route_users(stream: StreamT) -> None:
    await in_batches(stream, ingest.on_users, "users")


@app.agent(topics.sellers)
async def check_sellers(stream: StreamT) -> None:
    """Dead-letters bad seller records; every worker's seller catalog applies the good ones."""
    await in_batches(stream, ingest.on_sellers, "sellers")


@app.task
async def follow_seller_catalog() -> None:
    await tables.seller_catalog.run(app.seller_partitions)


@app.task
async def declare_outputs() -> None:
    # Topics only written to are not declared by faust; create them with our partition count.
    for topic in topics.outputs:
        await topic.maybe_declare()


@app.task
async def watch_event_loop() -> None:
    """Lookups share the event loop with ingest: measure how late a 10 ms timer fires."""
    longest = 0.0
    while True:
        started = time.perf_counter()
        await asyncio.sleep(0.01)
        late = time.perf_counter() - started - 0.01
        metrics.loop_stall_seconds.observe(max(late, 0.0))
        if late > longest:
            longest = late
            metrics.loop_stall_max.set(late)


_last: dict[str, float] = {"counted": 0.0, "at": time.monotonic()}


@app.timer(interval=settings.log_every_s)
async def log_throughput() -> None:
    """One line every STREAMAPP_LOG_EVERY: what the worker did since the last line."""
    counted = metrics.counted._value.get()
    now = time.monotonic()
    rate = (counted - _last["counted"]) / max(now - _last["at"], 1e-9)
    _last.update(counted=counted, at=now)
    dead = sum(metrics.dead_letters.labels(s)._value.get() for s in topics.dead_letters)
    log.info(
        "throughput: %.0f interactions/s; totals: counted %d, duplicates %d, dead letters %d, "
        "updates %d",
        rate,
        counted,
        metrics.duplicates._value.get(),
        dead,
        metrics.updates._value.get(),
    )
