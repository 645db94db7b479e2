"""A real faust table on RocksDB (rocksdict) in a test's directory, and changelog events as
faust's recovery hands them to a table: for the tests of what streamapp writes beside faust."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import faust
from faust.types import TP


def rocksdb_table(tmp_path: Path, app_id: str) -> faust.Table:
    """Table "t" of a new app (never started) with 4 partitions; `table.app` is its app."""
    app = faust.App(app_id, store="rocksdb://", datadir=str(tmp_path))
    return app.Table(
        "t",
        default=None,
        key_type=bytes,
        value_type=bytes,
        partitions=4,
        options={"driver": "rocksdict"},
    )


def changelog_event(
    topic: str, partition: int, offset: int, key: bytes, value: bytes | None
) -> Any:
    message = SimpleNamespace(
        tp=TP(topic, partition), partition=partition, offset=offset, key=key, value=value
    )
    return SimpleNamespace(message=message)
