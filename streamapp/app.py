"""The faust application: `faust -A streamapp.app worker`.

Data flow, one file each:
  topics.py  -> agents.py -> tables.py -> views.py (HTTP) / affinity-updates (topic)
"""

from __future__ import annotations

import os
import sys

import faust

from streamapp.config import ConfigError, Settings, load_settings
from streamapp.faust_settings import speed_options
from streamapp.score import Scoring
from streamapp.security import broker_credentials
from streamapp.startup import broker_unreachable, ensure_topics


def _settings() -> Settings:
    try:
        return load_settings()
    except ConfigError as exc:
        # One clear line instead of a traceback: the setting, what is wrong, the fix.
        sys.stderr.write(f"streamapp: configuration error: {exc}\n")
        raise SystemExit(2) from None


settings = _settings()
scoring = Scoring(settings.weights.as_tuple(), settings.half_life_s, settings.favorites_bonus)


class StreamApp(faust.App):
    direct_path = False
    seller_partitions = 0

    async def on_first_start(self) -> None:
        problem = await broker_unreachable(settings.broker_addresses, settings.broker_wait_s)
        if problem:
            line = (
                f"streamapp: cannot reach the Kafka broker {settings.broker} (KAFKA_BROKER): "
                f"{problem}. Start one with `scripts/kafka-local.sh start` or set KAFKA_BROKER.\n"
            )
            fail(line)
        changelogs = {
            table.changelog_topic.get_topic_name(): {"cleanup.policy": "compact"}
            for table in self.tables.values()
        }
        problem, partitions = await ensure_topics(settings, changelogs)
        if problem:
            fail(f"streamapp: {problem}\n")
        # Records already in their user's partition skip the re-keying hop, but only when
        # `interactions` has the same partition count (else its table writes would not match).
        self.direct_path = partitions.get(settings.topic("interactions")) == settings.partitions
        self.seller_partitions = partitions.get(settings.topic("sellers"), settings.partitions)
        settings.data_dir.mkdir(parents=True, exist_ok=True)  # faust makes only the last level
        await super().on_first_start()


def fail(line: str) -> None:
    os.write(2, line.encode())  # the real stderr: faust's worker redirects sys.stderr
    os._exit(2)  # nothing is running yet; a SystemExit here becomes a traceback wall


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
    canonical_url=settings.canonical_url or f"http://{settings.web_host}:{settings.web_port}",
    broker_credentials=broker_credentials(settings),
    # A crashed worker's partitions move after this long (faust's default is 60 s).
    broker_session_timeout=settings.session_timeout_s,
    broker_heartbeat_interval=min(3.0, settings.session_timeout_s / 4),
    # Store, partitions, consumer/stream/producer tuning, monitor: shared with the benchmark's
    # faust floor (bench/floor_app.py), so the two are measured under the same settings.
    **speed_options(settings),
)

# Registration happens on import; these modules use `app` and `settings` from here.
from streamapp import agents, health, views  # noqa: E402, F401
