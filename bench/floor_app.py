"""The faust floor: a bare faust agent that only counts events (`faust -A bench.floor_app worker`).

It reads the same preloaded interactions topic as the worker, with the worker's own speed
settings (`streamapp.worker.faust_settings.speed_options`) and the worker's delivery of a
record to its stream (`faust_fixes.apply_eager_delivery`, 12.; `{"delivery": "faust"}` in
BENCH_FLOOR_SETTINGS for faust's own), the worker's resumed fetching after a full stream
buffer (`faust_fixes.apply_prompt_resume`, 15.; with either delivery: it is a wait, not a
per-record cost), and the same environment variables
(KAFKA_BROKER, STREAMAPP_ID, STREAMAPP_TOPIC_PREFIX, STREAMAPP_PARTITIONS, STREAMAPP_DATA_DIR,
WEB_PORT, WEB_HOST), under its own app id, so its own consumer group. Whatever a faust agent
costs per event at the least, on this machine and with these settings, it shows: no agent that
sees every event through a Stream can go faster without tuning faust itself.

Benchmark-only environment:
  BENCH_FLOOR_EXPECT    N: the events to wait for (the topic's record count)
  BENCH_FLOOR_SETTINGS  JSON object of faust settings laid over speed_options(), for the
                        settings sweep; "monitor": "lean" | "default" picks the monitor

Progress and the measurement are served at GET /floor (JSON): the time (CLOCK_MONOTONIC,
which the benchmark process shares) and this process's CPU time (/proc/self/stat) when the
first event, the (N/10)-th and the N-th were seen. Taking them here, inside the loop, costs
one comparison per event, and no request from the benchmark lands in the measured window's
CPU except its cheap progress polls.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import Any

import faust
import orjson
from faust.types import StreamT
from faust.web import Request, Response, View

from streamapp.core.config import ConfigError, load_settings
from streamapp.runtime import tune_gc
from streamapp.worker import faust_fixes
from streamapp.worker.faust_settings import LeanMonitor, speed_options

log = logging.getLogger("bench.floor")
CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_s() -> float:
    """User + system CPU seconds of this process, all threads (as the benchmark reads it)."""
    with open("/proc/self/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def options_from_env(base: dict[str, Any]) -> dict[str, Any]:
    """speed_options() with BENCH_FLOOR_SETTINGS laid over it."""
    options = dict(base)
    overrides = orjson.loads(os.environ.get("BENCH_FLOOR_SETTINGS") or "{}")
    for name, value in overrides.items():
        if name == "delivery":
            if value not in DELIVERIES:
                raise SystemExit(f"floor: delivery must be one of {DELIVERIES}, not {value!r}")
            options["delivery"] = value
        elif name == "monitor":
            if value not in ("lean", "default"):
                raise SystemExit(f"floor: monitor must be 'lean' or 'default', not {value!r}")
            options["monitor"] = LeanMonitor() if value == "lean" else None
        else:
            options[name] = value
    return options


try:
    settings = load_settings()
except ConfigError as exc:
    sys.stderr.write(f"floor: configuration error: {exc}\n")
    raise SystemExit(2) from None

expect = int(os.environ.get("BENCH_FLOOR_EXPECT", "0"))
# How faust's fetch loop hands a record to the stream: "eager" is the worker's
# (faust_fixes 12.), "faust" faust's own (four tasks per record).
DELIVERIES = ("eager", "faust")
options = options_from_env({**speed_options(settings), "delivery": "eager"})
DELIVERY = options.pop("delivery")
if DELIVERY == "eager":
    faust_fixes.apply_eager_delivery()
# Fetching resumes when the stream's buffer drains, as in the worker (faust_fixes 15.).
faust_fixes.apply_prompt_resume()

app = faust.App(
    settings.app_id,
    broker=settings.broker,
    datadir=str(settings.data_dir),
    topic_allow_declare=True,
    web_port=settings.web_port,
    web_host=settings.web_host,
    web_bind=settings.web_host,
    canonical_url=f"http://{settings.web_host}:{settings.web_port}",
    **options,
)

# Declared exactly like the worker's source topic (streamapp/topics.py): raw bytes.
interactions = app.topic(
    settings.topic("interactions"),
    key_serializer="raw",
    value_serializer="raw",
    partitions=settings.partitions,
    internal=True,
)


class Progress:
    """Events seen, and (monotonic time, CPU seconds) at the marks."""

    def __init__(self, expect: int) -> None:
        self.events = 0
        self.expect = expect
        self.thresholds = sorted({1, max(1, expect // 10), max(1, expect)})
        self.next_mark = self.thresholds[0]
        self.marks: dict[int, tuple[float, float]] = {}

    def mark(self) -> None:
        self.marks[self.events] = (time.monotonic(), cpu_s())
        later = [t for t in self.thresholds if t > self.events]
        self.next_mark = later[0] if later else sys.maxsize
        if self.expect and self.events >= self.expect:
            log.info("floor: all %d events seen", self.events)

    def as_json(self) -> dict[str, Any]:
        return {
            "events": self.events,
            "expect": self.expect,
            "done": bool(self.expect) and self.events >= self.expect,
            "marks": [
                {"events": n, "monotonic": t, "cpu_s": c}
                for n, (t, c) in sorted(self.marks.items())
            ],
            "settings": {k: repr(v) for k, v in options.items()},
            "delivery": DELIVERY,
        }


progress = Progress(expect)


@app.task
async def tune() -> None:
    """The worker's garbage-collector settings (it calls tune_gc() as it starts)."""
    tune_gc()


@app.agent(interactions)
async def floor(stream: StreamT) -> None:
    p = progress
    async for _event in stream.events():
        p.events += 1
        if p.events >= p.next_mark:  # the only extra work per event: one comparison
            p.mark()


@app.page("/floor")
class FloorView(View):
    async def get(self, request: Request) -> Response:
        return self.json(progress.as_json())
