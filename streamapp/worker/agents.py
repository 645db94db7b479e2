"""Agents: each source topic is read in batches and handed to ingest.py.

  interactions ─┬─ (already in the user's partition) ─────────────┬─> pairs, user_sellers
                └─> <app>-interactions-by-user ──────────────────┘     └─> affinity-updates
  users, sellers ─> (validated here; every worker's profile catalogs apply them)
  bad records ────> <source>-dlq

A batch body must never raise: faust acks the whole batch when it is left, processed or
not. outbox.run_guarded finishes it or stops the process before that ack.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Sequence

from faust.types import TP, EventT, StreamT

from streamapp import metrics
from streamapp.kafka.outbox import Outbox, run_guarded
from streamapp.worker import faust_fixes, ingest, tables, topics
from streamapp.worker.app import app, settings

log = logging.getLogger(__name__)

Handler = Callable[[Sequence[EventT]], Awaitable[Outbox]]
_queues: list[asyncio.Queue[EventT]] = []  # every agent's events read but not yet batched


def ingest_waiting() -> bool:
    """Records are read and waiting for their batch: lookups over their share give way.
    (Not "a whole batch waiting": a lookup flood starves the reading too, and the queues
    never filled while ingest fell to 0.25 x its rate.)"""
    return any(not q.empty() for q in _queues)


def known_gap(tp: TP, offset: int) -> bool:
    """Whether faust recorded `offset` as absent from the log (compaction, transaction
    markers): nothing to read again there."""
    return bool(app.consumer._gap[tp].overlaps(offset))


async def in_batches(stream: StreamT, handler: Handler, what: str) -> None:
    """Hand the stream's events to `handler` in batches; ack them once it returned.

    Not `stream.take_events`: with it, events occasionally stopped reaching the batches
    after a restart (tests/integration/test_batch_failure.py lost 15 of 1,500 that way).
    Here one task reads the stream into a bounded queue, acks are off for the stream, and
    each event is acked by hand only after its batch's output was confirmed."""
    stream.enable_acks = False
    queue: asyncio.Queue[EventT] = asyncio.Queue(maxsize=2 * settings.batch_max)
    _queues.append(queue)
    filled = asyncio.Event()  # a whole batch is waiting: no need to wait out batch_wait_s

    expected: dict[TP, int] = {}  # per partition, the next offset due
    healed: set[tuple[TP, int]] = set()
    generation = [app.consumer_generation_id]

    async def feed() -> None:
        async for event in stream.events():
            tp, offset = event.message.tp, event.message.offset
            if app.consumer_generation_id != generation[0]:
                expected.clear()  # a rebalance moved the positions
                generation[0] = app.consumer_generation_id
            due = expected.get(tp)
            if (
                due is not None
                and offset > due
                and (tp, due) not in healed
                and not known_gap(tp, due)
            ):
                # faust read offsets due..offset-1 but never handed them to this stream
                # (seen around the start-up seek): read them again rather than lose them.
                healed.add((tp, due))
                log.warning(
                    "%s[%d]: offsets %d-%d were skipped by faust; reading them again",
                    tp.topic,
                    tp.partition,
                    due,
                    offset - 1,
                )
                await app.consumer.seek(tp, due)
            elif due is None or offset >= due:
                expected[tp] = offset + 1
            await queue.put(event)
            if queue.qsize() >= settings.batch_max:
                filled.set()

    feeder = asyncio.ensure_future(feed())  # read from the start, even while waiting below
    in_flight: asyncio.Future[None] | None = None  # the previous batch: delivery, then acks

    async def confirm(box: Outbox, batch: list[EventT]) -> None:
        await box.deliver()
        for event in batch:
            await stream.ack(event)

    try:
        await ingest.ready_to_publish()  # nothing is counted before the catalogs are in
        while True:
            batch = [await queue.get()]
            if queue.qsize() + 1 < settings.batch_max:
                # One timed wait per batch, not one per event (a task each).
                filled.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(filled.wait(), settings.batch_wait_s)
            while len(batch) < settings.batch_max and not queue.empty():
                batch.append(queue.get_nowait())
            box = await run_guarded(handler(batch), what)
            # Pipelined: this batch's records are on their way while the next one is
            # processed; its events are acked (so committable) only once all its records
            # are confirmed, and batches are acked in order (one in flight at a time).
            if in_flight is not None:
                await in_flight
            in_flight = asyncio.ensure_future(run_guarded(confirm(box, batch), what))
            if feeder.done():
                feeder.result()  # the stream ended or failed: let faust see it
                return
    finally:
        feeder.cancel()
        _queues.remove(queue)
        if in_flight is not None:
            await asyncio.shield(in_flight)  # a stopping worker acks what was delivered


@app.agent(topics.interactions)
async def count_interactions(stream: StreamT) -> None:
    """Validate every interaction; count it, or re-key it to its user's partition."""
    await in_batches(stream, ingest.on_interactions, "interactions")


@app.agent(topics.interactions_by_user)
async def count_routed(stream: StreamT) -> None:
    """Re-keyed interactions, in their user's partition."""
    await in_batches(stream, ingest.on_routed, "interactions-by-user")


@app.agent(topics.users)
async def check_users(stream: StreamT) -> None:
    """Dead-letters bad user records; every worker's user catalog applies the good ones."""
    await in_batches(stream, functools.partial(ingest.on_profiles, "users"), "users")


@app.agent(topics.sellers)
async def check_sellers(stream: StreamT) -> None:
    """Dead-letters bad seller records; every worker's seller catalog applies the good ones."""
    await in_batches(stream, functools.partial(ingest.on_profiles, "sellers"), "sellers")


@app.task
async def follow_user_catalog() -> None:
    await tables.user_catalog.run(app.partitions_of[topics.catalog.users])


@app.task
async def follow_seller_catalog() -> None:
    await tables.seller_catalog.run(app.partitions_of[topics.catalog.sellers])


@app.timer(interval=5.0)
async def reread_holes() -> None:
    """A partition whose committed offset is stuck behind a record faust never handed to
    its stream (faust_fixes.stuck) is read again from there; re-read records that were
    already counted are recognised as replays. Seen only for two checks in a row, so a
    batch still in flight is not mistaken for a hole."""
    now = faust_fixes.stuck(app.consumer)
    for tp, committed in now.items():
        if _holes.get(tp) == committed:
            log.warning(
                "%s[%d]: offset %d was never processed though later ones were; reading "
                "again from there",
                tp.topic,
                tp.partition,
                committed,
            )
            await app.consumer.seek(tp, committed)
    _holes.clear()
    _holes.update(now)


_holes: dict[TP, int] = {}


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
    dead = sum(metrics.dead_letters.labels(s)._value.get() for s in topics.dead_letter_names)
    log.info(
        "throughput: %.0f interactions/s; totals: counted %d, duplicates %d, dead letters %d, "
        "updates %d",
        rate,
        counted,
        metrics.duplicates._value.get(),
        dead,
        metrics.updates._value.get(),
    )
