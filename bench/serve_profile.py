"""Where a bulk(100) query or a single GET via a serving process spends its time (issue 20).

    python -m bench.serve_profile [--kafka-port 29892] [--interactions 50000] [--single]
                                  [--worker]

Starts its own broker, preloads interactions, starts one worker and one serving process
beside it, and once the worker has counted everything: 300 bulk(100) queries and 300
`GET /health` one at a time on each (service times, p50/p99), then py-spy on the serving
process for 8 s of back-to-back bulk queries, or single GETs with --single
(bench/results/profile-serve.svg and .txt, with the top of the profile printed); --worker
profiles the worker answering them itself instead. Every process it starts is stopped at the
end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson

from bench import raw_http
from bench.common import (
    RESULTS,
    Reaper,
    Serve,
    Worker,
    broker_start,
    broker_stop,
)
from bench.data import Preloaded, Sampler, create_topics, preload
from bench.profile import Recorder, summarise
from bench.run import bulk_body

QUERIES = 300
WARM_UP = 10


async def service_times(
    url: str,
    body: Callable[[int], Any] | None,
    pid: int | None = None,
) -> dict[str, Any]:
    """QUERIES requests one at a time (bulk queries of `body`, or GET /health) with the lean
    client (raw_http.one_at_a_time): p50/p99, and with `pid` the server's CPU per request."""

    def build(host: str, i: int) -> bytes:
        if body is None:
            return raw_http.get(host, "/health")
        return raw_http.post_json(host, "/affinity/query", orjson.dumps(body(i)))

    return await raw_http.one_at_a_time(url, build, QUERIES, WARM_UP, pid)


async def counted_worker(
    kafka_port: int, prefix: str, interactions: int, workdir: Path, reaper: Reaper
) -> tuple[Worker, Preloaded]:
    """Its own broker, `interactions` preloaded, and one worker that has counted them."""
    bootstrap = await asyncio.to_thread(broker_start, kafka_port, True)
    await create_topics(bootstrap, prefix)
    sampler = Sampler(10_000, 1_000, 0.8, 1.0, 42)
    pre = await preload(bootstrap, prefix, sampler, interactions, None)
    worker = Worker(bootstrap, prefix.rstrip("-"), prefix, workdir / "data", workdir / "worker.log")
    worker.start(reaper)
    await asyncio.to_thread(worker.wait_ready, 300)
    deadline = time.monotonic() + 600
    while (worker.get_json("/stats", 2.0) or {}).get("interactions_counted", 0) < pre.interactions:
        if time.monotonic() > deadline:
            raise TimeoutError("the worker did not count the preloaded interactions")
        await asyncio.sleep(0.5)
    return worker, pre


async def run(args: argparse.Namespace, workdir: Path, reaper: Reaper) -> None:
    worker, pre = await counted_worker(args.kafka_port, "sp-", args.interactions, workdir, reaper)
    serve = Serve(worker, workdir / "serve.log")
    serve.start(reaper)
    await asyncio.to_thread(serve.wait_ready, 120)
    pairs = pre.lookup_pairs

    def bulk(i: int) -> dict[str, Any]:
        return bulk_body(pairs, i)

    for server in (serve, worker):
        for what, body in (("bulk(100)", bulk), ("health", None)):
            print(f"{server.name} {what}: {await service_times(server.url, body)}")
    target = worker if args.worker else serve
    svg, raw = RESULTS / "profile-serve.svg", RESULTS / "profile-serve.txt"
    recorder = Recorder(target.pid, args.seconds, svg, raw, reaper)
    if not recorder.start():
        print("py-spy is not installed: no profile")
        return
    what = "single GETs" if args.single else "bulk(100) queries"
    pool = raw_http.Pool(target.url, 1)
    host = pool.host_header
    done, until = 0, time.monotonic() + args.seconds + 1
    try:
        while time.monotonic() < until:
            if args.single:
                request = raw_http.affinity(host, *pairs[done % len(pairs)])
            else:
                request = raw_http.post_json(host, "/affinity/query", orjson.dumps(bulk(done)))
            status, _ = await pool.request(request, 30.0)
            if status != 200:
                raise RuntimeError(f"the {target.name} answered {status}")
            done += 1
    finally:
        pool.close()
    await asyncio.to_thread(recorder.finish, 30)
    print(f"profiled {done} {what} via the {target.name}; {svg}, {raw}")
    print(json.dumps(summarise(raw, top=15), indent=1))


def worker_arguments(p: argparse.ArgumentParser) -> None:
    """The broker port and the preload size (counted_worker's), shared with serve_ab."""
    p.add_argument("--kafka-port", type=int, default=29892)
    p.add_argument("--interactions", type=int, default=50_000)


Run = Callable[[argparse.Namespace, Path, Reaper], Awaitable[None]]


def run_to_end(run: Run, args: argparse.Namespace, prefix: str) -> None:
    """`run` in a fresh work dir; every process it started and the broker stopped after,
    also on failure."""
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    reaper = Reaper()
    try:
        asyncio.run(run(args, workdir, reaper))
    finally:
        reaper.stop_all()
        broker_stop(args.kafka_port)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    worker_arguments(p)
    p.add_argument("--seconds", type=float, default=8.0, help="py-spy duration")
    p.add_argument("--single", action="store_true", help="profile single GETs, not bulk(100)")
    p.add_argument(
        "--worker", action="store_true", help="profile the worker, not the serving process"
    )
    run_to_end(run, p.parse_args(), "serve-profile-")


if __name__ == "__main__":
    main()
