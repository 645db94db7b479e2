"""The loader's line parsing, its messages and its exit status, without a broker."""

from __future__ import annotations

import io
import json
from collections import Counter
from pathlib import Path

import pytest
from aiokafka.errors import KafkaConnectionError

from streamapp.core.config import load_settings
from streamapp.core.models import InteractionMessage, User
from streamapp.tools import loader
from streamapp.tools.loader import Exit, Summary, exit_status, outcome, parse_line


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"not json\n", "not valid JSON: expected ident at column 2"),
        (b'{"id": "u1",}\n', "not valid JSON: trailing comma at column 13"),
        (b'{"id": "u1"\n', "not valid JSON: EOF while parsing an object at column 11"),
        (b'{"id": "u1"} x\n', "not valid JSON: trailing characters at column 14"),
        (b'{"id": "u1",}\r\n', "not valid JSON: trailing comma at column 13"),
        (b'{"id": "\xff"}\n', "not UTF-8 text at byte 9"),
        (b'{"age": 3}\n', "id: Field required"),
        (b'{"id": "u1", "age": "x"}\n', "age: Input should be a valid integer"),
        (b"[1, 2]\n", "message: Input should be an object"),
    ],
)
def test_a_bad_line_gets_a_reason_without_a_position_inside_the_record(
    line: bytes, reason: str
) -> None:
    assert parse_line(User, line) == reason


def test_a_good_line_is_the_message() -> None:
    for end in (b"\n", b"\r\n", b""):
        parsed = parse_line(User, b'{"id": "u1", "age": 30, "favorite_categories": ["a"]}' + end)
        assert parsed == User(id="u1", age=30, favorite_categories=["a"])


def test_rejects_carry_the_file_line_number_counting_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "interactions.jsonl"
    good = '{"id": "i1", "user_id": "u1", "seller_id": "s1", "interaction_kind": "LIKE"}'
    path.write_text(f"{good}\n\nnot json\n{good}\n{{}}\n\n")
    rejects = io.StringIO()
    summary = Summary()
    sent = list(loader.validated("interactions", path, rejects, summary))
    assert sent == [(b"u1", good.encode())] * 2
    missing = "id: Field required; user_id: Field required; seller_id: Field required"
    records = [json.loads(line) for line in rejects.getvalue().splitlines()]
    assert [(r["line"], r["error"], r["value"]) for r in records] == [
        (3, "not valid JSON: expected ident at column 2", "not json"),
        (5, f"{missing}; (+1 more)", "{}"),
    ]
    assert all(r["file"] == str(path) and r["source"] == "interactions" for r in records)
    assert summary.rejected == Counter(interactions=2)
    assert summary.lines_of == {
        "interactions: not valid JSON: expected ident at column 2": [3],
        f"interactions: {missing}; (+1 more)": [5],
    }
    # The parsed messages are the worker's model; `sent` is what the broker acknowledged.
    assert InteractionMessage.model_validate_json(sent[0][1]).id == "i1"


def test_the_summary_names_the_lines_of_each_reason() -> None:
    summary = Summary(sent=Counter(users=3))
    for number in (2, 4, 6, 8):
        summary.reject("users", number, "not valid JSON: expected value at column 1")
    summary.reject("users", 9, "id: Field required")
    assert summary.render().splitlines() == [
        "source              sent  rejected",
        "users                  3         5",
        "  4 x users: not valid JSON: expected value at column 1 (lines 2, 4, 6, ...)",
        "  1 x users: id: Field required (line 9)",
    ]


def summary_of(sent: int, rejected: int) -> Summary:
    summary = Summary(sent=Counter(users=sent))
    for number in range(rejected):
        summary.reject("users", number + 1, "id: Field required")
    return summary


@pytest.mark.parametrize(
    ("sent", "rejected", "allow_rejects", "status"),
    [
        (5, 0, False, Exit.OK),
        (5, 0, True, Exit.OK),
        (5, 2, False, Exit.PARTIAL),
        (5, 2, True, Exit.OK),
        (0, 2, False, Exit.NOTHING_LOADED),
        # Nothing sent is not a partial load: --allow-rejects does not make it a success.
        (0, 2, True, Exit.NOTHING_LOADED),
        (0, 0, False, Exit.NOTHING_LOADED),
        (0, 0, True, Exit.NOTHING_LOADED),
    ],
)
def test_exit_status(sent: int, rejected: int, allow_rejects: bool, status: Exit) -> None:
    assert exit_status(summary_of(sent, rejected), allow_rejects) is status


def test_the_exit_codes_are_distinct_and_documented() -> None:
    assert [int(e) for e in Exit] == [0, 1, 2, 3, 4]
    help_text = loader.parser().format_help()
    for status in Exit:
        assert f"\n  {int(status)}  " in loader.__doc__
        assert f"\n  {int(status)}  " in help_text


