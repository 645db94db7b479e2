"""Direct access to one faust table's RocksDB partition databases (through the accessors
at the end of faust_fixes.py, the one place that touches faust's private store names;
tests/unit/test_state_store.py fails loudly if a faust upgrade changes them).

Why not the Table API: `table[key] = value` needs faust's "current event" (there is none
for a batch), writes and changelogs one record at a time, and queues changelog
records in faust's producer buffer, whose flush gives up after 0.1 s. Here a batch writes
each partition's keys with one RocksDB WriteBatch, the Outbox sends the changelog records
to that same partition, and once the broker confirmed them their offset is recorded the
way faust's own changelog callback does, so recovery and standbys work unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from faust.types import TP

from streamapp.http.errors import not_ready
from streamapp.kafka.rocksdb import keys_with_prefix, write_batch
from streamapp.worker import faust_fixes

Writes = dict[bytes, bytes | None]


class StateStore:
    def __init__(self, table: Any) -> None:
        self.table = table

    @property
    def changelog(self) -> str:
        return self.table.changelog_topic.get_topic_name()

    @property
    def _store(self) -> Any:
        return self.table.data

    def db(self, partition: int) -> Any:
        """`partition`'s database (opened if needed), for many reads in a row: its `get`
        takes a key (or a list of keys). Valid until the next await (a rebalance may close
        it); a batch asks again for every slice."""
        return faust_fixes.partition_db(self._store, partition)

    def get(self, partition: int, key: bytes) -> bytes | None:
        """The value in `partition`'s database (opened if needed)."""
        return faust_fixes.partition_db(self._store, partition).get(key)

    def _held(self, partition: int) -> Any:
        """A request handler's database of `partition`: only one this worker has open
        (active, or a standby it answers from). One that is not open is not "no data": a
        rebalance moved it away or a stop closed it, and reading it as empty answered
        0 interactions for pairs that had some. The lookup gets a 503 a forwarder may
        answer from a replica instead."""
        db = faust_fixes.open_partition_db(self._store, partition)
        if db is None:
            raise not_ready(f"partition {partition} of {self.table.name} is not held here now")
        return db

    def read(self, partition: int, key: bytes) -> bytes | None:
        """A read from a request handler (see _held)."""
        return self._held(partition).get(key)

    def read_many(self, partition: int, keys: list[bytes]) -> list[bytes | None]:
        """One batched RocksDB read (multi-get) of several keys of a partition (see _held)."""
        return self._held(partition).get(keys)

    def scan(self, partition: int, prefix: bytes) -> Iterator[bytes]:
        """The keys that start with `prefix`, in order (see _held)."""
        return keys_with_prefix(self._held(partition), prefix)

    def keys(self, partition: int, prefix: bytes) -> list[bytes]:
        """The keys that start with `prefix`, in order, from `partition`'s database (opened
        if needed: ingest's read, like get())."""
        return list(keys_with_prefix(faust_fixes.partition_db(self._store, partition), prefix))

    def open(self, partition: int) -> None:
        """Open `partition`'s database if it is not open yet (a read of one that is not
        open finds nothing)."""
        faust_fixes.partition_db(self._store, partition)

    def path(self, partition: int) -> str:
        """Where `partition`'s database is (serving processes open it as a secondary)."""
        return str(faust_fixes.partition_path(self._store, partition))

    def write(self, partition: int, writes: Writes) -> None:
        if writes:
            write_batch(faust_fixes.partition_db(self._store, partition), writes)

    def persisted(self, partition: int, offset: int) -> None:
        """Record that the changelog holds everything up to `offset` (faust's own
        bookkeeping: recovery resumes after it)."""
        faust_fixes.set_persisted_offset(self._store, TP(self.changelog, partition), offset)
