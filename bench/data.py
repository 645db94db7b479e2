"""Synthetic data with Zipf-like skew, and fast ways to put it on / read it off Kafka.

Users are `u<rank>`, sellers `s<rank>`; rank 0 is the most active. The k-th user (or seller)
is drawn with probability proportional to 1 / (k + 1) ** skew, so a few users and sellers
get most of the interactions, as in real traffic.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.partitioner import murmur2

from bench.common import PARTITIONS

DAY_S = 86_400.0
CATEGORIES = [f"c{i}" for i in range(50)]
# Any string other than LIKE/VIEW/PURCHASE counts as OTHER: SHARE exercises that rule.
KINDS = ("VIEW", "LIKE", "PURCHASE", "SHARE")
KIND_WEIGHTS = (0.6, 0.25, 0.1, 0.05)


def zipf_cum_weights(n: int, skew: float) -> list[float]:
    return list(itertools.accumulate(1.0 / (k + 1) ** skew for k in range(n)))


class Sampler:
    """Draws (user, seller) ranks and interaction kinds with the configured skew."""

    def __init__(self, users: int, sellers: int, user_skew: float, seller_skew: float, seed: int):
        self.rng = random.Random(seed)
        self.users = users
        self.sellers = sellers
        self._user_cw = zipf_cum_weights(users, user_skew)
        self._seller_cw = zipf_cum_weights(sellers, seller_skew)
        self._kind_cw = list(itertools.accumulate(KIND_WEIGHTS))
        self._user_range = range(users)
        self._seller_range = range(sellers)

    def pairs(self, k: int) -> list[tuple[int, int]]:
        users = self.rng.choices(self._user_range, cum_weights=self._user_cw, k=k)
        sellers = self.rng.choices(self._seller_range, cum_weights=self._seller_cw, k=k)
        return list(zip(users, sellers, strict=True))

    def kinds(self, k: int) -> list[str]:
        return self.rng.choices(KINDS, cum_weights=self._kind_cw, k=k)


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


def interaction(
    id_: str, user: int, seller: int, kind: str, on_ts: float, user_id: str | None = None
) -> bytes:
    return orjson.dumps(
        {
            "id": id_,
            "user_id": user_id or f"u{user}",
            "seller_id": f"s{seller}",
            "interaction_kind": kind,
            "on": iso(on_ts),
        }
    )


def partition_of(key: bytes, partitions: int = PARTITIONS) -> int:
    """The Java client's (and aiokafka's) default partitioner."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


# A user outside the skewed population with one interaction with each of the first
# `top_user_sellers` sellers: the top-k lookups need a user with >= 1,000 sellers, which the
# Zipf draw gives only at large sizes.
TOP_USER = "u-top"


@dataclass
class Preloaded:
    """What was put on the interactions topic, and enough truth to check the answers."""

    interactions: int
    distinct_pairs: int
    truth: dict[tuple[str, str], int] = field(default_factory=dict)  # sample pair -> count
    lookup_pairs: list[tuple[str, str]] = field(default_factory=list)  # known pairs
    seconds: float = 0.0
    top_user: str = TOP_USER
    top_user_sellers: int = 0


def plan_interactions(
    sampler: Sampler, n: int, pairs: int | None, chunk: int = 50_000
) -> Iterator[list[tuple[int, int]]]:
    """Chunks of (user, seller) for `n` interactions.

    pairs=None: every interaction draws its pair from the skewed distribution (the number of
    distinct pairs follows). pairs=P: exactly P distinct skewed pairs, each used at least
    once, the remaining n - P interactions spread uniformly over them.
    """
    if pairs is None:
        for start in range(0, n, chunk):
            yield sampler.pairs(min(chunk, n - start))
        return
    if pairs > n:
        raise ValueError(f"--pairs {pairs} needs at least as many interactions (got {n})")
    if pairs > sampler.users * sampler.sellers // 2:
        raise ValueError("--pairs is too large for --users x --sellers")
    distinct: dict[tuple[int, int], None] = {}
    while len(distinct) < pairs:
        for p in sampler.pairs(min(chunk, 2 * (pairs - len(distinct)))):
            distinct[p] = None
            if len(distinct) == pairs:
                break
    unique = list(distinct)
    sampler.rng.shuffle(unique)
    for start in range(0, pairs, chunk):
        yield unique[start : start + chunk]
    rest = n - pairs
    for start in range(0, rest, chunk):
        yield [unique[sampler.rng.randrange(pairs)] for _ in range(min(chunk, rest - start))]


