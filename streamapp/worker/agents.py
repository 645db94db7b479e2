"""Agents: each source topic is read in batches and handed to ingest.py.

  interactions ─┬─ (already in the user's partition) ─────────────┬─> pairs
                └─> <app>-interactions-by-user ──────────────────┘     └─> affinity-updates
  users, sellers ─> (validated here; every worker's profile catalogs apply them)
  bad records ────> <source>-dlq

Each source goes through a Checkpoint (checkpoint.py), which faust's fetch loop hands the
records to directly (faust_fixes 16.): batches, acks only after the broker confirmed a
batch's output, re-reads of records faust skipped.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from typing import Any

from faust.types import TP, StreamT

from streamapp import metrics
from streamapp.kafka import baked_settings
from streamapp.kafka.topic_ids import topic_ids
from streamapp.worker import faust_fixes, ingest, tables, topics
from streamapp.worker.app import app, catalog, fail, settings
from streamapp.worker.checkpoint import Checkpoint, Handler, StallWatch

log = logging.getLogger(__name__)

checkpoints: dict[str, Checkpoint] = {}  # one per source stream, by source name


def ingest_waiting() -> bool:
    """Records are read and waiting for their batch: lookups over their share give way.
    (Not "a whole batch waiting": a lookup flood starves the reading too, and the queues
    never filled while ingest fell to 0.25 x its rate.)"""
    return any(c.waiting() for c in checkpoints.values())


async def through_checkpoint(stream: StreamT, handler: Handler, what: str) -> None:
    checkpoint = Checkpoint(
        app, stream, handler, what, settings.batch_max, ready=ingest.ready_to_publish
    )
    checkpoints[what] = checkpoint
    topic = stream.channel.get_topic_name()
    faust_fixes.read_in_batches(topic, checkpoint)  # records come to it, not to the stream
    try:
        await checkpoint.run()
    finally:
        if checkpoints.get(what) is checkpoint:
            del checkpoints[what]
            faust_fixes.read_in_batches(topic, None)
        checkpoint.close()


@app.agent(topics.interactions)
async def count_interactions(stream: StreamT) -> None:
    """Validate every interaction; count it, or re-key it to its user's partition."""
    await through_checkpoint(stream, ingest.on_interactions, "interactions")


@app.agent(topics.interactions_by_user)
async def count_routed(stream: StreamT) -> None:
    """Re-keyed interactions, in their user's partition."""
    await through_checkpoint(stream, ingest.on_routed, "interactions-by-user")


@app.agent(topics.users)
async def check_users(stream: StreamT) -> None:
    """Dead-letters bad user records; every worker's user catalog applies the good ones."""
    await through_checkpoint(stream, functools.partial(ingest.on_profiles, "users"), "users")


@app.agent(topics.sellers)
async def check_sellers(stream: StreamT) -> None:
    """Dead-letters bad seller records; every worker's seller catalog applies the good ones."""
    await through_checkpoint(stream, functools.partial(ingest.on_profiles, "sellers"), "sellers")


@app.task
async def follow_user_catalog() -> None:
    await tables.user_catalog.run(app.partitions_of[topics.catalog.users])


@app.task
async def follow_seller_catalog() -> None:
    await tables.seller_catalog.run(app.partitions_of[topics.catalog.sellers])


stall_watch = StallWatch(settings.stall_s)
WATCH_S = 5.0  # between two partition watches
SOURCE_CHECK_S = 30.0  # between two looks at the topic's id without a rebalance


async def check_source_topic(timeout: float = 10.0) -> None:
    """A running worker stops (as a crash does: nothing more is committed) once
    `interactions` is another topic than the one its state was counted from: deleted and
    created again while it ran (baked_settings.source_problem). A restart then refuses with
    the same line. Looked at on every partition assignment (a topic deleted and created
    again changes the group's metadata, which rebalances it; faust may resume fetching
    during the look), and every SOURCE_CHECK_S while the worker holds source partitions,
    for a change no rebalance showed."""
    if app.counted_from is None:
        return  # the broker has no topic ids
    name = catalog.interactions
    try:
        ids = await asyncio.wait_for(topic_ids(settings, [name]), timeout)
    except Exception as exc:  # the broker is away: look again next time
        log.warning("source topic check: no metadata from the broker (%r)", exc)
        return
    problem = baked_settings.source_problem(settings, app.counted_from, (ids or {}).get(name))
    if problem:
        log.error("streamapp: %s; stopping", problem)
        fail(f"streamapp: {problem}\n")


@app.on_partitions_assigned.connect
async def _source_topic_on_assignment(sender: Any, assigned: set[TP], **kwargs: Any) -> None:
    await check_source_topic(timeout=5.0)  # within the rebalance: bounded more tightly


def describe_checkpoints() -> str:
    return "; ".join(c.describe() for c in checkpoints.values())


@app.timer(interval=WATCH_S)
async def watch_partitions() -> None:
    """A source partition that stays behind without progress is logged with its offsets,
    counted, and read again from its committed offset (checkpoint.StallWatch)."""
    sources = {t.get_topic_name() for t in topics.sources}
    assigned = [tp for tp in app.consumer.assignment() if tp.topic in sources]
    if not assigned:
        return
    try:
        ends = await asyncio.wait_for(app.consumer.highwaters(*assigned), 10.0)
        starts = await asyncio.wait_for(app.consumer.earliest_offsets(*assigned), 10.0)
    except Exception as exc:  # the broker is away: judge by what the consumer knows
        log.warning("partition watch: no end offsets from the broker (%r)", exc)
        ends, starts = {}, {}
    stall_watch.check(app.consumer, assigned, ends, context=describe_checkpoints, starts=starts)
    stall_watch.checks += 1
    if stall_watch.checks % round(SOURCE_CHECK_S / WATCH_S) == 0:
        await check_source_topic()
    if stall_watch.checks == 1:
        log.info("partition watch: %d source partitions, ends %s", len(assigned), dict(ends))


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
    counted = metrics.value(metrics.counted)
    now = time.monotonic()
    rate = (counted - _last["counted"]) / max(now - _last["at"], 1e-9)
    _last.update(counted=counted, at=now)
    dead = sum(metrics.value(metrics.dead_letters.labels(s)) for s in topics.dead_letter_names)
    log.info(
        "throughput: %.0f interactions/s; totals: counted %d, duplicates %d, dead letters %d, "
        "updates %d",
        rate,
        counted,
        metrics.value(metrics.duplicates),
        dead,
        metrics.value(metrics.updates),
    )
