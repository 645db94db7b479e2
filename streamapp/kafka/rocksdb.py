"""Opening, reading and writing the pair table's RocksDB databases over rocksdict: what the
worker's tables, the serving process and the micro-benchmarks share."""

from __future__ import annotations

from collections.abc import Iterator

from rocksdict import AccessType, BlockBasedOptions, Cache, Options, Rdict, WriteBatch

# Bits a key of the bloom filters written into table files (faust's default is 3: about a
# fifth of the reads of a missing key still search a file that does not hold it).
BLOOM_BITS_PER_KEY = 10


def open_db(path: str, options: Options, access_type: AccessType | None = None) -> Rdict:
    """A database opened with `options`, its table options (block cache, bloom filters)
    included. rocksdict (0.3.29) applies the options passed to a column family only when
    it creates it: an existing database's default column family is opened with the
    options of its OPTIONS file, whose block cache is a new 8 MiB one and whose filter
    policy is none, so after a restart, and in every serving process, each read of a
    missing key searched every table file (10 µs against 0.6 with the filters,
    bench/reopen_micro.py; quix-streams hit the same: quixio/quix-streams#1136). Naming the
    default column family with the same options applies them."""
    return Rdict(
        path,
        options,
        column_families={"default": options},
        access_type=access_type or AccessType.read_write(),
    )


def memtable_filters(options: Options) -> None:
    """Bloom filters in the memtables too: a read of a key that is not there (a pair seen
    for the first time) is answered without searching the memtable. The worker's own
    databases only: a serving process builds its memtables from the worker's log at each
    catch-up, and with these filters its bulk lookups' p99 rose by about a quarter
    (`bench.run --stages ingest,latency`, five runs in turns)."""
    options.set_memtable_prefix_bloom_ratio(0.1)
    options.set_memtable_whole_key_filtering(True)


def table_options(options: Options, cache: Cache) -> None:
    """The block cache `cache`, and bloom filters: written into new table files, and read
    from existing ones (a reader uses a file's filters only when its own table options name
    a filter policy)."""
    table = BlockBasedOptions()
    table.set_block_cache(cache)
    table.set_bloom_filter(BLOOM_BITS_PER_KEY, False)
    options.set_block_based_table_factory(table)


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
