"""Settings from environment variables, validated once at start-up.

No faust import here: the settings are plain data so tests, the loader and the
benchmark can read them without starting an app.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from streamapp.core.models import MAX_ID_LENGTH

DAY = 86_400.0


class ConfigError(ValueError):
    """A setting is wrong; the message is one line that names it and the fix."""


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": DAY, "w": 7 * DAY}


def parse_duration(text: str) -> float:
    """'7d', '12h', '90s', '250ms' or a bare number of seconds -> seconds."""
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"not a duration: {text!r} (use e.g. 7d, 12h, 30m, 90s)")
    number, unit = match.groups()
    return float(number) * _UNIT_SECONDS[unit or "s"]


@dataclass(frozen=True)
class Weights:
    """Score weight of each interaction kind."""

    LIKE: float = 3.0
    VIEW: float = 1.0
    PURCHASE: float = 5.0
    OTHER: float = 0.5

    def as_tuple(self) -> tuple[float, float, float, float]:
        # Same order as streamapp.core.models.KIND_ORDER.
        return (self.LIKE, self.VIEW, self.PURCHASE, self.OTHER)


@dataclass(frozen=True)
class Settings:
    broker: str = "kafka://127.0.0.1:9092"
    # Where `broker` came from, for messages that tell the user what to change:
    # "KAFKA_BROKER", "KAFKA_LOCAL_PORT" or "default".
    broker_origin: str = "default"
    app_id: str = "streamapp"
    topic_prefix: str = ""
    data_dir: Path = Path("./var/streamapp")
    partitions: int = 8
    web_port: int = 6066
    web_host: str = "127.0.0.1"
    canonical_url: str = ""
    standby_replicas: int = 1
    weights: Weights = field(default_factory=Weights)
    half_life_s: float = 7 * DAY
    favorites_bonus: float = 1.0
    dedupe_horizon_s: float = 7 * DAY
    max_message_bytes: int = 65_536
    # A dead letter's JSON never exceeds this (parsing.dead_letter truncates the copied bytes).
    dead_letter_max_bytes: int = 512 * 1024
    max_bulk_pairs: int = 1_000
    max_top_k: int = 1_000
    min_body_bytes: int = 1_048_576  # a bulk body may always be this long (bulk_body_bytes)
    api_token: str = ""
    # Signs worker-to-worker requests (internal_auth.py); empty: derived from app id + token.
    internal_secret: str = ""
    log_every_s: float = 30.0
    broker_wait_s: float = 15.0
    rocksdb_cache_mb: int = 16
    rocksdb_write_buffer_mb: int = 8
    # Long enough to cover a worker's restart: with static membership (below) a worker that
    # comes back within it gets its partitions back without a rebalance of the group.
    session_timeout_s: float = 30.0
    # Static group membership (KIP-345): a stable group.instance.id per worker.
    static_membership: bool = True
    instance_id: str = ""  # empty: derived from host, data dir and URL (group_instance_id)
    updates: str = "batch"  # affinity-updates: one per touched pair per batch, or "each"
    # The most of a worker's event loop its lookups may use while ingest has records waiting
    # (lookup_share.py); 1 turns the limit off.
    lookup_share: float = 0.5
    batch_max: int = 2_000  # events per processing batch (a batch never waits to fill)
    # A source partition behind its end without progress this long is read again.
    stall_s: float = 20.0
    # How long a batch's output may take to be confirmed, retriable errors retried inside it.
    delivery_timeout_s: float = 120.0
    shutdown_timeout_s: float = 30.0
    replication_factor: int = 1
    # A changelog segment closes after this long, so the broker's cleaner can compact it: a
    # rebuild then reads about one record per live key, plus at most this long of writes.
    # Kafka's default (7 days) left a week of every write to replay.
    changelog_segment_s: int = 3600
    # Kafka connection security (faust broker_credentials).
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str = "PLAIN"
    sasl_username: str = ""
    sasl_password: str = ""
    ssl_cafile: str = ""
    ssl_certfile: str = ""
    ssl_keyfile: str = ""

    @property
    def own_url(self) -> str:
        """How other workers reach this one."""
        return self.canonical_url or f"http://{self.web_host}:{self.web_port}"

    def topic(self, name: str) -> str:
        """The full name of one of the contract's topics."""
        return f"{self.topic_prefix}{name}"

    def internal_topic(self, name: str) -> str:
        """An app-private topic, named like faust's own (app id first)."""
        return f"{self.topic_prefix}{self.app_id}-{name}"

    @property
    def bulk_body_bytes(self) -> int:
        """The longest body of a bulk query: room for `max_bulk_pairs` pairs of the longest
        ids, each character written as a JSON escape, so that every query within the pair
        limit is read (a fixed 1 MiB refused 1,000 pairs of long non-ASCII ids with 413);
        up to about 10,000 pairs, as the body is held in memory."""
        return min(
            max(self.min_body_bytes, self.max_bulk_pairs * BULK_PAIR_BYTES), MAX_BULK_BODY_BYTES
        )

    @property
    def broker_addresses(self) -> list[tuple[str, int]]:
        return broker_addresses(self.broker)


