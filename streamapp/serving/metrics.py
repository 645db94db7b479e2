"""A serving process's own /metrics: its request latency, how far behind its worker it may
answer, and how often it catches up. A registry of its own, so that it never exports the
worker's ingest counters (zeros here) under the same names as the worker does."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, ProcessCollector

from streamapp import metrics as worker_metrics

REGISTRY = CollectorRegistry()
# The lookup endpoints' histogram (lookup_api's middleware observes it in either process).
REGISTRY.register(worker_metrics.request_seconds)
ProcessCollector(registry=REGISTRY)

ready = Gauge(
    "streamapp_serve_ready",
    "1 when this serving process answers lookups (its worker ready and followed)",
    registry=REGISTRY,
)
catch_up_lag = Gauge(
    "streamapp_serve_catch_up_lag_seconds",
    "Of the databases the worker wrote to since this process last caught up with them, the "
    "oldest last catch-up: how far behind the worker an answer may be (0: all caught up)",
    ["table"],
    registry=REGISTRY,
)
catch_ups = Counter(
    "streamapp_serve_catch_ups",
    "Catch-ups with the worker's writes, in the background or on a lookup's demand",
    ["trigger"],
    registry=REGISTRY,
)
followed = Gauge(
    "streamapp_serve_partitions",
    "Partition databases this process follows (the worker's active partitions)",
    registry=REGISTRY,
)
