"""Bulk-load existing data (JSON Lines) into the topics: the counterpart of the original's
Postgres source.

    python -m streamapp.loader --users users.jsonl --sellers sellers.jsonl \\
        --interactions interactions.jsonl [--rejects rejects.jsonl] [--allow-rejects]

Each line is validated with the same models the worker uses. Valid lines are sent (profiles
keyed by id, interactions by user id); invalid ones are not sent but reported with their
file line number and reason (and written to --rejects with the reason), blank lines are
skipped. Broker and topic prefix come from the usual environment (KAFKA_BROKER, else
KAFKA_LOCAL_PORT, else kafka://127.0.0.1:9092); the first line on stderr names the broker,
where its address came from and how long the loader waits for it (STREAMAPP_BROKER_WAIT).
The last line on stderr says what was sent and what was rejected.

Exit status:
  0  every line was sent (or some were rejected and --allow-rejects was given)
  1  partial load: the valid lines were sent, some lines were rejected
  2  usage or configuration error: nothing was read or sent
  3  nothing to load: every line was rejected, or the files have no lines
  4  the broker cannot be reached (nothing was sent) or failed during the load
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import re
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path
from typing import TextIO

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from pydantic import BaseModel, ValidationError
from tqdm import tqdm

from streamapp.core.config import ConfigError, Settings, load_settings
from streamapp.core.models import InteractionMessage, Seller, User
from streamapp.core.parsing import describe
from streamapp.kafka.connection import client_options
from streamapp.kafka.startup import broker_unreachable, unreachable_broker_line
from streamapp.kafka.topic_catalog import TopicCatalog

PROG = "streamapp-load"

SOURCES: dict[str, type[BaseModel]] = {
    "users": User,
    "sellers": Seller,
    "interactions": InteractionMessage,
}


class Exit(IntEnum):
    """The loader's exit status (module docstring, --help)."""

    OK = 0
    PARTIAL = 1
    USAGE = 2  # argparse's own status for a bad command line
    NOTHING_LOADED = 3
    BROKER = 4


EXIT_HELP = __doc__[__doc__.index("Exit status:") :]

# Lines seen per reason in the summary: enough to find them, short enough for one line.
LINES_SHOWN = 3


@dataclass
class Summary:
    sent: Counter[str] = field(default_factory=Counter)  # acknowledged by the broker
    rejected: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)
    lines_of: dict[str, list[int]] = field(default_factory=dict)  # first lines per reason
    connected: bool = False  # the producer started: a failure after it is mid-load

    def reject(self, source: str, number: int, reason: str) -> None:
        self.rejected[source] += 1
        key = f"{source}: {reason}"
        self.reasons[key] += 1
        shown = self.lines_of.setdefault(key, [])
        if len(shown) < LINES_SHOWN:
            shown.append(number)

    @property
    def total_sent(self) -> int:
        return sum(self.sent.values())

    @property
    def total_rejected(self) -> int:
        return sum(self.rejected.values())

    def render(self) -> str:
        lines = [f"{'source':<14}{'sent':>10}{'rejected':>10}"]
        for source in SOURCES:
            if self.sent[source] or self.rejected[source]:
                lines.append(f"{source:<14}{self.sent[source]:>10}{self.rejected[source]:>10}")
        for reason, n in self.reasons.most_common(5):
            numbers = ", ".join(str(x) for x in self.lines_of[reason])
            where = f"line {numbers}" if n == 1 else f"lines {numbers}"
            if n > LINES_SHOWN:
                where += ", ..."
            lines.append(f"  {n} x {reason} ({where})")
        return "\n".join(lines)


_JSON_POSITION = re.compile(r"^(?P<what>.*) at line 1 column (?P<column>\d+)$")


def parse_line(model: type[BaseModel], line: bytes) -> BaseModel | str:
    """The message on one line of a JSON Lines file, or why it is rejected (without the
    line number, which the caller knows: a position says only the column in the line)."""
    try:
        # Without the line break, which the parser would count as a second line.
        return model.model_validate_json(line.rstrip(b"\r\n"))
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        if not any(e["type"] == "json_invalid" for e in errors):
            # Keep the field's name ("user_id: Field required"): the message alone does
            # not say which field of the file to fix.
            return describe(exc).removeprefix("invalid message: ")
        try:
            line.decode("utf-8")
        except UnicodeDecodeError as bad:
            return f"not UTF-8 text at byte {bad.start + 1}"
        error = str(errors[0]["msg"]).removeprefix("Invalid JSON: ")
        # One record per line, so the parser's "line 1" is never the file's line.
        match = _JSON_POSITION.match(error)
        if match:
            error = f"{match['what']} at column {match['column']}"
        return f"not valid JSON: {error}"


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
            parsed = parse_line(model, line)
            if isinstance(parsed, str):
                summary.reject(source, number, parsed[:160])
                if rejects:
                    record = {
                        "source": source,
                        "file": str(path),
                        "line": number,
                        "error": parsed,
                        "value": line.decode("utf-8", "replace").rstrip("\r\n"),
                    }
                    rejects.write(json.dumps(record) + "\n")
                continue
            yield key_of(source, parsed), line.strip()


