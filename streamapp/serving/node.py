"""The serving process as the lookup endpoints see it (lookup_api.Node): it follows the
worker through its serving map and its databases, answers for the partitions the worker
owns, and says where to forward the others."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import aiohttp
from rocksdict import Cache
from yarl import URL

from streamapp.core import lookup
from streamapp.core.config import Settings
from streamapp.core.partitioning import HomePartitions
from streamapp.core.score import Scoring
from streamapp.http import internal_auth
from streamapp.http.errors import HTTPError, not_ready
from streamapp.http.forwarding import Forwarder
from streamapp.http.lookup_share import LookupShare
from streamapp.kafka.profile_catalog import profile_catalogs
from streamapp.serving import metrics as serve_metrics
from streamapp.serving import serving_map
from streamapp.serving.secondaries import CatalogReader, Secondaries
from streamapp.serving.settings import ServeSettings

log = logging.getLogger("streamapp.serve")
ALIVE_CHECK_S = 0.1  # how long a live worker is believed alive (worker_alive)


class ServeNode:
    """The serving process, as lookup_api sees it."""

    def __init__(self, settings: Settings, serve: ServeSettings, scratch: Path) -> None:
        self.settings = settings
        self.serve = serve
        self.scratch = scratch
        self.client: aiohttp.ClientSession | None = None
        key = internal_auth.derive_key(
            settings.internal_secret, settings.app_id, settings.api_token
        )
        self.forwarder = Forwarder(key, self.http_client)
        # One block cache for every partition, as large as the worker's together: random
        # pairs of a bulk query otherwise miss it and decompress blocks again and again.
        cache = Cache(settings.rocksdb_cache_mb * settings.partitions * 1024 * 1024)
        self.pairs = Secondaries("pairs", scratch, cache)
        users, sellers = profile_catalogs(settings)
        self.users = CatalogReader(users, scratch)
        self.sellers = CatalogReader(sellers, scratch)
        self.map: serving_map.ServingMap | None = None
        self.map_mtime = 0.0
        self.alive_seen: tuple[int, bool] | None = None  # (worker pid, alive) last checked
        self.alive_at = 0.0
        self.home = HomePartitions(settings.partitions)
        self.caught_up_at: dict[tuple[str, int], float] = {}
        self.catch_up_budget = LookupShare(serve.on_demand_share)
        self.sources = lookup.Sources(
            pairs=self.pairs,
            users=self.users,
            sellers=self.sellers,
            home_partition=self.home,
            scoring=Scoring.of(settings),
        )

    def http_client(self) -> aiohttp.ClientSession:
        if self.client is None:
            self.client = aiohttp.ClientSession()
        return self.client

    # -- following the worker -----------------------------------------------------------
    async def refresh(self) -> None:
        """Read the serving map when it changed; catch up with the worker's writes, one
        database per turn of the event loop (each catch-up holds it for a millisecond or
        so), so that requests are served in between."""
        path = serving_map.path_in(self.settings.data_dir)
        with contextlib.suppress(OSError):
            mtime = path.stat().st_mtime
            if mtime != self.map_mtime:
                self.map_mtime = mtime
                self._apply(serving_map.read(self.settings.data_dir))
        table = self.pairs
        for partition in list(table.dbs):
            if table.catch_up_one(partition):
                self.caught_up_at[(table.name, partition)] = time.monotonic()
                serve_metrics.catch_ups.labels("background").inc()
                await asyncio.sleep(0)
        self.users.catch_up()
        self.sellers.catch_up()

    def _apply(self, new: serving_map.ServingMap | None) -> None:
        old = self.map
        if new is None:
            return
        if old is not None and old.worker_pid != new.worker_pid:
            # A new worker process: its databases may have been rebuilt from scratch.
            self.pairs.close()
            self.users.close()
            self.sellers.close()
        self.map = new
        opened_at = time.monotonic()  # opening a secondary reads all there is: a catch-up
        table = self.pairs
        before = set(table.dbs)
        table.follow(new.stores.get("pairs", {}) if new.ready else {})
        for partition in set(table.dbs) - before:
            self.caught_up_at[(table.name, partition)] = opened_at
        self.users.follow(new.catalogs.get("users"))
        self.sellers.follow(new.catalogs.get("sellers"))
        log.info(
            "serving map: worker %s %s, answering partitions %s here",
            new.worker_url,
            "ready" if new.ready else "not ready",
            sorted(self.local_partitions()),
        )

    def local_partitions(self) -> set[int]:
        return set(self.pairs.dbs)

    def worker_alive(self) -> bool:
        """Whether the worker of the serving map runs. Asked for every lookup (is_ready),
        where a signal-0 each time once took 9 % of the serving process's CPU: a live answer
        is believed for ALIVE_CHECK_S, so a worker's death is noticed within that (its
        state on disk is as it left it meanwhile)."""
        if self.map is None:
            return False
        pid, now = self.map.worker_pid, time.monotonic()
        if self.alive_seen == (pid, True) and now - self.alive_at < ALIVE_CHECK_S:
            return True
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            alive = False
        except PermissionError:
            alive = True
        else:
            alive = True
        self.alive_seen, self.alive_at = (pid, alive), now
        return alive

    def is_ready(self) -> bool:
        return (
            self.map is not None
            and self.map.ready
            and self.worker_alive()
            and self.users.catalog.db is not None
            and self.sellers.catalog.db is not None
        )

    # -- lookup_api.Node ----------------------------------------------------------------
    def remote_owner(self, request: Any, user_id: str) -> URL | None:
        return self.remote_owners(request, (user_id,))[user_id]

    def remote_owners(self, request: Any, user_ids: Iterable[str]) -> dict[str, URL | None]:
        if not self.is_ready():
            raise not_ready("the worker is not ready, retry shortly")
        home, local = self.home, self.pairs.dbs
        return {
            user: None if (partition := home(user)) in local else self._owner_of(request, partition)
            for user in user_ids
        }

    def _owner_of(self, request: Any, partition: int) -> URL:
        assert self.map is not None
        owner = self.map.owners.get(partition)
        if owner is None:
            raise not_ready("partitions are being assigned, retry shortly")
        if self.forwarder.internal(request) is not None:
            raise HTTPError(
                503, "partition ownership is moving, retry shortly", {"Retry-After": "1"}
            )
        return URL(owner)

    in_flight = 0

    def holds_replica(self, user_ids: Any) -> bool:
        return False  # it follows its worker's active partitions only

    def other_workers(self, owner: URL) -> list[URL]:
        # Its own worker may hold a standby of the owner's state (it answers only if so).
        if self.map is None or URL(self.map.worker_url) == owner:
            return []
        return [URL(self.map.worker_url)]

    def admit(self) -> None:
        pass  # no ingest here to give way to

    def spent(self, seconds: float) -> None:
        pass

    def state_age(self, user_ids: Any) -> None:
        if not self.is_ready():
            raise not_ready("the worker is not ready, retry shortly")

    async def vectors(self, pairs: list[tuple[str, str]], as_of_us: int) -> list[bytes]:
        home = self.home
        self.fresh({home(user) for user in {user for user, _ in pairs}})
        return await lookup.vector_texts(self.sources, pairs, as_of_us)

    async def top_sellers(self, user_id: str, k: int, as_of_us: int) -> dict[str, Any]:
        self.fresh({self.home(user_id)})
        return await lookup.top_sellers(self.sources, user_id, k, as_of_us)

    def fresh(self, partitions: set[int]) -> None:
        """Catch up the databases a lookup reads, where the worker wrote since the last
        catch-up and that was over STREAMAPP_SERVE_FRESH_MS ago (issue 19: answers trail the
        worker by milliseconds, not by the background interval). Bounded: catch-ups on
        demand use at most STREAMAPP_SERVE_CATCH_UP_SHARE of the process's time; beyond it
        the background catch-up alone serves."""
        if self.serve.on_demand_share <= 0:
            return
        now = time.monotonic()
        table = self.pairs
        for partition in partitions:
            key = (table.name, partition)
            if now - self.caught_up_at.get(key, 0.0) < self.serve.on_demand_s:
                continue
            if self.catch_up_budget.exhausted():
                return
            self.caught_up_at[key] = now
            began = time.perf_counter()
            if table.catch_up_one(partition):
                serve_metrics.catch_ups.labels("on_demand").inc()
            self.catch_up_budget.spend(time.perf_counter() - began)

    def refresh_gauges(self) -> None:
        """The serving process's own /metrics gauges, as of now."""
        now = time.monotonic()
        serve_metrics.ready.set(1 if self.is_ready() else 0)
        serve_metrics.followed.set(len(self.local_partitions()))
        table = self.pairs
        behind = [
            now - self.caught_up_at.get((table.name, partition), now)
            for partition in table.pending()
        ]
        serve_metrics.catch_up_lag.labels(table.name).set(max(behind, default=0.0))

    def close(self) -> None:
        self.pairs.close()
        self.users.close()
        self.sellers.close()
