"""One processing batch of each source, from source records to confirmed Kafka records.

interactions   -> validate -> count here when already in the user's partition, else
                  re-key to <app>-interactions-by-user (with the source partition/offset)
by-user        -> count re-keyed interactions
users, sellers -> validate (every worker's profile catalogs apply them)
Bad records of any source -> <source>-dlq.

Counting happens under one lock, in slices of about a millisecond with a yield between
them, so HTTP lookups are never stuck behind a large batch and two agents never
interleave a read-modify-write of the same pair. Each batch returns only after every
record it produced is confirmed (outbox.Outbox.deliver), so faust's ack of the batch, and
the commit that follows, never pass unsent output.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Sequence
from typing import Any

import orjson

from streamapp import metrics
from streamapp.core.counting import PartitionCount, Touched
from streamapp.core.features import no_chunks, text_parts, update_text
from streamapp.core.models import KIND_INDEX
from streamapp.core.pair_state import Interaction, SealedIds
from streamapp.core.parsing import (
    Delete,
    Record,
    Rejected,
    accept_interaction,
    dead_letter,
    parse_seller,
    parse_user,
)
from streamapp.core.partitioning import HomePartitions
from streamapp.core.times import iso_micros, now_us
from streamapp.kafka.outbox import Outbox
from streamapp.worker import tables, topics
from streamapp.worker.app import app, producer, scoring, settings

log = logging.getLogger(__name__)

state_lock = asyncio.Lock()
SLICE_EVENTS = 64  # counted between two looks at the clock
SLICE_PAIRS = 64  # pairs written between two looks at the clock (with their users' others)
SLICE_S = 0.001  # longest the event loop is held before lookups get a turn
MAX_IDS = 64
MAX_DEAD_LETTER_KEY = 16 * 1024

# Sealed seen-id chunks kept across batches (at most 4 million ids, 32 MiB of hashes):
# valid while only this worker's counting writes its partitions, so forgotten whenever the
# assignment changes (pair_state.SealedIds).
sealed_ids = SealedIds()


@app.on_partitions_revoked.connect
async def _forget_sealed_ids_on_revoke(sender: Any, revoked: set[Any], **kwargs: Any) -> None:
    sealed_ids.clear()


@app.on_partitions_assigned.connect
async def _forget_sealed_ids_on_assign(sender: Any, assigned: set[Any], **kwargs: Any) -> None:
    sealed_ids.clear()


class Slicer:
    """Yields to the event loop once a slice of work has taken SLICE_S."""

    def __init__(self) -> None:
        self.deadline = time.perf_counter() + SLICE_S

    def due(self) -> bool:
        """Whether the slice is over (a per-record loop asks this before it awaits tick:
        a coroutine per record costs more than the look at the clock)."""
        return time.perf_counter() >= self.deadline

    async def tick(self) -> None:
        if self.due():
            await asyncio.sleep(0)
            self.deadline = time.perf_counter() + SLICE_S


def outbox() -> Outbox:
    box = Outbox(producer)
    box.on_delivered[tables.pairs.changelog] = tables.pairs.persisted
    return box


async def dead_letter_to(box: Outbox, source: str, record: Record, reason: str) -> None:
    letter = dead_letter(record, reason, settings.dead_letter_max_bytes).model_dump_json().encode()
    # The letter itself holds the key (within its size budget); the record key only decides
    # the partition, so an oversized one is replaced by its digest.
    key = record.key
    if key is not None and len(key) > MAX_DEAD_LETTER_KEY:
        key = hashlib.sha256(key).hexdigest().encode()
    await box.add_keyed(topics.dead_letter_names[source], key, letter, record.partition)
    metrics.dead_letters.labels(source).inc()
    log.warning("dead letter %s[%d]@%d: %s", record.topic, record.partition, record.offset, reason)


# affinity-updates is keyed by user id; its partition count is read once (ready_to_publish).
# Each user's partition is remembered: murmur2 in Python costs microseconds per update.
_updates: dict[str, HomePartitions] = {}


_waiting_said: set[str] = set()


async def ready_to_publish() -> None:
    # Features read the profile catalogs: nothing is counted and published before they have
    # caught up with the users and sellers topics (a fresh worker starts with empty ones).
    for catalog in tables.catalogs:
        if not catalog.caught_up.is_set():
            if catalog.source not in _waiting_said:  # every stream waits: one line
                _waiting_said.add(catalog.source)
                log.info("waiting for the %s catalog before counting", catalog.source)
            await catalog.caught_up.wait()
    if "partition_of" not in _updates:
        count = await producer.partitions_of(topics.affinity_updates_name)
        _updates["partition_of"] = HomePartitions(count)


# -- interactions ------------------------------------------------------------------------
def _routed(item: Interaction) -> bytes:
    return orjson.dumps(
        {
            "id": item.id,
            "user_id": item.user_id,
            "seller_id": item.seller_id,
            "kind": KIND_NAMES[item.kind],
            "on_us": item.on_us,
            "src_partition": item.src_partition,
            "src_offset": item.src_offset,
        }
    )


KIND_NAMES = tuple(KIND_INDEX)


async def on_interactions(records: Sequence[Record]) -> Outbox:
    await ready_to_publish()
    box = outbox()
    slicer = Slicer()
    by_user_topic = topics.interactions_by_user.get_topic_name()
    here: dict[int, list[Interaction]] = {}
    for record in records:
        try:
            result = accept_interaction(record, settings.max_message_bytes)
        except Exception as exc:  # a bug must not stop the stream; the record is kept
            log.exception("unexpected error parsing %s@%d", record.topic, record.offset)
            result = Rejected(f"internal error: {type(exc).__name__}: {exc}")
        if isinstance(result, Rejected):
            await dead_letter_to(box, "interactions", record, result.reason)
            continue
        home = tables.home_partition(result.user_id)
        if app.direct_path and record.partition == home:
            here.setdefault(home, []).append(result)  # already where re-keying would send it
        else:
            box.add(by_user_topic, home, result.user_id.encode(), _routed(result))
        if slicer.due():
            await slicer.tick()
    await count_into_state(here, box, slicer)
    await box.send()
    return box


async def on_routed(records: Sequence[Record]) -> Outbox:
    """Re-keyed interactions, each in its user's partition."""
    await ready_to_publish()
    box = outbox()
    slicer = Slicer()
    counting: dict[int, list[Interaction]] = {}
    for record in records:
        try:
            data = orjson.loads(record.value or b"")
            item = Interaction(
                data["id"],
                data["user_id"],
                data["seller_id"],
                KIND_INDEX[data["kind"]],
                int(data["on_us"]),
                int(data["src_partition"]),
                int(data["src_offset"]),
            )
        except Exception as exc:  # not written by this version: keep it, say why
            reason = f"unreadable re-keyed record: {type(exc).__name__}: {exc}"
            await dead_letter_to(box, "interactions", record, reason)
            continue
        counting.setdefault(record.partition, []).append(item)
    await count_into_state(counting, box, slicer)
    await box.send()
    return box


