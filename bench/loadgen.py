"""Open-loop HTTP load generator for the lookup API (its own process).

    python -m bench.loadgen --url http://127.0.0.1:PORT --mode single|bulk|top \
        --rate 2000 --duration 10 --pairs pairs.json [--bulk-size 100] [--top-user U --k 10]

single: GET /affinity/{u}/{s}; bulk: POST /affinity/query with --bulk-size pairs;
top: GET /users/{--top-user}/top-sellers?k={--k}.

Request i is due at start + i / rate and is sent then, whether or not earlier requests
have answered (open loop). Its latency is measured from that due time, not from when it
was actually sent, so a server (or a client) that falls behind shows the queueing it
causes instead of hiding it (no coordinated omission). A request that fails or times out
counts as infinitely slow in the percentiles. The first --warmup seconds are sent at the
same rate but not counted. One JSON object is printed on stdout.

The requests go through bench/raw_http.py on uvloop: aiohttp's client cost this process
about three times the CPU a request, which at these rates took most of a core from the
server under test.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from collections import Counter

import orjson
import uvloop

from bench.common import summary_ms
from bench.raw_http import HTTPFailure, Pool, affinity, get, post_json, segment


async def run(args: argparse.Namespace) -> dict:
    with open(args.pairs, "rb") as f:
        pairs: list[list[str]] = orjson.loads(f.read())
    rng = random.Random(args.seed)
    pool = Pool(args.url, args.connections)
    host = pool.host_header
    latencies: list[float] = []
    lags: list[float] = []
    errors: Counter[str] = Counter()
    ok = 0
    last_done = 0.0
    warm_n = int(args.rate * args.warmup)
    n_total = warm_n + int(args.rate * args.duration)

    if args.mode == "single":
        requests = [affinity(host, u, s) for u, s in rng.choices(pairs, k=4096)]
    elif args.mode == "top":
        if not args.top_user:
            raise SystemExit("loadgen: --mode top needs --top-user")
        requests = [get(host, f"/users/{segment(args.top_user)}/top-sellers?k={args.k}")]
    else:
        requests = []
        for _ in range(256):
            chosen = rng.choices(pairs, k=args.bulk_size)
            body = orjson.dumps({"pairs": [{"user_id": u, "seller_id": s} for u, s in chosen]})
            requests.append(post_json(host, "/affinity/query", body))

    try:

        async def one(i: int, due: float) -> None:
            nonlocal ok, last_done
            counted = i >= warm_n
            if counted:
                lags.append(time.monotonic() - due)
            try:
                status, body = await pool.request(requests[i % len(requests)], args.timeout)
            except TimeoutError:
                if counted:
                    errors["timeout"] += 1
                    latencies.append(float("inf"))
                return
            except (HTTPFailure, OSError) as exc:
                if counted:
                    errors[type(exc).__name__] += 1
                    latencies.append(float("inf"))
                return
            done = time.monotonic()
            if not counted:
                return
            if status == 200 and body:
                ok += 1
                latencies.append(done - due)
                last_done = done
            else:
                errors[f"http_{status}"] += 1
                latencies.append(float("inf"))

        tasks = []
        start = time.monotonic() + 0.1
        i = 0
        while i < n_total:
            now = time.monotonic()
            due = start + i / args.rate
            if due > now:
                await asyncio.sleep(due - now)
                continue
            while i < n_total and start + i / args.rate <= now:
                tasks.append(asyncio.create_task(one(i, start + i / args.rate)))
                i += 1
        measured_from = start + args.warmup
        scheduled_end = time.monotonic()
        _done, pending = (
            await asyncio.wait(tasks, timeout=args.timeout + 2) if tasks else (set(), set())
        )
        for task in pending:
            task.cancel()
        if pending:
            errors["unfinished"] += len(pending)
            latencies.extend([float("inf")] * len(pending))
    finally:
        pool.close()

    window = max(last_done, scheduled_end) - measured_from
    return {
        "mode": args.mode,
        "bulk_size": args.bulk_size if args.mode == "bulk" else 1,
        **({"top_user": args.top_user, "k": args.k} if args.mode == "top" else {}),
        "target_rate": args.rate,
        "duration_s": args.duration,
        "requests": n_total - warm_n,
        "ok": ok,
        "errors": dict(errors),
        "achieved_rate": round(ok / window, 1) if window > 0 else None,
        "latency_ms": summary_ms(latencies),
        "client_lag_ms": summary_ms(lags, (50, 99)),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench.loadgen", description=__doc__.split("\n\n")[0])
    p.add_argument("--url", required=True)
    p.add_argument("--mode", choices=("single", "bulk", "top"), required=True)
    p.add_argument("--rate", type=float, required=True, help="requests per second")
    p.add_argument("--duration", type=float, default=10.0, help="measured seconds")
    p.add_argument("--warmup", type=float, default=1.0, help="seconds sent but not counted")
    p.add_argument("--pairs", required=True, help="JSON file: [[user_id, seller_id], ...]")
    p.add_argument("--bulk-size", type=int, default=100)
    p.add_argument("--top-user", help="user id for --mode top (one with many sellers)")
    p.add_argument("--k", type=int, default=10, help="k for --mode top")
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--timeout", type=float, default=5.0, help="per request, seconds")
    p.add_argument("--seed", type=int, default=11)
    args = p.parse_args(argv)
    result = uvloop.run(run(args))
    sys.stdout.write(orjson.dumps(result).decode() + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
