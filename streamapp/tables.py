"""State, in RocksDB (rocksdict) with a compacted Kafka changelog behind every table.

Every table lives in the partition of the user it belongs to (`home_partition`):
- pairs:         "<user>\\x1f<seller>" -> PairState bytes (+ its spilled chunks, pair_state.py)
- user_sellers:  user id -> the user's sellers, the candidates of top-k (seller_index.py)
- user_profiles: user id -> User JSON
- seller_catalog: seller id -> Seller JSON, every worker's full copy (seller_catalog.py)

Keys and values are bytes of our own encoding, written a batch at a time through
state_store.StateStore (not faust's Table API, see there).
"""

from __future__ import annotations

from typing import Any

import orjson

from streamapp.app import app, settings
from streamapp.counting import pair_key
from streamapp.outbox import key_partition
from streamapp.seller_catalog import SellerCatalog
from streamapp.state_store import StateStore

__all__ = ["home_partition", "pair_key", "pairs", "profile", "seller_catalog", "user_sellers"]


_homes: dict[str, int] = {}  # murmur2 is pure Python: remember recent users' partitions


def home_partition(user_id: str) -> int:
    """The partition of a user's data: where a producer keying by user id puts it (Kafka's
    default partitioner, murmur2), so direct records and re-keyed ones agree."""
    found = _homes.get(user_id)
    if found is None:
        if len(_homes) >= 500_000:
            _homes.clear()
        found = _homes[user_id] = key_partition(user_id.encode(), settings.partitions)
    return found


def _options(cache_mb: int) -> dict[str, Any]:
    # faust's defaults (2 GiB cache, 3 x 64 MB memtables) are per partition and table.
    return {
        "driver": "rocksdict",
        "block_cache_size": cache_mb * 1024 * 1024,
        "write_buffer_size": settings.rocksdb_write_buffer_mb * 1024 * 1024,
        "max_write_buffer_number": 2,
    }


def _table(name: str, cache_mb: int) -> StateStore:
    table = app.Table(
        name,
        default=None,
        key_type=bytes,
        value_type=bytes,
        partitions=settings.partitions,
        options=_options(cache_mb),
    )
    return StateStore(table)


# Named apart from the JSON-valued tables of earlier versions, whose changelogs this
# encoding cannot read.
pairs = _table("pairs", settings.rocksdb_cache_mb)
user_sellers = _table("user_sellers_v2", max(1, settings.rocksdb_cache_mb // 4))
user_profiles = _table("user_profiles", max(1, settings.rocksdb_cache_mb // 4))
seller_catalog = SellerCatalog(settings)


def profile(user_id: str, partition: int | None = None) -> dict[str, Any] | None:
    """A user's profile from a request handler (None when unknown or not here)."""
    raw = user_profiles.read(
        home_partition(user_id) if partition is None else partition, user_id.encode()
    )
    return orjson.loads(raw) if raw else None
