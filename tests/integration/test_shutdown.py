"""SIGTERM ends a worker in bounded time, whatever its broker does."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.harness import LocalBroker, Namespace
from tests.integration.conftest import new_worker

pytestmark = pytest.mark.integration


def test_sigterm_ends_the_worker_even_when_its_broker_is_gone(
    local_broker: LocalBroker, workers, tmp_path: Path
) -> None:
    ns = Namespace(local_broker.start())
    worker = new_worker(workers, ns, tmp_path / "data", STREAMAPP_SHUTDOWN_TIMEOUT="5s").start()
    local_broker.stop()  # as when `make run` and the broker are stopped together

    # faust's graceful stop waits for the broker forever; the watchdog ends it. The harness
    # SIGKILLs after 60 s, which would show as -9.
    code = worker.stop(signal.SIGTERM, timeout=60)
    log = worker.log_path.read_text(errors="replace")
    assert code in (0, 1), worker.tail()
    assert "SIGTERM received: stopping" in log
    if code == 1:
        assert "did not finish within 5s" in log
