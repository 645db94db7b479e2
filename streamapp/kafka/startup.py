"""Start-up checks that turn a misconfiguration into one clear line."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from pathlib import Path
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from streamapp.core.config import ConfigError, Settings, load_settings


async def broker_unreachable(addresses: list[tuple[str, int]], wait_s: float) -> str | None:
    """None when any bootstrap address accepts TCP within `wait_s`, else why not."""
    deadline = time.monotonic() + wait_s
    problem = "no address"
    while True:
        for host, port in addresses:
            try:
                _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 2.0)
            except (OSError, TimeoutError) as exc:
                reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "timed out"
                problem = f"{host}:{port}: {reason}"
                continue
            writer.close()
            return None
        if time.monotonic() >= deadline:
            return problem
        await asyncio.sleep(0.5)


def topic_configs(settings: Settings) -> dict[str, dict[str, str]]:
    """Every topic the app reads or writes (besides faust's changelogs), with its config."""
    compact = {"cleanup.policy": "compact"}
    names = {settings.topic(n): {} for n in ("interactions", "affinity-updates")}
    names.update({settings.topic(n): dict(compact) for n in ("users", "sellers")})
    names[settings.internal_topic("interactions-by-user")] = {}
    names.update({settings.topic(f"{n}-dlq"): {} for n in ("interactions", "users", "sellers")})
    return names


def admin_security(settings: Settings) -> dict[str, Any]:
    if settings.security_protocol == "PLAINTEXT":
        return {}
    from streamapp.worker.credentials import (
        ssl_context,  # faust-free, but keeps ssl setup in one place
    )

    options: dict[str, Any] = {"security_protocol": settings.security_protocol}
    if "SSL" in settings.security_protocol:
        options["ssl_context"] = ssl_context(settings)
    if settings.security_protocol.startswith("SASL"):
        options.update(
            sasl_mechanism=settings.sasl_mechanism,
            sasl_plain_username=settings.sasl_username,
            sasl_plain_password=settings.sasl_password,
        )
    return options


def python_command() -> str:
    """How the user runs this Python: `.venv/bin/python` in a checkout, else `python`."""
    exe = Path(sys.executable)
    with contextlib.suppress(ValueError):
        return str(exe.relative_to(Path.cwd()))
    return "python"


def partition_problem(
    settings: Settings, counts: dict[str, int], together: list[str], created: bool = False
) -> str | None:
    """Why the existing topics in `together` (which must share partitions with the users
    topic: a user's profile, pairs and table data live in one partition number) cannot be
    used with STREAMAPP_PARTITIONS, with the exact way out; None when they can."""
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
    settings: Settings,
    extra: dict[str, dict[str, str]] | None = None,
    single: dict[str, dict[str, str]] | None = None,
) -> tuple[str | None, dict[str, int]]:
    """Create missing topics before the consumer subscribes (faust ignores topics that do
    not exist at its first assignment; a missing global table changelog even stalls it).
    `extra` adds topics such as the table changelogs, which must be partitioned like the
    users topic; `single` adds one-partition topics. Everything is checked before anything
    is created, so a refused start leaves the broker as it was. Returns why the existing
    topics cannot be used (or None) and the partition count of each topic."""
    bootstrap = ",".join(f"{h}:{p}" for h, p in settings.broker_addresses)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **admin_security(settings))
    await admin.start()
    try:
        wanted = {**topic_configs(settings), **(extra or {})}
        partitions = {name: settings.partitions for name in wanted}
        for name, config in (single or {}).items():
            wanted[name], partitions[name] = config, 1
        existing = set(await admin.list_topics())
        counts = await _partition_counts(admin, [t for t in wanted if t in existing])
        together = [
            settings.topic("users"),
            settings.internal_topic("interactions-by-user"),
            *sorted(extra or {}),
        ]
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
        print(f"{prog}: cannot reach the broker {settings.broker}: {problem}", file=sys.stderr)
        raise SystemExit(2)
    return settings
