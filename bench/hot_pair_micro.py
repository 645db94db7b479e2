"""Micro-benchmark: what one touch of a hot pair costs the worker's counting (issue 21).

    python -m bench.hot_pair_micro                        # pairs of 0 .. 80,000 events
    python -m bench.hot_pair_micro --sizes 20000 --profile

Counts interactions of one pair into a real RocksDB database (rocksdict, as the worker's
tables) with the worker's own counting code (PartitionCount: apply, then finish and write
the batch), 2,000 at a time, until the pair has each size's events; then times a batch that
touches that pair once, and one that touches a new pair once (CPU time, best of 20). Event
times are spread over the last 20 days in no order, so most land in an existing time chunk,
as late events do: the worst case. Each batch decodes, encodes and writes the pair's value
(up to pair_state.INLINE event times and seen ids, 24 bytes a pair of them), checks one id
against every sealed seen-id chunk (kept across batches by the worker's SealedIds, as here)
and rewrites the time chunk a late event lands in. --profile prints where 200 touches at
the last size go. Figures: docs/performance.md, 7 December.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import shutil
import tempfile
import time

from bench.topk_micro import DAY_US, WEEK_S, WEIGHTS, Db
from streamapp.core.counting import PartitionCount
from streamapp.core.pair_state import US, Interaction, SealedIds


class Counter:
    """Batches counted into one database, each interaction with a new id."""

    def __init__(self, db: Db, now_us: int) -> None:
        self.db = db
        self.now_us = now_us
        self.n = 0
        self.sealed = SealedIds()  # the worker's, kept across its batches

    def batch(self, pairs: list[tuple[str, str]]) -> float:
        """Count one interaction of each of `pairs`; the CPU seconds it took."""
        items = []
        for user, seller in pairs:
            n = self.n
            on = self.now_us - (n * 7919 * US) % (20 * DAY_US)
            items.append(Interaction(f"i{n}", user, seller, n % 4, on, 0, n))
            self.n += 1
        count = PartitionCount(WEEK_S, WEEK_S, WEIGHTS, sealed=self.sealed)
        t0 = time.process_time()
        count.apply(items, self.db.read_one, self.now_us)
        while writes := count.finish(self.db.read_one, lambda p: list(self.db.scan(0, p)), 64):
            self.db.write(writes)
        return time.process_time() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="0,1000,5000,20000,80000", help="events of the hot pair")
    p.add_argument("--profile", action="store_true", help="cProfile 200 touches at the last size")
    args = p.parse_args()
    folder = tempfile.mkdtemp(prefix="hot-pair-micro-")
    try:
        counter = Counter(Db(f"{folder}/pairs"), int(time.time()) * US)
        hot_events = 0
        for size in (int(s) for s in args.sizes.split(",")):
            while hot_events < size:
                counter.batch([("hot", "s1")] * 2000)
                hot_events += 2000
            hot = min(counter.batch([("hot", "s1")]) for _ in range(20))
            hot_events += 20
            cold = min(counter.batch([(f"new{counter.n}", "s1")]) for _ in range(20))
            print(
                f"hot pair with {hot_events:,} events: one touch {hot * 1e6:,.0f} µs; "
                f"a new pair {cold * 1e6:,.0f} µs"
            )
        if args.profile:
            profile = cProfile.Profile()
            profile.enable()
            for _ in range(200):
                counter.batch([("hot", "s1")])
            profile.disable()
            pstats.Stats(profile).sort_stats("tottime").print_stats(15)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
