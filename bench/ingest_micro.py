"""Micro-benchmark: what the worker's own code costs per interaction, step by step (issue 21).

    python -m bench.ingest_micro              # 100,000 interactions, the quick bench's mix

Runs the steps of one processing batch (streamapp/worker/ingest.py) in one process, without
Kafka or faust: parse the source records (parsing.accept_interaction), count them into pair
state on a real RocksDB database opened with the worker's options (counting.PartitionCount,
a slice of 64 at a time, as the worker does), write the batch (WriteBatches of a few users),
append the changelog records to Kafka record batches (aiokafka's BatchBuilder, as the
Outbox does), and build and encode one update per touched pair (features.text_parts and
update_text). The sum is the part of the worker's CPU per event that is streamapp's and not
faust's, aiokafka's network or asyncio's: compare it with `stages.ingest.cpu_us_per_event`
minus `stages.faust_floor.cpu_us_per_event` of the same machine.
"""

from __future__ import annotations

import argparse
import random
import shutil
import tempfile
import time
from collections.abc import Callable
from typing import Any

import orjson
from aiokafka.producer.message_accumulator import BatchBuilder

from bench.data import Sampler, interaction
from bench.topk_micro import CATEGORIES, WEEK_S, WEIGHTS, Db, Profiles, worker_options
from streamapp.core.counting import PartitionCount
from streamapp.core.features import text_parts, update_text
from streamapp.core.pair_state import US
from streamapp.core.parsing import Record, accept_interaction
from streamapp.core.score import Scoring
from streamapp.core.times import iso_micros
from streamapp.runtime import tune_gc

BATCH = 2_000  # STREAMAPP_BATCH_MAX's default; a backlog comes in whole batches
SLICE = 64  # ingest.SLICE_EVENTS and SLICE_PAIRS


def new_batch() -> BatchBuilder:
    return BatchBuilder(512 * 1024, 0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--interactions", type=int, default=100_000)
    p.add_argument("--users", type=int, default=10_000)
    p.add_argument("--sellers", type=int, default=1_000)
    p.add_argument("--batch", type=int, default=BATCH)
    p.add_argument("--slice", type=int, default=SLICE)
    args = p.parse_args()
    rng = random.Random(7)
    sampler = Sampler(args.users, args.sellers, 0.8, 1.0, seed=7)
    now = int(time.time()) * US
    records = [
        Record(
            "interactions",
            0,
            n,
            now,
            f"u{u}".encode(),
            interaction(f"i{n}", u, s, k, now / US - rng.random() * 30 * 86400),
        )
        for n, ((u, s), k) in enumerate(
            zip(sampler.pairs(args.interactions), sampler.kinds(args.interactions), strict=True)
        )
    ]
    profiles = {f"s{n}": frozenset(rng.sample(CATEGORIES, 3)) for n in range(args.sellers)}
    favorites = {f"u{n}": frozenset(rng.sample(CATEGORIES, 2)) for n in range(args.users)}
    users, sellers = Profiles(favorites), Profiles(profiles)
    scoring = Scoring(WEIGHTS, WEEK_S, 1.0)
    tune_gc()  # as the worker does once it has started
    folder = tempfile.mkdtemp(prefix="ingest-micro-")
    spent: dict[str, float] = dict.fromkeys(("parse", "count", "write", "changelog", "update"), 0.0)
    try:
        pairs = Db(f"{folder}/pairs", worker_options())

        def step(name: str, fn: Callable[[], Any]) -> Any:
            t0 = time.perf_counter()
            out = fn()
            spent[name] += time.perf_counter() - t0
            return out

        def scan(prefix: bytes) -> list[bytes]:
            return list(pairs.scan(0, prefix))

        for start in range(0, len(records), args.batch):
            chunk = records[start : start + args.batch]
            items = step("parse", lambda c=chunk: [accept_interaction(r, 1 << 20) for r in c])
            # As ingest.count_into_state: applied a slice at a time, written a few users
            # at a time (the worker yields to its event loop between any two steps).
            count = PartitionCount(WEEK_S, WEEK_S, WEIGHTS)
            for at in range(0, len(items), args.slice):
                step(
                    "count",
                    lambda c=count, s=items[at : at + args.slice]: c.apply(s, pairs.read_one, now),
                )
            while writes := step(
                "count", lambda c=count: c.finish(pairs.read_one, scan, args.slice)
            ):
                step("write", lambda w=writes: pairs.write(w))

                def changelog(w: Any = writes) -> None:
                    batch = new_batch()
                    for key, value in w.items():
                        if batch.append(key=key, value=value, timestamp=None, headers=[]) is None:
                            batch = new_batch()

                step("changelog", changelog)
            result = count.result

            def updates(r: Any = result) -> None:
                as_of_json = orjson.dumps(iso_micros(now))
                batch = new_batch()
                for key, pair in r.touched.items():
                    parts = text_parts(
                        pair.user_id,
                        pair.seller_id,
                        pair.state,
                        users.categories(pair.user_id),
                        sellers.categories(pair.seller_id),
                        now,
                        scoring,
                        lambda suffix, k=key: pairs.read_one(k + suffix),
                    )
                    ids = pair.covered_ids
                    value = update_text(parts, as_of_json, ids[-1], len(ids), ids)
                    if batch.append(key=key, value=value, timestamp=None, headers=[]) is None:
                        batch = new_batch()

            step("update", updates)
        n = len(records)
        total = sum(spent.values())
        print(f"{n:,} interactions, {len(list(pairs.db.keys()))} keys; µs per interaction:")
        for name, seconds in spent.items():
            print(f"  {name:<10} {seconds / n * 1e6:7.2f}")
        print(f"  {'total':<10} {total / n * 1e6:7.2f}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