# A pair of a bulk query at its longest: two ids of MAX_ID_LENGTH characters, each as a
# 12-byte escape (a character beyond U+FFFF is a pair of \uXXXX), and 512 bytes of keys,
# quotes and spacing. The whole body is held in memory: at most MAX_BULK_BODY_BYTES.
BULK_PAIR_BYTES = 2 * MAX_ID_LENGTH * 12 + 512
MAX_BULK_BODY_BYTES = 64 * 1024 * 1024
BROKER_SCHEMES = ("kafka", "aiokafka")  # faust's aiokafka transport (confluent's is not installed)


def broker_addresses(url: str) -> list[tuple[str, int]]:
    """'kafka://h1:9092;h2:9093' or 'h1:9092,h2' -> [(host, port), ...]."""
    out: list[tuple[str, int]] = []
    for part in re.split(r"[;,]", url):
        part = part.strip()
        if not part:
            continue
        if "://" not in part:
            part = "kafka://" + part
        split = urlsplit(part)
        if split.scheme not in BROKER_SCHEMES:
            # faust picks its transport by the scheme and fails later with a traceback.
            raise ValueError(f"{split.scheme}:// is not a transport of this worker's faust")
        if not split.hostname:
            raise ValueError(f"no host in {part!r}")
        out.append((split.hostname, split.port or 9092))
    if not out:
        raise ValueError("no broker address")
    return out


def group_instance_id(settings: Settings, host: str) -> str | None:
    """The worker's static membership id (Kafka's group.instance.id), None when static
    membership is off.

    Named by STREAMAPP_INSTANCE_ID or else the host, and made unique by a digest of what makes
    a worker the same one after a restart: the URL others reach it at and, without an explicit
    name, its host and data dir. The URL is always part of it: a member that rejoins without a
    rebalance gets its old assignment back, which carries the URL faust's assignor handed the
    other workers for routing (faust 0.15.3 asserts the two agree); a worker that moved must
    join as a new member.
    """
    if not settings.static_membership:
        return None
    if settings.instance_id:
        name, identity = settings.instance_id, settings.own_url
    else:
        name = re.sub(r"[^A-Za-z0-9._-]", "_", host)[:60] or "host"
        identity = f"{host}|{settings.data_dir.resolve()}|{settings.own_url}"
    digest = hashlib.sha1(identity.encode()).hexdigest()[:12]
    return f"{settings.app_id}-{name}-{digest}"


