"""Process-wide runtime settings shared by the worker, the serving processes and the
benchmark's faust floor (so that the floor keeps running under the worker's settings)."""

from __future__ import annotations

import gc

# Allocations between two young-generation collections (CPython's default is 700): a
# batch of 1,000 records allocates a few hundred thousand short-lived objects, and every
# 10th young collection scans the middle generation, every 100th the whole heap.
GC_YOUNG_THRESHOLD = 50_000


def tune_gc() -> None:
    """Garbage collection for a process that allocates many short-lived objects per record
    and keeps a large, long-lived heap (faust, aiokafka, the app): collect the young
    generation less often, and move what exists once the process has started (modules,
    the app, its services) out of the collector's sight with gc.freeze(), so a full
    collection does not walk it again and again. Values are mostly acyclic (bytes, tuples,
    small lists), so a reference cycle waits a little longer to be freed, nothing more.
    Measured on one in-process run of streamapp's ingest code (bench.ingest_micro): 28 ->
    20 µs per record in counting. The faust floor (bench/floor_app.py) calls it too, so the
    ratio to the floor stays honest; serving processes call it before they listen (a full
    collection of their heap is a pause in some request's service time)."""
    gc.collect()  # what is garbage now must not be frozen with the rest
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, old)
