"""Agents: source topics -> tables -> affinity-updates, bad records -> dead letters.

Each agent body is a loop over events; the work per event is in plain functions
(parsing.py, pair_state.py, features.py). Nothing raised by one record stops the loop.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson
from faust.types import EventT, StreamT

from streamapp import metrics, tables, topics
from streamapp.app import app, scoring, settings
from streamapp.features import feature_vector, jsonable
from streamapp.models import RoutedInteraction, now_us
from streamapp.pair_state import DIRECT, ROUTED, Outcome, PairState, apply
from streamapp.parsing import (
    Delete,
    Record,
    Rejected,
    dead_letter,
    parse_interaction,
    parse_seller,
    parse_user,
)

log = logging.getLogger(__name__)


def record_of(event: EventT) -> Record:
    message = event.message
    ts = message.timestamp
    return Record(
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        timestamp_us=round(ts * 1000) * 1000 if ts is not None and ts >= 0 else None,
        key=message.key,
        value=message.value,
    )


async def send_dead_letter(source: str, record: Record, reason: str) -> None:
    letter = dead_letter(record, reason)
    await topics.dead_letters[source].send(key=record.key, value=letter.model_dump_json().encode())
    metrics.dead_letters.labels(source).inc()
    log.warning("dead letter %s[%d]@%d: %s", record.topic, record.partition, record.offset, reason)


@app.agent(topics.interactions)
async def route_interactions(stream: StreamT) -> None:
    """Validate every interaction (or dead-letter it) and get it to its user's partition."""
    async for event in stream.events():
        record = record_of(event)
        try:
            result = parse_interaction(record, settings.max_message_bytes)
        except Exception as exc:  # a bug must not stop the stream; the record is kept
            log.exception("unexpected error parsing %s@%d", record.topic, record.offset)
            result = Rejected(f"internal error: {type(exc).__name__}: {exc}")
        if isinstance(result, Rejected):
            await send_dead_letter("interactions", record, result.reason)
        elif app.direct_path and record.partition == tables.home_partition(result.user_id):
            await count(result, record.offset, DIRECT)  # already where re-keying would send it
        else:
            await send_fast(
                topics.interactions_by_user,
                result.user_id.encode(),
                result.model_dump_json().encode(),
            )


async def send_fast(topic: Any, key: bytes, value: bytes) -> None:
    """Enqueue on the producer directly: faust's Topic.send bookkeeping (FutureMessage,
    callbacks) cost ~8% of a core in the ingest profile. The source offset is still committed
    only after the producer flushed this record (faust's commit flushes the producer)."""
    delivery = await app.producer.send(topic.get_topic_name(), key, value, None, None, None)
    delivery.add_done_callback(_report_failed_delivery)  # type: ignore[attr-defined]


def _report_failed_delivery(delivery: Any) -> None:
    if not delivery.cancelled() and delivery.exception() is not None:
        log.error("could not deliver a record: %r", delivery.exception())


@app.agent(topics.interactions_by_user)
async def count_interactions(stream: StreamT) -> None:
    """Count each re-keyed interaction into its pair's state."""
    async for event in stream.events():
        interaction = RoutedInteraction.model_validate_json(event.message.value)
        await count(interaction, event.message.offset, ROUTED)


async def count(interaction: RoutedInteraction, offset: int, path: int) -> None:
    """Count one interaction once into its pair's state; publish the new feature vector.
    Runs inside the event of the user's partition, so every table write lands there."""
    key = tables.pair_key(interaction.user_id, interaction.seller_id)
    stored = tables.lookup(tables.pair_state, key)
    state = PairState.from_json(stored) if stored else PairState()
    outcome = apply(
        state, interaction, offset, now_us(), settings.half_life_s, settings.dedupe_horizon_s, path
    )
    # Also on a replay: re-writing lets the changelog catch up with local RocksDB.
    tables.pair_state[key] = state.to_json()
    if stored is None or outcome is Outcome.REPLAY:
        known = tables.lookup(tables.user_sellers, interaction.user_id) or []
        if interaction.seller_id not in known:
            tables.user_sellers[interaction.user_id] = [*known, interaction.seller_id]
    if outcome is Outcome.DUPLICATE:
        metrics.duplicates.inc()
        return
    (metrics.counted if outcome is Outcome.COUNTED else metrics.replays).inc()
    await publish_update(interaction, state)


async def publish_update(interaction: RoutedInteraction, state: PairState) -> None:
    user = tables.lookup(tables.users, interaction.user_id)
    seller = tables.seller_catalog.get(interaction.seller_id)
    vector = feature_vector(
        interaction.user_id,
        interaction.seller_id,
        state,
        user["favorite_categories"] if user else (),
        seller["categories"] if seller else (),
        now_us(),
        scoring,
    )
    # The AffinityUpdate model's fields, serialised directly: this runs once per event.
    update = jsonable(vector)
    update["interaction_id"] = interaction.id
    await send_fast(topics.affinity_updates, interaction.user_id.encode(), orjson.dumps(update))
    metrics.updates.inc()


async def _store_profiles(stream: StreamT, source: str, table: Any, parse: Any) -> None:
    async for event in stream.events():
        record = record_of(event)
        try:
            result = parse(record, settings.max_message_bytes)
        except Exception as exc:
            log.exception("unexpected error parsing %s@%d", record.topic, record.offset)
            result = Rejected(f"internal error: {type(exc).__name__}: {exc}")
        if isinstance(result, Rejected):
            await send_dead_letter(source, record, result.reason)
        elif isinstance(result, Delete):
            if table is not None:
                table.pop(result.id, None)
            metrics.profiles.labels(source, "delete").inc()
        else:
            if table is not None:
                table[result.id] = result.model_dump(mode="json")
            metrics.profiles.labels(source, "upsert").inc()


@app.agent(topics.users)
async def store_users(stream: StreamT) -> None:
    await _store_profiles(stream, "users", tables.users, parse_user)


@app.agent(topics.sellers)
async def check_sellers(stream: StreamT) -> None:
    """Dead-letters bad seller records; every worker's seller catalog applies the good ones."""
    await _store_profiles(stream, "sellers", None, parse_seller)


@app.task
async def follow_seller_catalog() -> None:
    await tables.seller_catalog.run(app.seller_partitions)


@app.task
async def declare_outputs() -> None:
    # Topics only written to are not declared by faust; create them with our partition count.
    for topic in topics.outputs:
        await topic.maybe_declare()


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
