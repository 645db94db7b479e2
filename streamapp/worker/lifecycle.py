"""How the worker process starts and ends, beyond what faust does itself.

- A bounded shutdown: faust stops gracefully on SIGTERM/SIGINT (commits what it can), but
  with its broker gone it retries forever. A watchdog ends the process after a bound.
- The terminal cursor: faust's start-up spinner hides it, and an exit during start-up never
  shows it again.
- Harmless error lines on a fresh broker or topic (see StartUpNoise) kept out of the log.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import re
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger("streamapp")

SHOW_CURSOR = b"\x1b[?25h"


def show_cursor() -> None:
    """Make the cursor visible again when stderr is a terminal (after faust's spinner)."""
    with contextlib.suppress(OSError):
        if os.isatty(2):
            os.write(2, SHOW_CURSOR)


def install_cursor_restore() -> None:
    """Exits that run atexit (a crash during start-up) show the cursor too; os._exit paths
    call show_cursor() themselves."""
    atexit.register(show_cursor)


class ShutdownWatchdog:
    """Ends the process `timeout_s` after the first SIGTERM/SIGINT if faust's graceful stop
    has not finished by then (e.g. it is still waiting for a broker that was stopped)."""

    def __init__(self, timeout_s: float, exit: Callable[[int], Any] = os._exit) -> None:
        self.timeout_s = timeout_s
        self._exit = exit
        self._timer: threading.Timer | None = None

    def install(self, signals: tuple[int, ...] = (signal.SIGTERM, signal.SIGINT)) -> None:
        """Call after faust installed its handlers (loop.add_signal_handler). Replacing the
        Python-level handler keeps asyncio's dispatch to faust: asyncio learns of a signal
        through the wakeup fd, which the interpreter writes for any Python-level handler."""
        for sig in signals:
            previous = signal.getsignal(sig)

            def handler(signum: int, frame: Any, previous: Any = previous) -> None:
                self.arm(signum)
                if callable(previous):
                    previous(signum, frame)

            signal.signal(sig, handler)

    def arm(self, signum: int) -> None:
        if self._timer is not None:
            return
        name = signal.Signals(signum).name
        log.info(
            "streamapp: %s received: stopping (committing what can be committed); the process "
            "ends within %gs whatever the broker does",
            name,
            self.timeout_s,
        )
        # A thread, not a loop callback: the event loop may be the thing that is stuck.
        self._timer = threading.Timer(self.timeout_s, self.fire, args=(name,))
        self._timer.daemon = True
        self._timer.start()

    def fire(self, name: str) -> None:
        line = (
            f"streamapp: graceful stop after {name} did not finish within {self.timeout_s:g}s "
            "(STREAMAPP_SHUTDOWN_TIMEOUT; is the broker reachable?): exiting now. Events not "
            "yet committed are processed again on the next start, without double counting.\n"
        )
        try:
            log.warning(line.rstrip())
        except Exception:
            with contextlib.suppress(OSError):
                os.write(2, line.encode())
        show_cursor()
        self._exit(1)


class StartUpNoise(logging.Filter):
    """Errors aiokafka logs while a fresh broker or a topic just created gets ready, and
    retries until it is: `GroupCoordinatorNotAvailableError` while the broker creates its
    offsets topic, `NotLeaderForPartitionError` while a new topic's partitions get their
    leader. Until the first partition assignment each kind is replaced by one INFO line
    that says so; afterwards they pass (then they may mean trouble)."""

    KINDS = {
        "GroupCoordinatorNotAvailableError": "waiting for the broker's group coordinator "
        "(GroupCoordinatorNotAvailableError is normal while a fresh broker creates its "
        "offsets topic; retrying)",
        "NotLeaderForPartitionError": "waiting for the partition leaders of topics just "
        "created (NotLeaderForPartitionError is normal right after a topic is created; "
        "retrying)",
    }

    def __init__(self) -> None:
        super().__init__()
        self.active = True
        self.explained: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.active:
            return True
        message = record.getMessage()
        kind = next((k for k in self.KINDS if k in message), None)
        if kind is None:
            return True
        if kind not in self.explained:
            self.explained.add(kind)
            log.info("streamapp: %s", self.KINDS[kind])
        return False


start_up_filter = StartUpNoise()


class OncePerKind(logging.Filter):
    """During a broker outage aiokafka logs the same few errors hundreds of times a second
    (`Unable connect to node`, `Unable to update metadata`, `NodeNotReadyError`). One line
    per kind of trouble every `every_s` seconds, with how many were held back, tells an
    operator the same. A kind is the message with its digits taken out."""

    def __init__(self, every_s: float = 5.0, clock: Any = time.monotonic) -> None:
        super().__init__()
        self.every_s = every_s
        self.clock = clock
        self.kinds: dict[tuple[str, str], list[float]] = {}  # kind -> [last shown, held back]

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        kind = (record.name, _DIGITS.sub("#", str(record.msg)))
        now = self.clock()
        seen = self.kinds.get(kind)
        if seen is not None and now - seen[0] < self.every_s:
            seen[1] += 1
            return False
        held = int(seen[1]) if seen is not None else 0
        if len(self.kinds) > 1000:
            self.kinds.clear()
        self.kinds[kind] = [now, 0]
        if held:
            record.msg = f"{record.msg} ({held} more like it in the last {self.every_s:g} s)"
        return True


_DIGITS = re.compile(r"\d+")
kafka_client_filter = OncePerKind()


def install_log_filters() -> None:
    for name in ("aiokafka.consumer.group_coordinator", "aiokafka.consumer.fetcher"):
        logging.getLogger(name).addFilter(start_up_filter)
    # Filters on a logger do not apply to its children's records: put it on each.
    for name in (
        "aiokafka",
        "aiokafka.conn",
        "aiokafka.client",
        "aiokafka.cluster",
        "aiokafka.consumer.fetcher",
        "aiokafka.consumer.group_coordinator",
        "aiokafka.producer.sender",
        "aiokafka.producer.producer",
        "faust.transport.drivers.aiokafka",
        "faust.transport.consumer",
    ):
        logging.getLogger(name).addFilter(kafka_client_filter)