async def load(
    settings: Settings,
    files: dict[str, Path],
    rejects: TextIO | None,
    progress: bool = True,
    summary: Summary | None = None,
) -> Summary:
    """Send the valid lines of `files`; `summary` (when given) holds the counts so far
    also when this raises."""
    summary = Summary() if summary is None else summary
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
        summary.connected = True
        # Profiles first, so the first interactions already see their categories.
        for source in ("users", "sellers", "interactions"):
            if source not in files:
                continue
            topic = getattr(topics, source)
            bar = tqdm(desc=f"{source:<12}", unit=" msg", disable=not progress, file=sys.stderr)
            pending = []
            for key, value in validated(source, files[source], rejects, summary):
                pending.append(await producer.send(topic, value, key=key))
                bar.update()
                if len(pending) >= 10_000:
                    await asyncio.gather(*pending)
                    summary.sent[source] += len(pending)
                    pending.clear()
            await asyncio.gather(*pending)
            summary.sent[source] += len(pending)
            bar.close()
    finally:
        await producer.stop()
    return summary


def exit_status(summary: Summary, allow_rejects: bool) -> Exit:
    """The status of a load that ran to the end."""
    if summary.total_sent == 0:
        return Exit.NOTHING_LOADED
    if summary.total_rejected and not allow_rejects:
        return Exit.PARTIAL
    return Exit.OK


def _lines(n: int) -> str:
    return f"{n} line" if n == 1 else f"{n} lines"


def outcome(summary: Summary, rejects_path: Path | None, allow_rejects: bool) -> str:
    """The last line on stderr: what was sent, what was rejected and where to see why."""
    sent, rejected = summary.total_sent, summary.total_rejected
    where = (
        f"each with its reason in {rejects_path}"
        if rejects_path
        else "the most common reasons above; --rejects FILE lists every one"
    )
    status = exit_status(summary, allow_rejects)
    if status is Exit.NOTHING_LOADED:
        if not rejected:
            return f"{PROG}: nothing sent: the files have no lines"
        return f"{PROG}: nothing sent: every line was rejected ({_lines(rejected)}; {where})"
    if not rejected:
        return f"{PROG}: sent {_lines(sent)}, none rejected"
    line = f"{PROG}: partial load: sent {_lines(sent)}, rejected {rejected} ({where})"
    if status is Exit.PARTIAL:
        line += "; exit status 1, --allow-rejects makes it 0"
    return line


def _error_text(exc: BaseException) -> str:
    """The error's type and message, once (aiokafka's messages already start with it)."""
    name, text = type(exc).__name__, str(exc)
    if text.startswith(name):
        return text
    return f"{name}: {text}" if text else name


def where_from(origin: str) -> str:
    return "the default" if origin == "default" else f"from {origin}"


def unreachable_line(settings: Settings, problem: str) -> str:
    return unreachable_broker_line(PROG, settings, f"{problem}; nothing was sent")


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=__doc__.split("\n\n")[0],
        epilog=EXIT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    for source in SOURCES:
        parser.add_argument(f"--{source}", type=Path, help=f"JSON Lines file of {source}")
    parser.add_argument("--rejects", type=Path, help="write rejected lines here, with the reason")
    parser.add_argument(
        "--allow-rejects",
        action="store_true",
        help="accept a partial load: exit 0 instead of 1 when some lines were rejected "
        "(they are still reported and not sent; a load that sent nothing still exits 3)",
    )
    parser.add_argument(
        "--no-progress", action="store_true", help="no progress bars (none off a terminal)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    cli = parser()
    args = cli.parse_args(argv)  # exits 2 (Exit.USAGE) on a bad command line
    files = {s: getattr(args, s) for s in SOURCES if getattr(args, s)}
    if not files:
        cli.error("nothing to load: give --users, --sellers and/or --interactions")
    for path in files.values():
        if not path.is_file():
            cli.error(f"no such file: {path}")
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"{PROG}: configuration error: {exc}", file=sys.stderr)
        return Exit.USAGE
    origin = settings.broker_origin
    # Said before the wait, so a missing broker is not silence: which broker gets the data
    # (another one may answer on the default port) and how long the loader waits for it.
    prefix = f", topic prefix {settings.topic_prefix!r}" if settings.topic_prefix else ""
    print(
        f"{PROG}: connecting to {settings.broker} ({where_from(origin)}){prefix}, "
        f"waiting up to {settings.broker_wait_s:g}s",
        file=sys.stderr,
        flush=True,
    )
    problem = asyncio.run(broker_unreachable(settings.broker_addresses, settings.broker_wait_s))
    if problem:
        print(unreachable_line(settings, problem), file=sys.stderr)
        return Exit.BROKER
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)  # errors are reported below, once
    summary = Summary()
    rejects = args.rejects.open("w") if args.rejects else None
    try:
        bars = not args.no_progress and sys.stderr.isatty()  # no carriage returns in a file
        asyncio.run(load(settings, files, rejects, bars, summary))
    except (OSError, KafkaError) as exc:
        if not summary.connected:
            print(unreachable_line(settings, _error_text(exc)), file=sys.stderr)
        else:
            print(
                f"{PROG}: the broker {settings.broker} failed during the load "
                f"({_error_text(exc)}): {_lines(summary.total_sent)} were written before, "
                "the rest may not have been. Loading the same files again is safe "
                "(interactions are counted once per id, profiles are replaced).",
                file=sys.stderr,
            )
        return Exit.BROKER
    finally:
        if rejects:
            rejects.close()
    if summary.total_sent or summary.total_rejected:
        print(summary.render())
    print(outcome(summary, args.rejects, args.allow_rejects), file=sys.stderr)
    return exit_status(summary, args.allow_rejects)


if __name__ == "__main__":
    raise SystemExit(main())
