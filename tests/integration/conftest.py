from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import LocalBroker, Namespace, Worker

pytestmark = pytest.mark.integration


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[list[Worker]]:
    """Workers a test starts are registered here and always stopped by PID afterwards."""
    started: list[Worker] = []
    yield started
    for worker in started:
        worker.kill()


def new_worker(
    started: list[Worker], ns: Namespace, data_dir: Path, name: str = "w", **env: str
) -> Worker:
    worker = Worker(ns, data_dir, name, **env)
    started.append(worker)
    return worker


@pytest.fixture
def local_broker() -> Iterator[LocalBroker]:
    """A broker of the test's own on a free port (not started yet); stopped by its PID and
    its folders removed afterwards, also when the test fails."""
    broker = LocalBroker()
    try:
        yield broker
    finally:
        broker.remove()