async def create_topics(bootstrap: str, prefix: str) -> None:
    """The source topics and affinity-updates, with PARTITIONS partitions."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        compact = {"cleanup.policy": "compact"}
        await admin.create_topics(
            [
                NewTopic(f"{prefix}interactions", PARTITIONS, 1),
                NewTopic(f"{prefix}users", PARTITIONS, 1, topic_configs=compact),
                NewTopic(f"{prefix}sellers", PARTITIONS, 1, topic_configs=compact),
                NewTopic(f"{prefix}affinity-updates", PARTITIONS, 1),
            ]
        )
    finally:
        await admin.close()


class BatchSender:
    """Appends records straight into per-partition batches: far less Python per record
    than producer.send(), so the preload is not what a run waits for."""

    def __init__(self, producer: AIOKafkaProducer, topic: str) -> None:
        self.producer = producer
        self.topic = topic
        self.batches: dict[int, object] = {}
        self.futures: list[asyncio.Future] = []
        self.sent = 0

    async def add(self, key: bytes, value: bytes, partition: int | None = None) -> None:
        p = partition_of(key) if partition is None else partition
        batch = self.batches.get(p)
        if batch is None:
            batch = self.batches[p] = self.producer.create_batch()
        if batch.append(key=key, value=value, timestamp=None) is None:  # type: ignore[attr-defined]
            await self._flush(p)
            batch = self.batches[p] = self.producer.create_batch()
            if batch.append(key=key, value=value, timestamp=None) is None:  # type: ignore[attr-defined]
                raise ValueError("record larger than a batch")
        self.sent += 1

    async def _flush(self, p: int) -> None:
        batch = self.batches.pop(p)
        self.futures.append(await self.producer.send_batch(batch, self.topic, partition=p))
        if len(self.futures) >= 64:
            await asyncio.gather(*self.futures)
            self.futures.clear()

    async def close(self) -> None:
        for p in list(self.batches):
            await self._flush(p)
        await asyncio.gather(*self.futures)
        self.futures.clear()


def fast_producer(bootstrap: str) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks=1,
        linger_ms=20,
        max_batch_size=512 * 1024,
        max_request_size=4 * 1024 * 1024,
    )


async def preload(
    bootstrap: str,
    prefix: str,
    sampler: Sampler,
    n: int,
    pairs: int | None,
    key_by: str = "user",
    truth_sample: int = 200,
    lookup_sample: int = 20_000,
    top_user_sellers: int = 0,
) -> Preloaded:
    """Profiles of every user and seller, then `n` interactions (ids i0..i<n-1>), then
    `top_user_sellers` interactions of TOP_USER, one per seller s0, s1, ... (ids t0, t1, ...;
    sellers past the catalogue have no profile, which the contract allows)."""
    t0 = time.monotonic()
    rng = random.Random(sampler.rng.random())
    producer = fast_producer(bootstrap)
    await producer.start()
    try:
        users = BatchSender(producer, f"{prefix}users")
        for u in range(sampler.users):
            favs = rng.sample(CATEGORIES, rng.randint(1, 3))
            value = orjson.dumps(
                {"id": f"u{u}", "age": rng.randint(18, 80), "favorite_categories": favs}
            )
            await users.add(f"u{u}".encode(), value)
        if top_user_sellers:
            favs = rng.sample(CATEGORIES, 2)
            value = orjson.dumps({"id": TOP_USER, "age": 40, "favorite_categories": favs})
            await users.add(TOP_USER.encode(), value)
        await users.close()
        sellers = BatchSender(producer, f"{prefix}sellers")
        for s in range(sampler.sellers):
            cats = rng.sample(CATEGORIES, rng.randint(1, 4))
            await sellers.add(f"s{s}".encode(), orjson.dumps({"id": f"s{s}", "categories": cats}))
        await sellers.close()

        counts: dict[tuple[int, int], int] = {}
        now = time.time()
        sender = BatchSender(producer, f"{prefix}interactions")
        seq = 0
        for chunk in plan_interactions(sampler, n, pairs):
            kinds = sampler.kinds(len(chunk))
            for (u, s), kind in zip(chunk, kinds, strict=True):
                counts[(u, s)] = counts.get((u, s), 0) + 1
                on = now - rng.random() * 30 * DAY_S
                key = f"u{u}" if key_by == "user" else f"i{seq}"
                await sender.add(key.encode(), interaction(f"i{seq}", u, s, kind, on))
                seq += 1
        for k, kind in enumerate(sampler.kinds(top_user_sellers)):
            on = now - rng.random() * 30 * DAY_S
            value = interaction(f"t{k}", 0, k, kind, on, user_id=TOP_USER)
            key = TOP_USER if key_by == "user" else f"t{k}"
            await sender.add(key.encode(), value)
        await sender.close()
    finally:
        await producer.stop()

    keys = list(counts)
    truth_keys = rng.sample(keys, min(truth_sample, len(keys)))
    # Lookups hit pairs that exist, drawn like traffic: by interaction, so hot pairs recur.
    lookup = rng.choices(keys, weights=list(counts.values()), k=min(lookup_sample, n))
    truth = {(f"u{u}", f"s{s}"): counts[(u, s)] for u, s in truth_keys}
    # A few of the top user's pairs too (each counted once).
    for k in rng.sample(range(top_user_sellers), min(10, top_user_sellers)):
        truth[(TOP_USER, f"s{k}")] = 1
    return Preloaded(
        interactions=n + top_user_sellers,
        distinct_pairs=len(counts) + top_user_sellers,
        truth=truth,
        lookup_pairs=[(f"u{u}", f"s{s}") for u, s in lookup],
        seconds=time.monotonic() - t0,
        top_user_sellers=top_user_sellers,
    )


async def end_offsets_total(consumer: AIOKafkaConsumer, topic: str) -> int:
    """Records ever written to `topic` (sum of the partitions' high-water marks)."""
    tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    offsets = await consumer.end_offsets(tps)
    return sum(offsets.values())


async def raw_consume(
    bootstrap: str, topic: str, expect: int, timeout: float, min_seconds: float = 3.0
) -> dict:
    """The ceiling: read `topic` from the beginning and decode every value; nothing else.
    Small topics are read again (up to 10 passes) until `min_seconds` have passed."""
    passes: list[float] = []
    t_start = time.monotonic()
    while len(passes) < 10 and (not passes or sum(passes) < min_seconds):
        passes.append(await _read_once(bootstrap, topic, expect, timeout))
        if time.monotonic() - t_start > timeout:
            break
    events = expect * len(passes)
    return {
        "events": events,
        "passes": len(passes),
        "seconds": round(sum(passes), 3),
        "events_per_s": round(events / sum(passes)),
        "best_pass_events_per_s": round(expect / min(passes)),
    }


async def _read_once(bootstrap: str, topic: str, expect: int, timeout: float) -> float:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(PARTITIONS)])
        await consumer.seek_to_beginning()
        t0 = time.monotonic()
        deadline = t0 + timeout
        seen = 0
        while seen < expect:
            if time.monotonic() > deadline:
                raise TimeoutError(f"raw consumer read {seen}/{expect} in {timeout:.0f}s")
            batch = await consumer.getmany(timeout_ms=500, max_records=10_000)
            for records in batch.values():
                for record in records:
                    orjson.loads(record.value)
                seen += len(records)
        elapsed = time.monotonic() - t0
    finally:
        await consumer.stop()
    return elapsed


