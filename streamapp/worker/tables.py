"""State, in RocksDB (rocksdict) with a compacted Kafka changelog behind every table.

Every table lives in the partition of the user it belongs to (`home_partition`):
- pairs: "<user>\\x1f<seller>" -> PairState bytes (+ its spilled chunks, pair_state.py), and
  each user's sellers in score order (seller_ranking.py). The key range "<user>\\x1f" lists
  a user's sellers (counting.user_sellers); the seller index of state format 2
  (user_sellers_v2) is only declared, for rolling upgrades (core/state_format.py).
Profiles are not tables: every worker keeps a full copy of the users and of the sellers
(profile_catalog.py): user_catalog, seller_catalog.

Keys and values are bytes of our own encoding, written a batch at a time through
state_store.StateStore (not faust's Table API, see there).
"""

from __future__ import annotations

from typing import Any

from streamapp.core.counting import pair_key
from streamapp.core.partitioning import HomePartitions
from streamapp.kafka.profile_catalog import profile_catalogs
from streamapp.kafka.rocksdb import BLOOM_BITS_PER_KEY
from streamapp.worker.app import app, settings
from streamapp.worker.state_store import StateStore

__all__ = ["home_partition", "pair_key", "pairs", "seller_catalog", "user_catalog"]


# The partition of a user's data: where a producer keying by user id puts it (Kafka's
# default partitioner, murmur2), so direct records and re-keyed ones agree.
home_partition = HomePartitions(settings.partitions)


def _options(cache_mb: int) -> dict[str, Any]:
    # faust's defaults (2 GiB cache, 3 x 64 MB memtables) are per partition and table.
    return {
        "driver": "rocksdict",
        "block_cache_size": cache_mb * 1024 * 1024,
        "write_buffer_size": settings.rocksdb_write_buffer_mb * 1024 * 1024,
        "max_write_buffer_number": 2,
        "bloom_filter_size": BLOOM_BITS_PER_KEY,
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
# State format 2's seller index: declared, never read or written, for the rolling upgrade
# from format 2 only. faust's assignor co-partitions the topics that the same members
# subscribe to; without this declaration a format-3 worker would not subscribe to its
# changelog, the older workers would get its partitions apart from those of `pairs`, and
# one of them could then count a partition against another partition's copy of the index
# (and rebuild rankings from it). Drop it in the release after this one.
retired_seller_index = _table("user_sellers_v2", 1)
catalogs = profile_catalogs(settings)
user_catalog, seller_catalog = catalogs
