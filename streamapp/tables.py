"""State, in RocksDB (rocksdict) with a Kafka changelog behind every table.

- pair_state:   "<user>\\x1f<seller>" -> PairState JSON   (partition of the user)
- user_sellers: user id -> [seller id, ...]               (partition of the user; top-k index)
- users:        user id -> User JSON                      (partition of the user)
- seller_catalog: seller id -> Seller JSON, every worker's full copy (seller_catalog.py)
"""

from __future__ import annotations

from typing import Any

from aiokafka.partitioner import murmur2

from streamapp.app import app, settings
from streamapp.seller_catalog import SellerCatalog

PAIR_SEPARATOR = "\x1f"  # ids may contain '-', never control characters (models.EntityId)


def lookup(table: Any, key: str) -> Any:
    """table.get(key) with one store read instead of two (faust's Mapping.get asks
    `key in store` and then reads it again)."""
    return table.data.get(key)


def home_partition(user_id: str) -> int:
    """The partition of a user's data: where a producer keying by user id puts it (Kafka's
    default partitioner, murmur2), so the users topic and the re-keyed interactions agree."""
    return (murmur2(user_id.encode()) & 0x7FFFFFFF) % settings.partitions


def read_user_data(table: Any, key: str, partition: int) -> Any:
    """A read outside stream iteration (HTTP) of a key that lives in the user's `partition`.

    faust's store would try every partition database this worker holds (key_may_exist, then
    get), which was 37% of a bulk lookup's CPU; we know the partition, so read just that one.
    Falls back to the general search when that database is not open here."""
    store = table.data
    db = store._dbs.get(partition)
    if db is None:
        return store.get(key)
    raw = db.get(store._encode_key(key))
    return None if raw is None else store._decode_value(raw)


def pair_key(user_id: str, seller_id: str) -> str:
    return f"{user_id}{PAIR_SEPARATOR}{seller_id}"


def _options(cache_mb: int) -> dict[str, Any]:
    # faust's defaults (2 GiB cache, 3 x 64 MB memtables) are per partition and table.
    return {
        "driver": "rocksdict",
        "block_cache_size": cache_mb * 1024 * 1024,
        "write_buffer_size": settings.rocksdb_write_buffer_mb * 1024 * 1024,
        "max_write_buffer_number": 2,
    }


def _table(name: str, cache_mb: int, *, global_: bool = False):
    factory = app.GlobalTable if global_ else app.Table
    return factory(
        name,
        default=None,
        partitions=settings.partitions,
        options=_options(cache_mb),
    )


pair_state = _table("pair_state", settings.rocksdb_cache_mb)
user_sellers = _table("user_sellers", max(1, settings.rocksdb_cache_mb // 4))
users = _table("users", max(1, settings.rocksdb_cache_mb // 4))
seller_catalog = SellerCatalog(settings)
