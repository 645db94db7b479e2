"""A/B of two source trees' serving processes: bulk(100) cost beside one worker (issue 20).

    python -m bench.serve_ab --old /tmp/old-clone --new . [--rounds 4] [--kafka-port 29892]

Starts its own broker, preloads interactions and one worker (of this tree), then, round by
round and alternately, a fresh serving process of each tree beside it (`python -m
streamapp.serve` run from that tree). Each sends 300 bulk(100) queries one at a time (the
bench's bodies, aiohttp), then the same 300 again: service times p50/p99 and the serving
process's CPU per query from /proc, for pairs seen the first time and for the same pairs
again. One worker for both keeps their state the same; fresh processes keep their caches
cold alike. Every process it starts is stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench.common import Reaper, Serve, Worker, broker_start, broker_stop, proc_cpu_s, summary_ms
from bench.data import Sampler, create_topics, preload
from bench.run import bulk_body

QUERIES = 300
WARM_UP = 10


async def one_pass(url: str, pairs: list[tuple[str, str]], pid: int) -> dict[str, Any]:
    times = []
    cpu0 = proc_cpu_s(pid)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        for i in range(QUERIES + WARM_UP):
            request = session.post(url + "/affinity/query", json=bulk_body(pairs, i))
            began = time.monotonic()
            async with request as response:
                await response.read()
                if response.status != 200:
                    raise RuntimeError(f"{url} answered {response.status}")
            if i >= WARM_UP:
                times.append(time.monotonic() - began)
    cpu1 = proc_cpu_s(pid)
    out = summary_ms(sorted(times), (50, 99))
    if cpu0 is not None and cpu1 is not None:
        out["server_cpu_ms"] = round((cpu1 - cpu0) * 1000 / (QUERIES + WARM_UP), 3)
    return out


async def run(args: argparse.Namespace, workdir: Path, reaper: Reaper) -> None:
    bootstrap = await asyncio.to_thread(broker_start, args.kafka_port, True)
    prefix = "ab-"
    await create_topics(bootstrap, prefix)
    sampler = Sampler(10_000, 1_000, 0.8, 1.0, 42)
    pre = await preload(bootstrap, prefix, sampler, args.interactions, None)
    worker = Worker(bootstrap, "ab", prefix, workdir / "data", workdir / "worker.log")
    worker.start(reaper)
    await asyncio.to_thread(worker.wait_ready, 300)
    deadline = time.monotonic() + 600
    while (worker.get_json("/stats", 2.0) or {}).get("interactions_counted", 0) < pre.interactions:
        if time.monotonic() > deadline:
            raise TimeoutError("the worker did not count the preloaded interactions")
        await asyncio.sleep(0.5)
    results: list[dict[str, Any]] = []
    for n in range(args.rounds):
        for name, tree in (("old", args.old), ("new", args.new)):
            serve = Serve(worker, workdir / f"serve-{name}.log")
            serve.cwd = Path(tree).resolve()
            serve.start(reaper)
            try:
                await asyncio.to_thread(serve.wait_ready, 120)
                first = await one_pass(serve.url, pre.lookup_pairs, serve.pid)
                again = await one_pass(serve.url, pre.lookup_pairs, serve.pid)
            finally:
                await asyncio.to_thread(serve.stop, 30)
            row = {"round": n, "tree": name, "first": first, "again": again}
            results.append(row)
            print(json.dumps(row), flush=True)
    for name in ("old", "new"):
        for part in ("first", "again"):
            cpu = [r[part].get("server_cpu_ms") for r in results if r["tree"] == name]
            known = [c for c in cpu if c is not None]
            mean = round(sum(known) / len(known), 3) if known else None
            print(f"{name} {part}: server CPU per query {cpu}, mean {mean} ms")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--old", required=True, help="the source tree of variant A")
    p.add_argument("--new", required=True, help="the source tree of variant B")
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--kafka-port", type=int, default=29892)
    p.add_argument("--interactions", type=int, default=50_000)
    args = p.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="serve-ab-"))
    reaper = Reaper()
    try:
        asyncio.run(run(args, workdir, reaper))
    finally:
        reaper.stop_all()
        broker_stop(args.kafka_port)


if __name__ == "__main__":
    main()
