"""Freshness beyond the updates topic: how soon a lookup shows an interaction, and where a
batch's time goes inside the worker.

    python -m bench.freshness --bootstrap 127.0.0.1:29092 --topic P-interactions \
        --url http://127.0.0.1:6066 [--url http://127.0.0.1:6166] --samples 100

Lookup freshness: an interaction for a pair nobody else writes is produced (acks=all); from
the produce acknowledgement, `GET /affinity/{u}/{s}` is asked every 5 ms on each URL until it
shows the interaction. One sample every `--every` seconds; a JSON summary per
URL is printed at the end.

The per-step breakdown comes from the worker's `streamapp_batch_step_seconds` histogram
(checkpoint.py): `step_breakdown(before, after)` turns two scrapes of /metrics into
p50/p99 per step for what happened between them.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import time
import uuid
from typing import Any

import aiohttp
import orjson
from aiokafka import AIOKafkaProducer

from bench.common import summary_ms

STEP_METRIC = "streamapp_batch_step_seconds_bucket"
_BUCKET = re.compile(r'^streamapp_batch_step_seconds_bucket\{le="([^"]+)",step="([^"]+)"\} (\S+)$')


def step_buckets(metrics_text: str) -> dict[str, list[tuple[float, float]]]:
    """{step: [(upper bound, cumulative count), ...]} from Prometheus text."""
    out: dict[str, list[tuple[float, float]]] = {}
    for line in metrics_text.splitlines():
        m = _BUCKET.match(line)
        if m:
            bound = float("inf") if m.group(1) == "+Inf" else float(m.group(1))
            out.setdefault(m.group(2), []).append((bound, float(m.group(3))))
    for buckets in out.values():
        buckets.sort()
    return out


def _quantile(buckets: list[tuple[float, float]], q: float) -> float | None:
    """The upper bound of the bucket holding quantile q (a histogram's resolution)."""
    total = buckets[-1][1] if buckets else 0
    if total <= 0:
        return None
    for bound, count in buckets:
        if count >= q * total:
            return bound
    return buckets[-1][0]


def batch_sizes(text: str) -> dict[str, dict[str, float]]:
    """Per source stream, from one /metrics scrape: batches processed and their mean size."""
    sums: dict[str, dict[str, float]] = {}
    for line in text.splitlines():
        for part in ("sum", "count"):
            head = f'streamapp_batch_events_{part}{{stream="'
            if line.startswith(head):
                stream = line[len(head) :].split('"', 1)[0]
                sums.setdefault(stream, {})[part] = float(line.rsplit(" ", 1)[1])
    return {
        stream: {
            "batches": int(v.get("count", 0)),
            "mean_events": round(v.get("sum", 0) / v["count"], 1) if v.get("count") else 0.0,
        }
        for stream, v in sums.items()
    }


def step_breakdown(before: str, after: str) -> dict[str, dict[str, Any]]:
    """Per step, the batches observed between two scrapes and their p50/p99 in ms (bucket
    upper bounds: 1, 2, 5, 10, 20, 50, 100, 200, 500 ms ...)."""
    a, b = step_buckets(before), step_buckets(after)
    out: dict[str, dict[str, Any]] = {}
    for step, later in b.items():
        earlier = dict(a.get(step, []))
        diff = [(bound, count - earlier.get(bound, 0.0)) for bound, count in later]
        n = diff[-1][1] if diff else 0
        out[step] = {
            "batches": int(n),
            **{
                name: None if v is None or v == float("inf") else round(v * 1000, 1)
                for name, v in (
                    ("p50_le_ms", _quantile(diff, 0.5)),
                    ("p99_le_ms", _quantile(diff, 0.99)),
                )
            },
        }
    return out


async def lookup_freshness(args: argparse.Namespace) -> dict[str, Any]:
    producer = AIOKafkaProducer(bootstrap_servers=args.bootstrap, acks="all", linger_ms=0)
    await producer.start()
    delays: dict[str, list[float]] = {url: [] for url in args.url}
    run = uuid.uuid4().hex[:8]
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
            for i in range(args.samples):
                began = time.monotonic()
                user, seller = f"lf{run}u{i}", f"lf{run}s{i}"
                value = orjson.dumps(
                    {"id": f"lf{run}-{i}", "user_id": user, "seller_id": seller,
                     "interaction_kind": "VIEW"}
                )  # fmt: skip
                await (await producer.send(args.topic, value, key=user.encode()))
                acked = time.monotonic()
                await asyncio.gather(
                    *(_until_counted(http, url, user, seller, acked, args.timeout, delays[url])
                      for url in args.url)
                )  # fmt: skip
                await asyncio.sleep(max(0.0, args.every - (time.monotonic() - began)))
    finally:
        await producer.stop()
    return {url: summary_ms(values, (50, 99)) for url, values in delays.items()}


async def _until_counted(
    http: aiohttp.ClientSession,
    url: str,
    user: str,
    seller: str,
    acked: float,
    timeout: float,
    out: list[float],
) -> None:
    while time.monotonic() - acked < timeout:
        try:
            async with http.get(f"{url}/affinity/{user}/{seller}") as response:
                if response.status == 200:
                    body = await response.json(loads=orjson.loads)
                    if body.get("number_of_interactions", 0) >= 1:
                        out.append(time.monotonic() - acked)
                        return
        except (aiohttp.ClientError, TimeoutError):
            pass
        await asyncio.sleep(POLL_S)
    out.append(float("inf"))


# Between two GETs of one probe: fine enough for figures of tens of milliseconds, and light
# enough (200 GETs/s per server) not to slow the ingest it measures; at 1 ms the probe's
# own GETs took the worker's loop from ingest and the figure measured the probe.
POLL_S = 0.005


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench.freshness", description=__doc__.split("\n\n")[0])
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--topic", required=True, help="the interactions topic")
    p.add_argument("--url", action="append", required=True, help="worker or serving process")
    p.add_argument("--samples", type=int, default=100)
    p.add_argument("--every", type=float, default=0.2, help="seconds between samples")
    p.add_argument("--timeout", type=float, default=10.0, help="per sample and URL")
    args = p.parse_args(argv)
    result = asyncio.run(lookup_freshness(args))
    sys.stdout.write(orjson.dumps(result).decode() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