async def count_into_state(
    by_partition: dict[int, list[Interaction]], box: Outbox, slicer: Slicer
) -> None:
    """Count interactions into pair state and queue the changelog and update records."""
    if not by_partition:
        return
    each = settings.updates == "each"
    weights = settings.weights.as_tuple()
    touched: dict[tuple[int, bytes], Touched] = {}
    pairs = tables.pairs
    async with state_lock:
        for partition, items in by_partition.items():

            def scan_pairs(prefix: bytes, p: int = partition) -> list[bytes]:
                return pairs.keys(p, prefix)

            def on_count(pair: Touched, interaction_id: str, p: int = partition) -> None:
                at = now_us()
                as_of_json = orjson.dumps(iso_micros(at))
                text = update_of(pair, p, at, as_of_json, interaction_id, 1, [interaction_id])
                publish(box, pair.user_id, text)

            count = PartitionCount(
                settings.half_life_s,
                settings.dedupe_horizon_s,
                weights,
                on_count if each else None,
                sealed_ids,
            )
            for start in range(0, len(items), SLICE_EVENTS):
                # The database's own get, looked up again for each call (none awaits).
                count.apply(items[start : start + SLICE_EVENTS], pairs.db(partition).get, now_us())
                await slicer.tick()
            while writes := count.finish(pairs.db(partition).get, scan_pairs, SLICE_PAIRS):
                pairs.write(partition, writes)
                box.extend(pairs.changelog, partition, writes.items())
                await slicer.tick()
            result = count.result
            for key, pair in result.touched.items():
                touched[(partition, key)] = pair
            metrics.counted.inc(result.counted)
            metrics.duplicates.inc(result.duplicates)
            metrics.replays.inc(result.replays)
            if each:  # on_count published one update per interaction counted or replayed
                metrics.updates.inc(result.counted + result.replays)
        if not each:
            as_of = now_us()
            as_of_json = orjson.dumps(iso_micros(as_of))  # one as_of for the batch's updates
            published = 0
            for (partition, key), pair in touched.items():
                ids = pair.covered_ids
                if not ids:
                    continue  # only duplicates: nothing changed
                listed = ids if len(ids) <= MAX_IDS else None
                text = update_of(pair, partition, as_of, as_of_json, ids[-1], len(ids), listed, key)
                publish(box, pair.user_id, text)
                published += 1
                await slicer.tick()
            metrics.updates.inc(published)
        # Changelog records and updates leave in the order the values were written, inside
        # the lock: a newer value or update of a pair is never overtaken by an older one
        # from the other agent (the updates once left after the lock, and a consumer of
        # affinity-updates could see a pair's count go 3 -> 2 as its last word).
        await box.send()


