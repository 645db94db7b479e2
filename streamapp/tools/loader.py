"""Bulk-load existing data (JSON Lines) into the topics: the counterpart of the original's
Postgres source.

    python -m streamapp.loader --users users.jsonl --sellers sellers.jsonl \
        --interactions interactions.jsonl [--rejects rejects.jsonl]

Each line is validated with the same models the worker uses; invalid lines are not sent
but reported (and written to --rejects with the reason), and the exit status is 1 when any
line was rejected (0 with --allow-rejects). Profiles are keyed by id, interactions by user
id. Broker and topic prefix come from the usual environment (KAFKA_BROKER, else
KAFKA_LOCAL_PORT); the broker written to is printed first.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from pydantic import BaseModel, ValidationError
from tqdm import tqdm

from streamapp.core.config import Settings
from streamapp.core.models import InteractionMessage, Seller, User
from streamapp.core.parsing import describe
from streamapp.kafka.connection import client_options
from streamapp.kafka.startup import cli_settings
from streamapp.kafka.topic_catalog import TopicCatalog

SOURCES: dict[str, type[BaseModel]] = {
    "users": User,
    "sellers": Seller,
    "interactions": InteractionMessage,
}


@dataclass
class Summary:
    sent: Counter[str] = field(default_factory=Counter)
    rejected: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)

    def render(self) -> str:
        lines = [f"{'source':<14}{'sent':>10}{'rejected':>10}"]
        for source in SOURCES:
            if self.sent[source] or self.rejected[source]:
                lines.append(f"{source:<14}{self.sent[source]:>10}{self.rejected[source]:>10}")
        for reason, n in self.reasons.most_common(5):
            lines.append(f"  {n} x {reason}")
        return "\n".join(lines)


def key_of(source: str, message: BaseModel) -> bytes:
    if isinstance(message, InteractionMessage):
        return message.user_id.encode()
    return message.id.encode()  # type: ignore[attr-defined]


def validated(
    source: str, path: Path, rejects: TextIO | None, summary: Summary
) -> Iterator[tuple[bytes, bytes]]:
    """(key, value) for every valid line of `path`; invalid ones are counted and set aside."""
    model = SOURCES[source]
    with path.open("rb") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                message = model.model_validate_json(line)
            except ValidationError as exc:
                if any(e["type"] == "json_invalid" for e in exc.errors()):
                    reason = "not valid JSON: " + exc.errors()[0]["msg"].removeprefix(
                        "Invalid JSON: "
                    )
                else:
                    reason = describe(exc)
                summary.rejected[source] += 1
                # Keep the field's name ("user_id: Field required"): the message alone does
                # not say which field of the file to fix.
                summary.reasons[f"{source}: {reason.removeprefix('invalid message: ')[:160]}"] += 1
                if rejects:
                    record = {
                        "source": source,
                        "file": str(path),
                        "line": number,
                        "error": reason,
                        "value": line.decode("utf-8", "replace").rstrip("\n"),
                    }
                    rejects.write(json.dumps(record) + "\n")
                continue
            yield key_of(source, message), line.strip()


async def load(
    settings: Settings, files: dict[str, Path], rejects: TextIO | None, progress: bool = True
) -> Summary:
    summary = Summary()
    topics = TopicCatalog.of(settings)
    producer = AIOKafkaProducer(
        linger_ms=20,
        acks="all",
        max_batch_size=256 * 1024,
        enable_idempotence=True,
        **client_options(settings),
    )
    try:
        await producer.start()
        # Profiles first, so the first interactions already see their categories.
        for source in ("users", "sellers", "interactions"):
            if source not in files:
                continue
            topic = getattr(topics, source)
            bar = tqdm(desc=f"{source:<12}", unit=" msg", disable=not progress, file=sys.stderr)
            pending = []
            for key, value in validated(source, files[source], rejects, summary):
                pending.append(await producer.send(topic, value, key=key))
                summary.sent[source] += 1
                bar.update()
                if len(pending) >= 10_000:
                    await asyncio.gather(*pending)
                    pending.clear()
            await asyncio.gather(*pending)
            bar.close()
    finally:
        await producer.stop()
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="streamapp-load", description=__doc__.split("\n\n")[0])
    for source in SOURCES:
        parser.add_argument(f"--{source}", type=Path, help=f"JSON Lines file of {source}")
    parser.add_argument("--rejects", type=Path, help="write rejected lines here, with the reason")
    parser.add_argument(
        "--allow-rejects",
        action="store_true",
        help="exit 0 even when some lines were rejected (they are still reported)",
    )
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    files = {s: getattr(args, s) for s in SOURCES if getattr(args, s)}
    if not files:
        parser.error("nothing to load: give --users, --sellers and/or --interactions")
    for path in files.values():
        if not path.is_file():
            parser.error(f"no such file: {path}")
    settings = cli_settings("streamapp-load")
    # Another broker may answer on the default port: say which one gets the data.
    prefix = f", topic prefix {settings.topic_prefix!r}" if settings.topic_prefix else ""
    print(f"streamapp-load: writing to {settings.broker}{prefix}", file=sys.stderr)
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)  # errors are reported below, once
    rejects = args.rejects.open("w") if args.rejects else None
    try:
        summary = asyncio.run(load(settings, files, rejects, not args.no_progress))
    except (OSError, KafkaError) as exc:
        print(f"streamapp-load: cannot reach the broker {settings.broker}: {exc}", file=sys.stderr)
        return 2
    finally:
        if rejects:
            rejects.close()
    print(summary.render())
    rejected = sum(summary.rejected.values())
    if rejected and not args.allow_rejects:
        where = f" (see {args.rejects})" if args.rejects else " (--rejects FILE keeps them)"
        print(
            f"streamapp-load: {rejected} line(s) rejected{where}; "
            "fix them, or pass --allow-rejects to accept a partial load",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
