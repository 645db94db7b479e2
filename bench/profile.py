"""py-spy on the worker during ingest: a flame graph (SVG) and a top-N summary.

py-spy is optional (`.venv/bin/pip install py-spy`); without it the run goes on unprofiled.
Both recordings are non-blocking (the worker is not paused to take a sample).
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

from bench.common import Reaper, stop_process

FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def py_spy() -> str | None:
    local = Path(sys.executable).parent / "py-spy"
    return str(local) if local.exists() else shutil.which("py-spy")


class Recorder:
    def __init__(self, pid: int, seconds: float, svg: Path, raw: Path, reaper: Reaper) -> None:
        self.pid, self.seconds, self.svg, self.raw = pid, seconds, svg, raw
        self.reaper = reaper
        self.procs: list[subprocess.Popen] = []
        self.log = raw.with_suffix(".log")

    def start(self) -> bool:
        exe = py_spy()
        if exe is None:
            return False
        common = [
            "record",
            "--nonblocking",
            "--function",
            "-r",
            "100",
            "-d",
            str(int(self.seconds)),
        ]
        # The flame graph has every non-idle sample (a thread waiting for a CPU counts too);
        # the summary only samples taken while a thread held the GIL: Python's own CPU work.
        with self.log.open("wb") as log:
            for fmt, extra, out in (("flamegraph", [], self.svg), ("raw", ["--gil"], self.raw)):
                cmd = [exe, *common, *extra, "--format", fmt, "-o", str(out)]
                cmd += ["--pid", str(self.pid)]
                self.procs.append(
                    self.reaper.add(
                        subprocess.Popen(cmd, stdout=log, stderr=log, start_new_session=True)
                    )
                )
        return True

    def finish(self, timeout: float) -> None:
        """Wait for the recordings; SIGINT (py-spy then writes what it has) if still going."""
        for proc in self.procs:
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                stop_process(proc, group=False, sig=signal.SIGINT, timeout=15)

    def stop_early(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                stop_process(proc, group=False, sig=signal.SIGINT, timeout=15)


def short_file(path: str) -> str:
    for marker in ("site-packages/", "/lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
            if marker == "/lib/python3":
                path = path.split("/", 1)[1] if "/" in path else path
            return path
    if "/streamapp/" in path:
        return "streamapp/" + path.split("/streamapp/", 1)[1]
    return path


def label(frame: str) -> tuple[str, str]:
    """'func (path:line)' -> ('func (short/path.py)', package)."""
    m = FRAME.match(frame.strip())
    if not m:
        return frame.strip(), frame.strip()
    file = short_file(m["file"])
    package = file.split("/", 1)[0].removesuffix(".py") if "/" in file else file.removesuffix(".py")
    return f"{m['func']} ({file})", package


def summarise(raw: Path, top: int = 10) -> dict:
    """Self and inclusive shares of non-idle samples, per function and per package."""
    self_c: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    pkg: Counter[str] = Counter()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [
            label(f) for f in stack.split(";") if f and not f.startswith(("process ", "thread "))
        ]
        if not frames:
            continue
        total += n
        leaf, leaf_pkg = frames[-1]
        self_c[leaf] += n
        pkg[leaf_pkg] += n
        for name in {f for f, _ in frames}:
            incl[name] += n
    if not total:
        return {"samples": 0}

    def pct(c: Counter[str], k: int) -> list[tuple[str, float]]:
        return [(name, 100.0 * n / total) for name, n in c.most_common(k)]

    # Inclusive shares: skip the plumbing that nearly every sample passes through (event
    # loop, CLI, faust's agent/service runners, aiohttp's request dispatch).
    plumbing = (
        "Agent._execute_actor",
        "Service._execute_task",
        "aiohttp/web_",
        "faust/web/",
        "json_errors (",
        "run_forever",
        "_run_once",
        "_run (asyncio/events.py)",
        "<module>",
        "run_module",
        "_run_code",
        "main (",
        "execute_from_commandline",
        "run_until_complete",
        "_run_module_as_main",
        "start (mode",
        "cli",
        "invoke",
        "__call__ (click",
    )
    deep = Counter({k: v for k, v in incl.items() if not any(p in k for p in plumbing)})
    return {
        "samples": total,
        "top_self": pct(self_c, top),
        "top_inclusive": pct(deep, top),
        "by_package": pct(pkg, 12),
    }


# What a worker's GIL samples were spent on, by the innermost frame that decides it (checked
# in this order): standby replay of another worker's changelogs, this worker's own counting
# and output, or the rest (faust's consumer path, which carries both, aiokafka, the loop).
SPLIT = (
    (
        "standby",
        (
            "faust/tables/recovery.py",
            "apply_changelog_batch",
            "changelog_restore",
            "_apply_standby_fetch",  # faust_fixes 11.: standby records a fetch at a time
            "_write_changelog_records",
        ),
    ),
    (
        "own_partitions",
        (
            "streamapp/worker/ingest.py",
            "streamapp/worker/checkpoint.py",
            "streamapp/kafka/outbox.py",
            "streamapp/core/",
            "aiokafka/producer/",
        ),
    ),
)


def split(raw: Path) -> dict[str, float]:
    """Shares (%) of a py-spy raw recording's samples per SPLIT class, plus "rest"."""
    counts: Counter[str] = Counter()
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        kind = "rest"
        for name, marks in SPLIT:
            if any(mark in stack for mark in marks):
                kind = name
                break
        counts[kind] += int(count)
    total = sum(counts.values())
    names = [name for name, _ in SPLIT] + ["rest"]
    return {name: round(100.0 * counts[name] / total, 1) if total else 0.0 for name in names}