@pytest.mark.parametrize(
    ("sent", "rejected", "rejects", "allow_rejects", "line"),
    [
        (5, 0, None, False, "streamapp-load: sent 5 lines, none rejected"),
        (
            5,
            2,
            Path("rej.jsonl"),
            False,
            "streamapp-load: partial load: sent 5 lines, rejected 2 (each with its reason in "
            "rej.jsonl); exit status 1, --allow-rejects makes it 0",
        ),
        (
            1,
            1,
            None,
            True,
            "streamapp-load: partial load: sent 1 line, rejected 1 (the most common reasons "
            "above; --rejects FILE lists every one)",
        ),
        (
            0,
            3,
            Path("rej.jsonl"),
            True,
            "streamapp-load: nothing sent: every line was rejected (3 lines; each with its "
            "reason in rej.jsonl)",
        ),
        (0, 0, None, False, "streamapp-load: nothing sent: the files have no lines"),
    ],
)
def test_the_outcome_line_says_what_was_sent(
    sent: int, rejected: int, rejects: Path | None, allow_rejects: bool, line: str
) -> None:
    assert outcome(summary_of(sent, rejected), rejects, allow_rejects) == line


@pytest.mark.parametrize(
    ("env", "origin"),
    [
        ({}, "default"),
        ({"KAFKA_BROKER": ""}, "default"),
        ({"KAFKA_LOCAL_PORT": "47092"}, "KAFKA_LOCAL_PORT"),
        ({"KAFKA_LOCAL_PORT": "47092", "KAFKA_BROKER": "kafka://h:1"}, "KAFKA_BROKER"),
    ],
)
def test_broker_origin(env: dict[str, str], origin: str) -> None:
    assert load_settings(env).broker_origin == origin


@pytest.fixture
def users_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("KAFKA_BROKER", "KAFKA_LOCAL_PORT", "STREAMAPP_TOPIC_PREFIX"):
        monkeypatch.delenv(name, raising=False)
    path = tmp_path / "users.jsonl"
    path.write_text('{"id": "u1"}\n')
    return path


def test_the_broker_is_named_before_the_wait_for_it(
    users_file: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("STREAMAPP_BROKER_WAIT", "3s")
    said_before_the_wait: list[str] = []

    async def unreachable(addresses: list[tuple[str, int]], wait_s: float) -> str:
        assert (addresses, wait_s) == ([("127.0.0.1", 9092)], 3.0)
        said_before_the_wait.append(capsys.readouterr().err)
        return "127.0.0.1:9092: Connection refused"

    monkeypatch.setattr(loader, "broker_unreachable", unreachable)
    assert loader.main([f"--users={users_file}"]) == Exit.BROKER
    assert said_before_the_wait == [
        "streamapp-load: connecting to kafka://127.0.0.1:9092 (the default), waiting up to 3s\n"
    ]
    assert capsys.readouterr().err == (
        "streamapp-load: cannot reach the Kafka broker kafka://127.0.0.1:9092 (the default: "
        "neither KAFKA_BROKER nor KAFKA_LOCAL_PORT is set): 127.0.0.1:9092: Connection "
        "refused; nothing was sent. Start it with `scripts/kafka-local.sh start` or set "
        "KAFKA_BROKER.\n"
    )


async def reachable(addresses: list[tuple[str, int]], wait_s: float) -> None:
    return None


def test_a_broker_lost_during_the_load_says_what_was_written(
    users_file: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    async def failing_load(settings, files, rejects, progress, summary: Summary) -> Summary:
        summary.connected = True
        summary.sent["users"] += 10_000
        raise KafkaConnectionError("connection lost")

    monkeypatch.setenv("KAFKA_LOCAL_PORT", "47092")
    monkeypatch.setattr(loader, "broker_unreachable", reachable)
    monkeypatch.setattr(loader, "load", failing_load)
    assert loader.main([f"--users={users_file}", "--no-progress"]) == Exit.BROKER
    assert capsys.readouterr().err.splitlines() == [
        "streamapp-load: connecting to kafka://127.0.0.1:47092 (from KAFKA_LOCAL_PORT), "
        "waiting up to 15s",
        "streamapp-load: the broker kafka://127.0.0.1:47092 failed during the load "
        "(KafkaConnectionError: connection lost): 10000 lines were "
        "written before, the rest may not have been. Loading the same files again is safe "
        "(interactions are counted once per id, profiles are replaced).",
    ]


def test_a_producer_that_cannot_start_is_an_unreachable_broker(
    users_file: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    async def failing_load(settings, files, rejects, progress, summary: Summary) -> Summary:
        raise KafkaConnectionError("Unable to bootstrap")

    monkeypatch.setenv("KAFKA_BROKER", "kafka://127.0.0.1:5")
    monkeypatch.setattr(loader, "broker_unreachable", reachable)
    monkeypatch.setattr(loader, "load", failing_load)
    assert loader.main([f"--users={users_file}", "--no-progress"]) == Exit.BROKER
    assert capsys.readouterr().err.splitlines()[1] == (
        "streamapp-load: cannot reach the Kafka broker kafka://127.0.0.1:5 (KAFKA_BROKER): "
        "KafkaConnectionError: Unable to bootstrap; nothing was sent. Start that broker or "
        "correct KAFKA_BROKER."
    )


def test_usage_and_configuration_errors_exit_2(
    users_file: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for argv in ([], ["--users=/no/such/file.jsonl"], ["--bogus"]):
        with pytest.raises(SystemExit) as exited:
            loader.main(argv)
        assert exited.value.code == Exit.USAGE
    monkeypatch.setenv("STREAMAPP_BROKER_WAIT", "soon")
    capsys.readouterr()
    assert loader.main([f"--users={users_file}"]) == Exit.USAGE
    assert capsys.readouterr().err == (
        "streamapp-load: configuration error: STREAMAPP_BROKER_WAIT: not a duration: 'soon' "
        "(use e.g. 7d, 12h, 30m, 90s)\n"
    )
