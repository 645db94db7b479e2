"""Small broker chores without Kafka's own tools (the local broker ships none).

    python -m streamapp.admin delete-topics TOPIC [TOPIC ...]

Uses the same environment as every other command (KAFKA_BROKER, else KAFKA_LOCAL_PORT, and
the KAFKA_SECURITY_* settings). A worker refusing to start on topics with the wrong
partition count prints the exact command to run.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from streamapp.core.config import Settings
from streamapp.kafka.connection import client_options
from streamapp.kafka.startup import cli_settings

DELETE_WAIT_S = 30.0


async def delete_topics(settings: Settings, names: list[str]) -> list[str]:
    """Delete the topics that exist among `names` and wait (bounded) until the broker no
    longer lists them, so that a worker started right after creates them afresh. Returns
    the ones that did not exist."""
    admin = AIOKafkaAdminClient(**client_options(settings))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        present = [n for n in names if n in existing]
        if present:
            # Per-topic errors come back in the response, not raised; the wait below is the
            # check that counts (a topic someone else deleted meanwhile is fine too).
            await admin.delete_topics(present)
        deadline = time.monotonic() + DELETE_WAIT_S
        while set(present) & set(await admin.list_topics()):
            if time.monotonic() > deadline:
                raise TimeoutError(f"topics still listed after {DELETE_WAIT_S:.0f}s")
            await asyncio.sleep(0.2)
        return [n for n in names if n not in existing]
    finally:
        await admin.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m streamapp.admin", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    delete = commands.add_parser("delete-topics", help="delete topics (their data is lost)")
    delete.add_argument("topics", nargs="+", metavar="TOPIC", help="full topic names")
    args = parser.parse_args(argv)
    settings = cli_settings("streamapp-admin")
    try:
        absent = asyncio.run(delete_topics(settings, args.topics))
    except (OSError, KafkaError, TimeoutError) as exc:
        print(f"streamapp-admin: {settings.broker}: {exc}", file=sys.stderr)
        return 1
    for name in args.topics:
        state = "did not exist" if name in absent else "deleted"
        print(f"{name}: {state} ({settings.broker})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
