"""Start-up checks that turn a misconfiguration into one clear line."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from streamapp.core.config import ConfigError, Settings, load_settings
from streamapp.kafka.connection import client_options
from streamapp.kafka.topic_catalog import TopicCatalog


async def broker_unreachable(addresses: list[tuple[str, int]], wait_s: float) -> str | None:
    """None when any bootstrap address accepts TCP within `wait_s`, else why not."""
    deadline = time.monotonic() + wait_s
    problem = "no address"
    while True:
        for host, port in addresses:
            try:
                _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 2.0)
            except (OSError, TimeoutError) as exc:
                if isinstance(exc, ConnectionRefusedError):
                    # The same words on every event loop (asyncio says "Connect call failed
                    # (host, port)", uvloop "Connection refused").
                    reason = "connection refused"
                elif isinstance(exc, OSError) and exc.strerror:
                    reason = exc.strerror
                else:
                    reason = "timed out"
                problem = f"{host}:{port}: {reason}"
                continue
            writer.close()
            return None
        if time.monotonic() >= deadline:
            return problem
        await asyncio.sleep(0.5)


def unreachable_broker_line(prog: str, settings: Settings, problem: str) -> str:
    """One line: the broker that did not answer, the setting it came from (the user changes
    that one, not another) and the way out."""
    if settings.broker_origin == "KAFKA_LOCAL_PORT":
        port = settings.broker_addresses[0][1]
        named = f"from KAFKA_LOCAL_PORT={port}"
        start = f"KAFKA_LOCAL_PORT={port} scripts/kafka-local.sh start"
        fix = f"Start it with `{start}` or set KAFKA_BROKER."
    elif settings.broker_origin == "KAFKA_BROKER":
        named = "KAFKA_BROKER"
        fix = "Start that broker or correct KAFKA_BROKER."
    else:
        named = "the default: neither KAFKA_BROKER nor KAFKA_LOCAL_PORT is set"
        fix = "Start it with `scripts/kafka-local.sh start` or set KAFKA_BROKER."
    return f"{prog}: cannot reach the Kafka broker {settings.broker} ({named}): {problem}. {fix}"


def python_command() -> str:
    """How the user runs this Python: `.venv/bin/python` in a checkout, else its full path
    (a bare `python` may be another interpreter, without streamapp's packages)."""
    exe = Path(sys.executable)
    with contextlib.suppress(ValueError):
        return str(exe.relative_to(Path.cwd()))
    return str(exe)


def partition_problem(
    settings: Settings, counts: dict[str, int], together: list[str], created: bool = False
) -> str | None:
    """Why the existing topics in `together` (TopicCatalog.by_user_partition and the table
    changelogs: each must have exactly STREAMAPP_PARTITIONS partitions) cannot be used, with
    the exact way out; None when they can."""
    wanted = settings.partitions
    existing = {t: counts[t] for t in together if t in counts}
    wrong = sorted(t for t, n in existing.items() if n != wanted)
    if not wrong:
        return None
    found = ", ".join(f"{t} has {existing[t]}" for t in sorted(existing))
    delete = f"{python_command()} -m streamapp.admin delete-topics {' '.join(wrong)}"
    head = f"topics must have STREAMAPP_PARTITIONS={wanted} partitions, but {found}" + (
        "." if created else " (nothing was created)."
    )
    others = set(existing.values())
    if len(others) == 1:
        (n,) = others
        return (
            f"{head} To use them, start again with STREAMAPP_PARTITIONS={n}; to start over "
            f"with {wanted} partitions, delete them first (their data is lost): {delete}"
        )
    return (
        f"{head} Delete the ones without {wanted} partitions first (their data is lost), "
        f"then start again: {delete}"
    )


async def ensure_topics(
    settings: Settings, changelogs: dict[str, dict[str, str]] | None = None
) -> tuple[str | None, dict[str, int]]:
    """Create missing topics before the consumer subscribes (faust ignores topics that do
    not exist at its first assignment; a missing global table changelog even stalls it):
    every topic of the catalog (topic_catalog.py) and the table `changelogs`, which, like
    the catalog's by_user_partition topics, must have STREAMAPP_PARTITIONS partitions.
    Everything is checked before anything is created, so a refused start leaves the broker
    as it was. Returns why the existing topics cannot be used (or None) and the partition
    count of each topic."""
    catalog = TopicCatalog.of(settings)
    admin = AIOKafkaAdminClient(**client_options(settings))
    await admin.start()
    try:
        wanted = {**catalog.configs(), **(changelogs or {})}
        partitions = {name: settings.partitions for name in wanted}
        for name, config in catalog.single_partition_configs().items():
            wanted[name], partitions[name] = config, 1
        existing = set(await admin.list_topics())
        counts = await _partition_counts(admin, [t for t in wanted if t in existing])
        together = [*catalog.by_user_partition(), *sorted(changelogs or {})]
        problem = partition_problem(settings, counts, together)
        if problem:
            return problem, counts
        missing = [
            NewTopic(name, partitions[name], settings.replication_factor, topic_configs=config)
            for name, config in wanted.items()
            if name not in counts
        ]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):  # another worker was quicker
                await admin.create_topics(missing)
        # New topics take a moment to get leaders: seconds on a busy broker that has just
        # started. Every agent and catalog needs all of them, so wait (bounded) or say why.
        deadline = time.monotonic() + max(30.0, settings.broker_wait_s)
        while True:
            counts = await _partition_counts(admin, list(wanted))
            if len(counts) == len(wanted):
                break
            if time.monotonic() > deadline:
                late = sorted(set(wanted) - set(counts))
                return (
                    f"topics without a leader for every partition after creation: {late}; "
                    "is the broker healthy?"
                ), counts
            await asyncio.sleep(0.2)
        # Another worker with other settings may have created them meanwhile: check again.
        return partition_problem(settings, counts, together, created=bool(missing)), counts
    finally:
        await admin.close()


async def _partition_counts(admin: AIOKafkaAdminClient, topics: list[str]) -> dict[str, int]:
    if not topics:
        return {}
    described = await admin.describe_topics(topics)
    # A topic counts once every partition has a leader: reading a partition without one
    # (right after creation) fails with NotLeaderForPartition.
    return {
        d["topic"]: len(d["partitions"])
        for d in described
        if d["partitions"] and all(p["leader"] >= 0 for p in d["partitions"])
    }


def cli_settings(prog: str) -> Settings:
    """Settings for a command-line tool, with a reachable broker, or exit 2 with one line."""
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"{prog}: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    problem = asyncio.run(broker_unreachable(settings.broker_addresses, settings.broker_wait_s))
    if problem:
        print(unreachable_broker_line(prog, settings, problem), file=sys.stderr)
        raise SystemExit(2)
    return settings
