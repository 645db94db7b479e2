"""StateStore leans on faust's private RocksDB store names; these tests fail loudly if a
faust upgrade changes them, and prove that what we write is what faust's recovery and
standby replicas write from the changelog (same bytes, same partition database)."""

from __future__ import annotations

from pathlib import Path

import faust
import pytest
from faust.types import TP

from streamapp.http.errors import NOT_READY_HEADER, HTTPError
from streamapp.worker.state_store import StateStore
from tests.unit.faust_tables import changelog_event, rocksdb_table


def make_table(tmp_path: Path) -> faust.Table:
    return rocksdb_table(tmp_path, "state-store-test")


def test_private_names_still_exist(tmp_path: Path) -> None:
    store = make_table(tmp_path).data
    for name in ("_db_for_partition", "_dbs", "set_persisted_offset", "persisted_offset"):
        assert hasattr(store, name), f"faust's RocksDB store lost {name}: update faust_fixes.py"


def test_our_writes_equal_what_recovery_writes(tmp_path: Path) -> None:
    table = make_table(tmp_path)
    ours = StateStore(table)
    ours.write(2, {b"k1": b"v1", b"k2": b"\x00\xff", b"gone": b"x"})
    ours.write(2, {b"gone": None})
    assert ours.get(2, b"k1") == b"v1" and ours.get(2, b"gone") is None
    assert ours.get(1, b"k1") is None  # another partition's database
    # Counting reads through the database's own get (StateStore.db), one look-up per slice.
    assert ours.db(2).get(b"k1") == b"v1" and ours.db(2).get(b"gone") is None
    assert ours.db(1).get(b"k1") is None
    assert ours.read_many(2, [b"k1", b"k2", b"nope"]) == [b"v1", b"\x00\xff", None]

    # faust's recovery applies changelog records as raw bytes to the partition's database:
    # the records we send (same key and value bytes) rebuild exactly our state.
    changelog = ours.changelog
    table.data.apply_changelog_batch(
        [
            changelog_event(changelog, 3, 10, b"k1", b"v1"),
            changelog_event(changelog, 3, 11, b"k2", b"\x00\xff"),
        ],
        to_key=lambda k: k,
        to_value=lambda v: v,
    )
    assert ours.read_many(3, [b"k1", b"k2"]) == [b"v1", b"\x00\xff"]
    assert table.data.persisted_offset(TP(changelog, 3)) == 11

    ours.persisted(2, 41)
    assert table.data.persisted_offset(TP(changelog, 2)) == 41


def test_a_lookup_of_a_partition_not_held_here_is_refused_not_read_as_empty(
    tmp_path: Path,
) -> None:
    """A request handler's read of a partition whose database is not open (moved away by a
    rebalance, closed by a stop) is a 503 a forwarder may answer from a replica, never
    'no data': that answered 0 interactions for pairs that had some."""
    ours = StateStore(make_table(tmp_path))
    ours.write(2, {b"k1": b"v1"})
    assert ours.read(2, b"k1") == b"v1" and list(ours.scan(2, b"k")) == [b"k1"]
    for read in (
        lambda: ours.read(1, b"k1"),
        lambda: ours.read_many(1, [b"k1"]),
        lambda: ours.scan(1, b"k"),
    ):
        with pytest.raises(HTTPError) as caught:
            read()
        assert caught.value.status == 503
        assert NOT_READY_HEADER in caught.value.headers
        assert "partition 1" in caught.value.message
    ours.open(1)  # a standby answered from is opened first (ownership.holds_replica)
    assert ours.read(1, b"k1") is None and ours.read_many(1, [b"k1"]) == [None]
