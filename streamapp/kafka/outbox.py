"""Everything one processing batch writes to Kafka, sent as record batches and confirmed.

A batch is acknowledged to faust (and so its source offsets become committable) only
after every record it produced -- table changelog records, re-keyed interactions,
affinity updates, dead letters -- was confirmed by the broker: `deliver()` awaits each
record batch's delivery and raises if any failed (the caller then stops the process so
the batch is replayed; state updates are idempotent). faust's own producer buffer is not
used for these: its flush gives up after 0.1 s without progress, so a commit could pass
records still in it.

Records go out through one idempotent producer of our own (acks=all), so per-partition
order holds through retries: the replay check (highest source offset per partition, see
pair_state) relies on it. aiokafka's BatchBuilder costs a few microseconds per record
instead of a coroutine and a future per `send()`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aiokafka import AIOKafkaProducer

from streamapp.core.config import Settings
from streamapp.core.partitioning import key_partition
from streamapp.kafka.connection import client_options
from streamapp.kafka.topic_catalog import TopicCatalog

log = logging.getLogger(__name__)
T = TypeVar("T")
DELIVERY_TIMEOUT_S = 60.0  # finishing a batch while the worker stops
Records = list[tuple[bytes | None, bytes | None]]


class Producer:
    """The hot path's producer, started on first use and stopped with the worker."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._producer: AIOKafkaProducer | None = None
        self._starting = asyncio.Lock()
        self.partitions: dict[str, int] = {}
        # Headers of every record sent to a topic (TopicCatalog.message_formats).
        self.headers = TopicCatalog.of(settings).message_formats()

    async def get(self) -> AIOKafkaProducer:
        if self._producer is None:
            async with self._starting:
                if self._producer is None:
                    producer = AIOKafkaProducer(
                        client_id=f"{self.settings.app_id}-outbox",
                        acks="all",
                        enable_idempotence=True,
                        linger_ms=0,  # records already come in batches
                        max_batch_size=512 * 1024,
                        max_request_size=4 * 1024 * 1024,
                        # A record batch is retried (in order) until it is this old: a
                        # leader election or a broker restart is ridden out, not fatal.
                        request_timeout_ms=int(self.settings.delivery_timeout_s * 1000),
                        **client_options(self.settings),
                    )
                    await producer.start()
                    self._producer = producer
        return self._producer

    async def partitions_of(self, topic: str) -> int:
        count = self.partitions.get(topic)
        if count is None:
            producer = await self.get()
            found = await producer.partitions_for(topic)
            count = self.partitions[topic] = len(found)
        return count

    async def stop(self) -> None:
        if self._producer is not None:
            producer, self._producer = self._producer, None
            await producer.stop()  # flushes what is still queued


@dataclass
class Outbox:
    """Records of one processing batch, grouped per topic partition, in the order added."""

    producer: Producer
    pending: dict[tuple[str, int], Records] = field(default_factory=dict)
    sent: list[tuple[str, int, Records, asyncio.Future[Any]]] = field(default_factory=list)
    # Called with (topic, partition, last offset) once delivered (changelog bookkeeping).
    on_delivered: dict[str, Callable[[int, int], None]] = field(default_factory=dict)

    def add(self, topic: str, partition: int, key: bytes | None, value: bytes | None) -> None:
        self.pending.setdefault((topic, partition), []).append((key, value))

    def extend(
        self, topic: str, partition: int, records: Iterable[tuple[bytes, bytes | None]]
    ) -> None:
        """Several records of one topic partition, in order (a write batch's changelog)."""
        self.pending.setdefault((topic, partition), []).extend(records)

    async def add_keyed(self, topic: str, key: bytes | None, value: bytes, fallback: int) -> None:
        """By key like any Kafka producer; a record without a key keeps `fallback` (its
        source partition) modulo the topic's partition count."""
        n = await self.producer.partitions_of(topic)
        self.add(topic, key_partition(key, n) if key is not None else fallback % n, key, value)

    async def send(self) -> None:
        """Hand everything added so far to the producer, in order per partition.

        aiokafka keeps one undrained batch per partition (add_batch waits for the previous
        one to leave), so partitions are submitted concurrently, each in order."""
        if not self.pending:
            return
        producer = await self.producer.get()
        pending, self.pending = self.pending, {}
        await asyncio.gather(
            *(
                self._send_partition(producer, topic, partition, records)
                for (topic, partition), records in pending.items()
            )
        )

    async def _send_partition(
        self, producer: AIOKafkaProducer, topic: str, partition: int, records: Records
    ) -> None:
        batch = producer.create_batch()
        start = 0
        headers = self.producer.headers.get(topic, [])
        for i, (key, value) in enumerate(records):
            if batch.append(key=key, value=value, timestamp=None, headers=headers) is None:
                await self._submit(producer, batch, topic, partition, records[start:i])
                batch, start = producer.create_batch(), i
                if batch.append(key=key, value=value, timestamp=None, headers=headers) is None:
                    raise ValueError(
                        f"a record for {topic} does not fit in a batch ({len(value or b'')} bytes)"
                    )
        await self._submit(producer, batch, topic, partition, records[start:])

    async def _submit(
        self, producer: AIOKafkaProducer, batch: Any, topic: str, partition: int, records: Records
    ) -> None:
        if not records:
            return
        future = await producer.send_batch(batch, topic, partition=partition)
        self.sent.append((topic, partition, records, future))

    async def deliver(self) -> None:
        """Send what is left and wait until the broker confirmed every record; raises if
        any record failed.

        Leader elections, lost connections and request time-outs are retried inside the
        producer (aiokafka re-enqueues a failed record batch at the head of its partition's
        queue, so order holds, which the replay check relies on) until the batch is
        STREAMAPP_DELIVERY_TIMEOUT old. Resending here instead could land a later batch
        before an earlier one."""
        await self.send()
        sent, self.sent = self.sent, []
        if not sent:
            return
        timeout = self.producer.settings.delivery_timeout_s + 10.0
        try:
            results = await asyncio.wait_for(asyncio.gather(*(f for *_, f in sent)), timeout)
        except TimeoutError:
            raise TimeoutError(f"records not confirmed within {timeout:g} s") from None
        last: dict[tuple[str, int], int] = {}
        for (topic, partition, records, _), meta in zip(sent, results, strict=True):
            end = meta.offset + len(records) - 1
            if end > last.get((topic, partition), -1):
                last[(topic, partition)] = end
        for (topic, partition), offset in last.items():
            callback = self.on_delivered.get(topic)
            if callback is not None:
                callback(partition, offset)


async def run_guarded(work: Awaitable[T], what: str) -> T:
    """Run one batch's work to its end, even if the agent is cancelled meanwhile (a
    stopping worker): faust acks the batch as soon as the agent's loop body is left, so
    leaving early would commit records never processed. Any failure stops the process
    before that ack can happen; the batch is then replayed by whoever owns it next."""
    task = asyncio.ensure_future(work)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        try:
            await asyncio.wait_for(task, DELIVERY_TIMEOUT_S)
        except BaseException as exc:
            die(f"{what}: could not finish a batch while stopping ({exc!r})")
        raise
    except BaseException as exc:
        log.exception("%s: batch failed", what)
        die(f"{what}: batch failed ({type(exc).__name__}: {exc}); stopping so it is replayed")
        raise  # not reached: die() ends the process


def die(line: str) -> None:
    import os
    import sys

    log.critical("streamapp: %s", line)
    sys.stderr.flush()
    os.write(2, f"streamapp: {line}\n".encode())
    os._exit(70)
