from pathlib import Path

import pytest

from streamapp.core.config import (
    ConfigError,
    broker_addresses,
    command_line_settings,
    group_instance_id,
    load_settings,
    parse_duration,
)


def test_defaults_follow_the_contract() -> None:
    s = load_settings({})
    assert s.broker == "kafka://127.0.0.1:9092"
    assert s.app_id == "streamapp" and s.topic_prefix == ""
    assert s.data_dir == Path("./var/streamapp")
    assert s.partitions == 8 and s.web_port == 6066 and s.web_host == "127.0.0.1"
    assert s.weights.as_tuple() == (3.0, 1.0, 5.0, 0.5)
    assert s.half_life_s == 7 * 86400 and s.favorites_bonus == 1.0
    assert s.dedupe_horizon_s == 7 * 86400
    assert s.topic("interactions") == "interactions"


def test_overrides() -> None:
    s = load_settings(
        {
            "STREAMAPP_ID": "t1",
            "STREAMAPP_TOPIC_PREFIX": "x-",
            "STREAMAPP_PARTITIONS": "4",
            "STREAMAPP_HALF_LIFE": "12h",
            "STREAMAPP_WEIGHT_VIEW": "2.5",
            "KAFKA_BROKER": "kafka://127.0.0.1:1;127.0.0.1:2",
        }
    )
    assert s.data_dir == Path("./var/t1")
    assert s.topic("users") == "x-users" and s.internal_topic("r") == "x-t1-r"
    assert s.partitions == 4 and s.half_life_s == 43200
    assert s.weights.VIEW == 2.5 and s.weights.LIKE == 3.0
    assert s.broker_addresses == [("127.0.0.1", 1), ("127.0.0.1", 2)]


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        (
            {"STREAMAPP_PARTITIONS": "zero"},
            "STREAMAPP_PARTITIONS='zero' must be a whole number from 1 to 1024",
        ),
        ({"STREAMAPP_FAVORITES_BONUS": "x"}, "STREAMAPP_FAVORITES_BONUS='x' must be a number"),
        ({"KAFKA_LOCAL_PORT": "abc"}, "KAFKA_LOCAL_PORT='abc' must be a port number"),
        ({"STREAMAPP_PARTITIONS": "0"}, "out of range"),
        ({"WEB_PORT": "70000"}, "WEB_PORT"),
        ({"STREAMAPP_HALF_LIFE": "soon"}, "STREAMAPP_HALF_LIFE"),
        ({"STREAMAPP_ID": "bad id!"}, "STREAMAPP_ID"),
        ({"KAFKA_BROKER": "kafka://"}, "KAFKA_BROKER"),
        # faust would pick no transport for these and fail later with a traceback
        ({"KAFKA_BROKER": "http://x:1"}, "KAFKA_BROKER='http://x:1' is invalid (http://"),
        ({"KAFKA_BROKER": "kafka://a:1;memory://b"}, "memory:// is not a transport"),
        ({"STREAMAPP_SESSION_TIMEOUT": "2m"}, "STREAMAPP_SESSION_TIMEOUT='2m' is too long"),
        ({"STREAMAPP_STATIC_MEMBERSHIP": "yes"}, "STREAMAPP_STATIC_MEMBERSHIP='yes' is invalid"),
        ({"STREAMAPP_INSTANCE_ID": "a b"}, "STREAMAPP_INSTANCE_ID='a b' is invalid"),
    ],
)
def test_bad_settings_name_the_variable(env: dict[str, str], needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(env)
    assert needle in str(info.value)
    assert "\n" not in str(info.value)


def test_durations_and_addresses() -> None:
    assert parse_duration("7d") == 604800 and parse_duration("90") == 90
    assert parse_duration("250ms") == 0.25
    assert broker_addresses("h:1,k") == [("h", 1), ("k", 9092)]


def test_kafka_security_settings(tmp_path) -> None:
    from streamapp.worker.credentials import broker_credentials

    assert broker_credentials(load_settings({})) is None
    sasl = load_settings(
        {
            "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "KAFKA_SASL_USERNAME": "u",
            "KAFKA_SASL_PASSWORD": "p",
            "KAFKA_SASL_MECHANISM": "SCRAM-SHA-256",
        }
    )
    creds = broker_credentials(sasl)
    assert (creds.username, creds.password, str(creds.mechanism.value)) == (
        "u",
        "p",
        "SCRAM-SHA-256",
    )
    assert str(creds.protocol.value) == "SASL_PLAINTEXT"
    ssl_creds = broker_credentials(load_settings({"KAFKA_SECURITY_PROTOCOL": "SSL"}))
    assert str(ssl_creds.protocol.value) == "SSL"
    with pytest.raises(ConfigError, match="needs KAFKA_SASL_USERNAME"):
        load_settings({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL"})
    with pytest.raises(ConfigError, match="no such file"):
        load_settings({"KAFKA_SSL_CAFILE": str(tmp_path / "missing.pem")})
    with pytest.raises(ConfigError, match="KAFKA_SECURITY_PROTOCOL"):
        load_settings({"KAFKA_SECURITY_PROTOCOL": "TLS"})


def test_one_set_of_addresses() -> None:
    """KAFKA_LOCAL_PORT (the local broker's port) is where every command looks for the broker
    unless KAFKA_BROKER says otherwise; WEB_HOST/WEB_PORT is where clients look for the worker."""
    from streamapp.client import default_url

    assert load_settings({"KAFKA_LOCAL_PORT": "47092"}).broker == "kafka://127.0.0.1:47092"
    both = {"KAFKA_LOCAL_PORT": "47092", "KAFKA_BROKER": "kafka://h:1"}
    assert load_settings(both).broker == "kafka://h:1"
    assert default_url({}) == "http://127.0.0.1:6066"
    assert default_url({"WEB_PORT": "46066", "WEB_HOST": "0.0.0.0"}) == "http://127.0.0.1:46066"
    assert default_url({"WEB_PORT": "46066", "STREAMAPP_URL": "http://w:1/"}) == "http://w:1"


def test_a_half_life_other_than_the_states_is_one_line_that_says_how_out(tmp_path) -> None:
    from streamapp.core.config import load_settings
    from streamapp.kafka import baked_settings

    settings = load_settings({"STREAMAPP_HALF_LIFE": "2h", "STREAMAPP_ID": "shop"})
    assert baked_settings.mismatch(settings, {}) is None  # nothing recorded yet
    assert baked_settings.mismatch(settings, {"half_life_s": 7200.0}) is None
    assert baked_settings.mismatch(settings, {"half_life_s": 604800.0}) == (
        "STREAMAPP_HALF_LIFE is 7200 s but the state of app 'shop' was built with 604800 s, "
        "and stored scores cannot be converted (they hold decayed sums, not the events). "
        "Start with STREAMAPP_HALF_LIFE=604800s, or build the state again under a new app id "
        "(STREAMAPP_ID), which re-reads `interactions` as far back as the topic keeps it"
    )
    assert baked_settings.read_local(tmp_path) == {}
    baked_settings.write_local(tmp_path, {"half_life_s": 604800.0})
    assert baked_settings.read_local(tmp_path) == {"half_life_s": 604800.0}


def test_another_interactions_topic_than_the_states_is_one_line() -> None:
    from streamapp.kafka import baked_settings

    settings = load_settings({"STREAMAPP_ID": "shop", "STREAMAPP_TOPIC_PREFIX": "p-"})
    problem = baked_settings.source_problem
    assert problem(settings, None, "b2") is None  # nothing recorded (no topic ids then)
    assert problem(settings, "a1", None) is None  # deleted, not created again yet
    assert problem(settings, "a1", "a1") is None
    assert problem(settings, "a1", "b2") == (
        "p-interactions is not the topic the state of app 'shop' was counted from (topic id "
        "b2, the state's a1): it was deleted and created again, its offsets start over, and "
        "counting would take its records for replays of records already counted. Count it "
        "under a new app id (STREAMAPP_ID), which reads it from the beginning (README: A "
        "recreated interactions topic)"
    )


@pytest.mark.parametrize(
    ("env", "line"),
    [
        (
            {"KAFKA_BROKER": "kafka://127.0.0.1:1"},
            "streamapp: cannot reach the Kafka broker kafka://127.0.0.1:1 (KAFKA_BROKER): "
            "127.0.0.1:1: refused. Start that broker or correct KAFKA_BROKER.",
        ),
        (
            # What `make run` uses when KAFKA_BROKER is not set: the address came from the port.
            {"KAFKA_LOCAL_PORT": "47092"},
            "streamapp: cannot reach the Kafka broker kafka://127.0.0.1:47092 "
            "(from KAFKA_LOCAL_PORT=47092): 127.0.0.1:47092: refused. Start it with "
            "`KAFKA_LOCAL_PORT=47092 scripts/kafka-local.sh start` or set KAFKA_BROKER.",
        ),
        (
            {},
            "streamapp: cannot reach the Kafka broker kafka://127.0.0.1:9092 (the default: "
            "neither KAFKA_BROKER nor KAFKA_LOCAL_PORT is set): 127.0.0.1:9092: refused. "
            "Start it with `scripts/kafka-local.sh start` or set KAFKA_BROKER.",
        ),
    ],
)
def test_an_unreachable_broker_names_the_setting_it_came_from(
    env: dict[str, str], line: str
) -> None:
    from streamapp.kafka.startup import unreachable_broker_line

    settings = load_settings(env)
    host, port = settings.broker_addresses[0]
    assert unreachable_broker_line("streamapp", settings, f"{host}:{port}: refused") == line


def test_a_bad_token_is_refused_without_showing_it() -> None:
    with pytest.raises(ConfigError) as refused:
        load_settings({"STREAMAPP_API_TOKEN": "s3cret"})
    assert str(refused.value) == (
        "STREAMAPP_API_TOKEN (its value not shown) is invalid: at least 8 characters, no spaces"
    )


def test_the_group_member_id_stays_across_restarts_and_changes_with_the_url() -> None:
    """Static membership: the same worker (host, data dir, URL) rejoins as the same member;
    another data dir, host or URL is another member (a moved URL must not inherit the old
    assignment, whose URL the other workers route to)."""
    base = {"STREAMAPP_ID": "app", "STREAMAPP_DATA_DIR": "/srv/w1", "WEB_PORT": "7001"}
    one = group_instance_id(load_settings(base), "host-a")
    assert one == group_instance_id(load_settings(dict(base)), "host-a")
    assert one is not None and one.startswith("app-host-a-")
    others = {
        group_instance_id(load_settings({**base, "STREAMAPP_DATA_DIR": "/srv/w2"}), "host-a"),
        group_instance_id(load_settings({**base, "WEB_PORT": "7002"}), "host-a"),
        group_instance_id(load_settings(base), "host-b"),
        group_instance_id(
            load_settings({**base, "STREAMAPP_CANONICAL_URL": "http://10.0.0.5:7001"}), "host-a"
        ),
    }
    assert one not in others and len(others) == 4
    named = load_settings({**base, "STREAMAPP_INSTANCE_ID": "pod-3"})
    assert group_instance_id(named, "host-a") == group_instance_id(named, "host-b")
    assert str(group_instance_id(named, "x")).startswith("app-pod-3-")
    moved = load_settings({**base, "STREAMAPP_INSTANCE_ID": "pod-3", "WEB_PORT": "7002"})
    assert group_instance_id(moved, "x") != group_instance_id(named, "x")
    assert (
        group_instance_id(load_settings({**base, "STREAMAPP_STATIC_MEMBERSHIP": "0"}), "h") is None
    )
    assert group_instance_id(load_settings(base), "we!rd host") is not None
    assert load_settings({}).session_timeout_s == 30.0


def test_a_state_format_this_version_cannot_read_is_one_line_that_says_how_out() -> None:
    from streamapp.core.state_format import READABLE_STATE_FORMATS, STATE_FORMAT
    from streamapp.kafka import baked_settings

    now = STATE_FORMAT
    assert now == 3  # 3 dropped format 2's seller index
    assert sorted(READABLE_STATE_FORMATS) == [2, 3]
    assert baked_settings.format_problem("app", {}) is None  # nothing recorded yet
    assert baked_settings.format_problem("app", {"state_format": float(now)}) is None
    assert baked_settings.format_problem("app", {"state_format": 2.0}) is None  # an upgrade
    newer = baked_settings.format_problem("app", {"state_format": float(now + 1)})
    assert newer == (
        f"the state of app 'app' is written in format {now + 1} by a newer streamapp, and this "
        "version reads format 2, 3: run the newer version on this worker too (README: "
        "Upgrades)"
    )
    older = baked_settings.format_problem("app", {"state_format": 1.0})
    assert older is not None and "no longer reads" in older and "\n" not in older
    # Recorded: when none is, or over an older one this version reads; never over a newer.
    assert baked_settings._format_to_record(None)
    assert baked_settings._format_to_record("2")
    assert not baked_settings._format_to_record(str(now))
    assert not baked_settings._format_to_record(str(now + 1))
    assert not baked_settings._format_to_record("1")


FAUST = "/work/.venv/lib/python3.11/site-packages/faust/__main__.py"  # python -m faust


@pytest.mark.parametrize(
    "argv",
    [
        [FAUST, "-A", "streamapp.app", "--datadir", "/srv/w2", "worker", "--web-port", "7001"],
        ["faust", "-A", "streamapp.app", "--datadir=/srv/w2", "worker", "--web-port=7001"],
        ["faust", "-D", "/srv/w2", "-A", "streamapp.app", "worker", "-l", "info", "-p", "7001"],
        ["/x/bin/faust", "-D/srv/w2", "-Astreamapp.app", "worker", "-p7001", "--without-web"],
        # the value of -W is a word like a command: it is skipped as a value
        [
            "faust",
            "-W",
            "worker",
            "-A",
            "streamapp.app",
            "--datadir",
            "/srv/w2",
            "worker",
            "-p",
            "7001",
        ],
    ],
)
def test_settings_given_as_fausts_options(argv: list[str]) -> None:
    """faust's --datadir and the worker's --web-port / --web-host, read from its command
    line: faust imports the app before it reads them, and would apply them to its own
    settings only (the data dir ignored, the URL others reach the worker at wrong)."""
    given = command_line_settings(argv)
    assert given == {"datadir": "/srv/w2", "WEB_PORT": "7001"}
    settings = load_settings({"WEB_PORT": "6066", "STREAMAPP_DATA_DIR": "/srv/env"}, given)
    assert (settings.web_port, settings.own_url) == (7001, "http://127.0.0.1:7001")
    assert settings.data_dir == Path("/srv/w2")
    named = load_settings({"STREAMAPP_ID": "shop"}, {"datadir": "/srv/{conf.name}"})
    assert named.data_dir == Path("/srv/shop")  # faust's placeholder, filled as faust does


@pytest.mark.parametrize(
    "argv",
    [
        # a test runner's or a tool's command line is not faust's
        ["/x/bin/pytest", "-q", "tests/unit", "-k", "worker", "-p", "no:cacheprovider"],
        ["/x/streamapp/serve.py", "--datadir", "/srv/w2"],
        # -p and -h are the worker's: of another command they are not settings
        ["faust", "-A", "streamapp.app", "tables", "-p", "1"],
        # nothing after --
        ["faust", "-A", "streamapp.app", "worker", "--", "-p", "1", "--datadir", "x"],
    ],
)
def test_no_setting_from_other_command_lines(argv: list[str]) -> None:
    assert command_line_settings(argv) == {}
    assert load_settings({}, command_line_settings(argv)).data_dir == Path("./var/streamapp")