_COVERED = b'"interactions_covered"'


def covered_by(value: bytes | None) -> int:
    """How many interactions one affinity-update covers: its `interactions_covered` field
    (coalesced updates, the default), or 1 when it has none (STREAMAPP_UPDATES=each, and
    workers from before coalescing). Found in the bytes: decoding the whole feature vector
    of every update would cost the benchmark process far more CPU, on the worker's cores."""
    if not value:
        return 0
    i = value.find(_COVERED)
    if i < 0:
        return 1
    j = value.find(b":", i + len(_COVERED)) + 1
    k = j
    while k < len(value) and value[k : k + 1] in b" \t":
        k += 1
    j = k
    while k < len(value) and value[k : k + 1].isdigit():
        k += 1
    if k == j:  # not a plain integer after all: decode properly
        return int(orjson.loads(value).get("interactions_covered") or 1)
    return int(value[j:k])


class UpdatesCounter:
    """Reads affinity-updates from the beginning, as they arrive, and adds up the
    interactions they cover: the ingest completion signal whether the worker writes one
    update per interaction (each) or one per touched pair per batch (coalesced).

    Also keeps the number of update records. The consumer has no group and commits nothing.
    """

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.covered = 0
        self.records = 0
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task | None = None
        self.error: BaseException | None = None

    async def start(self) -> UpdatesCounter:
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=50,  # an idle topic must not delay seeing the last update
            max_partition_fetch_bytes=4 * 1024 * 1024,
        )
        await self._consumer.start()
        tps = [TopicPartition(self.topic, p) for p in range(PARTITIONS)]
        self._consumer.assign(tps)
        await self._consumer.seek_to_beginning(*tps)
        self._task = asyncio.create_task(self._run())
        return self

    async def _run(self) -> None:
        assert self._consumer is not None
        try:
            while True:
                batch = await self._consumer.getmany(timeout_ms=100, max_records=20_000)
                for records in batch.values():
                    self.records += len(records)
                    self.covered += sum(covered_by(r.value) for r in records)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # surfaced by check(): a silent counter would stall the run
            self.error = exc

    def check(self) -> None:
        if self.error is not None:
            raise RuntimeError(f"reading {self.topic} failed: {self.error!r}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._consumer is not None:
            await self._consumer.stop()