# faust's options that name a setting of ours, and the setting each stands for: faust
# imports the app (`-A`) before it reads its options, too late for an app that reads its
# settings at import, as this one does; faust would apply them to its own settings only.
ROOT_OPTIONS = {"--datadir": "datadir", "-D": "datadir"}  # before the command
WORKER_OPTIONS = {  # after `worker`
    "--web-port": "WEB_PORT",
    "-p": "WEB_PORT",
    "--web-host": "WEB_HOST",
    "-h": "WEB_HOST",
}
# Every faust option (of its command line and of `worker`) that takes a value, so that a
# value is never taken for the command or an option.
VALUE_OPTIONS = frozenset(
    (
        *ROOT_OPTIONS,
        *WORKER_OPTIONS,
        *("-A", "--app", "-W", "--workdir", "-L", "--loop", "-l", "--loglevel"),
        *("-f", "--logfile", "--blocking-timeout", "--console-port", "--web-transport"),
        *("-b", "--web-bind"),
    )
)


def is_faust_command_line(argv: Sequence[str]) -> bool:
    """`faust ...` or `python -m faust ...` (whose argv[0] is faust's __main__.py)."""
    if not argv:
        return False
    program = Path(argv[0])
    return program.name == "faust" or (
        program.name == "__main__.py" and program.parent.name == "faust"
    )


def command_line_settings(argv: Sequence[str]) -> dict[str, str]:
    """Settings given as options of faust's command line (`faust -A app --datadir D worker
    --web-port P`): "datadir", "WEB_PORT", "WEB_HOST" (load_settings: they beat the
    environment). Empty for any other program's command line (a test runner's, a tool's)."""
    if not is_faust_command_line(argv):
        return {}
    found: dict[str, str] = {}
    command: str | None = None
    n = 1
    while n < len(argv):
        arg = argv[n]
        n += 1
        if arg == "--":
            break
        if not arg.startswith("-") or arg == "-":
            command = command or arg  # the first word that is not an option's value
            continue
        if arg.startswith("--"):
            name, equals, value = arg.partition("=")
            attached = bool(equals)
        else:  # "-p 7001" or "-p7001"
            name, value, attached = arg[:2], arg[2:], len(arg) > 2
        if name not in VALUE_OPTIONS:
            continue  # a flag
        if not attached:
            if n >= len(argv):
                break
            value = argv[n]
            n += 1
        ours = ROOT_OPTIONS if command is None else WORKER_OPTIONS if command == "worker" else {}
        if name in ours:
            found[ours[name]] = value
    return found


def _faust_datadir(value: str, app_id: str) -> str:
    # faust formats its data dir with its settings ("{conf.name}" is the app id), as here.
    return value.replace("{conf.name}", app_id).replace("{conf.id}", app_id)


def _get(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name)
    return value if value not in (None, "") else None


