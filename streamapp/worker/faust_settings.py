"""The faust settings that decide what one event costs, in one place.

Both the worker (`streamapp.app`) and the benchmark's bare agent (`bench/floor_app.py`, the
"faust floor") build their App from `speed_options()`, so the floor the benchmark measures
runs under exactly the worker's consumer, stream and producer settings: a ratio of the two
then says how much the worker's own code costs, not how differently the two are tuned.
Each value is explained, with the measurement behind it, in docs/performance.md ("faust
settings"). No import of streamapp.app here: the benchmark must not start the worker's agents.
"""

from __future__ import annotations

from time import monotonic
from typing import Any

from faust.sensors import Monitor
from faust.types import TP, EventT, StreamT

from streamapp.core.config import Settings


class LeanMonitor(Monitor):
    """faust's Monitor without its per-event bookkeeping.

    The stock Monitor updates about ten counters and dicts, and stringifies the stream, for
    every message and event; nothing in streamapp reads them (its own counters are in
    streamapp.metrics). Kept: `stream_inbound_time`, which the consumer's periodic
    "stream is not processing" check reads, and everything that is not per event
    (commits, rebalances, web requests, end offsets).
    """

    def on_message_in(self, tp: TP, offset: int, message: Any) -> None:
        return None

    def on_stream_event_in(self, tp: TP, offset: int, stream: StreamT, event: EventT) -> None:
        self.stream_inbound_time[tp] = monotonic()
        return None

    def on_stream_event_out(
        self, tp: TP, offset: int, stream: StreamT, event: EventT, state: Any = None
    ) -> None:
        return None

    def on_message_out(self, tp: TP, offset: int, message: Any) -> None:
        return None

    def on_table_get(self, table: Any, key: Any) -> None:
        return None

    def on_table_set(self, table: Any, key: Any, value: Any) -> None:
        return None

    def on_table_del(self, table: Any, key: Any) -> None:
        return None

    def on_send_initiated(
        self, producer: Any, topic: str, message: Any, keysize: int, valsize: int
    ) -> None:
        return None

    def on_send_completed(self, producer: Any, state: Any, metadata: Any) -> None:
        return None


def speed_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for `faust.App(...)` that set the per-event cost.

    Values equal to faust's defaults are still spelled out, so that the benchmark's settings
    sweep (`python -m bench.floor_sweep`) has one visible place to override them from.
    Measured and left at faust's defaults (docs/performance.md, "faust settings"):
    broker_max_poll_records (500 and 10,000 both cost more), stream_buffer_maxsize (16,384
    and 131,072: within the noise, and a larger buffer holds more events in memory),
    stream_wait_empty (no steady-state effect; it only matters on rebalance and shutdown).
    Each call returns a new LeanMonitor: an App must not share its monitor with another.
    """
    return {
        "store": "rocksdb://",
        "topic_partitions": settings.partitions,
        "consumer_auto_offset_reset": "earliest",
        # faust's default (None): every record a fetch returned is handed over at once.
        "broker_max_poll_records": None,
        # Records per partition the stream may buffer ahead of the agent (faust's default).
        "stream_buffer_maxsize": 4096,
        # Per-partition fetch size (aiokafka's max_partition_fetch_bytes; faust's default is
        # 1 MiB): fewer, larger fetches. 4.5 % less CPU per event on the floor (3 rounds),
        # 11 % in the field notes; at most 8 x 4 MiB in flight per worker with 8 partitions.
        "consumer_max_fetch_size": 4 * 1024 * 1024,
        # Changelog, forwards and updates are many small messages: batch them (measured ~1.5x).
        "producer_linger": 0.02,
        "producer_max_batch_size": 256 * 1024,
        "web_tables_enabled": False,
        # faust's Monitor without per-event bookkeeping: 11-13 % less CPU per event on the
        # floor (sweeps of 2 and 3 rounds); nothing in streamapp reads the Monitor's stats.
        "monitor": LeanMonitor(),
    }
