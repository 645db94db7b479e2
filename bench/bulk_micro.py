"""Micro-benchmark: what a bulk(100) query costs in the lookup code itself (issue 20).

    python -m bench.bulk_micro            # 100,000 interactions, 2,000 users, 500 sellers
    # first sights enough to fill the memo's generations again and again (vectors_max_ms):
    python -m bench.bulk_micro --queries 1500 --interactions 200000 --users 4000 --sellers 1000

Builds the state through the worker's counting code into a real RocksDB database (as
bench/topk_micro.py does), then times, in one process and without HTTP, the three parts of
a bulk(100) query as the serving process runs them: reading the body
(request_input.query_pairs), the vectors' JSON texts (core/lookup.vector_texts) and joining
them into the answer (lookup.results_text). Microseconds per pair are the figure issue 20's
target speaks of.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import statistics
import tempfile
import time

import orjson

from bench.topk_micro import CATEGORIES, DAY_US, WEEK_S, WEIGHTS, Db, Profiles, count_into
from streamapp.core import lookup
from streamapp.core.pair_state import US, Interaction
from streamapp.core.score import Scoring
from streamapp.http.request_input import query_pairs
from streamapp.runtime import tune_gc


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--interactions", type=int, default=100_000)
    p.add_argument("--queries", type=int, default=300)
    p.add_argument("--users", type=int, default=2000)
    p.add_argument("--sellers", type=int, default=500)
    p.add_argument(
        "--hot-pairs",
        type=int,
        default=0,
        help="draw every query from this many pairs (a ranking service's working set: the "
        "vector memo's hits); 0: from every known pair (mostly misses)",
    )
    args = p.parse_args()
    rng = random.Random(1)
    now = int(time.time()) * US
    folder = tempfile.mkdtemp(prefix="bulk-micro-")
    try:
        pairs = Db(f"{folder}/pairs")
        items = [
            Interaction(
                f"i{n}",
                f"u{rng.randrange(args.users)}",
                f"s{rng.randrange(args.sellers)}",
                rng.randrange(4),
                now - rng.randrange(30 * DAY_US),
                0,
                n,
            )
            for n in range(args.interactions)
        ]
        count_into(pairs, items, now)
        known = sorted({(i.user_id, i.seller_id) for i in items})
        cats = {f"s{n}": frozenset(rng.sample(CATEGORIES, 2)) for n in range(args.sellers)}
        favs = {f"u{n}": frozenset(rng.sample(CATEGORIES, 2)) for n in range(args.users)}
        src = lookup.Sources(
            pairs, Profiles(favs), Profiles(cats), lambda _: 0, Scoring(WEIGHTS, WEEK_S, 1.0)
        )
        pool = rng.sample(known, args.hot_pairs) if args.hot_pairs else known
        bodies = [
            orjson.dumps(
                {"pairs": [{"user_id": u, "seller_id": s} for u, s in rng.sample(pool, 100)]}
            )
            for _ in range(args.queries)
        ]
        tune_gc()  # as the serving process and the worker do
        loop = asyncio.new_event_loop()
        parse, compute, encode = [], [], []
        for n, body in enumerate(bodies):
            t0 = time.perf_counter()
            query = query_pairs(body)
            assert query is not None
            t1 = time.perf_counter()
            texts = loop.run_until_complete(lookup.vector_texts(src, query, now))
            t2 = time.perf_counter()
            lookup.results_text(texts)
            t3 = time.perf_counter()
            if n >= 20:  # warm-up
                parse.append(t1 - t0)
                compute.append(t2 - t1)
                encode.append(t3 - t2)

        def ms(values: list[float]) -> float:
            return round(statistics.median(values) * 1000, 3)

        slowest, median = sorted(compute), statistics.median(compute)
        out = {
            "queries": len(parse),
            "hot_pairs": args.hot_pairs,
            "memo_entries": len(getattr(src, "memo", ())),
            "parse_ms": ms(parse),
            "vectors_ms": ms(compute),
            "encode_ms": ms(encode),
            # The tail: a query that also pays for something held back (the memo's
            # generations, a collection of the young objects) shows here, not in the median.
            "vectors_p99_ms": round(slowest[int(0.99 * (len(slowest) - 1))] * 1000, 3),
            "vectors_max_ms": round(slowest[-1] * 1000, 3),
            "stalls": sum(t > 3 * median for t in compute),  # over 3 x the median
        }
        out["total_ms"] = round(out["parse_ms"] + out["vectors_ms"] + out["encode_ms"], 3)
        out["us_per_pair"] = round(out["total_ms"] * 10, 1)
        print(json.dumps(out))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
