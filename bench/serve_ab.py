"""A/B of two source trees' serving processes: bulk(100) cost beside one worker (issue 20).

    python -m bench.serve_ab --old /tmp/old-clone --new . [--rounds 4] [--kafka-port 29892]

Starts its own broker, preloads interactions and one worker (of this tree), then, round by
round and alternately, a fresh serving process of each tree beside it (`python -m
streamapp.serve` run from that tree). Each sends 300 bulk(100) queries one at a time (the
bench's bodies, bench/raw_http.py), then the same 300 again: service times p50/p99 and the serving
process's CPU per query from /proc, for pairs seen the first time and for the same pairs
again. One worker for both keeps their state the same; fresh processes keep their caches
cold alike. Every process it starts is stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path
from typing import Any

from bench.common import Reaper, Serve
from bench.run import bulk_body
from bench.serve_profile import counted_worker, run_to_end, service_times, worker_arguments


async def run(args: argparse.Namespace, workdir: Path, reaper: Reaper) -> None:
    worker, pre = await counted_worker(args.kafka_port, "ab-", args.interactions, workdir, reaper)

    def bulk(i: int) -> dict[str, Any]:
        return bulk_body(pre.lookup_pairs, i)

    results: list[dict[str, Any]] = []
    for n in range(args.rounds):
        for name, tree in (("old", args.old), ("new", args.new)):
            serve = Serve(worker, workdir / f"serve-{name}.log")
            serve.cwd = Path(tree).resolve()
            serve.start(reaper)
            try:
                await asyncio.to_thread(serve.wait_ready, 120)
                first = await service_times(serve.url, bulk, serve.pid)
                again = await service_times(serve.url, bulk, serve.pid)
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
    worker_arguments(p)
    run_to_end(run, p.parse_args(), "serve-ab-")


if __name__ == "__main__":
    main()
