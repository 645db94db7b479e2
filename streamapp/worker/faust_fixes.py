"""Two corrections to faust 0.15.3's offset commits, applied when the app is built.

1. faust commits, per partition, the end of the first run of consecutive acked offsets. Its
check that this run starts where the last commit ended accepts a run starting one offset
later (`min(acked) - committed > 1`) and skips the check when the committed offset is 0.
So a single record that faust read but never handed to a stream (it happens around the
start-up seek) was committed as if processed: a lost interaction, found by
tests/integration/test_batch_failure.py. Here a run must start exactly at the committed
offset, or at a gap faust itself recorded (compaction, transaction markers).

2. A stream skips, and acks, an event fetched before a rebalance (an older generation) or
while the flow is stopped for one. Acked, its offset counts as processed: if the partition
stays with this worker, the commit after the rebalance passes it while the copy read again
after the seek may not be processed yet, and a crash then loses it (the SIGKILL test lost
one of 24,000 that way). Only an event a stream took in (faust marks it `tracked`) is
acked here; the skipped one is read again after the seek and acked then.
"""

from __future__ import annotations

import logging
from typing import Any

from faust.transport.consumer import Consumer

log = logging.getLogger(__name__)

_original_new_offset = Consumer._new_offset


def _new_offset(self: Any, tp: Any) -> int | None:
    acked = self._acked[tp]
    committed = self._committed_offset[tp]
    if acked and committed is not None:
        head = min(acked)
        if head > committed and not self._gap[tp].overlaps(committed):
            return None  # the record at `committed` was not processed yet
    return _original_new_offset(self, tp)


_original_ack = Consumer.ack


_skipped = [0]


def _ack(self: Any, message: Any) -> bool:
    if not message.tracked:  # skipped by the stream, never processed: not committable
        _skipped[0] += 1
        if _skipped[0] == 1:
            log.info(
                "faust skipped %s[%d]@%d around a rebalance; it is not committed but read "
                "again after the seek",
                message.topic,
                message.partition,
                message.offset,
            )
        return False
    return _original_ack(self, message)


def stuck(consumer: Any) -> dict[Any, int]:
    """Partitions whose commit cannot advance: later offsets are processed, the one at the
    committed offset never was (faust read it but did not hand it to the stream, e.g. a
    record prefetched before a seek overtook it, and the older ones were then dropped as
    already read). {tp: committed offset}; a seek there reads the hole again."""
    out = {}
    for tp, acked in list(consumer._acked.items()):
        committed = consumer._committed_offset.get(tp)
        if (
            acked
            and committed is not None
            and min(acked) > committed
            and not consumer._gap[tp].overlaps(committed)
        ):
            out[tp] = committed
    return out


def apply() -> None:
    Consumer._new_offset = _new_offset  # type: ignore[method-assign]
    Consumer.ack = _ack  # type: ignore[method-assign]


# -- Reads of faust's internals --------------------------------------------------------------
# Every other read of faust 0.15.3's private or internal state, each in one small function,
# so that a faust upgrade has one file to check (tests/unit/test_state_store.py fails when
# the store's names change).


def read_offset(consumer: Any, tp: Any) -> int | None:
    """The last offset faust has read of `tp`, None before the first (faust 0.15.3:
    Consumer._read_offset; there is no public accessor)."""
    return consumer._read_offset.get(tp)


def partition_db(store: Any, partition: int) -> Any:
    """A table's RocksDB database of `partition`, opened if it is not open yet (faust
    0.15.3: rocksdb.Store._db_for_partition)."""
    return store._db_for_partition(partition)


def open_partition_db(store: Any, partition: int) -> Any | None:
    """A table's RocksDB database of `partition` if this worker has it open (active or
    standby), else None (faust 0.15.3: rocksdb.Store._dbs)."""
    return store._dbs.get(partition)


def partition_path(store: Any, partition: int) -> Any:
    """Where a table's RocksDB database of `partition` is (faust 0.15.3:
    rocksdb.Store.partition_path, an internal method)."""
    return store.partition_path(partition)


def set_persisted_offset(store: Any, tp: Any, offset: int) -> None:
    """Record that the changelog partition `tp` holds everything up to `offset`, as faust's
    own changelog bookkeeping does (faust 0.15.3: rocksdb.Store.set_persisted_offset, an
    internal method); recovery resumes after it."""
    store.set_persisted_offset(tp, offset)
