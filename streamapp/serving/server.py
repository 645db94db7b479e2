"""A serving process: lookups in a process of their own, beside a worker.

    python -m streamapp.serve     (or `make serve`: the same environment as the worker,
                                   plus STREAMAPP_SERVE_PORT, default WEB_PORT + 100)

The worker answers every endpoint itself, but its lookups share one event loop (one core)
with ingest. A serving process answers the lookup endpoints from the worker's own RocksDB
databases, opened as RocksDB *secondary* instances (read-only, catching up with the
worker's writes every STREAMAPP_SERVE_CATCH_UP_MS), so a flood of lookups cannot slow
ingest and a long ingest batch cannot delay a lookup. Which partitions it may answer for
comes from the worker's serving map (serving_map.py); a request for a user of another
partition is forwarded, signed, to the worker that owns it, exactly as the workers forward
among themselves. Every other path is passed on to the local worker.

The answers are computed by the same code as the worker's (lookup.py, lookup_api.py);
they may trail the worker's by one catch-up interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from rocksdict import AccessType, BlockBasedOptions, Cache, Options, Rdict
from yarl import URL

from streamapp.core import lookup
from streamapp.core.config import ConfigError, Settings, load_settings
from streamapp.core.partitioning import HomePartitions
from streamapp.core.score import Scoring
from streamapp.http import forwarding, internal_auth, lookup_api
from streamapp.http.errors import HTTPError
from streamapp.http.forwarding import Forwarder
from streamapp.kafka.profile_catalog import ProfileCatalog, profile_catalogs
from streamapp.serving import serving_map

log = logging.getLogger("streamapp.serve")


@dataclass(frozen=True)
class ServeSettings:
    host: str
    port: int
    catch_up_s: float


def serve_settings(settings: Settings, env: dict[str, str]) -> ServeSettings:
    def number(name: str, default: str, low: float, high: float, integer: bool = False) -> float:
        raw = env.get(name, default)
        try:
            value = int(raw) if integer else float(raw)
        except ValueError:
            raise ConfigError(
                f"{name}={raw!r}: not {'an integer' if integer else 'a number'}"
            ) from None
        if not low <= value <= high:
            raise ConfigError(f"{name}={raw!r}: must be from {low:g} to {high:g}")
        return value

    # Default: the worker's port + 100 (6166), clear of the ports of workers run side by side.
    default_port = str(min(settings.web_port + 100, 65535))
    port = int(number("STREAMAPP_SERVE_PORT", default_port, 1, 65535, integer=True))
    if port == settings.web_port:
        raise ConfigError(
            f"STREAMAPP_SERVE_PORT={port}: the worker's WEB_PORT; give the serving process "
            "a port of its own"
        )
    return ServeSettings(
        host=env.get("STREAMAPP_SERVE_HOST", settings.web_host),
        port=port,
        catch_up_s=number("STREAMAPP_SERVE_CATCH_UP_MS", "200", 1, 10_000) / 1000,
    )


class WriteWatch:
    """Whether the worker wrote to a database since the last look, from two stats: the
    directory (files created or deleted: a new write-ahead log, a flush, a compaction) and
    the newest write-ahead log (appended to by every write). A catch-up costs a millisecond
    or more even when nothing changed; these cost microseconds."""

    def __init__(self) -> None:
        self.seen: dict[str, tuple[int, str, int]] = {}

    def changed(self, path: str) -> bool:
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
            self.seen.pop(path, None)
            return True  # let the catch-up find out what happened
        now = (folder, wal, size)
        if now == before:
            return False
        self.seen[path] = now
        return True

    def forget(self, path: str) -> None:
        self.seen.pop(path, None)


def open_secondary(primary: str, scratch: Path, cache: Cache | None = None) -> Rdict:
    scratch.parent.mkdir(parents=True, exist_ok=True)
    options = Options(raw_mode=True)
    options.set_max_open_files(-1)  # required of a secondary: the primary deletes files
    if cache is not None:
        table = BlockBasedOptions()
        table.set_block_cache(cache)
        options.set_block_based_table_factory(table)
    return Rdict(primary, options, access_type=AccessType.secondary(str(scratch)))


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
        self.forwarder = Forwarder(key, self._client)
        # One block cache for every partition, as large as the worker's together: random
        # pairs of a bulk query otherwise miss it and decompress blocks again and again.
        cache = Cache(settings.rocksdb_cache_mb * settings.partitions * 1024 * 1024)
        self.pairs = Secondaries("pairs", scratch, cache)
        self.user_sellers = Secondaries("user_sellers", scratch, cache)
        users, sellers = profile_catalogs(settings)
        self.users = CatalogReader(users, scratch)
        self.sellers = CatalogReader(sellers, scratch)
        self.map: serving_map.ServingMap | None = None
        self.map_mtime = 0.0
        self.home = HomePartitions(settings.partitions)
        self.sources = lookup.Sources(
            pairs=self.pairs,
            user_sellers=self.user_sellers,
            users=self.users,
            sellers=self.sellers,
            home_partition=self.home,
            scoring=Scoring.of(settings),
        )

    def _client(self) -> aiohttp.ClientSession:
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
        for table in (self.pairs, self.user_sellers):
            for partition in list(table.dbs):
                if table.catch_up_one(partition):
                    await asyncio.sleep(0)
        self.users.catch_up()
        self.sellers.catch_up()

    def _apply(self, new: serving_map.ServingMap | None) -> None:
        old = self.map
        if new is None:
            return
        if old is not None and old.worker_pid != new.worker_pid:
            # A new worker process: its databases may have been rebuilt from scratch.
            for table in (self.pairs, self.user_sellers):
                table.close()
            self.users.close()
            self.sellers.close()
        self.map = new
        self.pairs.follow(new.stores.get("pairs", {}) if new.ready else {})
        self.user_sellers.follow(new.stores.get("user_sellers", {}) if new.ready else {})
        self.users.follow(new.catalogs.get("users"))
        self.sellers.follow(new.catalogs.get("sellers"))
        log.info(
            "serving map: worker %s %s, answering partitions %s here",
            new.worker_url,
            "ready" if new.ready else "not ready",
            sorted(self.local_partitions()),
        )

    def local_partitions(self) -> set[int]:
        return set(self.pairs.dbs) & set(self.user_sellers.dbs)

    def worker_alive(self) -> bool:
        if self.map is None:
            return False
        try:
            os.kill(self.map.worker_pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

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
        if not self.is_ready():
            raise HTTPError(503, "the worker is not ready, retry shortly", {"Retry-After": "1"})
        assert self.map is not None
        partition = self.home(user_id)
        if partition in self.pairs.dbs and partition in self.user_sellers.dbs:
            return None
        owner = self.map.owners.get(partition)
        if owner is None:
            raise HTTPError(
                503, "partitions are being assigned, retry shortly", {"Retry-After": "1"}
            )
        if self.forwarder.internal(request) is not None:
            raise HTTPError(
                503, "partition ownership is moving, retry shortly", {"Retry-After": "1"}
            )
        return URL(owner)

    def admit(self) -> None:
        pass  # no ingest here to give way to

    def spent(self, seconds: float) -> None:
        pass

    def require_ready(self) -> None:
        if not self.is_ready():
            raise HTTPError(503, "the worker is not ready, retry shortly", {"Retry-After": "1"})

    async def vectors(self, pairs: list[tuple[str, str]], as_of_us: int) -> list[dict[str, Any]]:
        return await lookup.vectors(self.sources, pairs, as_of_us)

    async def top_sellers(self, user_id: str, k: int, as_of_us: int) -> dict[str, Any]:
        return await lookup.top_sellers(self.sources, user_id, k, as_of_us)

    def close(self) -> None:
        for table in (self.pairs, self.user_sellers):
            table.close()
        self.users.close()
        self.sellers.close()


def build_app(node: ServeNode) -> web.Application:
    app = web.Application(middlewares=[lookup_api.json_errors(node.settings, node.forwarder)])

    async def health(request: web.Request) -> web.Response:
        if node.is_ready():
            return web.json_response({"status": "ok"})
        return web.json_response({"status": "recovering"}, status=503, headers={"Retry-After": "1"})

    async def affinity(request: web.Request) -> web.Response:
        info = request.match_info
        return await lookup_api.affinity(node, request, info["user_id"], info["seller_id"])

    async def bulk(request: web.Request) -> web.Response:
        return await lookup_api.bulk(node, request)

    async def top(request: web.Request) -> web.Response:
        return await lookup_api.top_sellers(node, request, request.match_info["user_id"])

    async def to_worker(request: web.Request) -> web.StreamResponse:
        """Everything else: the local worker answers it (profiles, metrics, the page...)."""
        if node.map is None:
            raise HTTPError(503, "no worker found yet, retry shortly", {"Retry-After": "1"})
        url = URL(node.map.worker_url).with_path(request.raw_path.split("?", 1)[0], encoded=True)
        body = await request.read() if request.can_read_body else None
        headers = {k: v for k, v in request.headers.items() if k.lower() in PASSED_HEADERS}
        status, payload, _, got = await forwarding.call(
            node._client(), request.method, url.with_query(request.query), headers, body, "worker"
        )
        returned = {k: v for k, v in got.items() if k.lower() in RETURNED_HEADERS}
        return web.Response(body=payload, status=status, headers=returned)

    app.router.add_get("/health", health)
    app.router.add_get("/affinity/{user_id:[^/]+}/{seller_id:[^/]+}", affinity)
    app.router.add_post("/affinity/query", bulk)
    app.router.add_get("/users/{user_id:[^/]+}/top-sellers", top)
    app.router.add_route("*", "/{tail:.*}", to_worker)
    return app


PASSED_HEADERS = frozenset({"authorization", "content-type", "accept"})
RETURNED_HEADERS = frozenset({"content-type", "retry-after", "www-authenticate"})


async def follow(node: ServeNode) -> None:
    while True:
        try:
            await node.refresh()
        except Exception:  # never stop following; the next tick tries again
            log.exception("catching up with the worker failed")
        await asyncio.sleep(node.serve.catch_up_s)


async def run(node: ServeNode) -> None:
    await node.refresh()
    follower = asyncio.ensure_future(follow(node))
    runner = web.AppRunner(build_app(node), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, node.serve.host, node.serve.port)
    await site.start()
    log.info(
        "streamapp serve: http://%s:%d, following the worker in %s",
        node.serve.host,
        node.serve.port,
        node.settings.data_dir,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        follower.cancel()
        await runner.cleanup()
        if node.client is not None:
            await node.client.close()


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s] [%(process)d] %(message)s")
    if argv is None:
        argv = sys.argv[1:]
    if argv and argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    try:
        settings = load_settings()
        serve = serve_settings(settings, dict(os.environ))
    except ConfigError as exc:
        sys.stderr.write(f"streamapp serve: configuration error: {exc}\n")
        return 2
    scratch = Path(tempfile.mkdtemp(prefix="streamapp-serve-"))
    node = ServeNode(settings, serve, scratch)
    try:
        asyncio.run(run(node))
    except OSError as exc:  # the port is taken, typically
        sys.stderr.write(f"streamapp serve: cannot listen on {serve.host}:{serve.port}: {exc}\n")
        return 2
    finally:
        node.close()
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
