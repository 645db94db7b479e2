"""Local state belongs to the topics it was built from; rebuild it when they are gone.

The RocksDB databases under the data dir (faust's tables, the profile catalogs) are a cache
of Kafka topics: the changelogs are the source of truth. After a broker reset (a fresh
local broker, a Docker `down`/`up` where the workers keep their volumes but Kafka does not)
or deleted and recreated topics, the cache describes topics that no longer exist. faust then
refuses to start (ConsistencyError: persisted offset above the high-water mark) or, worse,
resumes from an offset in a topic that holds other data. We detect that before faust's
recovery and delete the local databases, so faust restores every partition from the
changelogs as on a first start. Rebuilding is what the user would do by hand anyway, and
nothing is lost: whatever the old topics held is gone with them.

Two checks, both independent of what the tables are called or how values are encoded:

- The topics' epoch: a one-partition app topic holds a random id, written when the app's
  topics are first created (the first record wins if workers race); the data dir records the
  epoch its state was built under. Recreated topics have a new epoch. This catches a reset
  even when the new changelogs already hold more records than the old ones did.
- The persisted offsets: for every table partition database, faust's persisted changelog
  offset (`store.offset_key`) must be below that changelog partition's end offset. This is
  faust's own consistency condition; it covers data dirs written before the epoch existed.

Neither sees a profile topic deleted and recreated on its own (the epoch stays, and the
profile catalogs keep their own offsets): each catalog checks its topic itself, by the topic
id it was built from (profile_catalog.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from rocksdict import AccessType, Options, Rdict

from streamapp.core.config import Settings
from streamapp.kafka.connection import client_options
from streamapp.kafka.topic_catalog import TopicCatalog

log = logging.getLogger("streamapp")

EPOCH_FILE = "topics-epoch"  # in the data dir: the epoch the local state was built under
KAFKA_WAIT_S = 20.0


def epoch_topic(settings: Settings) -> str:
    return TopicCatalog.of(settings).epoch


async def _first_record(consumer: AIOKafkaConsumer, tp: TopicPartition) -> bytes | None:
    await consumer.seek_to_beginning(tp)
    start = await consumer.position(tp)
    end = (await consumer.end_offsets([tp]))[tp]
    if end <= start:
        return None
    message = await asyncio.wait_for(consumer.getone(tp), KAFKA_WAIT_S)
    return message.value


async def topics_epoch(settings: Settings) -> str:
    """The epoch of the app's topics: the first record of the epoch topic, written here
    when the topic is still empty. The topic must exist (ensure_topics creates it)."""
    tp = TopicPartition(epoch_topic(settings), 0)
    consumer = AIOKafkaConsumer(group_id=None, enable_auto_commit=False, **client_options(settings))
    await consumer.start()
    try:
        consumer.assign([tp])
        first = await _first_record(consumer, tp)
        if first is None:
            producer = AIOKafkaProducer(acks="all", **client_options(settings))
            await producer.start()
            try:
                await producer.send_and_wait(tp.topic, uuid.uuid4().hex.encode(), partition=0)
            finally:
                await producer.stop()
            # Read back rather than trust our own: another worker may have been first.
            first = await _first_record(consumer, tp)
        if not first:
            raise RuntimeError(f"{tp.topic} has no epoch record")
        return first.decode()
    finally:
        await consumer.stop()


def rocksdb_databases(data_dir: Path, depth: int = 4) -> list[Path]:
    """Every RocksDB database below `data_dir` (a folder with CURRENT and a MANIFEST)."""
    found: list[Path] = []

    def walk(folder: Path, level: int) -> None:
        with contextlib.suppress(OSError):
            entries = list(os.scandir(folder))
            names = {e.name for e in entries}
            if "CURRENT" in names and any(n.startswith("MANIFEST-") for n in names):
                found.append(folder)
                return
            if level < depth:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        walk(Path(entry.path), level + 1)

    walk(data_dir, 0)
    return sorted(found)


def persisted_offset(path: Path, key: bytes) -> int | None:
    """faust's persisted changelog offset in one partition database (opened read-only)."""
    db = Rdict(str(path), Options(raw_mode=True), access_type=AccessType.read_only())
    try:
        raw = db.get(key)
    finally:
        db.close()
    return int(raw) if raw is not None else None


def persisted_offsets(
    stores: Iterable[tuple[str, Any]], partitions: dict[str, int]
) -> dict[TopicPartition, int]:
    """(changelog topic, store) pairs -> the persisted offset of each existing partition
    database. Stores without per-partition files (a memory store) are skipped."""
    out: dict[TopicPartition, int] = {}
    for topic, store in stores:
        path_for = getattr(store, "partition_path", None)
        key = getattr(store, "offset_key", None)
        if path_for is None or key is None:
            continue
        for partition in range(partitions.get(topic, 0)):
            path = Path(path_for(partition))
            if not path.is_dir():
                continue
            offset = persisted_offset(path, key)
            if offset is not None:
                out[TopicPartition(topic, partition)] = offset
    return out


async def end_offsets(settings: Settings, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
    if not tps:
        return {}
    consumer = AIOKafkaConsumer(group_id=None, **client_options(settings))
    await consumer.start()
    try:
        return await asyncio.wait_for(consumer.end_offsets(tps), KAFKA_WAIT_S)
    finally:
        await consumer.stop()


def beyond_end(offsets: dict[TopicPartition, int], ends: dict[TopicPartition, int]) -> str | None:
    """The first partition whose persisted offset is not in its changelog, described."""
    for tp, offset in sorted(offsets.items()):
        end = ends.get(tp, 0)
        if offset >= end:
            return f"{tp.topic}[{tp.partition}] ends at offset {end}, local state is at {offset}"
    return None


def wipe(databases: list[Path]) -> None:
    for path in databases:
        shutil.rmtree(path)


def write_epoch(data_dir: Path, epoch: str) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    tmp = data_dir / f"{EPOCH_FILE}.tmp"
    tmp.write_text(epoch + "\n")
    tmp.replace(data_dir / EPOCH_FILE)  # atomic: a crash leaves the old or the new epoch


def read_epoch(data_dir: Path) -> str | None:
    try:
        return (data_dir / EPOCH_FILE).read_text().strip() or None
    except FileNotFoundError:
        return None


async def reconcile(
    settings: Settings, stores: Iterable[tuple[str, Any]], partitions: dict[str, int]
) -> str | None:
    """Delete the local databases when they were built from topics that no longer exist;
    returns why it did (None when the local state is kept). Call before faust opens any
    table database (App.on_first_start)."""
    data_dir = Path(settings.data_dir)
    epoch = await topics_epoch(settings)
    databases = rocksdb_databases(data_dir)
    reason = None
    if databases:
        recorded = read_epoch(data_dir)
        if recorded is not None and recorded != epoch:
            reason = f"topics recreated: epoch {epoch}, local state from epoch {recorded}"
        else:
            offsets = persisted_offsets(stores, partitions)
            reason = beyond_end(offsets, await end_offsets(settings, list(offsets)))
    if reason:
        log.warning(
            "streamapp: local state in %s belongs to topics that no longer exist (%s): "
            "deleting its %d database(s) and rebuilding them from the changelogs",
            data_dir,
            reason,
            len(databases),
        )
        wipe(databases)
    write_epoch(data_dir, epoch)
    return reason
