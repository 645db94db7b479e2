"""Settings baked into the stored state: a worker with other values would read it wrong.

The pair state keeps its decayed accumulators relative to the half-life in force when they
were written (pair_state.py: a sum of 2^((on - ref) / h)). Read with another half-life, the
score of every pair with more than one interaction is silently wrong, and it cannot be
converted: the sums do not hold the events, and event times older than the window retention
are not kept. So the half-life the app's state was built under is recorded once, in the
app's epoch topic (keyed records after the epoch; the first record of a key wins, as the
epoch's own first record does), and a worker started with another one refuses to start with
one line that says how to go on. Recreated topics (a reset broker) start a new record.

The worker also writes what it checked into its data dir (`state-settings.json`), so a
serving process beside it can refuse the same mismatch without a broker connection.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from streamapp.core.config import Settings
from streamapp.kafka.connection import client_options
from streamapp.kafka.topic_catalog import TopicCatalog

KAFKA_WAIT_S = 20.0
DATA_DIR_FILE = "state-settings.json"

# Setting name (as recorded) -> (its environment variable, its value in `settings`).
BAKED: dict[str, tuple[str, Callable[[Settings], float]]] = {
    "half_life_s": ("STREAMAPP_HALF_LIFE", lambda s: float(s.half_life_s)),
}


async def _read_all(consumer: AIOKafkaConsumer, tp: TopicPartition) -> dict[str, str]:
    """The first value of every keyed record in the partition."""
    await consumer.seek_to_beginning(tp)
    end = (await consumer.end_offsets([tp]))[tp]
    first: dict[str, str] = {}
    while await consumer.position(tp) < end:
        batch = await consumer.getmany(tp, timeout_ms=int(KAFKA_WAIT_S * 1000))
        if not batch:
            raise TimeoutError(f"{tp.topic}: no records within {KAFKA_WAIT_S:g} s")
        for message in batch.get(tp, []):
            if message.key is not None and message.value is not None:
                first.setdefault(message.key.decode(), message.value.decode())
    return first


async def recorded(settings: Settings) -> dict[str, float]:
    """The baked settings of the app's state, recording the current ones where none is."""
    tp = TopicPartition(TopicCatalog.of(settings).epoch, 0)
    consumer = AIOKafkaConsumer(group_id=None, enable_auto_commit=False, **client_options(settings))
    await consumer.start()
    try:
        consumer.assign([tp])
        found = await _read_all(consumer, tp)
        missing = [name for name in BAKED if name not in found]
        if missing:
            producer = AIOKafkaProducer(acks="all", **client_options(settings))
            await producer.start()
            try:
                for name in missing:
                    value = repr(BAKED[name][1](settings)).encode()
                    await producer.send_and_wait(tp.topic, value, key=name.encode(), partition=0)
            finally:
                await producer.stop()
            # Read back rather than trust our own: another worker may have been first.
            found = await _read_all(consumer, tp)
        return {name: float(found[name]) for name in BAKED if name in found}
    finally:
        await consumer.stop()


def mismatch(settings: Settings, baked: Mapping[str, float]) -> str | None:
    """One line for the first baked setting that differs from `settings`, or None."""
    for name, (variable, current) in BAKED.items():
        if name not in baked or current(settings) == baked[name]:
            continue
        return (
            f"{variable} is {current(settings):g} s but the state of app {settings.app_id!r} "
            f"was built with {baked[name]:g} s, and stored scores cannot be converted (they "
            f"hold decayed sums, not the events). Start with {variable}={baked[name]:g}s, or "
            f"build the state again under a new app id (STREAMAPP_ID), which re-reads "
            f"`interactions` as far back as the topic keeps it"
        )
    return None


async def check(settings: Settings) -> str | None:
    """Compare with the app's record (made now if there is none); on agreement, write the
    record into the data dir for the serving processes. Returns the refusal, if any."""
    baked = await asyncio.wait_for(recorded(settings), 3 * KAFKA_WAIT_S)
    problem = mismatch(settings, baked)
    if problem is None:
        write_local(settings.data_dir, baked)
    return problem


def write_local(data_dir: Path, baked: Mapping[str, float]) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    tmp = data_dir / f"{DATA_DIR_FILE}.tmp"
    tmp.write_text(json.dumps(dict(baked), sort_keys=True) + "\n")
    tmp.replace(data_dir / DATA_DIR_FILE)  # atomic


def read_local(data_dir: Path) -> dict[str, float]:
    """What the worker of `data_dir` checked (empty when it has not run yet)."""
    try:
        raw = json.loads((data_dir / DATA_DIR_FILE).read_text())
    except (FileNotFoundError, ValueError):
        return {}
    return {str(k): float(v) for k, v in raw.items() if isinstance(v, int | float)}
