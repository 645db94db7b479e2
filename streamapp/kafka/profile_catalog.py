"""Every worker's own full copy of the user and of the seller profiles.

A user's favourites and a seller's categories are needed wherever a pair is counted or
looked up, so every worker holds all profiles. faust's GlobalTable was meant for that, but
with several workers its updates did not reach the other workers (faust issues #212,
#283; our scale-out test caught stale categories). So each worker reads the compacted
`users` and `sellers` topics itself, with plain consumers outside the consumer group, from
the start, into local RocksDB (rocksdict) that also keeps the offsets it has applied.
Upserts and deletes are idempotent, so re-reading after a crash is harmless.

This also makes the features independent of how producers partition the profile topics
(librdkafka's default partitioner is not Java's murmur2), and gives one moment before
which nothing is counted: `caught_up`, set once the end seen at start-up is applied.
Validation and dead letters stay with the agents, which see each record once.

A catalog belongs to the topic it was read from, like the tables to their changelogs
(local_state.py), and records which one: its Kafka topic id and partition count. At every
start it compares them, and its stored offsets, with the topic there now (`source_changed`).
A deleted and recreated topic (whatever it holds now) or a reset broker is not the topic
the catalog was built from: its profiles are dropped and the topic is read again from the
beginning, so a deleted profile is no longer served. The drop is a write to the same
database, so serving processes reading it as a secondary see it at their next catch-up.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from rocksdict import Options, Rdict, WriteBatch

from streamapp.core.config import Settings
from streamapp.core.parsing import Delete, Record, Rejected, parse_seller, parse_user
from streamapp.kafka.connection import client_options
from streamapp.kafka.topic_catalog import TopicCatalog
from streamapp.kafka.topic_ids import topic_ids

log = logging.getLogger(__name__)
OFFSETS_KEY = b"\x00offsets"  # ids never contain control characters
SOURCE_KEY = b"\x00source"  # the topic the catalog was built from (SourceTopic)
# Every key sorts below this: ids are UTF-8, which never has the byte 0xff.
ALL_KEYS = (b"", b"\xff")
CACHE_MAX = 200_000  # decoded category sets kept in memory


@dataclass(frozen=True)
class SourceTopic:
    """Which topic a catalog was built from: its Kafka topic id (None when the broker has
    none, before Kafka 2.8) and its partition count."""

    topic_id: str | None
    partitions: int

    def encode(self) -> bytes:
        return json.dumps(asdict(self)).encode()

    @classmethod
    def decode(cls, raw: bytes) -> SourceTopic:
        fields = json.loads(raw)
        return cls(topic_id=fields["topic_id"], partitions=int(fields["partitions"]))


def source_changed(
    built_from: SourceTopic | None,
    now: SourceTopic,
    offsets: dict[int, int],
    ends: dict[int, int],
) -> str | None:
    """Why the topic there `now` is not the one a catalog was `built_from` (None when it
    is): `offsets` are the catalog's next offsets to read, `ends` the partitions' ends now.
    Another topic id, another partition count, or an offset beyond its partition's end
    each tell. Only the id tells a recreated topic that already holds as many records as
    the old one did or more; a broker without ids leaves the other two checks."""
    if built_from is None:
        # Built before catalogs recorded their topic (or never built): nothing to compare
        # with, so a catalog that holds anything is rebuilt.
        return "the catalog does not record the topic it was built from" if offsets else None
    if built_from.topic_id and now.topic_id and built_from.topic_id != now.topic_id:
        return f"topic id {now.topic_id}, the catalog was built from {built_from.topic_id}"
    if built_from.partitions != now.partitions:
        return f"{now.partitions} partitions, the catalog was built from {built_from.partitions}"
    for partition, offset in sorted(offsets.items()):
        end = ends.get(partition, 0)
        if offset > end:
            return f"partition {partition} ends at offset {end}, the catalog had read to {offset}"
    return None


class ProfileCatalog:
    def __init__(
        self,
        settings: Settings,
        source: str,
        parse: Callable[[Record, int], Any],
        categories_field: str,
    ) -> None:
        self.settings = settings
        self.source = source
        self.topic = TopicCatalog.of(settings).profile_topic(source)
        self.parse = parse
        self.field = categories_field
        self.path = Path(settings.data_dir) / f"{source}-catalog"
        self.db: Rdict | None = None
        self.caught_up = asyncio.Event()
        self.applied = 0
        # Decoded categories of recently used profiles; every change goes through apply().
        self._categories: dict[str, frozenset[str]] = {}

    def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        options = Options(raw_mode=True)
        options.create_if_missing(True)
        self.db = Rdict(str(self.path), options)

    def get(self, entity_id: str) -> dict[str, Any] | None:
        raw = self.db.get(entity_id.encode()) if self.db is not None else None
        # orjson: 0.45 against 2.3 µs a profile, and a serving process reads one for each
        # user and seller it meets first (the values are pydantic's JSON: the same dict).
        return orjson.loads(raw) if raw is not None else None

    def categories(self, entity_id: str) -> frozenset[str]:
        """A user's favourite categories or a seller's categories (empty when unknown)."""
        found = self._categories.get(entity_id)
        if found is None:
            profile = self.get(entity_id)
            found = frozenset(profile[self.field]) if profile else frozenset()
            if len(self._categories) >= CACHE_MAX:
                self._categories.clear()
            self._categories[entity_id] = found
        return found

    def forget_cached(self) -> None:
        """Drop the decoded categories (a serving process: its copy of the db moved on)."""
        self._categories.clear()

    def _offsets(self) -> dict[int, int]:
        raw = self.db.get(OFFSETS_KEY) if self.db is not None else None
        return {int(p): o for p, o in json.loads(raw).items()} if raw else {}

    def built_from(self) -> SourceTopic | None:
        raw = self.db.get(SOURCE_KEY) if self.db is not None else None
        return SourceTopic.decode(raw) if raw else None

    def drop(self, source: SourceTopic) -> None:
        """Forget every profile and offset, and record `source` as the topic to read from
        the beginning: one atomic write, so a crash leaves the old catalog or the empty one."""
        assert self.db is not None
        batch = WriteBatch(raw_mode=True)
        batch.delete_range(*ALL_KEYS)
        batch.put(SOURCE_KEY, source.encode())  # after the range delete: it stays
        self.db.write(batch)
        self._categories.clear()

    async def check_source(self, partitions: int, ends: dict[int, int]) -> str | None:
        """Compare the topic there now with the one the catalog was read from; drop the
        catalog when it is another one (returns why), else record the topic."""
        assert self.db is not None
        ids = await topic_ids(self.settings, [self.topic])
        now = SourceTopic(ids.get(self.topic) if ids else None, partitions)
        built_from = self.built_from()
        reason = source_changed(built_from, now, self._offsets(), ends)
        if reason:
            log.warning(
                "%s catalog: %s is not the topic it was built from (%s): dropping its profiles "
                "and reading the topic again from the beginning",
                self.source,
                self.topic,
                reason,
            )
            self.drop(now)
            return reason
        if built_from is not None and now.topic_id is None:
            now = SourceTopic(built_from.topic_id, partitions)  # no id to compare this time
        if now != built_from:
            self.db.put(SOURCE_KEY, now.encode())
        return None

    def apply(self, record: Record) -> None:
        assert self.db is not None
        result = self.parse(record, self.settings.max_message_bytes)
        if isinstance(result, Delete):
            self.db.delete(result.id.encode())
            self._categories.pop(result.id, None)
        elif not isinstance(result, Rejected):  # rejected ones are dead-lettered by the agent
            self.db.put(result.id.encode(), result.model_dump_json().encode())
            self._categories.pop(result.id, None)
        self.applied += 1

    async def run(self, partitions: int) -> None:
        """Follow the topic until cancelled; `caught_up` is set once the end seen at start
        has been reached."""
        if self.db is None:
            self.open()
        consumer = AIOKafkaConsumer(
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",  # an aborted transaction's profiles never apply
            **client_options(self.settings),
        )
        await consumer.start()
        try:
            tps = [TopicPartition(self.topic, p) for p in range(partitions)]
            consumer.assign(tps)
            ends = await consumer.end_offsets(tps)
            await self.check_source(partitions, {tp.partition: end for tp, end in ends.items()})
            stored = self._offsets()
            for tp in tps:
                if tp.partition in stored:
                    consumer.seek(tp, stored[tp.partition])
                else:
                    await consumer.seek_to_beginning(tp)
            positions = {tp.partition: await consumer.position(tp) for tp in tps}
            log.info("%s catalog: reading %s from %s", self.source, self.topic, positions)
            while True:
                if not self.caught_up.is_set() and all(
                    positions[tp.partition] >= ends[tp] for tp in tps
                ):
                    log.info(
                        "%s catalog: caught up (%d records applied)", self.source, self.applied
                    )
                    self.caught_up.set()
                batch = await consumer.getmany(timeout_ms=200, max_records=5000)
                for tp, messages in batch.items():
                    for m in messages:
                        ts = m.timestamp * 1000 if m.timestamp is not None else None
                        self.apply(Record(m.topic, m.partition, m.offset, ts, m.key, m.value))
                    if messages:
                        positions[tp.partition] = messages[-1].offset + 1
                if batch:
                    self.db.put(OFFSETS_KEY, json.dumps(positions).encode())  # type: ignore[union-attr]
        finally:
            with contextlib.suppress(Exception):
                await consumer.stop()
            if self.db is not None:
                self.db.close()
                self.db = None


def profile_catalogs(settings: Settings) -> tuple[ProfileCatalog, ProfileCatalog]:
    """The users' catalog (their favourite categories) and the sellers' (their categories):
    a worker follows the topics into them, a serving process reads the worker's copies."""
    return (
        ProfileCatalog(settings, "users", parse_user, "favorite_categories"),
        ProfileCatalog(settings, "sellers", parse_seller, "categories"),
    )
