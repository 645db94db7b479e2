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
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from rocksdict import Options, Rdict

from streamapp.core.config import Settings
from streamapp.core.parsing import Delete, Record, Rejected, parse_seller, parse_user
from streamapp.kafka.connection import client_options
from streamapp.kafka.topic_catalog import TopicCatalog

log = logging.getLogger(__name__)
OFFSETS_KEY = b"\x00offsets"  # ids never contain control characters
CACHE_MAX = 200_000  # decoded category sets kept in memory


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
        return json.loads(raw) if raw is not None else None

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
            stored = self._offsets()
            for tp in tps:
                if tp.partition in stored:
                    consumer.seek(tp, stored[tp.partition])
                else:
                    await consumer.seek_to_beginning(tp)
            ends = await consumer.end_offsets(tps)
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
