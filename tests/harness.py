"""Real parts for integration tests: the project's broker script, worker processes, Kafka I/O.

Every process started here is stopped by its PID (process group), also when a test fails,
and every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_port_pair() -> int:
    """A free port whose successor is free too (a local broker's controller port)."""
    for _ in range(50):
        port = free_port()
        if port < 65535:
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
            return port
    raise RuntimeError("no two consecutive free ports")


def wait_until(check: Any, timeout: float, interval: float = 0.2, what: str = "condition") -> Any:
    """Poll `check()` until it returns a truthy value; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except Exception as exc:
            last_error = exc
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}; last error: {last_error!r}")


@dataclass
class Namespace:
    """One isolated app: its id, topic prefix and bootstrap address."""

    bootstrap: str
    app_id: str = field(default_factory=lambda: f"t{uuid.uuid4().hex[:10]}")
    partitions: int = 8

    @property
    def prefix(self) -> str:
        return f"{self.app_id}-"

    def topic(self, name: str) -> str:
        return f"{self.prefix}{name}"

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("STREAMAPP_", "WEB_"))}
        env.update(
            KAFKA_BROKER=f"kafka://{self.bootstrap}",
            STREAMAPP_ID=self.app_id,
            STREAMAPP_TOPIC_PREFIX=self.prefix,
            STREAMAPP_PARTITIONS=str(self.partitions),
            STREAMAPP_LOG_EVERY="5s",
            PYTHONUNBUFFERED="1",
        )
        env.update(extra)
        return env


LIVE: set[subprocess.Popen[bytes]] = set()  # every worker process still running


def kill_all_workers() -> None:
    """Last resort (session end, SIGTERM/SIGINT of the test run): no worker outlives it."""
    for proc in list(LIVE):
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)
        LIVE.discard(proc)


class Worker:
    """`faust -A streamapp.app worker` as a real process with its own port and data dir."""

    def __init__(self, ns: Namespace, data_dir: Path, name: str = "w", **env: str) -> None:
        self.ns = ns
        self.data_dir = data_dir
        self.port = free_port()
        self.name = name
        self.extra_env = env
        ARTIFACTS.mkdir(exist_ok=True)
        self.log_path = ARTIFACTS / f"{ns.app_id}-{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.code = ROOT  # where `streamapp` is imported from (another version's tree)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, wait: bool = True, timeout: float = 90.0) -> Worker:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        env = self.env()
        log = self.log_path.open("ab")
        log.write(f"\n===== start {self.starts} =====\n".encode())
        log.flush()
        self.proc = subprocess.Popen(
            self.command(),
            cwd=self.code,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stop it and all it spawned
        )
        log.close()
        LIVE.add(self.proc)
        self.starts += 1
        if wait:
            self.wait_ready(timeout)
        return self

    def env(self) -> dict[str, str]:
        return self.ns.env(
            STREAMAPP_DATA_DIR=str(self.data_dir), WEB_PORT=str(self.port), **self.extra_env
        )

    def command(self) -> list[str]:
        return [sys.executable, "-m", "faust", "-A", "streamapp.app", "worker", "-l", "info"]

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_ready(self, timeout: float = 90.0) -> None:
        def ready() -> bool:
            if not self.alive():
                raise RuntimeError(f"worker exited: see {self.log_path}\n{self.tail()}")
            try:
                return self.get("/health")[0] == 200
            except OSError:
                return False

        wait_until(ready, timeout, what=f"worker {self.name} ready")

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 45.0) -> int | None:
        """Signal the worker's process group; SIGKILL it if it outlives `timeout`."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        LIVE.discard(self.proc)
        return self.proc.returncode

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    # -- HTTP ----------------------------------------------------------------------------
    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
        timeout: float = 10.0,
    ) -> tuple[int, Any]:
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        deadline = time.monotonic() + 30.0
        while True:
            req = urllib.request.Request(
                self.url + path, data=data, method=method, headers=headers or {}
            )
            try:
                with urllib.request.urlopen(req, timeout=timeout) as resp:
                    return resp.status, _decode(resp.read(), resp.headers.get_content_type())
            except urllib.error.HTTPError as err:
                status, answer = err.code, _decode(err.read(), err.headers.get_content_type())
            # A worker busy ingesting refuses lookups over their share with 503 + Retry-After;
            # like any good client, ask again (other 503s are what tests look at).
            busy = isinstance(answer, dict) and str(answer.get("error", "")).startswith(
                "lookups have used their share"
            )
            if not busy or time.monotonic() > deadline:
                return status, answer
            time.sleep(0.2)

    def get(self, path: str, **kw: Any) -> tuple[int, Any]:
        return self.request("GET", path, **kw)

    def get_with_headers(self, path: str, timeout: float = 10.0) -> tuple[int, Any, Any]:
        return self.with_headers("GET", path, timeout=timeout)

    def with_headers(
        self, method: str, path: str, body: Any = None, timeout: float = 10.0
    ) -> tuple[int, Any, Any]:
        """One request, no retry: status, decoded body and the response's headers."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                body = _decode(resp.read(), resp.headers.get_content_type())
                return resp.status, body, resp.headers
        except urllib.error.HTTPError as err:
            return err.code, _decode(err.read(), err.headers.get_content_type()), err.headers

    def post(self, path: str, body: Any = None, **kw: Any) -> tuple[int, Any]:
        return self.request("POST", path, body=body, **kw)

    def query(self, pairs: list[tuple[str, str]]) -> list[dict[str, Any]]:
        status, body = self.post(
            "/affinity/query", {"pairs": [{"user_id": u, "seller_id": s} for u, s in pairs]}
        )
        assert status == 200, body
        return body["results"]


class Server(Worker):
    """`python -m streamapp.serve` beside `worker`: its environment, its data dir, a port of
    its own. Same HTTP helpers as a worker."""

    def __init__(self, worker: Worker, name: str = "serve", **env: str) -> None:
        super().__init__(worker.ns, worker.data_dir, name, **env)
        self.worker = worker

    def env(self) -> dict[str, str]:
        return self.ns.env(
            STREAMAPP_DATA_DIR=str(self.worker.data_dir),
            WEB_PORT=str(self.worker.port),
            STREAMAPP_SERVE_PORT=str(self.port),
            **{**self.worker.extra_env, **self.extra_env},
        )

    def command(self) -> list[str]:
        return [sys.executable, "-m", "streamapp.serve"]


def _decode(raw: bytes, content_type: str) -> Any:
    if content_type == "application/json":
        return json.loads(raw)
    return raw.decode(errors="replace")


# -- Kafka I/O ---------------------------------------------------------------------------
@dataclass
class Out:
    """One record to produce."""

    topic: str
    value: bytes | None
    key: bytes | None = None
    timestamp_ms: int | None = None
    partition: int | None = None  # None: the producer's partitioner picks (murmur2 of key)


def produce(bootstrap: str, records: Iterable[Out]) -> None:
    async def run() -> None:
        # Idempotence keeps per-partition order through retries (profile updates depend on it).
        producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap, linger_ms=5, acks="all", enable_idempotence=True
        )
        await producer.start()
        try:
            await send_all(producer, records)
        finally:
            await producer.stop()

    asyncio.run(asyncio.wait_for(run(), 120))


async def send_all(producer: AIOKafkaProducer, records: Iterable[Out]) -> None:
    """Send, flush, and wait until the broker confirmed every record."""
    futures = [
        await producer.send(
            r.topic, r.value, key=r.key, timestamp_ms=r.timestamp_ms, partition=r.partition
        )
        for r in records
    ]
    await producer.flush()
    for f in futures:
        await f


def consume_all(
    bootstrap: str,
    topic: str,
    partitions: int,
    expect: int = 0,
    timeout: float = 60.0,
    settle: float = 2.0,
    isolation_level: str = "read_uncommitted",
) -> list[Any]:
    """Every record of `topic` from the start: at least `expect` of them (or the timeout),
    then until nothing new arrived for `settle` seconds, so extras are seen too."""

    async def run() -> list[Any]:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level=isolation_level,
        )
        await consumer.start()
        try:
            consumer.assign([TopicPartition(topic, p) for p in range(partitions)])
            await consumer.seek_to_beginning()
            out: list[Any] = []
            deadline = time.monotonic() + timeout
            quiet_since = time.monotonic()
            while time.monotonic() < deadline:
                batch = await consumer.getmany(timeout_ms=200)
                got = [m for msgs in batch.values() for m in msgs]
                out.extend(got)
                if got:
                    quiet_since = time.monotonic()
                elif len(out) >= expect and time.monotonic() - quiet_since > settle:
                    break
            return out
        finally:
            await consumer.stop()

    return asyncio.run(run())


def committed_and_end(
    bootstrap: str, group: str, topics: list[str], partitions: int
) -> dict[str, tuple[int, int]]:
    """{"topic[p]": (the group's committed offset, the partition's end)} for every partition
    of `topics`; the end is the last stable offset (what a read-committed reader can reach).
    A partition without a commit shows -1."""

    async def run() -> dict[str, tuple[int, int]]:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, isolation_level="read_committed")
        await admin.start()
        await consumer.start()
        try:
            committed = await admin.list_consumer_group_offsets(group)
            tps = [TopicPartition(t, p) for t in topics for p in range(partitions)]
            ends = await consumer.end_offsets(tps)
            return {
                f"{tp.topic}[{tp.partition}]": (
                    committed[tp].offset if tp in committed else -1,
                    ends[tp],
                )
                for tp in tps
            }
        finally:
            await consumer.stop()
            await admin.close()

    return asyncio.run(asyncio.wait_for(run(), 60))


# -- a broker of a test's own --------------------------------------------------------------
BROKERS: set[LocalBroker] = set()  # every broker a test started and has not stopped yet


class LocalBroker:
    """scripts/kafka-local.sh on a free port, for tests that need a broker of their own
    (a fresh one, or one they stop). Its data and log folders are removed by `remove()`."""

    def __init__(self) -> None:
        self.port = free_port_pair()
        self.script = ROOT / "scripts" / "kafka-local.sh"
        BROKERS.add(self)  # also when something else (make run) starts it on this port

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("KAFKA_")}
        return {**env, "KAFKA_LOCAL_PORT": str(self.port), **extra}

    def run(self, action: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.script), action],
            cwd=ROOT,
            env=self.env(**extra),
            capture_output=True,
            text=True,
            timeout=600,
        )

    def start(self, fresh: bool = False) -> str:
        out = self.run("start", **({"KAFKA_LOCAL_FRESH": "1"} if fresh else {}))
        if out.returncode != 0:
            raise RuntimeError(f"broker on {self.port} did not start:\n{out.stderr[-3000:]}")
        return out.stdout.strip().splitlines()[-1]

    def pid(self) -> int | None:
        out = self.run("status")
        return int(out.stdout.split()[-1]) if out.returncode == 0 else None

    def stop(self) -> None:
        self.run("stop")

    def remove(self) -> None:
        """Stop it (by its PID, through the script) and delete its folders."""
        import shutil

        self.stop()
        state = ROOT / ".kafka"
        folders = [state / f"data-{self.port}", state / f"logs-{self.port}"]

        def removed() -> bool:
            # A JVM still finishing its shutdown can write files while they are removed.
            for folder in folders:
                shutil.rmtree(folder, ignore_errors=True)
            return not any(folder.exists() for folder in folders)

        with contextlib.suppress(TimeoutError):
            wait_until(removed, 30, interval=0.5, what=f"broker {self.port}'s folders removed")
        for name in (f"kafka-{self.port}.pid", f"kafka-{self.port}.lock"):
            (state / name).unlink(missing_ok=True)
        BROKERS.discard(self)


def remove_all_brokers() -> None:
    """Last resort (session end, SIGTERM of the test run): no test broker outlives it."""
    for broker in list(BROKERS):
        with contextlib.suppress(Exception):
            broker.remove()
