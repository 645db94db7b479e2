"""Shared parts of the benchmark: processes, the broker, /proc readings, percentiles.

Every process started here is stopped by its own PID (or process group), and every wait
is bounded. Nothing here imports from tests/ or starts anything on its own.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
KAFKA_SCRIPT = ROOT / "scripts" / "kafka-local.sh"
PARTITIONS = 8
CLK_TCK = os.sysconf("SC_CLK_TCK")
FORBIDDEN_PORTS = {9092, 19092, 19192, 19292}  # other people's brokers on this machine


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any streamapp/web setting, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STREAMAPP_", "WEB_"))}
    env.pop("KAFKA_BROKER", None)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


# -- percentiles -------------------------------------------------------------------------
def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile of an ascending sequence (q in 0..100); None when empty."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q / 100.0 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def summary_ms(values_s: Iterable[float], quantiles: Sequence[float] = (50, 99, 99.9)) -> dict:
    """{'n', 'p50', 'p99', 'p99.9', 'max'} in milliseconds; inf (a failure) becomes None."""
    values = sorted(values_s)
    out: dict[str, float | int | None] = {"n": len(values)}
    for q in quantiles:
        v = percentile(values, q)
        out[f"p{q:g}"] = None if v is None or math.isinf(v) else round(v * 1000, 3)
    top = values[-1] if values else None
    out["max"] = None if top is None or math.isinf(top) else round(top * 1000, 3)
    return out


# -- /proc -------------------------------------------------------------------------------
def proc_status_kb(pid: int, field_name: str) -> int | None:
    """A `kB` field of /proc/<pid>/status (VmRSS, VmHWM), or None when the process is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def proc_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of a process (all its threads)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def machine_cpu() -> tuple[float, float]:
    """(busy, total) jiffies of all cores since boot, from /proc/stat."""
    with open("/proc/stat") as f:
        parts = [int(x) for x in f.readline().split()[1:]]
    idle = parts[3] + (parts[4] if len(parts) > 4 else 0)
    total = sum(parts[:8])
    return total - idle, total


@dataclass
class CpuWindow:
    """CPU use between start() and stop(): the whole machine and one process."""

    pid: int | None = None
    t0: float = 0.0
    busy0: float = 0.0
    total0: float = 0.0
    proc0: float | None = None
    result: dict = field(default_factory=dict)

    def start(self) -> CpuWindow:
        self.t0 = time.monotonic()
        self.busy0, self.total0 = machine_cpu()
        self.proc0 = proc_cpu_s(self.pid) if self.pid else None
        return self

    def stop(self) -> dict:
        wall = max(time.monotonic() - self.t0, 1e-9)
        busy, total = machine_cpu()
        cores = os.cpu_count() or 1
        self.result = {
            "wall_s": round(wall, 3),
            "machine_busy_pct": round(100.0 * (busy - self.busy0) / max(total - self.total0, 1), 1),
            "loadavg": [round(x, 2) for x in os.getloadavg()],
            "cores": cores,
        }
        if self.pid and self.proc0 is not None:
            now = proc_cpu_s(self.pid)
            if now is not None:
                self.result["process_cpu_pct_of_one_core"] = round(
                    100.0 * (now - self.proc0) / wall, 1
                )
        return self.result


def thread_sched_s(pid: int, tid: int) -> tuple[float, float] | None:
    """(seconds on a CPU, seconds runnable but waiting for one) of one thread of a process
    (/proc/<pid>/task/<tid>/schedstat)."""
    try:
        with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
            ran, waited = f.read().split()[:2]
    except (OSError, ValueError):
        return None
    return int(ran) / 1e9, int(waited) / 1e9