def publish(box: Outbox, user_id: str, update: bytes) -> None:
    """Queue one update (the caller counts it in metrics.updates, once per batch)."""
    partition = _updates["partition_of"](user_id)
    box.add(topics.affinity_updates_name, partition, user_id.encode(), update)


def update_of(
    pair: Touched,
    partition: int,
    as_of_us: int,
    as_of_json: bytes,
    last_id: str,
    covered: int,
    ids: list[str] | None,
    key: bytes | None = None,
) -> bytes:
    """The update's JSON text: the vector of the pair's new state and the current profiles
    (features.text_parts), then the interactions it covers. `key`: the pair's key when the
    caller has it."""
    load = no_chunks
    if pair.state.tchunks:  # only a hot pair's window counts read chunk records
        pair_key = tables.pair_key(pair.user_id, pair.seller_id) if key is None else key

        def load(suffix: bytes) -> bytes | None:
            return tables.pairs.get(partition, pair_key + suffix)

    parts = text_parts(
        pair.user_id,
        pair.seller_id,
        pair.state,
        tables.user_catalog.categories(pair.user_id),
        tables.seller_catalog.categories(pair.seller_id),
        as_of_us,
        scoring,
        load,
    )
    return update_text(parts, as_of_json, last_id, covered, ids)


# -- profiles ----------------------------------------------------------------------------
async def on_profiles(source: str, records: Sequence[Record]) -> Outbox:
    """Dead-letter bad profile records; every worker's catalog applies the good ones."""
    parse = parse_user if source == "users" else parse_seller
    box = outbox()
    for record in records:
        result = _parse_profile(parse, record)
        if isinstance(result, Rejected):
            await dead_letter_to(box, source, record, result.reason)
        else:
            op = "delete" if isinstance(result, Delete) else "upsert"
            metrics.profiles.labels(source, op).inc()
    await box.send()
    return box


def _parse_profile(parse: Any, record: Record) -> Any:
    try:
        return parse(record, settings.max_message_bytes)
    except Exception as exc:
        log.exception("unexpected error parsing %s@%d", record.topic, record.offset)
        return Rejected(f"internal error: {type(exc).__name__}: {exc}")
