"""The faust App of the worker, its settings, and what it does at start and stop.

Data flow, one file each:
  topics.py  -> agents.py -> tables.py -> views.py (HTTP) / affinity-updates (topic)

This module imports none of those: they take `app` from here and register their agents,
timers and views when imported. streamapp/app.py, the module `faust -A streamapp.app
worker` loads, imports this one first and then them, so imports only go one way.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
from typing import Any

import faust

from streamapp.core.config import (
    ConfigError,
    Settings,
    command_line_settings,
    group_instance_id,
    load_settings,
)
from streamapp.core.score import Scoring
from streamapp.kafka import baked_settings, local_state
from streamapp.kafka.outbox import Producer
from streamapp.kafka.startup import broker_unreachable, ensure_topics, unreachable_broker_line
from streamapp.kafka.topic_catalog import TopicCatalog, changelog_config
from streamapp.kafka.topic_ids import topic_id
from streamapp.runtime import tune_gc
from streamapp.worker import faust_fixes, lifecycle, rebalances
from streamapp.worker.credentials import broker_credentials
from streamapp.worker.faust_settings import speed_options


def _settings() -> Settings:
    try:
        # faust's --datadir, --web-port, --web-host (config.command_line_settings)
        return load_settings(command_line=command_line_settings(sys.argv))
    except ConfigError as exc:
        # One clear line instead of a traceback: the setting, what is wrong, the fix.
        sys.stderr.write(f"streamapp: configuration error: {exc}\n")
        raise SystemExit(2) from None


settings = _settings()
if (_problem := faust_fixes.version_problem()) is not None:
    sys.stderr.write(f"streamapp: {_problem}\n")
    raise SystemExit(2)
faust_fixes.apply()  # before any consumer commits
faust_fixes.enable_bulk_restore(settings)
catalog = TopicCatalog.of(settings)  # every topic name (kafka/topic_catalog.py)
scoring = Scoring.of(settings)
# The hot path's own producer (outbox.py): used by ingest, stopped with the worker.
producer = Producer(settings)


class StreamApp(faust.App):
    direct_path = False
    partitions_of: dict[str, int] = {}
    counted_from: str | None = None  # the id of the `interactions` the state was counted from

    async def on_first_start(self) -> None:
        tune_gc()  # everything imported and built by now is long-lived
        # faust's worker has installed its signal handlers by now: add the bounded shutdown.
        lifecycle.ShutdownWatchdog(settings.shutdown_timeout_s).install()
        problem = await broker_unreachable(settings.broker_addresses, settings.broker_wait_s)
        if problem:
            fail(unreachable_broker_line("streamapp", settings, problem) + "\n")
        changelogs = {
            table.changelog_topic.get_topic_name(): changelog_config(settings)
            for table in self.tables.values()
        }
        problem, partitions = await ensure_topics(settings, changelogs)
        if problem:
            fail(f"streamapp: {problem}\n")
        # Local state built from topics that no longer exist (a reset broker) is deleted here,
        # before faust opens it, and restored from the changelogs (local_state.py).
        stores = [(t.changelog_topic.get_topic_name(), t.data) for t in self.tables.values()]
        try:
            await local_state.reconcile(settings, stores, partitions)
        except Exception as exc:  # one line and the way out, not a traceback wall
            fail(
                f"streamapp: cannot check the local state in {settings.data_dir} against the "
                f"broker ({type(exc).__name__}: {exc}). If the broker was reset, delete that "
                "folder (it is rebuilt from the changelogs) and start again.\n"
            )
        # Settings baked into the stored values (the half-life): another value would read
        # every stored score wrong (baked_settings.py).
        # And the `interactions` topic it was counted from: one deleted and created again
        # starts its offsets over, which replay detection would misread (baked_settings.py).
        try:
            source_id = await topic_id(settings, catalog.interactions, settings.broker_wait_s)
        except Exception as exc:
            fail(f"streamapp: cannot read the topic id of {catalog.interactions} ({exc!r})\n")
        try:
            problem, self.counted_from = await baked_settings.check(settings, source_id)
        except Exception as exc:
            problem = f"cannot read the settings the state was built with ({exc!r})"
        if problem:
            fail(f"streamapp: {problem}\n")
        # faust's worker command replaces the canonical URL with http://host:port when given
        # --web-port or --web-host, dropping STREAMAPP_CANONICAL_URL: the settings' URL
        # (which those options are part of: config.command_line_settings) is the one.
        self.conf.canonical_url = settings.own_url  # type: ignore[assignment]
        # Records already in their user's partition skip the re-keying hop, but only when
        # `interactions` has the same partition count (else its table writes would not match).
        self.direct_path = partitions.get(catalog.interactions) == settings.partitions
        member = self.conf.consumer_group_instance_id
        logging.getLogger("streamapp").info(
            "streamapp: group member %s, session timeout %gs (%s)",
            member or "dynamic",
            settings.session_timeout_s,
            "a restart within it moves no partition" if member else "every restart rebalances",
        )
        self.partitions_of = partitions
        settings.data_dir.mkdir(parents=True, exist_ok=True)  # faust makes only the last level
        await super().on_first_start()

    async def on_shutdown(self) -> None:
        await producer.stop()
        await super().on_shutdown()


def fail(line: str) -> None:
    os.write(2, line.encode())  # the real stderr: faust's worker redirects sys.stderr
    lifecycle.show_cursor()  # faust's spinner hid it; os._exit skips every clean-up
    # At start-up nothing is running yet, and a SystemExit would become a traceback wall;
    # later, it stops as a crash does (nothing more is committed).
    os._exit(2)


app = StreamApp(
    settings.app_id,
    broker=settings.broker,
    datadir=str(settings.data_dir),
    topic_allow_declare=True,
    topic_replication_factor=settings.replication_factor,
    table_standby_replicas=settings.standby_replicas,
    web_port=settings.web_port,
    web_host=settings.web_host,
    web_bind=settings.web_host,
    canonical_url=settings.own_url,
    broker_credentials=broker_credentials(settings),
    # A crashed worker's partitions move after this long (faust's default is 60 s).
    broker_session_timeout=settings.session_timeout_s,
    broker_heartbeat_interval=min(3.0, settings.session_timeout_s / 4),
    # Static membership: a restart within the session timeout rebalances no one (README,
    # "Rolling restarts").
    consumer_group_instance_id=group_instance_id(settings, socket.gethostname()),
    # Store, partitions, consumer/stream/producer tuning, monitor: shared with the benchmark's
    # faust floor (bench/floor_app.py), so the two are measured under the same settings.
    **speed_options(settings),
)

lifecycle.install_log_filters()
rebalances.install(app)  # streamapp_rebalances_total, streamapp_rebalance_duration_seconds
lifecycle.install_cursor_restore()


@app.on_partitions_assigned.connect
async def _coordinator_found(sender: faust.App, assigned: set[Any], **kwargs: Any) -> None:
    # An assignment means the group coordinator answered: its errors matter from now on.
    lifecycle.start_up_filter.active = False
