"""The pair table's RocksDB options hold for a database that already exists: the worker's
partition databases after a restart (faust_fixes 18.) and a serving process's secondaries.
rocksdict applies a column family's table options (block cache, bloom filters) only when it
creates it; these tests read what RocksDB itself reports for a database opened again."""

from __future__ import annotations

import re
from pathlib import Path

from rocksdict import AccessType, Cache, Options, Rdict

from streamapp.kafka.rocksdb import open_db, table_options
from streamapp.serving.secondaries import Secondaries
from streamapp.worker import faust_fixes
from tests.unit.faust_tables import rocksdb_table

faust_fixes.apply()

MIB = 1024 * 1024


def written(path: Path, n: int = 3_000) -> None:
    """A database with `n` keys in a table file with bloom filters (flushed), closed: as the
    worker writes them."""
    options = Options(raw_mode=True)
    options.create_if_missing(True)
    table_options(options, Cache(8 * MIB))
    db = open_db(str(path), options)
    for i in range(n):
        db[f"u{i}\x1fs{i}".encode()] = b"v" * 40
    db.flush()
    db.close()


def counted_options(cache_mib: int) -> Options:
    """The pair table's table options with RocksDB's statistics on."""
    options = Options(raw_mode=True)
    options.enable_statistics()
    table_options(options, Cache(cache_mib * MIB))
    return options


def filtered_reads(options: Options, db: Rdict) -> int:
    """Reads of 1,000 missing keys that a bloom filter answered (RocksDB's own count)."""
    for i in range(1_000):
        assert db.get(f"u{i}\x1fmissing".encode()) is None
    stats = options.get_statistics() or ""
    found = re.search(r"rocksdb\.bloom\.filter\.useful COUNT : (\d+)", stats)
    assert found, stats[:400]
    return int(found.group(1))


def test_open_db_reads_an_existing_database_with_the_options_it_is_given(tmp_path: Path) -> None:
    written(tmp_path / "db")
    options = counted_options(24)
    db = open_db(str(tmp_path / "db"), options)
    try:
        assert db.property_int_value("rocksdb.block-cache-capacity") == 24 * MIB
        assert filtered_reads(options, db) >= 950
    finally:
        db.close()
    # What rocksdict does without naming the column family (0.3.29): the options' table
    # settings are dropped. If this starts to fail, rocksdict no longer needs open_db.
    options = counted_options(24)
    db = Rdict(str(tmp_path / "db"), options)
    try:
        assert db.property_int_value("rocksdb.block-cache-capacity") != 24 * MIB
        assert filtered_reads(options, db) == 0
    finally:
        db.close()


def test_a_workers_partition_database_opened_again_keeps_its_table_options(
    tmp_path: Path,
) -> None:
    store = rocksdb_table(tmp_path, "options-test").data
    capacity = store.rocksdb_options.block_cache_size
    assert capacity != 8 * MIB  # rocksdict's own default, which a reopen used to get
    db = store._db_for_partition(1)
    for i in range(2_000):
        db[f"k{i}".encode()] = b"v"
    db.flush()
    db.close()
    store._dbs.clear()  # as a restart: faust opens the database again
    db = store._db_for_partition(1)
    assert db.get(b"k7") == b"v"
    assert db.property_int_value("rocksdb.block-cache-capacity") == capacity
    # RocksDB records the options in effect in the database's newest OPTIONS file.
    newest = max(Path(store.partition_path(1)).glob("OPTIONS-*"))
    text = newest.read_text()
    assert "filter_policy=bloomfilter" in text
    assert "memtable_whole_key_filtering=true" in text


def test_a_serving_processs_secondaries_share_its_cache_and_read_the_filters(
    tmp_path: Path,
) -> None:
    written(tmp_path / "pairs-0.db")
    table = Secondaries("pairs", tmp_path / "scratch", Cache(40 * MIB))
    try:
        table.follow({0: str(tmp_path / "pairs-0.db")})
        assert table.read(0, b"u5\x1fs5") == b"v" * 40
        db = table.dbs[0]
        assert db.property_int_value("rocksdb.block-cache-capacity") == 40 * MIB
    finally:
        table.close()
    options = Options(raw_mode=True)
    options.set_max_open_files(-1)
    options.enable_statistics()
    table_options(options, Cache(8 * MIB))
    db = open_db(str(tmp_path / "pairs-0.db"), options, AccessType.secondary(str(tmp_path / "s2")))
    try:
        assert filtered_reads(options, db) >= 950  # as open_secondary opens them
    finally:
        db.close()