class MainThreadIdle:
    """How a process's main thread (its event loop) spent windows of `every` seconds, from
    start() until stop() (at most `longest` seconds): on a CPU, runnable but waiting for one
    (a busy machine), or asleep; and how much CPU the whole process used. `stop(between=)`
    keeps the windows inside the producer's sending. While records arrive every fraction of
    a millisecond, a window in which the main thread slept more than 90 % of the time and
    the process used under 10 % of a core (so no other thread of it held the GIL the loop
    waited for) is a worker idle while work waits: how faust_fixes 15. was found
    (docs/performance.md)."""

    IDLE_ABOVE = 0.9

    def __init__(self, pid: int, longest: float, every: float = 0.25) -> None:
        self.pid, self.longest, self.every = pid, longest, every
        # (end of window, share on a CPU, share waiting for one, process CPU share)
        self.windows: list[tuple[float, float, float, float]] = []
        self.schedstat_works = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="main-thread-idle")

    def start(self) -> MainThreadIdle:
        self._thread.start()
        return self

    def _run(self) -> None:
        last, cpu, at = thread_sched_s(self.pid, self.pid), proc_cpu_s(self.pid), time.monotonic()
        end = at + self.longest
        while not self._stop.wait(self.every) and last is not None and cpu is not None:
            now, cpu_now, t = (
                thread_sched_s(self.pid, self.pid),
                proc_cpu_s(self.pid),
                time.monotonic(),
            )
            if now is None or cpu_now is None or t > end:
                return
            wall = max(t - at, 1e-9)
            ran, waited = (now[0] - last[0]) / wall, (now[1] - last[1]) / wall
            self.windows.append((t, ran, waited, (cpu_now - cpu) / wall))
            self.schedstat_works = self.schedstat_works or now[0] > 0
            last, cpu, at = now, cpu_now, t

    def stop(self, between: tuple[float, float] | None = None) -> dict:
        self._stop.set()
        self._thread.join(5)
        windows = [
            w
            for w in self.windows
            if between is None or between[0] + self.every <= w[0] <= between[1]
        ]
        n = len(windows)
        if not self.schedstat_works:  # a kernel without sched_info: all zeros
            return {"window_s": self.every, "windows": n, "schedstat": "unavailable"}

        def pct(i: int) -> float | None:
            return round(100 * sum(w[i] for w in windows) / n, 1) if n else None

        return {
            "window_s": self.every,
            "windows": n,
            "idle_windows": sum(
                1
                for _, ran, waited, proc in windows
                if 1 - ran - waited > self.IDLE_ABOVE and proc < 0.1
            ),
            "main_thread_pct": pct(1),
            "runqueue_pct": pct(2),
            "process_pct": pct(3),
        }

    @staticmethod
    def describe(figures: dict) -> str:
        """stop()'s figures in words, for the log line and the report ("" without them)."""
        if not figures.get("windows") or "idle_windows" not in figures:
            return ""
        return (
            f"worker's loop {figures['main_thread_pct']} % busy, {figures['runqueue_pct']} % "
            f"waiting for a CPU, idle in {figures['idle_windows']} of {figures['windows']} "
            f"windows of {figures['window_s']} s"
        )


