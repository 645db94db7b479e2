"""Settings baked into the stored state: a worker with other values would read it wrong.

The pair state keeps its decayed accumulators relative to the half-life in force when they
were written (pair_state.py: a sum of 2^((on - ref) / h)). Read with another half-life, the
score of every pair with more than one interaction is silently wrong, and it cannot be
converted: the sums do not hold the events, and event times older than the window retention
are not kept. So the half-life the app's state was built under is recorded once, in the
app's epoch topic (keyed records after the epoch; the first record of a key wins, as the
epoch's own first record does), and a worker started with another one refuses to start with
one line that says how to go on. Recreated topics (a reset broker) start a new record.

The same record names the format the state is written in (`state_format`: which tables it
keeps and how their values are encoded, core/state_format.py). Unlike a baked setting its
last record wins: an upgraded worker that writes a newer format records it before it
writes, so a worker of an older version (a rollback, a host not upgraded yet) refuses to
start with one line instead of misreading the state, again after every restart.

The worker also writes what it checked into its data dir (`state-settings.json`), so a
serving process beside it can refuse the same mismatch without a broker connection.

The state also belongs to the `interactions` topic it was counted from: each pair keeps the
highest source offset it applied per partition, which is how a redelivered record is told
from a new one (pair_state.py). A topic deleted and created again under the same name starts
its offsets over, and its records would be taken for replays of records already counted.
So the topic's Kafka id is recorded too (first record wins), and a worker that finds
another topic under that name refuses to start (`source_problem`), as a running worker
stops when it finds one (agents.check_source_topic). A deployment without the record makes
it at its next start, of the topic there then.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from streamapp.core.config import Settings
from streamapp.core.state_format import READABLE_STATE_FORMATS, STATE_FORMAT
from streamapp.kafka.connection import client_options
from streamapp.kafka.topic_catalog import TopicCatalog

KAFKA_WAIT_S = 20.0
DATA_DIR_FILE = "state-settings.json"

# Setting name (as recorded) -> (its environment variable, its value in `settings`).
BAKED: dict[str, tuple[str, Callable[[Settings], float]]] = {
    "half_life_s": ("STREAMAPP_HALF_LIFE", lambda s: float(s.half_life_s)),
}


FORMAT_KEY = "state_format"  # its last record wins
SOURCE_KEY = "interactions_topic_id"  # its first record wins


async def _read_all(
    consumer: AIOKafkaConsumer, tp: TopicPartition
) -> tuple[dict[str, str], dict[str, str]]:
    """The first and the last value of every keyed record in the partition."""
    await consumer.seek_to_beginning(tp)
    end = (await consumer.end_offsets([tp]))[tp]
    first: dict[str, str] = {}
    last: dict[str, str] = {}
    while await consumer.position(tp) < end:
        batch = await consumer.getmany(tp, timeout_ms=int(KAFKA_WAIT_S * 1000))
        if not batch:
            raise TimeoutError(f"{tp.topic}: no records within {KAFKA_WAIT_S:g} s")
        for message in batch.get(tp, []):
            if message.key is not None and message.value is not None:
                first.setdefault(message.key.decode(), message.value.decode())
                last[message.key.decode()] = message.value.decode()
    return first, last


async def recorded(
    settings: Settings, source_id: str | None = None
) -> tuple[dict[str, float], str | None]:
    """The baked settings and the state format of the app's state, and the id of the
    `interactions` topic it was counted from, recording the current ones where none is (and
    this version's format over an older one it reads: an upgrade). `source_id`: the id of
    `interactions` now (None: the broker has no topic ids, nothing recorded)."""
    tp = TopicPartition(TopicCatalog.of(settings).epoch, 0)
    consumer = AIOKafkaConsumer(group_id=None, enable_auto_commit=False, **client_options(settings))
    await consumer.start()
    try:
        consumer.assign([tp])
        first, last = await _read_all(consumer, tp)
        writes = {name: repr(BAKED[name][1](settings)) for name in BAKED if name not in first}
        if _format_to_record(last.get(FORMAT_KEY)):
            writes[FORMAT_KEY] = str(STATE_FORMAT)
        if source_id is not None and SOURCE_KEY not in first:
            writes[SOURCE_KEY] = source_id
        if writes:
            producer = AIOKafkaProducer(acks="all", **client_options(settings))
            await producer.start()
            try:
                for name, value in writes.items():
                    await producer.send_and_wait(
                        tp.topic, value.encode(), key=name.encode(), partition=0
                    )
            finally:
                await producer.stop()
            # Read back rather than trust our own: another worker may have been first.
            first, last = await _read_all(consumer, tp)
        out = {name: float(first[name]) for name in BAKED if name in first}
        if FORMAT_KEY in last:
            out[FORMAT_KEY] = float(last[FORMAT_KEY])
        return out, first.get(SOURCE_KEY)
    finally:
        await consumer.stop()


def _format_to_record(recorded_format: str | None) -> bool:
    """None recorded yet, or an older one this version also reads (it writes its own)."""
    if recorded_format is None:
        return True
    found = int(float(recorded_format))
    return found < STATE_FORMAT and found in READABLE_STATE_FORMATS


def format_problem(app_id: str, baked: Mapping[str, float]) -> str | None:
    """One line when the app's state is in a format this version cannot read, or None."""
    if FORMAT_KEY not in baked:
        return None
    found = int(baked[FORMAT_KEY])
    if found in READABLE_STATE_FORMATS:
        return None
    reads = ", ".join(str(f) for f in sorted(READABLE_STATE_FORMATS))
    if found > STATE_FORMAT:
        return (
            f"the state of app {app_id!r} is written in format {found} by a newer streamapp, "
            f"and this version reads format {reads}: run the newer version on this worker "
            "too (README: Upgrades)"
        )
    return (
        f"the state of app {app_id!r} is in format {found}, which this version no longer "
        f"reads (it reads format {reads}): upgrade through the release in between, which "
        "reads both (README: Upgrades)"
    )


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


def source_problem(settings: Settings, counted_from: str | None, now: str | None) -> str | None:
    """One line when `interactions` is now another topic (`now`: its id) than the one the
    app's state was counted from (`counted_from`), or None (also when either is unknown)."""
    if counted_from is None or now is None or counted_from == now:
        return None
    topic = TopicCatalog.of(settings).interactions
    return (
        f"{topic} is not the topic the state of app {settings.app_id!r} was counted from "
        f"(topic id {now}, the state's {counted_from}): it was deleted and created again, its "
        "offsets start over, and counting would take its records for replays of records "
        "already counted. Count it under a new app id (STREAMAPP_ID), which reads it from "
        "the beginning (README: A recreated interactions topic)"
    )


async def check(settings: Settings, source_id: str | None = None) -> tuple[str | None, str | None]:
    """Compare with the app's record (made now if there is none); on agreement, write the
    record into the data dir for the serving processes. Returns the refusal, if any, and
    the id of the `interactions` topic the state was counted from (`source_id`: its id
    now, None when the broker has none)."""
    baked, counted_from = await asyncio.wait_for(recorded(settings, source_id), 3 * KAFKA_WAIT_S)
    problem = (
        format_problem(settings.app_id, baked)
        or mismatch(settings, baked)
        or source_problem(settings, counted_from, source_id)
    )
    if problem is None:
        write_local(settings.data_dir, baked)
    return problem, counted_from


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
