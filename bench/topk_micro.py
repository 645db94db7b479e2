"""Micro-benchmark: what top-k costs as a user's seller count grows (issue 20).

    python -m bench.topk_micro                      # users with 100 .. 100,000 sellers
    python -m bench.topk_micro --sizes 100,100000 --requests 300

Builds the state through the worker's own counting code (count_batch) into a real RocksDB
database (rocksdict, as the worker's tables), one interaction per seller spread over 30
days, the kinds of the benchmark's mix, and profiles like the benchmark's (the user likes 2
of 8 categories, each seller has 1 to 4). Then times top-k(10) in one process, one request at
a time: the walk of the user's ranking (what lookups do) and the full ranking of every seller
(what they did before, and still do for a user without a complete index). Also the worst case
the walk is bounded by: a favorites bonus far above every decayed score.
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
from collections.abc import Iterator
from typing import Any

from rocksdict import Options, Rdict

from streamapp.core import lookup
from streamapp.core.counting import count_batch
from streamapp.core.pair_state import US, Interaction
from streamapp.core.score import Scoring, top_k
from streamapp.kafka.rocksdb import keys_with_prefix, write_batch

WEEK_S = 7 * 86400.0
DAY_US = 86400 * US
WEIGHTS = (3.0, 1.0, 5.0, 0.5)
CATEGORIES = ["shoes", "games", "books", "garden", "music", "toys", "food", "tools"]


class Db:
    """One RocksDB database as a lookup.PartitionReader (partition 0)."""

    def __init__(self, path: str, options: Options | None = None) -> None:
        self.db = Rdict(path, options or Options(raw_mode=True))

    def read(self, partition: int, key: bytes) -> bytes | None:
        return self.db.get(key)

    def read_many(self, partition: int, keys: list[bytes]) -> list[bytes | None]:
        return self.db.get(keys)

    def read_one(self, key: bytes) -> bytes | None:
        return self.db.get(key)

    def scan(self, partition: int, prefix: bytes) -> Iterator[bytes]:
        return keys_with_prefix(self.db, prefix)

    def write(self, writes: dict[bytes, bytes | None]) -> None:
        write_batch(self.db, writes)


def worker_options() -> Options:
    """The options the worker opens a pair table partition with (faust's rocksdict driver
    with worker/tables.py's settings at their defaults): its bloom filter and block cache
    decide what a read of a missing key costs."""
    from faust.stores.rocksdb import RocksDBOptions  # only the micro-benchmarks need faust

    options: Options = RocksDBOptions(
        block_cache_size=16 * 1024 * 1024,  # STREAMAPP_ROCKSDB_CACHE_MB's default
        write_buffer_size=8 * 1024 * 1024,  # STREAMAPP_ROCKSDB_WRITE_BUFFER_MB's default
        max_write_buffer_number=2,
        use_rocksdict=True,
    ).as_options()
    options.create_if_missing(True)
    return options


class Profiles:
    def __init__(self, cats: dict[str, frozenset[str]]) -> None:
        self.cats = cats

    def categories(self, entity_id: str) -> frozenset[str]:
        return self.cats.get(entity_id, frozenset())


def build(pairs: Db, user: str, sellers: int, now_us: int, rng: random.Random) -> None:
    kinds = rng.choices(range(4), weights=(20, 60, 5, 15), k=sellers)
    items = [
        Interaction(
            f"{user}-{n}", user, f"s{n}", kinds[n], now_us - rng.randrange(30 * DAY_US), 0, n
        )
        for n in range(sellers)
    ]
    count_into(pairs, items, now_us)


def count_into(pairs: Db, items: list[Interaction], now_us: int) -> None:
    """Count `items` with the worker's counting code, 500 at a time."""
    for start in range(0, len(items), 500):
        result = count_batch(
            items[start : start + 500],
            pairs.read_one,
            now_us,
            WEEK_S,
            WEEK_S,
            WEIGHTS,
            scan_pairs=lambda prefix: list(pairs.scan(0, prefix)),
        )
        pairs.write(result.pair_writes)


def timed(fn: Any, requests: int) -> dict[str, float]:
    times = []
    for _ in range(requests + 5):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    times = sorted(times[5:])
    return {
        "p50_ms": round(statistics.median(times) * 1000, 3),
        "p99_ms": round(times[min(len(times) - 1, int(len(times) * 0.99))] * 1000, 3),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--sizes", default="100,1000,20000,100000")
    p.add_argument("--requests", type=int, default=200)
    p.add_argument("--k", type=int, default=10)
    args = p.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    rng = random.Random(20)
    now_us = int(time.time()) * US
    folder = tempfile.mkdtemp(prefix="topk-micro-")
    loop = asyncio.new_event_loop()
    out: dict[str, Any] = {"k": args.k, "users": {}}
    try:
        pairs = Db(f"{folder}/pairs")
        cats = {
            f"s{n}": frozenset(rng.sample(CATEGORIES, rng.randint(1, 4))) for n in range(max(sizes))
        }
        favs = {f"u{n}": frozenset(rng.sample(CATEGORIES, 2)) for n in sizes}
        for n in sizes:
            t0 = time.perf_counter()
            build(pairs, f"u{n}", n, now_us, rng)
            print(f"built u{n}: {n:,} sellers in {time.perf_counter() - t0:.1f} s", flush=True)
        # The walk's worst case: a bonus far above every decayed score for a category only
        # 1 seller in 500 has, so the k best are scattered deep in the user's ranking.
        rare = {s: c | {"rare"} for s, c in cats.items() if int(s[1:]) % 500 == 7}
        worst = ({**cats, **rare}, {u: frozenset({"rare"}) for u in favs})
        cases = (("default", 1.0, cats, favs), ("bonus_dominates", 1e6, *worst))
        for label, bonus, cats, favs in cases:
            src = lookup.Sources(
                pairs,
                Profiles(favs),
                Profiles(cats),
                lambda _: 0,
                Scoring(WEIGHTS, WEEK_S, bonus),
            )
            for n in sizes:
                user = f"u{n}"

                def walk(user: str = user, src: lookup.Sources = src) -> None:
                    loop.run_until_complete(lookup.top_sellers(src, user, args.k, now_us))

                def full(user: str = user, src: lookup.Sources = src) -> None:
                    score = lookup._scorer(src, user, now_us)
                    top_k(loop.run_until_complete(lookup._rank_all(src, 0, user, score)), args.k)

                row = out["users"].setdefault(label, {}).setdefault(str(n), {})
                row["walk"] = timed(walk, args.requests)
                row["full_ranking"] = timed(full, max(5, min(args.requests, 2_000_000 // n)))
                print(label, n, row, flush=True)
        base = out["users"]["default"][str(sizes[0])]["walk"]["p99_ms"]
        top = out["users"]["default"][str(sizes[-1])]["walk"]["p99_ms"]
        out["p99_ratio_largest_to_smallest"] = round(top / base, 2)
        print(json.dumps(out, indent=2))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
