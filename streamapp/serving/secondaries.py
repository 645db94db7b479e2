"""The worker's RocksDB databases, opened as RocksDB secondary instances (read-only) that
catch up with the worker's writes: its tables' partition databases and its profile
catalogs. A catch-up costs a millisecond or more even when nothing changed, so one is done
only where the files show a write (WriteWatch)."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path

from rocksdict import AccessType, Cache, Options, Rdict

from streamapp.kafka.profile_catalog import ProfileCatalog
from streamapp.kafka.rocksdb import keys_with_prefix, open_db, table_options

log = logging.getLogger("streamapp.serve")


class WriteWatch:
    """Whether the worker wrote to a database since the last look, from two stats: the
    directory (files created or deleted: a new write-ahead log, a flush, a compaction) and
    the newest write-ahead log (appended to by every write). A catch-up costs a millisecond
    or more even when nothing changed; these cost microseconds."""

    def __init__(self) -> None:
        self.seen: dict[str, tuple[int, str, int]] = {}

    def changed(self, path: str) -> bool:
        """True when written since the last call (which then counts as seen)."""
        now = self._look(path)
        if now is None:
            self.seen.pop(path, None)
            return True  # let the catch-up find out what happened
        if now == self.seen.get(path):
            return False
        self.seen[path] = now
        return True

    def pending(self, path: str) -> bool:
        """True when written since the last `changed` (which still sees it)."""
        now = self._look(path)
        return now is None or now != self.seen.get(path)

    def _look(self, path: str) -> tuple[int, str, int] | None:
        try:
            folder = os.stat(path).st_mtime_ns
            before = self.seen.get(path)
            if before is None or before[0] != folder:
                logs = sorted(e.name for e in os.scandir(path) if e.name.endswith(".log"))
                wal = os.path.join(path, logs[-1]) if logs else ""
            else:
                wal = before[1]
            size = os.stat(wal).st_size if wal else 0
        except OSError:
            return None
        return (folder, wal, size)

    def forget(self, path: str) -> None:
        self.seen.pop(path, None)


def open_secondary(primary: str, scratch: Path, cache: Cache | None = None) -> Rdict:
    scratch.parent.mkdir(parents=True, exist_ok=True)
    options = Options(raw_mode=True)
    options.set_max_open_files(-1)  # required of a secondary: the primary deletes files
    table_options(options, cache if cache is not None else Cache(8 * 1024 * 1024))
    return open_db(primary, options, AccessType.secondary(str(scratch)))


class Secondaries:
    """One table's partition databases of the worker, as secondaries (a PartitionReader)."""

    def __init__(self, name: str, scratch: Path, cache: Cache | None = None) -> None:
        self.name = name
        self.scratch = scratch
        self.cache = cache
        self.dbs: dict[int, Rdict] = {}
        self.paths: dict[int, str] = {}
        self.watch = WriteWatch()

    def read(self, partition: int, key: bytes) -> bytes | None:
        db = self.dbs.get(partition)
        return None if db is None else db.get(key)

    def read_many(self, partition: int, keys: list[bytes]) -> list[bytes | None]:
        db = self.dbs.get(partition)
        return [None] * len(keys) if db is None else db.get(keys)

    def scan(self, partition: int, prefix: bytes) -> Iterator[bytes]:
        db = self.dbs.get(partition)
        return iter(()) if db is None else keys_with_prefix(db, prefix)

    def follow(self, paths: dict[int, str]) -> None:
        """Open what the worker now owns, close what it no longer does."""
        for partition in list(self.dbs):
            if self.paths.get(partition) != paths.get(partition):
                self._close(partition)
        for partition, path in paths.items():
            if partition not in self.dbs and Path(path, "CURRENT").exists():
                try:
                    self.dbs[partition] = open_secondary(
                        path, self.scratch / f"{self.name}-{partition}", self.cache
                    )
                    self.paths[partition] = path
                except Exception as exc:  # not there yet: the worker answers for it
                    log.info("%s[%d]: not opened yet (%s)", self.name, partition, exc)

    def pending(self) -> list[int]:
        """Partitions written to since their last catch-up."""
        return [p for p in list(self.dbs) if self.watch.pending(self.paths[p])]

    def catch_up(self) -> None:
        for partition in list(self.dbs):
            self.catch_up_one(partition)

    def catch_up_one(self, partition: int) -> bool:
        """Catch up with one partition's writes, if there were any; True if it did."""
        db = self.dbs.get(partition)
        if db is None or not self.watch.changed(self.paths[partition]):
            return False
        try:
            db.try_catch_up_with_primary()
        except Exception as exc:  # the worker replaced it (a reset): open it again
            log.info("%s[%d]: reopening (%s)", self.name, partition, exc)
            self._close(partition)
        return True

    def _close(self, partition: int) -> None:
        db = self.dbs.pop(partition, None)
        path = self.paths.pop(partition, None)
        if path is not None:
            self.watch.forget(path)
        if db is not None:
            with contextlib.suppress(Exception):
                db.close()

    def close(self) -> None:
        for partition in list(self.dbs):
            self._close(partition)


class CatalogReader:
    """A worker's profile catalog, read as a secondary; decoded categories are cached until
    the next catch-up brings a change."""

    def __init__(self, catalog: ProfileCatalog, scratch: Path) -> None:
        self.catalog = catalog
        self.scratch = scratch
        self.seen = -1
        self.path = ""
        self.watch = WriteWatch()

    def categories(self, entity_id: str) -> frozenset[str]:
        return self.catalog.categories(entity_id) if self.catalog.db is not None else frozenset()

    def follow(self, path: str | None) -> None:
        if self.catalog.db is None and path and Path(path, "CURRENT").exists():
            with contextlib.suppress(Exception):
                self.catalog.db = open_secondary(path, self.scratch / self.catalog.source)
                self.path = path

    def catch_up(self) -> None:
        db = self.catalog.db
        if db is None or not self.watch.changed(self.path):
            return
        try:
            db.try_catch_up_with_primary()
        except Exception:
            self.close()
            return
        sequence = db.latest_sequence_number()
        if sequence != self.seen:
            self.seen = sequence
            self.catalog.forget_cached()

    def close(self) -> None:
        if self.catalog.db is not None:
            with contextlib.suppress(Exception):
                self.catalog.db.close()
            self.catalog.db = None
            self.seen = -1
            self.watch.forget(self.path)