def load_settings(
    env: Mapping[str, str] | None = None, command_line: Mapping[str, str] | None = None
) -> Settings:
    """Read and validate every setting; raise ConfigError naming the first bad one.
    `command_line`: settings given as faust's options (command_line_settings), which beat
    the environment."""
    env = os.environ if env is None else env
    command_line = command_line or {}
    env = {**env, **{k: v for k, v in command_line.items() if k != "datadir"}}
    defaults = Settings()
    values: dict[str, object] = {}

    def text(
        name: str, attr: str, pattern: str | None = None, hint: str = "", secret: bool = False
    ) -> None:
        raw = _get(env, name)
        if raw is None:
            return
        if pattern and not re.fullmatch(pattern, raw):
            shown = " (its value not shown)" if secret else f"={raw!r}"
            raise ConfigError(f"{name}{shown} is invalid: {hint}")
        values[attr] = raw

    def number(name: str, attr: str, kind: type, low: float, high: float) -> None:
        raw = _get(env, name)
        if raw is None:
            return
        try:
            value = kind(raw)
        except ValueError:
            # Say what is expected in words a user knows, not the Python type's name.
            expected = f"a whole number from {low:g} to {high:g}" if kind is int else "a number"
            raise ConfigError(f"{name}={raw!r} must be {expected}") from None
        if not low <= value <= high:
            raise ConfigError(f"{name}={raw!r} is out of range: use {low:g} to {high:g}")
        values[attr] = value

    def duration(name: str, attr: str, low: float, high: float = float("inf")) -> None:
        raw = _get(env, name)
        if raw is None:
            return
        try:
            value = parse_duration(raw)
        except ValueError as exc:
            raise ConfigError(f"{name}: {exc}") from None
        if value < low:
            raise ConfigError(f"{name}={raw!r} is too short: at least {low:g} seconds")
        if value > high:
            raise ConfigError(f"{name}={raw!r} is too long: at most {high:g} seconds")
        values[attr] = value

    broker = _get(env, "KAFKA_BROKER")
    local_port = _get(env, "KAFKA_LOCAL_PORT")
    if broker is None and local_port is not None:
        # One set of addresses: the port scripts/kafka-local.sh starts its broker on is also
        # where every command looks for it, so exporting KAFKA_LOCAL_PORT once is enough.
        if not local_port.isdigit() or not 1 <= int(local_port) <= 65535:
            raise ConfigError(f"KAFKA_LOCAL_PORT={local_port!r} must be a port number (1 to 65535)")
        broker = f"kafka://127.0.0.1:{int(local_port)}"
        values["broker"] = broker
        values["broker_origin"] = "KAFKA_LOCAL_PORT"
    elif broker is not None:
        try:
            broker_addresses(broker)
        except ValueError as exc:
            raise ConfigError(
                f"KAFKA_BROKER={broker!r} is invalid ({exc}): use kafka://HOST:PORT"
            ) from None
        values["broker"] = broker
        values["broker_origin"] = "KAFKA_BROKER"
    name_rule = r"[A-Za-z0-9._-]{1,100}"
    text("STREAMAPP_ID", "app_id", name_rule, "use 1-100 of A-Z a-z 0-9 . _ -")
    text(
        "STREAMAPP_TOPIC_PREFIX", "topic_prefix", r"[A-Za-z0-9._-]{0,100}", "use A-Z a-z 0-9 . _ -"
    )
    text("WEB_HOST", "web_host", r"[A-Za-z0-9.:_-]{1,255}", "a host name or IP address")
    text("STREAMAPP_CANONICAL_URL", "canonical_url", r"https?://\S+", "use http://HOST:PORT")
    text("STREAMAPP_API_TOKEN", "api_token", r"\S{8,}", "at least 8 characters, no spaces", True)
    text(
        "STREAMAPP_INTERNAL_SECRET",
        "internal_secret",
        r"\S{16,}",
        "at least 16 characters, no spaces",
    )
    number("STREAMAPP_PARTITIONS", "partitions", int, 1, 1024)
    number("WEB_PORT", "web_port", int, 1, 65535)
    number("STREAMAPP_STANDBY_REPLICAS", "standby_replicas", int, 0, 10)
    number("STREAMAPP_REPLICATION_FACTOR", "replication_factor", int, 1, 10)
    number("STREAMAPP_CHANGELOG_SEGMENT_S", "changelog_segment_s", int, 1, 30 * 86_400)
    number("STREAMAPP_FAVORITES_BONUS", "favorites_bonus", float, -1e9, 1e9)
    number("STREAMAPP_MAX_MESSAGE_BYTES", "max_message_bytes", int, 256, 16 * 1024 * 1024)
    number(
        "STREAMAPP_DEAD_LETTER_MAX_BYTES", "dead_letter_max_bytes", int, 16_384, 64 * 1024 * 1024
    )
    number("STREAMAPP_MAX_BULK_PAIRS", "max_bulk_pairs", int, 1, 100_000)
    number("STREAMAPP_MAX_TOP_K", "max_top_k", int, 1, 100_000)
    number("STREAMAPP_ROCKSDB_CACHE_MB", "rocksdb_cache_mb", int, 1, 65_536)
    number("STREAMAPP_ROCKSDB_WRITE_BUFFER_MB", "rocksdb_write_buffer_mb", int, 1, 4_096)
    duration("STREAMAPP_HALF_LIFE", "half_life_s", 1.0)
    duration("STREAMAPP_DEDUPE_HORIZON", "dedupe_horizon_s", 0.0)
    duration("STREAMAPP_LOG_EVERY", "log_every_s", 1.0)
    duration("STREAMAPP_BROKER_WAIT", "broker_wait_s", 0.0)
    # At most faust's request timeout (90 s), which it requires to be the longer one.
    duration("STREAMAPP_SESSION_TIMEOUT", "session_timeout_s", 6.0, 90.0)
    text("STREAMAPP_STATIC_MEMBERSHIP", "static_membership", "0|1", "use 1 (the default) or 0")
    if "static_membership" in values:
        values["static_membership"] = values["static_membership"] == "1"
    text(
        "STREAMAPP_INSTANCE_ID",
        "instance_id",
        r"[A-Za-z0-9._-]{1,200}",
        "use 1-200 of A-Z a-z 0-9 . _ - (unique among the app's workers)",
    )
    text("STREAMAPP_UPDATES", "updates", "batch|each", "use batch (the default) or each")
    number("STREAMAPP_BATCH_MAX", "batch_max", int, 1, 100_000)
    number("STREAMAPP_LOOKUP_SHARE", "lookup_share", float, 0.05, 1.0)
    duration("STREAMAPP_STALL_TIMEOUT", "stall_s", 1.0)
    duration("STREAMAPP_DELIVERY_TIMEOUT", "delivery_timeout_s", 1.0)
    duration("STREAMAPP_SHUTDOWN_TIMEOUT", "shutdown_timeout_s", 1.0)
    text(
        "KAFKA_SECURITY_PROTOCOL",
        "security_protocol",
        "PLAINTEXT|SSL|SASL_PLAINTEXT|SASL_SSL",
        "use PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL",
    )
    text(
        "KAFKA_SASL_MECHANISM",
        "sasl_mechanism",
        "PLAIN|SCRAM-SHA-256|SCRAM-SHA-512",
        "use PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512",
    )
    text("KAFKA_SASL_USERNAME", "sasl_username")
    text("KAFKA_SASL_PASSWORD", "sasl_password")
    for name, attr in (
        ("KAFKA_SSL_CAFILE", "ssl_cafile"),
        ("KAFKA_SSL_CERTFILE", "ssl_certfile"),
        ("KAFKA_SSL_KEYFILE", "ssl_keyfile"),
    ):
        text(name, attr)
        if attr in values and not Path(str(values[attr])).is_file():
            raise ConfigError(f"{name}={values[attr]!r}: no such file")
    protocol = str(values.get("security_protocol", "PLAINTEXT"))
    if protocol.startswith("SASL") and not (
        values.get("sasl_username") and values.get("sasl_password")
    ):
        raise ConfigError(
            f"KAFKA_SECURITY_PROTOCOL={protocol} needs KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD"
        )

    weights = {}
    for kind in ("LIKE", "VIEW", "PURCHASE", "OTHER"):
        name = f"STREAMAPP_WEIGHT_{kind}"
        number(name, f"w_{kind}", float, -1e9, 1e9)
        if f"w_{kind}" in values:
            weights[kind] = values.pop(f"w_{kind}")
    if weights:
        values["weights"] = Weights(**weights)  # type: ignore[arg-type]

    app_id = str(values.get("app_id", defaults.app_id))
    given = command_line.get("datadir")
    data_dir = _faust_datadir(given, app_id) if given else _get(env, "STREAMAPP_DATA_DIR")
    values["data_dir"] = Path(data_dir) if data_dir else Path("./var") / app_id
    return Settings(**values)  # type: ignore[arg-type]
