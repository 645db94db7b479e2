"""What the worker counts about itself, exposed at /metrics (Prometheus text format)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

counted = Counter("streamapp_interactions_counted", "Interactions counted into pair state")
duplicates = Counter(
    "streamapp_interactions_duplicate", "Interactions skipped: id seen within the dedupe horizon"
)
replays = Counter(
    "streamapp_interactions_replayed", "Source records applied before (redelivery after a crash)"
)
dead_letters = Counter(
    "streamapp_dead_letters", "Source records sent to a dead-letter topic", ["source"]
)
updates = Counter("streamapp_affinity_updates", "Feature vectors published to affinity-updates")
profiles = Counter("streamapp_profile_changes", "Profile upserts and deletes", ["source", "op"])
consumer_lag = Gauge(
    "streamapp_consumer_lag", "Records behind the high watermark", ["topic", "partition"]
)
ready = Gauge("streamapp_ready", "1 when recovery has finished and lookups are served")
recovering = Gauge("streamapp_recovering", "1 while tables are being restored")
request_seconds = Histogram(
    "streamapp_http_request_duration_seconds",
    "HTTP request latency by endpoint",
    ["endpoint", "status"],
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 2.5),
)
loop_stall_seconds = Histogram(
    "streamapp_event_loop_stall_seconds",
    "How late the event loop ran a 10 ms timer: the longest any lookup waited behind work",
    buckets=(0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
)
loop_stall_max = Gauge("streamapp_event_loop_stall_max_seconds", "Longest stall seen so far")
lookups_refused = Counter(
    "streamapp_lookups_refused",
    "Lookups answered 503: they had used their share of the loop while ingest waited",
)
answers_not_live = Counter(
    "streamapp_lookup_answers_not_live",
    "Lookups answered from state that was not moving: a standby (replica) or the state held "
    "when a rebalance began (rebalancing-owner)",
    ["source"],
)
batch_step_seconds = Histogram(
    "streamapp_batch_step_seconds",
    "A batch's way through the worker, for its first record: record time to fetched, fetched "
    "to the stream, stream to taken into a batch, taken to state written, written to output "
    "confirmed by the broker, and record time to confirmed (end to end)",
    ["step"],
    buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 30.0),
)
batch_events = Histogram(
    "streamapp_batch_events",
    "Records per processing batch, per source stream: a backlog comes in whole batches "
    "(STREAMAPP_BATCH_MAX), a trickle in small ones (every batch has a fixed cost)",
    ["stream"],
    buckets=(1, 4, 16, 64, 128, 256, 512, 1024, 2048, 4096, 16384),
)
rereads = Counter(
    "streamapp_partition_rereads",
    "Source partitions read again: offsets faust skipped, or a hole at the committed offset",
    ["why"],
)
deleted_unread = Counter(
    "streamapp_records_deleted_unread",
    "Source records the topic's retention deleted before this group read them (a group "
    "offline longer than the retention): never counted, committed past",
    ["topic"],
)
stalls = Counter(
    "streamapp_partition_stalls",
    "Source partitions found behind without progress for STREAMAPP_STALL_TIMEOUT",
    ["topic"],
)
rebalances = Counter("streamapp_rebalances", "Consumer group rebalances this worker took part in")
rebalance_seconds = Histogram(
    "streamapp_rebalance_duration_seconds",
    "From a rebalance's start to this worker's streams running again (ingest and lookups "
    "pause meanwhile)",
    buckets=(0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0),
)
commit_lag = Gauge(
    "streamapp_commit_lag",
    "Records between the group's committed offset and the partition's end (last stable offset)",
    ["topic", "partition"],
)
restore_remaining = Gauge(
    "streamapp_restore_records_remaining",
    "Changelog records still to read to restore a table partition of this worker (the bulk "
    "rebuild, then faust's recovery); no series when nothing is being restored",
    ["topic", "partition"],
)


class SeriesSet:
    """A labelled gauge whose series are exactly the last values given: a series not given
    again is removed (a partition that moved away is another worker's to report; a stale
    series here would be counted twice in a sum over workers)."""

    def __init__(self, gauge: Gauge) -> None:
        self.gauge = gauge
        self.series: set[tuple[str, ...]] = set()

    def replace(self, values: dict[tuple[str, ...], float]) -> None:
        for labels, number in values.items():
            self.gauge.labels(*labels).set(number)
        for labels in self.series - values.keys():
            self.gauge.remove(*labels)
        self.series = set(values)


def value(metric: Counter | Gauge) -> float:
    """The current value of an unlabelled metric (or one child of a labelled one). The one
    read of prometheus_client's private `_value` (0.20+): it has no public getter besides
    collect(), which builds every sample."""
    return float(metric._value.get())
