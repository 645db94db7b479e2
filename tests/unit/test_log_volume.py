"""During a broker outage aiokafka logs the same errors hundreds of times a second; an
operator gets one line per kind every few seconds, with how many were held back."""

from __future__ import annotations

import logging

from streamapp.worker.lifecycle import OncePerKind


def record(msg: str, level: int = logging.ERROR, name: str = "aiokafka.conn") -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, None, None)


def test_one_line_per_kind_every_few_seconds_with_a_count() -> None:
    now = [0.0]
    watch = OncePerKind(every_s=5.0, clock=lambda: now[0])
    shown = []
    for i in range(1408):
        now[0] = i * 0.015  # about 21 seconds of an outage
        for msg in (
            f"Unable connect to node with id {i % 3}: refused",
            "Unable to update metadata",
        ):
            r = record(msg)
            if watch.filter(r):
                shown.append(r.getMessage())
    assert 8 <= len(shown) <= 12  # two kinds, one line each per 5 s
    assert any("more like it in the last 5 s" in line for line in shown)


def test_info_and_debug_pass_untouched() -> None:
    watch = OncePerKind(every_s=5.0, clock=lambda: 0.0)
    assert all(watch.filter(record("joined group 3", logging.INFO)) for _ in range(10))


def test_start_up_noise_is_one_info_line_per_kind_until_the_first_assignment(caplog) -> None:
    from streamapp.worker.lifecycle import StartUpNoise

    noise = StartUpNoise()

    def record(message: str) -> logging.LogRecord:
        return logging.LogRecord(
            "aiokafka.consumer.fetcher", logging.ERROR, "", 0, message, (), None
        )

    leader = "Failed fetch offsets from 1: [Error 6] NotLeaderForPartitionError: tp"
    coordinator = "Group Coordinator Request failed: [Error 15] GroupCoordinatorNotAvailableError"
    with caplog.at_level(logging.INFO, logger="streamapp"):
        assert [noise.filter(record(m)) for m in (leader, leader, coordinator)] == [False] * 3
        assert noise.filter(record("Unable connect to node 1")) is True  # not start-up noise
    said = [r.getMessage() for r in caplog.records if r.name == "streamapp"]
    assert len(said) == 2 and "NotLeaderForPartitionError" in said[0]
    noise.active = False  # the first assignment: from now on they may mean trouble
    assert noise.filter(record(leader)) is True
