"""Session fixtures: a real Kafka broker (the project's script) unless KAFKA_BROKER is set."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator

import pytest

from tests.harness import ROOT, kill_all_workers, remove_all_brokers

TEST_BROKER_PORT = os.environ.get("STREAMAPP_TEST_KAFKA_PORT", "19092")


@pytest.fixture(scope="session")
def bootstrap() -> Iterator[str]:
    """host:port of a broker; started (and stopped again) here when none is configured."""
    configured = os.environ.get("KAFKA_BROKER")
    if configured:
        # No broker of ours, but the workers are: a SIGTERM of the test run stops them too.
        previous = {sig: signal.signal(sig, _stop_workers_and_exit) for sig in STOP_SIGNALS}
        try:
            yield configured.removeprefix("kafka://").split(";")[0].split(",")[0]
        finally:
            kill_all_workers()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return
    script = ROOT / "scripts" / "kafka-local.sh"
    env = {**os.environ, "KAFKA_LOCAL_PORT": TEST_BROKER_PORT}
    was_running = subprocess.run([script, "status"], env=env, capture_output=True).returncode == 0
    started = subprocess.run(
        [script, "start"], env=env, capture_output=True, text=True, timeout=600
    )
    if started.returncode != 0:
        pytest.fail(f"could not start the local broker:\n{started.stderr[-3000:]}")

    def stop_broker() -> None:
        if not was_running:
            subprocess.run([script, "stop"], env=env, capture_output=True, timeout=120)

    def on_signal(signum: int, frame: object) -> None:
        stop_broker()
        _stop_workers_and_exit(signum, frame)

    previous = {sig: signal.signal(sig, on_signal) for sig in STOP_SIGNALS}
    try:
        yield started.stdout.strip().splitlines()[-1]
    finally:
        kill_all_workers()
        remove_all_brokers()
        stop_broker()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


def _stop_workers_and_exit(signum: int, frame: object) -> None:
    kill_all_workers()
    remove_all_brokers()
    # Neither SystemExit nor pytest.exit (an Exception too): raised inside a test, or inside
    # a polling loop's `except Exception`, they are taken for one failure and the session
    # goes on with the next test and its new workers. KeyboardInterrupt ends the session
    # (fixture teardown still runs; pytest exits 2).
    raise KeyboardInterrupt(f"stopped by signal {signum}")