def data_dir_bytes(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.path.getsize(os.path.join(root, name))
    return total


# -- processes ---------------------------------------------------------------------------
class Reaper:
    """Every child process the benchmark starts, so that all are stopped on any exit."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []

    def add(self, proc: subprocess.Popen) -> subprocess.Popen:
        self.procs.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            stop_process(proc, group=True, timeout=30)
        self.procs.clear()


def stop_process(
    proc: subprocess.Popen, group: bool = True, sig: int = signal.SIGTERM, timeout: float = 60
) -> int | None:
    """Signal a child (its process group when it has its own), SIGKILL after `timeout`."""
    if proc.poll() is not None:
        return proc.returncode

    def send(s: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if group:
                os.killpg(proc.pid, s)
            else:
                os.kill(proc.pid, s)

    send(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        send(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10)
    return proc.returncode


def run_json_process(
    args: list[str], timeout: float, reaper: Reaper, log_path: Path | None = None
) -> dict:
    """Run `python -m ...` in its own process group; its stdout is one JSON object."""
    import orjson

    err = log_path.open("ab") if log_path else subprocess.DEVNULL
    proc = reaper.add(
        subprocess.Popen(
            [sys.executable, *args],
            cwd=ROOT,
            env=clean_env(),
            stdout=subprocess.PIPE,
            stderr=err,
            start_new_session=True,
        )
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop_process(proc)
        raise TimeoutError(f"{' '.join(args[:3])} did not finish in {timeout:.0f}s") from None
    finally:
        if log_path and err is not subprocess.DEVNULL:
            err.close()  # type: ignore[union-attr]
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args[:3])} exited with {proc.returncode}; see {log_path}")
    return orjson.loads(out.strip().splitlines()[-1])


class Worker:
    """`python -m faust -A <module> worker -l info` with its own port and data dir.

    module is streamapp.app (the worker) or bench.floor_app (the faust floor); both read the
    same environment variables. `env` adds to them (e.g. STREAMAPP_UPDATES=each)."""

    name = "worker"

    def __init__(
        self,
        bootstrap: str,
        app_id: str,
        prefix: str,
        data_dir: Path,
        log_path: Path,
        module: str = "streamapp.app",
        env: dict[str, str] | None = None,
        loglevel: str = "info",
    ) -> None:
        self.bootstrap = bootstrap
        self.app_id = app_id
        self.prefix = prefix
        self.data_dir = data_dir
        self.log_path = log_path
        self.module = module
        self.extra_env = dict(env or {})
        self.loglevel = loglevel
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.started_at = 0.0
        self.cwd = ROOT  # the source tree it runs (bench.serve_ab runs two)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def environment(self) -> dict[str, str]:
        """The worker's environment (a serving process beside it starts from the same)."""
        return clean_env(
            KAFKA_BROKER=f"kafka://{self.bootstrap}",
            STREAMAPP_ID=self.app_id,
            STREAMAPP_TOPIC_PREFIX=self.prefix,
            STREAMAPP_DATA_DIR=str(self.data_dir),
            STREAMAPP_PARTITIONS=str(PARTITIONS),
            WEB_PORT=str(self.port),
            WEB_HOST="127.0.0.1",
            **self.extra_env,
        )

    def command(self) -> list[str]:
        return [sys.executable, "-m", "faust", "-A", self.module, "worker", "-l", self.loglevel]

    def start(self, reaper: Reaper) -> None:
        assert self.proc is None or self.proc.poll() is not None, f"{self.name} already running"
        env = self.environment()
        with self.log_path.open("ab") as out:
            out.write(f"\n===== start {time.strftime('%H:%M:%S')} =====\n".encode())
            out.flush()
            self.started_at = time.monotonic()
            self.proc = reaper.add(
                subprocess.Popen(
                    self.command(),
                    cwd=self.cwd,
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def check_alive(self) -> None:
        if not self.alive():
            raise RuntimeError(f"{self.name} exited; see {self.log_path}:\n{self.tail()}")

    def get_json(self, path: str, timeout: float = 1.0) -> dict | None:
        """GET <path> as JSON; None when the process does not answer (yet)."""
        import orjson

        try:
            with urllib.request.urlopen(self.url + path, timeout=timeout) as resp:
                return orjson.loads(resp.read())
        except (OSError, ValueError):
            return None

    def health(self, timeout: float = 1.0) -> int | None:
        try:
            with urllib.request.urlopen(self.url + "/health", timeout=timeout) as resp:
                return resp.status
        except urllib.error.HTTPError as err:
            return err.code
        except OSError:
            return None

    def wait_ready(self, timeout: float, interval: float = 0.05) -> float:
        """Seconds from process start until GET /health answers 200 (bounded)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            if self.health(timeout=0.5) == 200:
                return time.monotonic() - self.started_at
            time.sleep(interval)
        raise TimeoutError(f"{self.name} not ready after {timeout:.0f}s; see {self.log_path}")

    def stop(self, timeout: float = 60) -> float:
        """SIGTERM (clean shutdown); seconds it took."""
        if self.proc is None:
            return 0.0
        t0 = time.monotonic()
        stop_process(self.proc, group=True, timeout=timeout)
        return time.monotonic() - t0

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class Serve(Worker):
    """`python -m streamapp.serve` beside a running worker: the worker's environment (its
    data dir, app id, topics, WEB_PORT to proxy to) plus STREAMAPP_SERVE_PORT/HOST. It
    answers the lookup endpoints from the worker's RocksDB state (a secondary instance),
    and /health like the worker: 200 once it can serve."""

    name = "serve"

    def __init__(self, worker: Worker, log_path: Path) -> None:
        super().__init__(
            worker.bootstrap,
            worker.app_id,
            worker.prefix,
            worker.data_dir,
            log_path,
            env=worker.extra_env,
        )
        self.worker = worker  # self.port (from free_port) is the serving port

    def environment(self) -> dict[str, str]:
        env = self.worker.environment()
        env.update(
            STREAMAPP_SERVE_PORT=str(self.port),
            STREAMAPP_SERVE_HOST="127.0.0.1",
            # A second one may join it (stages.latency.serve.processes).
            STREAMAPP_SERVE_REUSE_PORT="1",
        )
        return env

    def listening(self) -> bool:
        """Its own web server is up (on a shared port, /health may be another's answer)."""
        return "streamapp serve: http://" in self.tail(200)

    def command(self) -> list[str]:
        return [sys.executable, "-m", "streamapp.serve"]


# -- the broker --------------------------------------------------------------------------
def lock_port(port: int):
    """One benchmark at a time per broker port: a second one would share (and at its end
    stop) the first one's broker. Returns the open lock file (keep it open), or exits."""
    import fcntl

    if os.environ.get("BENCH_LOCK_HELD") == str(port):  # `make bench` holds it already
        return None
    # Machine-wide, like the port: a benchmark in another checkout counts too.
    lock = open(f"/tmp/streamapp-bench-{port}.lock", "w")  # noqa: SIM115 (held for the run)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise SystemExit(
            f"bench: another benchmark is using the broker on 127.0.0.1:{port}; "
            "wait for it, or give this one its own port (--kafka-port / BENCH_KAFKA_PORT)"
        ) from None
    return lock


def kafka_env(port: int, fresh: bool) -> dict[str, str]:
    env = dict(os.environ, KAFKA_LOCAL_PORT=str(port))
    if fresh:
        env["KAFKA_LOCAL_FRESH"] = "1"
    return env


def broker_start(port: int, fresh: bool = True, timeout: float = 240) -> str:
    if port in FORBIDDEN_PORTS:
        raise SystemExit(f"refusing port {port}: it belongs to other users of this machine")
    out = subprocess.run(
        ["bash", str(KAFKA_SCRIPT), "start"],
        cwd=ROOT,
        env=kafka_env(port, fresh),
        stdout=subprocess.PIPE,
        timeout=timeout,
        check=True,
    )
    return out.stdout.decode().strip().splitlines()[-1]


def broker_pid(port: int) -> int | None:
    """The PID of the broker scripts/kafka-local.sh started on `port` (its pid file)."""
    try:
        return int((ROOT / ".kafka" / f"kafka-{port}.pid").read_text().strip())
    except (OSError, ValueError):
        return None


def broker_stop(port: int, timeout: float = 120) -> None:
    subprocess.run(
        ["bash", str(KAFKA_SCRIPT), "stop"],
        cwd=ROOT,
        env=kafka_env(port, fresh=False),
        timeout=timeout,
        check=False,
    )
