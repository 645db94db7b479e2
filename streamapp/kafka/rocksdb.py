"""Small reads and writes over rocksdict that the worker's tables, the serving process and
the micro-benchmarks share."""

from __future__ import annotations

from collections.abc import Iterator

from rocksdict import Rdict, WriteBatch


def keys_with_prefix(db: Rdict, prefix: bytes) -> Iterator[bytes]:
    """The keys of `db` that start with `prefix`, in ascending order (one seek, then next)."""
    for key in db.keys(from_key=prefix):
        if not key.startswith(prefix):
            return
        yield key


def write_batch(db: Rdict, writes: dict[bytes, bytes | None]) -> None:
    """Puts and deletes (None) in one atomic RocksDB write batch."""
    batch = WriteBatch(raw_mode=True)
    for key, value in writes.items():
        if value is None:
            batch.delete(key)
        else:
            batch.put(key, value)
    db.write(batch)
