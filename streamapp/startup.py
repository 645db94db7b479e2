"""Start-up checks that turn a misconfiguration into one clear line."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from streamapp.config import ConfigError, Settings, load_settings


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
    from streamapp.security import ssl_context  # faust-free, but keeps ssl setup in one place

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


async def ensure_topics(
    settings: Settings, extra: dict[str, dict[str, str]] | None = None
) -> tuple[str | None, dict[str, int]]:
    """Create missing topics before the consumer subscribes (faust ignores topics that do
    not exist at its first assignment; a missing global table changelog even stalls it).
    `extra` adds topics such as the table changelogs. Returns why the existing ones cannot
    be used (or None) and the partition count of each topic."""
    bootstrap = ",".join(f"{h}:{p}" for h, p in settings.broker_addresses)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **admin_security(settings))
    await admin.start()
    try:
        wanted = {**topic_configs(settings), **(extra or {})}
        existing = set(await admin.list_topics())
        missing = [
            NewTopic(name, settings.partitions, settings.replication_factor, topic_configs=config)
            for name, config in wanted.items()
            if name not in existing
        ]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):  # another worker was quicker
                await admin.create_topics(missing)
        # A user's profile and pairs must share a partition: equal partition counts.
        counts: dict[str, int] = {}
        for _ in range(50):  # new topics take a moment to show up in metadata
            described = await admin.describe_topics(list(wanted))
            counts = {d["topic"]: len(d["partitions"]) for d in described if d["partitions"]}
            if len(counts) == len(wanted):
                break
            await asyncio.sleep(0.1)
        together = [settings.topic("users"), settings.internal_topic("interactions-by-user")]
        if any(counts.get(t) != settings.partitions for t in together):
            found = ", ".join(f"{t} has {counts.get(t)}" for t in sorted(together))
            return (
                f"topics must have STREAMAPP_PARTITIONS={settings.partitions} partitions, "
                f"but {found} (recreate them, or set STREAMAPP_PARTITIONS to match)"
            ), counts
        return None, counts
    finally:
        await admin.close()


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
