"""The streamapp benchmark: one run, every figure of issues #6, #10 and #13, against a real
local broker.

    python -m bench.run             # full: 1,000,000 interactions, 100,000 users, 10,000 sellers
    python -m bench.run --quick     # about 14 minutes: 100,000 / 10,000 / 1,000
    python -m bench.run --stages ingest,ceiling,faust_floor --interactions 300000

Stages (each a function below, sized by the options):
  ceiling      a plain aiokafka consumer reading and decoding the preloaded topic
  faust_floor  a bare faust agent (bench/floor_app.py, the worker's faust settings) that only
               counts the same preloaded events: what any faust agent costs at the least
  ingest       start one worker on the preloaded topic; time until the affinity-updates
               cover N interactions (each update counts `interactions_covered`, default 1)
  latency      with a separate producer adding interactions at half the measured ingest
               capacity: open-loop single, bulk(100) and top-k lookups from a separate process,
               each run twice: at the worker, and at a serving process beside it
               (python -m streamapp.serve; --no-serve: the worker only)
  freshness    interaction produced -> first affinity-update covering it, at half capacity
  recovery     time to /health 200 after a restart with the data dir intact, and empty
  ingest_two_workers  the ingest stage again with two workers (same app id, own data dir and
               port each) on a copy of the same data, next to the one-worker figure

The broker is started with scripts/kafka-local.sh on its own port (29092 unless
BENCH_KAFKA_PORT / --kafka-port say otherwise) and stopped at the end, also on failure.
Results: bench/results/latest.json and latest.md (the table is printed too).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import platform
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple

import aiohttp
import orjson
from aiokafka import AIOKafkaConsumer

from bench import raw_http, report, rolling
from bench.common import (
    FORBIDDEN_PORTS,
    PARTITIONS,
    RESULTS,
    ROOT,
    CpuWindow,
    MainThreadIdle,
    Reaper,
    Serve,
    Worker,
    broker_pid,
    broker_start,
    broker_stop,
    clean_env,
    data_dir_bytes,
    free_port,
    lock_port,
    log,
    proc_cpu_s,
    proc_status_kb,
    run_json_process,
    stop_process,
)
from bench.data import (
    TOP_USER,
    Preloaded,
    Sampler,
    UpdatesCounter,
    create_topics,
    end_offsets_total,
    preload,
    raw_consume,
)
from bench.floor import parse_setting, run_floor
from bench.freshness import batch_sizes, step_breakdown
from bench.profile import Recorder, split, summarise
from streamapp.core.config import ConfigError, Settings, load_settings

STAGES = (
    "ingest",
    "ceiling",
    "faust_floor",
    "latency",
    "freshness",
    "recovery",
    "ingest_two_workers",
    "rolling_restart",
)
# The ceiling and the floor run first, while no worker competes with them for the two
# cores; two workers run last, once the single worker has been stopped.
ORDER = (
    "ceiling",
    "faust_floor",
    "ingest",
    "latency",
    "freshness",
    "recovery",
    "ingest_two_workers",
    "rolling_restart",
)


@dataclass
class Ctx:
    args: argparse.Namespace
    reaper: Reaper
    bootstrap: str = ""
    app_id: str = ""
    prefix: str = ""
    workdir: Path = Path()
    worker: Worker | None = None
    meta: AIOKafkaConsumer | None = None
    updates: UpdatesCounter | None = None
    expected_updates: int = 0  # interactions the updates must cover once caught up
    truth: dict[tuple[str, str], int] = field(default_factory=dict)
    lookup_pairs: list[tuple[str, str]] = field(default_factory=list)
    pairs_file: Path = Path()
    top_user: str = TOP_USER
    worker_env: dict[str, str] = field(default_factory=dict)
    # The ingest stage's (seconds since start, interactions covered) at every 100 ms poll.
    ingest_progress: list[tuple[float, int]] = field(default_factory=list)
    results: dict[str, Any] = field(default_factory=dict)

    def topic(self, name: str) -> str:
        return f"{self.prefix}{name}"

    @property
    def stages(self) -> dict[str, Any]:
        return self.results.setdefault("stages", {})


# -- helpers -----------------------------------------------------------------------------
async def updates_total(ctx: Ctx) -> int:
    """Interactions covered by the affinity-updates so far (read by ctx.updates)."""
    assert ctx.updates is not None
    ctx.updates.check()
    return ctx.updates.covered


async def counted_by(workers: list[Worker]) -> int | None:
    """Sum of the workers' /stats `interactions_counted`, or None when one does not answer.

    The updates alone can over-cover: a worker that takes over a partition after a rebalance
    replays the events since the last commit, and a replay publishes an update again. The
    counter counts each interaction once, so it confirms completion with several workers."""
    counts = [await asyncio.to_thread(w.get_json, "/stats", 2.0) for w in workers]
    if any(c is None or "interactions_counted" not in c for c in counts):
        return None
    return sum(int(c["interactions_counted"]) for c in counts)  # type: ignore[index]


async def confirm_counted(workers: list[Worker], n: int, timeout: float = 30.0) -> int | None:
    """Once the updates cover n: wait (bounded) until /stats agrees; the last sum seen."""
    deadline = time.monotonic() + timeout
    while True:
        counted = await counted_by(workers)
        if counted is None or counted >= n or time.monotonic() > deadline:
            return counted
        await asyncio.sleep(0.1)


def half_capacity(ctx: Ctx) -> float:
    """Half the steady ingest rate measured by the ingest stage: the background rate of
    the latency stage and the freshness rate (issues #10 and #13)."""
    rate = ctx.stages.get("ingest", {}).get("events_per_s_steady")
    if not rate:
        raise RuntimeError("no measured ingest capacity (the ingest stage failed)")
    return float(max(1, round(rate / 2)))


async def backlog(ctx: Ctx) -> int:
    """Interactions on the topic not yet covered by an update. Every interaction the run
    produces has a unique id and is valid, so the worker is caught up exactly when the
    updates cover the interactions topic's record count."""
    assert ctx.meta is not None
    produced = await end_offsets_total(ctx.meta, ctx.topic("interactions"))
    ctx.expected_updates = max(ctx.expected_updates, produced)
    return ctx.expected_updates - await updates_total(ctx)


async def wait_caught_up(ctx: Ctx, timeout: float, slack: int = 0) -> float:
    """Until the updates cover every interaction produced so far (`slack` short of it, for
    a producer still running); seconds waited."""
    t0 = time.monotonic()
    while True:
        behind = await backlog(ctx)
        if behind <= slack:
            return time.monotonic() - t0
        assert ctx.worker is not None
        ctx.worker.check_alive()
        if time.monotonic() - t0 > timeout:
            raise TimeoutError(
                f"worker did not catch up in {timeout:.0f}s: {behind} interactions behind"
            )
        await asyncio.sleep(0.2)


async def query(ctx: Ctx, pairs: list[tuple[str, str]], url: str = "") -> list[dict[str, Any]]:
    assert ctx.worker is not None or url
    body = {"pairs": [{"user_id": u, "seller_id": s} for u, s in pairs]}
    timeout = aiohttp.ClientTimeout(total=30)
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        session.post((url or ctx.worker.url) + "/affinity/query", json=body) as resp,  # type: ignore[union-attr]
    ):
        data = await resp.json()
        if resp.status != 200:
            raise RuntimeError(f"/affinity/query answered {resp.status}: {data}")
        return data["results"]


def stable_part(vector: dict[str, Any]) -> tuple:
    """The parts of a feature vector that do not depend on as_of."""
    return (
        vector["number_of_interactions"],
        tuple(sorted(vector["interactions_by_kind"].items())),
        vector["first_interaction_at"],
        vector["last_interaction_at"],
        vector["category_overlap"],
    )


async def check_truth(ctx: Ctx, url: str = "") -> tuple[int, int]:
    pairs = list(ctx.truth)
    results = await query(ctx, pairs, url)
    matched = sum(
        1
        for p, r in zip(pairs, results, strict=True)
        if r["number_of_interactions"] == ctx.truth[p]
    )
    return matched, len(pairs)


async def wait_responsive(ctx: Ctx, timeout: float = 60, target: Worker | None = None) -> None:
    """Until /health answers 200 within 50 ms (the previous load has drained); `target`:
    the worker unless given (a serving process)."""
    target = target or ctx.worker
    assert target is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        t0 = time.monotonic()
        code = await asyncio.to_thread(target.health, 1.0)
        if code == 200 and time.monotonic() - t0 < 0.05:
            return
        target.check_alive()
        await asyncio.sleep(0.2)
    raise TimeoutError(f"{target.name} stayed unresponsive after a load run")


def new_worker(ctx: Ctx, data_dir: Path) -> Worker:
    return Worker(
        ctx.bootstrap,
        ctx.app_id,
        ctx.prefix,
        data_dir,
        ctx.workdir / "worker.log",
        env=ctx.worker_env,
    )


# -- stages ------------------------------------------------------------------------------
async def stage_ceiling(ctx: Ctx) -> None:
    n = ctx.results["preload"]["interactions"]
    cpu = CpuWindow(pid=os.getpid()).start()
    out = await raw_consume(ctx.bootstrap, ctx.topic("interactions"), n, timeout=600)
    out["cpu"] = cpu.stop()
    ctx.stages["ceiling"] = out
    log(f"ceiling: {out['events_per_s']:,} events/s (raw consumer + orjson)")


async def stage_faust_floor(ctx: Ctx) -> None:
    """The bare faust agent over the same preloaded topic, under its own app id (so its own
    consumer group); rate and CPU per event between its first and its N-th event."""
    args = ctx.args
    out = await run_floor(
        bootstrap=ctx.bootstrap,
        prefix=ctx.prefix,
        app_id=f"{ctx.app_id}-floor",
        expect=ctx.results["preload"]["interactions"],
        workdir=ctx.workdir,
        reaper=ctx.reaper,
        settings=args.floor_settings,
        timeout=args.ingest_timeout,
        stall_timeout=args.stall_timeout,
        log_path=ctx.workdir / "floor.log",
    )
    ctx.stages["faust_floor"] = out
    log(
        f"faust floor: {out['events_per_s']:,} events/s, {out['cpu_us_per_event']} µs CPU "
        f"per event (first event after {out['first_event_s']} s)"
    )


async def stage_ingest(ctx: Ctx) -> None:
    args = ctx.args
    n = ctx.results["preload"]["interactions"]
    ctx.expected_updates = n
    worker = ctx.worker = new_worker(ctx, ctx.workdir / "data")
    assert ctx.updates is not None
    ctx.updates.check()
    worker.start(ctx.reaper)
    t0 = worker.started_at
    cpu = CpuWindow(pid=worker.pid).start()
    recorder = None
    first_t = first_total = first_cpu = ready_t = prof_end = None
    prof_t = 0.0
    last_total, last_progress, peak_rss, next_health = 0, t0, 0, t0
    series: list[tuple[float, int, int, int]] = []  # (s since start, re-keyed, updates, RSS kB)
    by_user = Settings(app_id=ctx.app_id, topic_prefix=ctx.prefix).internal_topic(
        "interactions-by-user"
    )
    assert ctx.meta is not None
    routed, next_routed, profiles_stored = 0, t0, 0
    users_changelog = f"{ctx.app_id}-users-changelog"
    while True:
        total = await updates_total(ctx)
        now = time.monotonic()
        if now >= next_routed:  # the app creates these topics: until then, no answer
            next_routed = now + 1.0
            with contextlib.suppress(Exception):
                routed = await asyncio.wait_for(end_offsets_total(ctx.meta, by_user), 1.0)
            if profiles_stored < args.users:
                with contextlib.suppress(Exception):
                    profiles_stored = await asyncio.wait_for(
                        end_offsets_total(ctx.meta, users_changelog), 1.0
                    )
        rss = proc_status_kb(worker.pid, "VmRSS") or 0
        peak_rss = max(peak_rss, rss)
        series.append((round(now - t0, 2), routed, total, rss))
        if ready_t is None and now >= next_health:
            next_health = now + 0.2
            if await asyncio.to_thread(worker.health, 0.5) == 200:
                ready_t = now - t0
        if first_t is None and total > 0:
            first_t, first_total, first_cpu = now, total, proc_cpu_s(worker.pid)
        if recorder is not None and prof_end is None and now >= prof_t + args.profile_seconds:
            prof_end = total
        # Profile the steady state: once the user profiles are stored (their agent competes
        # with counting until then), or half-way at the latest.
        if (
            recorder is None
            and args.profile
            and first_t is not None
            and now - first_t >= 1.0
            and (profiles_stored >= args.users or total >= n // 2)
            and total < n
        ):
            prof_t = now
            recorder = Recorder(
                worker.pid,
                args.profile_seconds,
                RESULTS / "profile.svg",
                RESULTS / "profile.txt",
                ctx.reaper,
            )
            if not recorder.start():
                log("py-spy not found: no profile (`.venv/bin/pip install py-spy`)")
                recorder, args.profile = None, False
            else:
                ctx.results["profile"] = {
                    "started_at_s": round(now - t0, 2),
                    "profiles_stored_at_start": profiles_stored,
                    "updates_at_start": total,
                    "routed_at_start": routed,
                }
                log(f"py-spy recording the worker for {args.profile_seconds:.0f} s")
        if total >= n:
            break
        if total > last_total:
            last_total, last_progress = total, now
        worker.check_alive()
        if now - last_progress > args.stall_timeout:
            raise TimeoutError(f"no progress for {args.stall_timeout:.0f}s at {total}/{n} updates")
        if now - t0 > args.ingest_timeout:
            raise TimeoutError(f"ingest not done in {args.ingest_timeout:.0f}s ({total}/{n})")
        if len(series) % 100 == 0:
            log(f"ingest: {total:,}/{n:,} updates after {now - t0:.0f} s")
        await asyncio.sleep(0.1)
    stats_counted = await confirm_counted([worker], n)
    done = time.monotonic()
    done_cpu = proc_cpu_s(worker.pid)
    cpu_result = cpu.stop()
    hwm = proc_status_kb(worker.pid, "VmHWM") or 0
    worker_cpu_s = cpu_result.get("process_cpu_pct_of_one_core", 0) / 100 * cpu_result["wall_s"]
    assert first_t is not None and first_total is not None
    steady_events = max(n - first_total, 1)
    out: dict[str, Any] = {
        "interactions": n,
        "distinct_pairs": ctx.results["preload"]["distinct_pairs"],
        "seconds_total": round(done - t0, 3),
        "first_update_s": round(first_t - t0, 3),
        "cold_ready_s": round(ready_t, 3) if ready_t is not None else None,
        "events_per_s_total": round(n / (done - t0)),
        "events_per_s_steady": round((n - first_total) / max(done - first_t, 1e-9)),
        # Worker CPU per interaction over the same steady window (first update -> last),
        # the figure to set against the faust floor's cpu_us_per_event.
        "cpu_us_per_event": (
            round((done_cpu - first_cpu) / steady_events * 1e6, 1)
            if done_cpu is not None and first_cpu is not None
            else None
        ),
        "interactions_covered": total,
        "stats_interactions_counted": stats_counted,
        # One per interaction with STREAMAPP_UPDATES=each, fewer when coalesced.
        "update_records": ctx.updates.records if ctx.updates else None,
        # Records that took the re-keying hop (the rest were already in their user's partition).
        "rekeyed": routed,
        "key_by": args.key_by,
        # CPU the worker spent per interaction (both agents, the web server, faust itself),
        # from process start, so start-up included: less sensitive to other load on the
        # machine than the rates are.
        "worker_cpu_us_per_event": round(worker_cpu_s / n * 1e6),
        "peak_rss_kb": max(hwm, peak_rss),
        "data_dir_mib": round(data_dir_bytes(worker.data_dir) / 2**20, 1),
        "cpu": cpu_result,
        "series": series[:: max(1, len(series) // 200)],
    }
    ctx.ingest_progress = [(t, covered) for t, _routed, covered, _rss in series]
    if recorder is not None:
        recorder.stop_early()
        recorder.finish(timeout=30)
        prof = summarise(RESULTS / "profile.txt") if (RESULTS / "profile.txt").exists() else {}
        seconds = min(args.profile_seconds, done - t0 - ctx.results["profile"]["started_at_s"])
        prof["seconds"] = round(seconds, 1)
        # Samples are taken 100 times a second, only while a thread holds the GIL.
        prof["gil_held_pct"] = round(prof.get("samples", 0) / (100 * max(seconds, 1e-9)) * 100, 1)
        end = prof_end if prof_end is not None else total
        prof["updates_during"] = end - ctx.results["profile"]["updates_at_start"]
        prof["events_per_s_during"] = round(prof["updates_during"] / max(seconds, 1e-9))
        # py-spy takes CPU from the worker on two cores: the steady rate without its window.
        rest_s = done - first_t - seconds
        if rest_s > 1:
            out["events_per_s_unprofiled"] = round(
                (n - first_total - prof["updates_during"]) / rest_s
            )
        ctx.results["profile"].update(prof)
    out["truth_matched"], out["truth_checked"] = await check_truth(ctx)
    # Every batch has a fixed cost (sends per partition, a confirmation, acks in order).
    out["batches"] = batch_sizes(await metrics_text(worker.url))
    ctx.stages["ingest"] = out
    log(
        f"ingest: {out['events_per_s_total']:,}/s total, {out['events_per_s_steady']:,}/s steady "
        f"({out['cpu_us_per_event']} µs CPU each), "
        f"truth {out['truth_matched']}/{out['truth_checked']}, "
        f"peak RSS {out['peak_rss_kb'] // 1024} MiB, batches {out['batches']}"
    )


def producer_cmd(
    ctx: Ctx,
    rate: float,
    duration: float,
    id_prefix: str,
    seed: int,
    topic: str = "",
    user_prefix: str = "",
) -> list[str]:
    a = ctx.args
    return [
        "-m",
        "bench.produce",
        "--bootstrap",
        ctx.bootstrap,
        "--topic",
        topic or ctx.topic("interactions"),
        "--user-prefix",
        user_prefix,
        "--rate",
        str(rate),
        "--duration",
        str(duration),
        "--id-prefix",
        id_prefix,
        "--users",
        str(a.users),
        "--sellers",
        str(a.sellers),
        "--user-skew",
        str(a.user_skew),
        "--seller-skew",
        str(a.seller_skew),
        "--seed",
        str(seed),
    ]


def bulk_body(pairs: list[tuple[str, str]], i: int, size: int = 100) -> dict[str, Any]:
    chosen = [pairs[(i * size + j) % len(pairs)] for j in range(size)]
    return {"pairs": [{"user_id": u, "seller_id": s} for u, s in chosen]}


async def profile_lookups(ctx: Ctx, seconds: float) -> None:
    """py-spy on the worker while bulk(100) lookups run back to back (no ingest)."""
    assert ctx.worker is not None
    svg, raw = RESULTS / "profile-lookups.svg", RESULTS / "profile-lookups.txt"
    recorder = Recorder(ctx.worker.pid, seconds, svg, raw, ctx.reaper)
    if not recorder.start():
        return
    done = 0
    t0 = time.monotonic()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        while time.monotonic() - t0 < seconds:
            body = bulk_body(ctx.lookup_pairs, done)
            async with session.post(ctx.worker.url + "/affinity/query", json=body) as resp:
                await resp.read()
            done += 1
    elapsed = time.monotonic() - t0
    await asyncio.to_thread(recorder.finish, 30)
    prof = summarise(raw) if raw.exists() else {}
    prof["seconds"] = round(elapsed, 1)
    prof["gil_held_pct"] = round(prof.get("samples", 0) / (100 * elapsed) * 100, 1)
    prof["requests_per_s_during"] = round(done / elapsed, 1)
    ctx.results["profile_lookups"] = prof


async def service_times(
    ctx: Ctx,
    singles: int = 1000,
    bulks: int = 300,
    tops: int = 1000,
    url: str = "",
    pid: int | None = None,
    floor: Floor | None = None,
) -> dict[str, Any]:
    """Closed loop, one request at a time, nothing else running: what one request costs
    (at `url`: the worker unless given), and with `pid` the server's CPU per request
    (server_cpu_ms: from /proc, 10 ms ticks over all of a mode's requests), which the
    client's own time and the machine's noise do not blur. With `floor` (the web floor's
    requests), each mode's requests take turns with the floor's, and the mode gets the
    floor's figures of those same seconds (`web_floor`)."""
    assert ctx.worker is not None or url
    url = url or ctx.worker.url  # type: ignore[union-attr]
    pairs = ctx.lookup_pairs
    out: dict[str, Any] = {}
    if not ctx.args.top_user_sellers:
        tops = 0
    top = f"/users/{raw_http.segment(ctx.top_user)}/top-sellers?k=10"

    def single(host: str, i: int) -> bytes:
        return raw_http.affinity(host, *pairs[i % len(pairs)])

    def bulk(host: str, i: int) -> bytes:
        return raw_http.post_json(host, "/affinity/query", orjson.dumps(bulk_body(pairs, i)))

    def top_k(host: str, i: int) -> bytes:
        return raw_http.get(host, top)

    # "bulk_again": the same bulk queries once more, as a ranking service asks for the
    # same pairs again (the vector memo's hits); "bulk" is every pair's first sight.
    for mode, count, build in (
        ("single", singles, single),
        ("bulk", bulks, bulk),
        ("bulk_again", bulks, bulk),
        ("top", tops, top_k),
    ):
        if count:
            streams = [raw_http.Stream(url, build, pid), *([floor.requests] if floor else [])]
            try:
                timed = await raw_http.interleaved(streams, count)
            except raw_http.StreamFailed as exc:
                if exc.index == 0:
                    raise RuntimeError(f"{mode} lookup: {exc}") from None
                # The floor failed, not the lookup: this mode again alone, the rest too.
                log(f"web floor failed during {mode} lookups ({exc}): timed without it")
                floor = None
                try:
                    timed = [await raw_http.one_at_a_time(url, build, count, pid=pid)]
                except RuntimeError as again:
                    raise RuntimeError(f"{mode} lookup: {again}") from None
            out[mode] = timed[0]
            if floor:
                out[mode]["web_floor"] = timed[1]
    return out


# -- the serving process (streamapp/serve.py) ---------------------------------------------
SERVE_READY_TIMEOUT = 120.0
# What a serving process that fails can raise here (TimeoutError is an OSError).
SERVE_ERRORS = (OSError, RuntimeError, ValueError, KeyError, aiohttp.ClientError)


def score_tolerance(as_of_a: str, as_of_b: str, half_life_s: float) -> float:
    """The relative difference two correct scores of one pair may show when computed at
    these two as_of: the score's decayed part shrinks by 2^(-dt / half-life), so by at
    most ln 2 * dt / half-life of itself (+1 ms for the as_of's rounding)."""
    dt = abs((datetime.fromisoformat(as_of_a) - datetime.fromisoformat(as_of_b)).total_seconds())
    return math.log(2) * (dt + 0.001) / half_life_s + 1e-12


def differing_fields(a: dict[str, Any], b: dict[str, Any], score_rel_tol: float) -> list[str]:
    """The fields in which two answers differ: as_of aside, the score to score_rel_tol."""
    out = []
    for k in sorted(a.keys() | b.keys()):
        if k == "as_of":
            continue
        x, y = a.get(k), b.get(k)
        if k == "user_seller_score" and isinstance(x, float) and isinstance(y, float):
            if not math.isclose(x, y, rel_tol=score_rel_tol, abs_tol=1e-12):
                out.append(k)
        elif x != y:
            out.append(k)
    return out


async def top_sellers(url: str, user_id: str, k: int = 10) -> dict[str, Any]:
    timeout = aiohttp.ClientTimeout(total=30)
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        session.get(f"{url}/users/{user_id}/top-sellers?k={k}") as resp,
    ):
        data = await resp.json()
        if resp.status != 200:
            raise RuntimeError(f"top-sellers answered {resp.status}: {data}")
        return data


def same_top(a: dict[str, Any], b: dict[str, Any], half_life_s: float) -> bool:
    tol = score_tolerance(a["as_of"], b["as_of"], half_life_s)
    x, y = a["sellers"], b["sellers"]
    return (
        a["user_id"] == b["user_id"]
        and len(x) == len(y)
        and all(not differing_fields(p, q, tol) for p, q in zip(x, y, strict=True))
    )


async def agreement(ctx: Ctx, serve: Serve, timeout: float = 30.0) -> dict[str, Any]:
    """Worker and serving process give the same answers for the truth pairs, some lookup
    pairs and the top-k of the top user: every field but as_of, the score to what the two
    as_of allow (score_tolerance). Asked worker first, then the serving process (a
    secondary instance can only be behind), again until they agree (bounded). Call it with
    ingest idle and the worker caught up."""
    pairs = list(dict.fromkeys([*ctx.truth, *ctx.lookup_pairs[:500]]))
    chunks = [pairs[i : i + 500] for i in range(0, len(pairs), 500)]
    with_top = bool(ctx.args.top_user_sellers)
    assert ctx.worker is not None
    try:  # the worker's own half-life (--worker-env may set STREAMAPP_HALF_LIFE)
        half_life_s = load_settings(ctx.worker.environment()).half_life_s
    except ConfigError:
        half_life_s = Settings().half_life_s
    t0 = time.monotonic()
    attempts = 0
    while True:
        attempts += 1
        serve.check_alive()
        fields: Counter[str] = Counter()
        example: dict[str, Any] | None = None
        mismatched = 0
        for chunk in chunks:
            mine = await query(ctx, chunk)
            theirs = await query(ctx, chunk, serve.url)
            for a, b in zip(mine, theirs, strict=True):
                diff = differing_fields(a, b, score_tolerance(a["as_of"], b["as_of"], half_life_s))
                if diff:
                    mismatched += 1
                    fields.update(diff)
                    example = example or {"worker": a, "serve": b}
        top_same = top_example = None
        if with_top:
            mine_top = await top_sellers(ctx.worker.url, ctx.top_user)
            theirs_top = await top_sellers(serve.url, ctx.top_user)
            top_same = same_top(mine_top, theirs_top, half_life_s)
            if not top_same:
                top_example = {
                    "worker": {**mine_top, "sellers": mine_top["sellers"][:3]},
                    "serve": {**theirs_top, "sellers": theirs_top["sellers"][:3]},
                }
        agreed = mismatched == 0 and top_same is not False
        if agreed or time.monotonic() - t0 > timeout:
            out = {
                "pairs": len(pairs),
                "mismatched": mismatched,
                "top_k_same": top_same,
                "agreed": agreed,
                "attempts": attempts,
                "seconds": round(time.monotonic() - t0, 3),
            }
            if not agreed:  # what differs, for whoever looks into it
                out["fields"] = dict(fields)
                out["example"] = example
                out["top_k_example"] = top_example
            return out
        await asyncio.sleep(0.2)


async def truth_at(ctx: Ctx, url: str, timeout: float = 10.0) -> tuple[int, int]:
    """check_truth at `url`, again (bounded) until all match: a secondary may lag a little."""
    t0 = time.monotonic()
    while True:
        matched, checked = await check_truth(ctx, url)
        if matched == checked or time.monotonic() - t0 > timeout:
            return matched, checked
        await asyncio.sleep(0.2)


def serve_failed(out: dict[str, Any], serve: Serve | None, exc: BaseException) -> None:
    """Record why the serving process cannot be measured (the worker runs go on)."""
    info = out.setdefault("serve", {})
    info.setdefault("error", f"{type(exc).__name__}: {str(exc).splitlines()[0]}")
    log(f"serve FAILED: {type(exc).__name__}: {exc}")
    if serve is not None:
        info["exit_code"] = serve.proc.poll() if serve.proc else None


async def lookup_run(
    ctx: Ctx,
    target: Worker,
    via: str,
    mode: str,
    rate: float,
    background_rate: float,
    procs: dict[str, int],
) -> dict[str, Any]:
    """One open-loop run of bench.loadgen against `target` (the worker or the serving
    process) while the background producer runs."""
    args = ctx.args
    # Each run starts from a process that answers at once and has (nearly) no ingest
    # backlog left by the previous one, so runs do not inherit each other's queues.
    await wait_responsive(ctx)
    if target is not ctx.worker:
        await wait_responsive(ctx, target=target)
    with contextlib.suppress(TimeoutError):  # bounded: backlog_at_start says the rest
        await wait_caught_up(ctx, timeout=30, slack=int(background_rate))
    cmd = loadgen_cmd(ctx, target.url, mode, rate, args.latency_duration)
    cpu = CpuWindow(pid=target.pid).start()
    cpu0 = {name: proc_cpu_s(pid) for name, pid in procs.items()}
    backlog_before = await backlog(ctx)
    updates_before = await updates_total(ctx)
    run = await asyncio.to_thread(
        run_json_process,
        cmd,
        args.latency_duration + 60,
        ctx.reaper,
        ctx.workdir / "loadgen.log",
    )
    run["via"] = via
    run["cpu"] = cpu.stop()
    wall = run["cpu"]["wall_s"]
    # Both processes' CPU over the run: who answered, who ingested.
    run["cpu_pct_of_one_core"] = {}
    for name, pid in procs.items():
        now = proc_cpu_s(pid)
        if now is not None and cpu0[name] is not None:
            run["cpu_pct_of_one_core"][name] = round(100.0 * (now - cpu0[name]) / wall, 1)
    # Did ingest keep up with the background producer while lookups ran?
    run["updates_per_s_during"] = round((await updates_total(ctx) - updates_before) / wall, 1)
    run["ingest_ratio_to_background"] = round(run["updates_per_s_during"] / background_rate, 3)
    run["backlog_at_start"] = backlog_before
    run["command"] = "python " + shlex.join(cmd)
    p = run["latency_ms"]
    log(
        f"latency {mode} @ {rate}/s via {via}: p50 {p['p50']} p99 {p['p99']} "
        f"p99.9 {p['p99.9']} ms, achieved {run['achieved_rate']}/s, "
        f"errors {run['errors']}, ingest meanwhile {run['updates_per_s_during']}/s"
    )
    return run


def loadgen_cmd(ctx: Ctx, url: str, mode: str, rate: float, duration: float) -> list[str]:
    """bench.loadgen's arguments: open loop, in a process of its own."""
    return [
        "-m",
        "bench.loadgen",
        "--url",
        url,
        "--mode",
        mode,
        "--rate",
        str(rate),
        "--duration",
        str(duration),
        "--pairs",
        str(ctx.pairs_file),
        "--bulk-size",
        "100",
        "--top-user",
        ctx.top_user,
        "--k",
        "10",
    ]


CAPACITY_P99_MS = 50.0  # issue 20: the highest rate with p99 under this and no errors
CAPACITY_START = {"single": 100.0, "bulk": 25.0, "top": 50.0}
INGEST_KEPT = 0.8  # issue 20: ingest at least this share of its background rate


def set_group_nice(pid: int, nice: int) -> None:
    """`nice` for the process and its scheduling group: every process here runs in a session
    of its own, and with the kernel's autogroups a session shares the CPU as one group, so
    the process's own nice alone changes nothing against the others."""
    os.setpriority(os.PRIO_PROCESS, pid, nice)
    with contextlib.suppress(OSError):  # no autogroups on this kernel
        Path(f"/proc/{pid}/autogroup").write_text(str(nice))


async def find_capacity(
    ctx: Ctx, url: str, mode: str, probe_s: float = 3.0, beside_ingest: float | None = None
) -> dict[str, Any]:
    """The highest open-loop rate `url` answers `mode` at with p99 < 50 ms, no errors and
    the rate achieved (within 5 %): doubling from a start, then two bisection steps between
    the last rate that held and the first that did not. No ingest meanwhile, or, with
    `beside_ingest` (the background producer's rate, running), with ingest kept at 0.8 x
    that rate too, each probe starting from a caught-up worker. A probe lasts `probe_s` or
    long enough for 300 requests (at most 8 s), so its p99 is not its maximum; one that
    fails is tried once more (a busy machine's one-off stall is not a limit)."""
    probes: list[dict[str, Any]] = []

    async def holds(rate: float) -> bool:
        return await attempt(rate) or await attempt(rate)

    async def attempt(rate: float) -> bool:
        seconds = min(8.0, max(probe_s, 300 / rate))
        if beside_ingest:
            with contextlib.suppress(TimeoutError):
                await wait_caught_up(ctx, timeout=30, slack=int(beside_ingest))
            updates_before, began = await updates_total(ctx), time.monotonic()
        run = await asyncio.to_thread(
            run_json_process,
            loadgen_cmd(ctx, url, mode, rate, seconds),
            seconds + 60,
            ctx.reaper,
            ctx.workdir / "loadgen.log",
        )
        p99 = run["latency_ms"]["p99"]
        ok = (
            not run["errors"]
            and p99 is not None
            and p99 < CAPACITY_P99_MS
            and (run["achieved_rate"] or 0) >= 0.95 * rate
        )
        probe = {
            "rate": rate,
            "seconds": seconds,
            "p99_ms": p99,
            "errors": run["errors"],
            "achieved_rate": run["achieved_rate"],
            "client_lag_ms": run.get("client_lag_ms"),
        }
        if beside_ingest:
            during = (await updates_total(ctx) - updates_before) / (time.monotonic() - began)
            probe["ingest_ratio_to_background"] = round(during / beside_ingest, 3)
            ok = ok and during >= INGEST_KEPT * beside_ingest
        probe["held"] = ok
        probes.append(probe)
        return ok

    good, bad = 0.0, CAPACITY_START[mode]
    while await holds(bad):
        good, bad = bad, bad * 2
        if bad > 20_000:
            break
    for _ in range(2):
        middle = round((good + bad) / 2)
        if middle in (good, bad):
            break
        if await holds(middle):
            good = middle
        else:
            bad = middle
    return {
        "rate": good,
        "p99_limit_ms": CAPACITY_P99_MS,
        "probe_s": probe_s,
        "beside_ingest_per_s": beside_ingest,
        "probes": probes,
    }


async def stage_latency(ctx: Ctx) -> None:
    """Issue #10: lookups while ingest runs at half the measured capacity, each run twice:
    against the worker, and against a serving process beside it (python -m streamapp.serve,
    reading the worker's RocksDB state as a secondary instance) unless --no-serve."""
    args, worker = ctx.args, ctx.worker
    assert worker is not None
    capacity = ctx.stages.get("ingest", {}).get("events_per_s_steady")
    background_rate = args.background_rate or half_capacity(ctx)
    if args.worker_nice:
        set_group_nice(worker.pid, args.worker_nice)
    out: dict[str, Any] = {
        "worker_nice": args.worker_nice,
        "runs": [],
        "background_rate": background_rate,
        # What the background rate was derived from (half of it), unless --background-rate.
        "capacity_events_per_s": capacity,
        "capacity_from": "stages.ingest.events_per_s_steady",
        "background_rate_source": "--background-rate" if args.background_rate else "capacity / 2",
        "top_user": ctx.top_user,
        "serve": {"enabled": bool(args.serve)},
    }
    ctx.stages["latency"] = out
    serve: Serve | None = None
    try:
        if args.serve:
            # Started first: its start-up overlaps the worker catching up.
            serve = Serve(worker, ctx.workdir / "serve.log")
            serve.start(ctx.reaper)
            out["serve"]["port"] = serve.port
            log(f"serve: python -m streamapp.serve on 127.0.0.1:{serve.port}")
        await wait_caught_up(ctx, timeout=300)
        if serve is not None:
            try:
                ready = await asyncio.to_thread(serve.wait_ready, SERVE_READY_TIMEOUT)
                out["serve"]["ready_s"] = round(ready, 3)
                log(f"serve: /health 200 after {ready:.2f} s")
            except (TimeoutError, RuntimeError) as exc:
                serve_failed(out, serve, exc)
                await asyncio.to_thread(serve.stop, 30)
                serve = None
        await lookups_with_ingest(ctx, out, background_rate, capacity, serve)
    finally:
        if serve is not None:
            out["serve"]["stop_s"] = round(await asyncio.to_thread(serve.stop, 30), 2)
            out["serve"]["exit_code"] = serve.proc.returncode if serve.proc else None
    if args.serve and "error" in out["serve"]:
        # The worker's figures are all there; the stage still fails (see --no-serve).
        raise RuntimeError(f"serving process: {out['serve']['error']} (see serve.log)")


async def lookups_with_ingest(
    ctx: Ctx,
    out: dict[str, Any],
    background_rate: float,
    capacity: float | None,
    serve: Serve | None,
) -> None:
    """The latency stage once the worker is caught up (and the serving process, if any,
    answers): idle CPU, service times, exactness, then the open-loop runs with ingest."""
    args, worker = ctx.args, ctx.worker
    assert worker is not None
    info = out["serve"]
    await asyncio.sleep(2.0)
    cpu = CpuWindow(pid=worker.pid).start()
    serve_cpu0 = proc_cpu_s(serve.pid) if serve else None
    await asyncio.sleep(5.0)  # nothing to do: what the worker spends on itself
    out["idle_cpu"] = cpu.stop()
    if serve is not None and serve_cpu0 is not None:
        now = proc_cpu_s(serve.pid)
        if now is not None:
            info["idle_cpu_pct_of_one_core"] = round(
                100.0 * (now - serve_cpu0) / out["idle_cpu"]["wall_s"], 1
            )
    # Exactness before the background ingest: the generator's counts at both.
    matched, checked = await check_truth(ctx)
    out["truth"] = [{"via": "worker", "matched": matched, "checked": checked}]
    if serve is not None:
        try:
            matched, checked = await truth_at(ctx, serve.url)
            out["truth"].append({"via": "serve", "matched": matched, "checked": checked})
            info["agreement_before"] = await agreement(ctx, serve)
            log(
                f"serve: truth {matched}/{checked}, same answers as the worker: "
                f"{info['agreement_before']}"
            )
        except SERVE_ERRORS as exc:
            serve_failed(out, serve, exc)
            serve = None
    targets: list[tuple[str, Worker]] = [("worker", worker)]
    if serve is not None:
        targets.append(("serve", serve))
    out["service_times"] = []
    async with web_floor(ctx, targets[-1][1].url) as floor:
        for via, target in targets:
            cpu = CpuWindow(pid=target.pid).start()
            try:
                svc = {
                    "via": via,
                    **await service_times(ctx, url=target.url, pid=target.pid, floor=floor),
                }
            except SERVE_ERRORS as exc:
                if target is worker:
                    raise
                serve_failed(out, serve, exc)
                serve = None
                targets = targets[:1]
                break
            svc["cpu"] = cpu.stop()
            against_floor(svc)
            out["service_times"].append(svc)
            log(f"service times via {via} (idle, one at a time): {svc}")
    out["service_time_ms"] = out["service_times"][0]  # the worker's (older readers)
    if "web_floor" in out["service_times"][-1].get("single", {}):
        assert floor is not None
        # The reference of the single-lookup target: the floor beside the last target's
        # single lookups (the serving process's when there is one).
        out["web_floor"] = {
            "body_bytes": floor.body_bytes,
            **out["service_times"][-1]["single"]["web_floor"],
        }
        log(f"web floor (one at a time, in turns with the lookups): {out['web_floor']}")
    else:
        out["web_floor"] = {"error": "bench.web_floor did not start or failed (web-floor.log)"}
    if serve is not None:
        try:
            info["processes"] = await serve_processes(ctx, serve)
            log(f"serving processes on one port, bulk(100) closed loop: {info['processes']}")
        except SERVE_ERRORS as exc:
            info["processes"] = {"error": str(exc)}
    modes = ["single", "bulk"] + (["top"] if args.top_user_sellers else [])
    capacity_of: dict[tuple[str, str], float] = {}
    if args.capacity:
        out["capacity"] = {}
        for mode in modes:
            for via, target in targets:
                found = await find_capacity(ctx, target.url, mode)
                out["capacity"].setdefault(mode, {})[via] = found
                capacity_of[(mode, via)] = found["rate"]
                log(f"capacity {mode} via {via}: {found['rate']:,.0f} /s (p99 < 50 ms, no errors)")
    if args.profile:
        await profile_lookups(ctx, seconds=min(args.profile_seconds, 8.0))
    procs = {via: target.pid for via, target in targets}
    bg_log = ctx.workdir / "background.log"
    log(f"background ingest at {background_rate:,.0f}/s (measured capacity {capacity}/s)")
    bg = ctx.reaper.add(
        subprocess.Popen(
            [sys.executable, *producer_cmd(ctx, background_rate, 3600, "bg-", 99)],
            cwd=ROOT,
            env=clean_env(),
            stdout=subprocess.PIPE,
            stderr=bg_log.open("ab"),
            start_new_session=True,
        )
    )
    try:
        await asyncio.sleep(2.0)
        # Each path's capacity again, now beside the background ingest and keeping it at
        # 0.8 x its rate: on two cores, half of the idle capacity plus half of the ingest
        # capacity asks for more CPU than there is, so the runs at half the idle capacity
        # measure the machine's overload; these are what one can serve beside ingest.
        beside_of: dict[tuple[str, str], float] = {}
        if args.capacity:
            out["capacity_beside_ingest"] = {}
            for mode in modes:
                for via, target in targets:
                    found = await find_capacity(
                        ctx, target.url, mode, beside_ingest=background_rate
                    )
                    out["capacity_beside_ingest"].setdefault(mode, {})[via] = found
                    beside_of[(mode, via)] = found["rate"]
                    log(
                        f"capacity {mode} via {via} beside {background_rate:,.0f}/s ingest: "
                        f"{found['rate']:,.0f} /s (p99 < 50 ms, no errors, ingest >= 0.8 x)"
                    )
        plan = (
            [("single", r) for r in args.rates]
            + [("bulk", r) for r in args.bulk_rates]
            # top-k needs u-top's sellers (--top-user-sellers 0 leaves them out).
            + [("top", r) for r in args.top_rates if args.top_user_sellers]
        )
        # Each path at half its own capacity first (issue 20), then the fixed rates: the
        # worker, then the serving process, at the same rate with the same ingest.
        schedule = [
            (mode, via, rate / 2, 0.5, "idle") for (mode, via), rate in capacity_of.items() if rate
        ]
        schedule += [
            (mode, via, rate / 2, 0.5, "beside_ingest")
            for (mode, via), rate in beside_of.items()
            if rate
        ]
        for mode, rate in plan:
            for via, _ in targets:
                cap = capacity_of.get((mode, via))
                schedule.append((mode, via, rate, round(rate / cap, 2) if cap else None, "idle"))
        for mode, via, rate, fraction, basis in schedule:
            target = dict(targets).get(via)
            if target is None:
                continue  # the serving process failed in an earlier run
            try:
                run = await lookup_run(ctx, target, via, mode, rate, background_rate, procs)
                if target is not worker:
                    target.check_alive()
            except SERVE_ERRORS as exc:
                if target is worker:
                    raise
                serve_failed(out, serve, exc)
                targets = targets[:1]
                procs.pop(via, None)
                continue
            run["fraction_of_capacity"] = fraction
            run["capacity_basis"] = basis
            out["runs"].append(run)
    finally:
        stop_process(bg, group=True, timeout=30)
        raw = bg.stdout.read() if bg.stdout else b""
        with contextlib.suppress(ValueError, IndexError):
            out["background"] = orjson.loads(raw.strip().splitlines()[-1])
    sent = out.get("background", {}).get("sent", 0)
    out["catch_up_s"] = round(await wait_caught_up(ctx, timeout=max(120, sent / 100)), 2)
    if serve is not None and len(targets) > 1:
        # Exactness after ingest: the serving process has caught up with the worker.
        try:
            info["agreement_after"] = await agreement(ctx, serve)
            log(f"serve: after ingest, same answers as the worker: {info['agreement_after']}")
        except SERVE_ERRORS as exc:
            serve_failed(out, serve, exc)


@contextlib.asynccontextmanager
async def web_floor(ctx: Ctx, like: str) -> AsyncIterator[Floor | None]:
    """bench/web_floor.py's server (a pre-encoded body the size of a single answer of
    `like`), running for the block: its requests, to take turns with the lookups'
    (service_times), or None when it did not start."""
    floor, proc = None, None
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session,
            session.get(f"{like}/affinity/{ctx.lookup_pairs[0][0]}/{ctx.lookup_pairs[0][1]}") as r,
        ):
            size = len(await r.read())
        port = free_port()
        proc = ctx.reaper.add(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "bench.web_floor",
                    "--port",
                    str(port),
                    "--bytes",
                    str(size),
                ],
                cwd=ROOT,
                env=clean_env(),
                stdout=subprocess.PIPE,
                stderr=(ctx.workdir / "web-floor.log").open("ab"),
                start_new_session=True,
            )
        )
        if await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 30):  # type: ignore[union-attr]
            url = f"http://127.0.0.1:{port}"
            floor = Floor(raw_http.Stream(url, floor_request, proc.pid), size)
    except (OSError, RuntimeError, aiohttp.ClientError) as exc:  # TimeoutError is an OSError
        log(f"web floor: not started ({exc!r})")
    try:
        yield floor
    finally:
        if proc is not None:
            stop_process(proc, group=True, timeout=10)


class Floor(NamedTuple):
    requests: raw_http.Stream
    body_bytes: int


def floor_request(host: str, i: int) -> bytes:
    return raw_http.get(host, "/floor")


def against_floor(svc: dict[str, Any]) -> None:
    """Each mode's p99 as a ratio to the web floor's p99 of the same seconds (and bulk's as
    a difference): what a lookup costs beyond the web layer itself."""
    ratios, floors = {}, {}
    for mode in ("single", "bulk", "bulk_again", "top"):
        timed = svc.get(mode, {})
        floor_p99 = timed.get("web_floor", {}).get("p99")
        if timed.get("p99") is not None and floor_p99:
            ratios[mode] = round(timed["p99"] / floor_p99, 2)
            floors[mode] = floor_p99
    if ratios:
        svc["p99_to_web_floor"] = ratios
    for mode in ("bulk", "bulk_again"):
        if mode in floors:
            svc[f"{mode}_p99_over_web_floor_ms"] = round(svc[mode]["p99"] - floors[mode], 3)


async def closed_loop(ctx: Ctx, url: str, seconds: float, connections: int = 16) -> dict[str, Any]:
    """bulk(100) queries from `connections` clients at once, each sending its next as soon
    as its answer came: the most the target answers per second (no ingest)."""
    done = errors = 0
    deadline = time.monotonic() + seconds
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=30)
    ) as session:

        async def client(n: int) -> None:
            nonlocal done, errors
            i = n
            while time.monotonic() < deadline:
                body = bulk_body(ctx.lookup_pairs, i)
                async with session.post(f"{url}/affinity/query", json=body) as resp:
                    await resp.read()
                    if resp.status == 200:
                        done += 1
                    else:
                        errors += 1
                i += connections

        t0 = time.monotonic()
        await asyncio.gather(*(client(n) for n in range(connections)))
        elapsed = time.monotonic() - t0
    return {"requests_per_s": round(done / elapsed, 1), "errors": errors}


async def serve_processes(ctx: Ctx, serve: Serve, seconds: float = 6.0) -> dict[str, Any]:
    """Issue 20: bulk(100) capacity of one serving process, then of two on the same port
    (STREAMAPP_SERVE_REUSE_PORT), the second beside the first; worker idle. Each run says
    where the CPU went (each serving process, this process's clients, the machine): on two
    cores the clients and two servers compete for the same CPUs."""

    async def measured(servers: list[Serve]) -> dict[str, Any]:
        before = {s.pid: proc_cpu_s(s.pid) for s in servers}
        client0 = proc_cpu_s(os.getpid())
        window = CpuWindow().start()
        result = await closed_loop(ctx, serve.url, seconds)
        cpu = window.stop()
        wall = cpu["wall_s"]

        def pct(now: float | None, then: float | None) -> float | None:
            return None if now is None or then is None else round(100 * (now - then) / wall, 1)

        result["cpu_pct_of_one_core"] = {
            "servers": [pct(proc_cpu_s(s.pid), before[s.pid]) for s in servers],
            "client": pct(proc_cpu_s(os.getpid()), client0),
            "machine_busy_pct_of_all": cpu["machine_busy_pct"],
        }
        return result

    one = await measured([serve])
    second = Serve(serve.worker, ctx.workdir / "serve-2.log")
    second.port = serve.port
    second.start(ctx.reaper)
    try:
        deadline = time.monotonic() + SERVE_READY_TIMEOUT
        while not second.listening():
            second.check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError("the second serving process did not listen in time")
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)  # its first catch-up
        two = await measured([serve, second])
    finally:
        await asyncio.to_thread(second.stop, 30)
    ratio = two["requests_per_s"] / one["requests_per_s"] if one["requests_per_s"] else None
    return {
        "one": one,
        "two": two,
        "ratio_two_to_one": round(ratio, 2) if ratio else None,
        "connections": 16,
    }


async def metrics_text(url: str) -> str:
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
        session.get(f"{url}/metrics") as response,
    ):
        return await response.text()


async def freshness_run(ctx: Ctx, rate: float, duration: float, tag: str, seed: int) -> dict:
    """One open-loop run at `rate` on a caught-up worker: freshness of affinity-updates
    (bench/produce.py) and the worker's per-step breakdown for the run's batches."""
    worker = ctx.worker
    assert worker is not None
    await wait_caught_up(ctx, timeout=600)  # no backlog from earlier stages in the figure
    cmd = producer_cmd(ctx, rate, duration, tag, seed)
    cmd += ["--freshness", ctx.topic("affinity-updates"), "--wait", "30"]
    before = await metrics_text(worker.url)
    cpu = CpuWindow(pid=worker.pid).start()
    loop_use = MainThreadIdle(worker.pid, duration + 120).start()
    out = await asyncio.to_thread(
        run_json_process, cmd, duration + 120, ctx.reaper, ctx.workdir / "freshness.log"
    )
    out["cpu"] = cpu.stop()
    out["main_thread"] = loop_use.stop(between=out.get("sending_monotonic"))
    out["steps"] = step_breakdown(before, await metrics_text(worker.url))
    out["command"] = "python " + shlex.join(cmd)
    f = out["freshness_ms"]
    loop = MainThreadIdle.describe(out["main_thread"])
    steps = ", ".join(f"{k} {v['p99_le_ms']}" for k, v in out["steps"].items())
    log(
        f"freshness @ {rate:g}/s: p50 {f['p50']} p99 {f['p99']} max {f['max']} ms, "
        f"missing {out['updates_missing']}; {loop + '; ' if loop else ''}steps (p99 <= ms): "
        + steps
    )
    return out


async def lookup_freshness_run(ctx: Ctx, urls: list[str], samples: int, every: float) -> dict:
    cmd = ["-m", "bench.freshness", "--bootstrap", ctx.bootstrap]
    cmd += ["--topic", ctx.topic("interactions"), "--samples", str(samples)]
    cmd += ["--every", str(every)]
    for url in urls:
        cmd += ["--url", url]
    out = await asyncio.to_thread(
        run_json_process, cmd, samples * (every + 10) + 60, ctx.reaper,
        ctx.workdir / "lookup-freshness.log",
    )  # fmt: skip
    return {"by_url": out, "command": "python " + shlex.join(cmd)}


async def stage_freshness(ctx: Ctx) -> None:
    """Issue 19: affinity-updates freshness for a trickle (one interaction every 100 ms),
    at half and at 80 % of the measured ingest capacity, each with the per-step breakdown;
    and lookup freshness (produce acknowledgement -> GET shows it) on the worker and on a
    serving process, idle and beside half-capacity ingest."""
    args, worker = ctx.args, ctx.worker
    assert worker is not None
    runs: list[dict[str, Any]] = []
    half = half_capacity(ctx)
    capacity = ctx.stages["ingest"]["events_per_s_steady"]
    out: dict[str, Any] = {
        "runs": runs,
        "half_capacity_rate": half,
        "capacity_events_per_s": capacity,
        # Updates are matched to interactions by pair and interactions_covered (bench/produce.py),
        # so this works with coalesced updates (the default) and with STREAMAPP_UPDATES=each.
        "matching": "by pair, cumulative interactions_covered (default 1)",
    }
    ctx.stages["freshness"] = out
    trickle = await freshness_run(ctx, 10.0, args.trickle_duration, "frt-", 120)
    trickle["trickle"] = True
    out["trickle"] = trickle
    rates = [half, round(0.8 * capacity, 1) if capacity else half]
    rates += [r for r in args.freshness_rates if r not in rates]
    for i, rate in enumerate(rates):
        run = await freshness_run(ctx, rate, args.freshness_duration, f"fr{i}-", 123 + i)
        run["half_capacity"] = rate == half
        run["fraction_of_capacity"] = round(rate / capacity, 2) if capacity else None
        runs.append(run)
    await wait_caught_up(ctx, timeout=600)
    serve: Serve | None = None
    lookups: dict[str, Any] = {}
    out["lookup_freshness"] = lookups
    try:
        urls = [worker.url]
        if args.serve:
            serve = Serve(worker, ctx.workdir / "serve-freshness.log")
            serve.start(ctx.reaper)
            try:
                await asyncio.to_thread(serve.wait_ready, SERVE_READY_TIMEOUT)
                urls.append(serve.url)
            except (TimeoutError, RuntimeError) as exc:
                lookups["serve_error"] = repr(exc)
        names = {worker.url: "worker", **({serve.url: "serve"} if serve else {})}
        idle = await lookup_freshness_run(ctx, urls, args.lookup_samples, 0.1)
        lookups["idle"] = {names.get(u, u): v for u, v in idle["by_url"].items()}
        lookups["idle_command"] = idle["command"]
        # --background-rate, as for the lookups' latency: on two cores the load generator
        # and the broker beside a worker at half of a higher capacity take the machine.
        background_rate = args.background_rate or half
        background = await asyncio.to_thread(
            start_background_producer,
            ctx,
            background_rate,
            args.lookup_samples * 0.3 + 30,
            "lfbg-",
            321,
        )
        try:
            await asyncio.sleep(3)  # the background is flowing
            loaded = await lookup_freshness_run(ctx, urls, args.lookup_samples, 0.2)
        finally:
            await asyncio.to_thread(stop_process, background, True, 30)
        lookups["half_capacity"] = {names.get(u, u): v for u, v in loaded["by_url"].items()}
        lookups["background_rate"] = background_rate
        lookups["background_rate_source"] = (
            "--background-rate" if args.background_rate else "capacity / 2"
        )
        for when in ("idle", "half_capacity"):
            for who, figures in lookups[when].items():
                p50, p99 = figures["p50"], figures["p99"]
                log(f"lookup freshness ({when}, {who}): p50 {p50} p99 {p99} ms")
    finally:
        if serve is not None:
            await asyncio.to_thread(serve.stop, 30)
    await wait_caught_up(ctx, timeout=600)


def start_background_producer(
    ctx: Ctx, rate: float, duration: float, tag: str, seed: int
) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, *producer_cmd(ctx, rate, duration, tag, seed)]
    log_file = (ctx.workdir / "lookup-freshness-background.log").open("ab")
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log_file, stderr=subprocess.STDOUT,
                            start_new_session=True)  # fmt: skip
    ctx.reaper.add(proc)
    return proc


async def changelog_records(ctx: Ctx) -> dict[str, int]:
    """Records in each of the app's table changelogs (what a rebuild reads, before
    compaction), by table name. The names come from the broker, not from a list here: a
    renamed table once made this report 0 for every table."""
    assert ctx.meta is not None
    head, tail = f"{ctx.app_id}-", "-changelog"
    topics = [t for t in await ctx.meta.topics() if t.startswith(head) and t.endswith(tail)]
    out = {}
    for topic in sorted(topics):
        out[topic[len(head) : -len(tail)]] = await end_offsets_total(ctx.meta, topic)
    if not out:
        raise RuntimeError(f"no changelog topics {head}*{tail} on the broker")
    return out


async def stage_recovery(ctx: Ctx) -> None:
    worker = ctx.worker
    assert worker is not None
    out: dict[str, Any] = {}
    ctx.stages["recovery"] = out
    pairs = list(ctx.truth)
    before = [stable_part(v) for v in await query(ctx, pairs)]
    out["checked"] = len(pairs)
    out["changelog_records"] = await changelog_records(ctx)
    out["stop_s"] = round(await asyncio.to_thread(worker.stop, 60), 2)

    worker.start(ctx.reaper)
    out["ready_intact_s"] = round(await asyncio.to_thread(worker.wait_ready, 300), 3)
    after = [stable_part(v) for v in await query(ctx, pairs)]
    out["intact_matched"] = sum(a == b for a, b in zip(before, after, strict=True))
    out["intact_peak_rss_kb"] = proc_status_kb(worker.pid, "VmHWM")
    log(f"recovery: ready after {out['ready_intact_s']} s with the data dir intact")
    await asyncio.to_thread(worker.stop, 60)

    # A lost disk: the same path, empty. (Another path would be another static group member,
    # which waits for the old one's session to time out before it gets any partition.)
    empty = worker.data_dir
    shutil.rmtree(empty)
    worker.start(ctx.reaper)
    timeout = max(300.0, ctx.args.ingest_timeout)
    out["ready_empty_s"] = round(await asyncio.to_thread(worker.wait_ready, timeout), 3)
    records = sum(out["changelog_records"].values())
    out["records_per_s"] = round(records / out["ready_empty_s"]) if out["ready_empty_s"] else None
    out["empty_peak_rss_kb"] = proc_status_kb(worker.pid, "VmHWM") or 0
    after = [stable_part(v) for v in await query(ctx, pairs)]
    out["empty_matched"] = sum(a == b for a, b in zip(before, after, strict=True))
    out["data_dir_mib"] = round(data_dir_bytes(empty) / 2**20, 1)
    ingest_s = ctx.stages.get("ingest", {}).get("seconds_total")
    if ingest_s:  # issue 21's target: <= 0.25
        out["ratio_to_ingest"] = round(out["ready_empty_s"] / ingest_s, 3)
    log(f"recovery: ready after {out['ready_empty_s']} s from an empty data dir")
    await asyncio.to_thread(worker.stop, 60)


def group_of_workers(ctx: Ctx, app_id: str, prefix: str, tag: str, n: int) -> list[Worker]:
    """n workers of one app (its own id and topic prefix), each with its own data dir and
    log `worker-<tag>-<i>.log`, with the run's worker settings."""
    return [
        Worker(
            ctx.bootstrap,
            app_id,
            prefix,
            ctx.workdir / f"data-{tag}-{i}",
            ctx.workdir / f"worker-{tag}-{i}.log",
            env=ctx.worker_env,
        )
        for i in range(n)
    ]


async def stage_ingest_two_workers(ctx: Ctx) -> None:
    """Issue #13 item 7: ingest with two workers on this machine, next to one worker.

    Two workers (same app id, own data dir and web port each; the worker's defaults, so one
    standby replica each) start on topics of their own (same seed, so the same records; its
    own affinity-updates, so its own count), once the single worker has been stopped. By
    default (`--two-workers-start ready`) both are started and ready (/health 200: the
    group's rebalances done) before the records are preloaded, so the figure is two
    workers' throughput: started together on a backlog (`backlog`), the first to join
    counted alone for seconds and the second then restored its partitions from the
    changelogs inside the window (both ready 4 s after the first update in a run that gave
    0.79 x). Rate and CPU (both workers) from the first update to the last, as in the
    ingest stage; also from the moment both answer /health 200."""
    args = ctx.args
    if ctx.worker is not None and ctx.worker.alive():
        await asyncio.to_thread(ctx.worker.stop, 60)  # idle, but it would share the cores
    prefix = f"{ctx.app_id}-2w-"
    app_id = f"{ctx.app_id}2w"
    await create_topics(ctx.bootstrap, prefix)
    sampler = Sampler(args.users, args.sellers, args.user_skew, args.seller_skew, args.seed)
    workers = group_of_workers(ctx, app_id, prefix, "2w", 2)
    ready_first = args.two_workers_start == "ready"
    if ready_first:
        for w in workers:
            w.start(ctx.reaper)
        deadline = time.monotonic() + 180
        while [await asyncio.to_thread(w.health, 0.5) for w in workers] != [200, 200]:
            for w in workers:
                w.check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError("two workers: not both ready within 180 s of their start")
            await asyncio.sleep(0.2)
    pre = await preload_data(ctx, sampler, prefix, args.two_workers_interactions)
    n = pre.interactions
    counter = await UpdatesCounter(ctx.bootstrap, f"{prefix}affinity-updates").start()
    out: dict[str, Any] = {
        "interactions": n,
        "workers": 2,
        "app_id": app_id,
        "start": args.two_workers_start,
    }
    ctx.stages["ingest_two_workers"] = out
    try:
        if not ready_first:
            for w in workers:
                w.start(ctx.reaper)
        t0 = min(w.started_at for w in workers)

        def cpu_now() -> float:
            return sum(proc_cpu_s(w.pid) or 0.0 for w in workers)

        broker = broker_pid(args.kafka_port)

        def cpu_each() -> dict[str, float]:
            """CPU seconds so far of each worker, the broker and this process (which reads
            affinity-updates to count them)."""
            each = {f"worker_{i}": proc_cpu_s(w.pid) or 0.0 for i, w in enumerate(workers)}
            each["broker"] = (proc_cpu_s(broker) or 0.0) if broker else 0.0
            each["bench"] = proc_cpu_s(os.getpid()) or 0.0
            return each

        recorders: list[Recorder] = []
        cpu_first: dict[str, float] = {}

        first: tuple[float, int, float] | None = None  # (time, covered, CPU of both)
        ready: tuple[float, int, float] | None = None
        last_total, last_progress, next_health = 0, t0, t0
        while True:
            counter.check()
            total, now = counter.covered, time.monotonic()
            if first is None and total > 0:
                first = (now, total, cpu_now())
                cpu_first = cpu_each()
                if args.profile:  # where each worker's CPU goes: own partitions or standby
                    for i, w in enumerate(workers):
                        rec = Recorder(
                            w.pid,
                            args.profile_seconds,
                            RESULTS / f"profile-2w-{i}.svg",
                            RESULTS / f"profile-2w-{i}.txt",
                            ctx.reaper,
                        )
                        if rec.start():
                            recorders.append(rec)
            if ready is None and now >= next_health:
                next_health = now + 0.2
                codes = [await asyncio.to_thread(w.health, 0.5) for w in workers]
                if codes == [200, 200]:
                    ready = (now, total, cpu_now())
            if total >= n:
                break
            for w in workers:
                w.check_alive()
            if total > last_total:
                last_total, last_progress = total, now
            if now - last_progress > args.stall_timeout or now - t0 > args.ingest_timeout:
                # Say which worker stopped counting (faust #471/#629: a worker can hold
                # partitions it never fetches after a rebalance).
                counts = [await asyncio.to_thread(w.get_json, "/stats", 2.0) for w in workers]
                each = [c.get("interactions_counted") if c else None for c in counts]
                raise TimeoutError(
                    f"no progress for {now - last_progress:.0f}s at {total}/{n} "
                    f"(interactions_counted per worker: {each}; logs worker-2w-0/1.log)"
                )
            await asyncio.sleep(0.1)
        done = (time.monotonic(), counter.covered, cpu_now())
        cpu_done = cpu_each()
        assert first is not None
        # Share of one core each process used over the steady window: what 2 cores gave.
        out["cpu_pct_of_one_core"] = {
            k: round((cpu_done[k] - cpu_first.get(k, 0.0)) / max(done[0] - first[0], 1e-9) * 100, 1)
            for k in cpu_done
        }
        for i, rec in enumerate(recorders):
            rec.stop_early()
            rec.finish(timeout=30)
            raw = RESULTS / f"profile-2w-{i}.txt"
            if raw.exists():
                out.setdefault("cpu_split_pct", {})[f"worker_{i}"] = split(raw)
        out["stats_interactions_counted"] = await confirm_counted(workers, n)
        # faust assigns partitions by count, not by load: with skewed users one worker can
        # count most of the records, and then the pair goes no faster than 1 / its share
        # of one worker's rate, however fast each is.
        counts = [await asyncio.to_thread(w.get_json, "/stats", 2.0) for w in workers]
        each = [int(c["interactions_counted"]) if c else 0 for c in counts]
        if sum(each):
            out["share_counted"] = {
                f"worker_{i}": round(c / sum(each), 3) for i, c in enumerate(each)
            }
            out["ratio_ceiling_from_share"] = round(sum(each) / max(each), 3)
        out["batches"] = {
            f"worker_{i}": batch_sizes(await metrics_text(w.url)).get("interactions")
            for i, w in enumerate(workers)
        }

        def window(a: tuple[float, int, float]) -> dict[str, Any]:
            events = max(n - a[1], 1)
            return {
                "events": events,
                "seconds": round(done[0] - a[0], 3),
                "events_per_s": round(events / max(done[0] - a[0], 1e-9)),
                "cpu_us_per_event": round((done[2] - a[2]) / events * 1e6, 1),
            }

        steady = window(first)
        one_full = ctx.stages.get("ingest", {}).get("events_per_s_steady")
        # Fewer records than the one-worker run (quick mode): compare with the single
        # worker's rate over the same first records, not over all of them.
        one = (
            one_worker_rate_to(ctx, n - args.top_user_sellers)
            if args.two_workers_interactions < args.interactions
            else one_full
        )
        out.update(
            {
                "seconds_total": round(done[0] - t0, 3),
                "first_update_s": round(first[0] - t0, 3),
                "events_per_s_steady": steady["events_per_s"],
                "cpu_us_per_event": steady["cpu_us_per_event"],
                "ratio_to_one": round(steady["events_per_s"] / one, 3) if one else None,
                "one_worker_events_per_s_steady": one,
                "one_worker_window": (
                    f"first update -> {n - args.top_user_sellers:,} covered"
                    if args.two_workers_interactions < args.interactions
                    else "first -> last update"
                ),
                "one_worker_events_per_s_all": one_full,
                "steady": steady,
                "both_ready_s": round(ready[0] - t0, 3) if ready else None,
                "after_both_ready": window(ready) if ready and ready[1] < n else None,
                "update_records": counter.records,
            }
        )
        ctx.truth, truth_one = pre.truth, ctx.truth
        try:
            out["truth_matched"], out["truth_checked"] = await check_truth(ctx, workers[0].url)
        finally:
            ctx.truth = truth_one
    finally:
        await counter.stop()
        for w in workers:
            await asyncio.to_thread(w.stop, 60)
    log(
        f"two workers: {out['events_per_s_steady']:,}/s steady ({out['cpu_us_per_event']} µs "
        f"CPU each, both workers), {out['ratio_to_one']} x one worker; truth "
        f"{out['truth_matched']}/{out['truth_checked']}; share counted "
        f"{out.get('share_counted')} (ceiling {out.get('ratio_ceiling_from_share')} x); "
        f"batches {out.get('batches')}; "
        f"CPU % of one core "
        f"{out.get('cpu_pct_of_one_core')}; split of the workers' samples (%) "
        f"{out.get('cpu_split_pct')}"
    )


async def rebalances_of(worker: Worker) -> float:
    """streamapp_rebalances_total of one worker (since its process started)."""
    for line in (await metrics_text(worker.url)).splitlines():
        if line.startswith("streamapp_rebalances_total "):
            return float(line.split()[-1])
    raise RuntimeError(f"{worker.url}/metrics has no streamapp_rebalances_total")


async def stage_rolling_restart(ctx: Ctx) -> None:
    """Issue 23: three workers under steady ingest and lookups, each bounced in turn (SIGTERM,
    then started again on its data dir and port, as a deploy does).

    Lookups go through a load balancer with health checks (bench/rolling.py) for preloaded
    pairs whose truth the background interactions (users of their own) never change, so
    every answer is checked. Reported per bounce: the rebalances the other workers went
    through, how long the bounced worker was out (stop -> /health 200); overall: the longest
    time the group's affinity-updates did not grow while interactions came in, the share of
    lookups answered 200, and the preloaded sample against the truth afterwards."""
    args = ctx.args
    if ctx.worker is not None and ctx.worker.alive():
        await asyncio.to_thread(ctx.worker.stop, 60)  # it would share the cores
    prefix, app_id = f"{ctx.app_id}-rr-", f"{ctx.app_id}rr"
    await create_topics(ctx.bootstrap, prefix)
    sampler = Sampler(args.users, args.sellers, args.user_skew, args.seller_skew, args.seed + 1)
    pre = await preload_data(ctx, sampler, prefix, args.rolling_interactions)
    counter = await UpdatesCounter(ctx.bootstrap, f"{prefix}affinity-updates").start()
    workers = group_of_workers(ctx, app_id, prefix, "rr", 3)
    out: dict[str, Any] = {"workers": 3, "preloaded": pre.interactions, "app_id": app_id}
    ctx.stages["rolling_restart"] = out
    producer: subprocess.Popen[bytes] | None = None
    stop = asyncio.Event()
    watchers: list[asyncio.Future[None]] = []
    try:
        for w in workers:
            w.start(ctx.reaper)
        for w in workers:
            await asyncio.to_thread(w.wait_ready, 300)
        deadline = time.monotonic() + args.ingest_timeout
        while counter.covered < pre.interactions and time.monotonic() < deadline:
            counter.check()
            await asyncio.sleep(0.2)
        rate, gap = args.rolling_rate, args.rolling_gap
        # bounces take ~5-15 s each; then a fourth worker joins
        duration = gap * (len(workers) + 2) + 15 * len(workers) + 20
        topic = f"{prefix}interactions"
        cmd = producer_cmd(ctx, rate, duration, "rr-", args.seed + 2, topic, "bg-")
        log_file = (ctx.workdir / "rolling-producer.log").open("ab")
        producer = subprocess.Popen([sys.executable, *cmd], cwd=ROOT, stdout=subprocess.PIPE,
                                    stderr=log_file, start_new_session=True)  # fmt: skip
        ctx.reaper.add(producer)
        balancer = rolling.Balancer(workers, pre.truth, args.rolling_lookup_rate)
        pauses = rolling.PauseWatch(lambda: counter.covered)
        watchers = [asyncio.ensure_future(w.run(stop)) for w in (balancer, pauses)]
        bounces = []
        for i, w in enumerate(workers):
            await asyncio.sleep(gap)
            others = [x for x in workers if x is not w]
            before = [await rebalances_of(x) for x in others]
            began = time.monotonic()
            stop_s = await asyncio.to_thread(w.stop, 60)
            w.start(ctx.reaper)
            await asyncio.to_thread(w.wait_ready, 300)
            down_s = time.monotonic() - began
            await asyncio.sleep(3.0)  # a rebalance its return set off would have begun by now
            after = [await rebalances_of(x) for x in others]
            bounces.append(
                {
                    "worker": i,
                    "stop_s": round(stop_s, 2),
                    "down_s": round(down_s, 2),
                    "rebalances_of_others": [b - a for a, b in zip(before, after, strict=True)],
                }
            )
            log(f"rolling restart: worker {i} out for {down_s:.1f} s; others {bounces[-1]}")
        # Then a fourth worker joins (scaling out): an eager rebalance of every worker. It is
        # not behind the balancer; the three answer, from the state they held while the
        # group agreed, or from standbys once ready.
        await asyncio.sleep(gap)
        balancer.phase = "scale_out"
        (joining,) = group_of_workers(ctx, app_id, prefix, "rr", 4)[3:]
        workers.append(joining)
        began = time.monotonic()
        joining.start(ctx.reaper)
        await asyncio.to_thread(joining.wait_ready, 300)
        for w in workers[:3]:
            await asyncio.to_thread(w.wait_ready, 300)
        scale_out_s = time.monotonic() - began
        await asyncio.sleep(3.0)
        balancer.phase = "after"
        log(f"rolling restart: a fourth worker joined, all ready in {scale_out_s:.1f} s")
        stdout, _ = await asyncio.to_thread(producer.communicate, timeout=duration + 120)
        sent = orjson.loads(stdout.splitlines()[-1])["sent"]
        stop.set()
        await asyncio.gather(*watchers)
        want = pre.interactions + sent
        deadline = time.monotonic() + 120
        while counter.covered < want and time.monotonic() < deadline:
            counter.check()
            await asyncio.sleep(0.2)
        out.update(
            {
                "background_rate": rate,
                "background_sent": sent,
                "covered_after": counter.covered,
                "covered_want": want,
                "bounces": bounces,
                "scale_out_ready_s": round(scale_out_s, 2),
                "max_rebalances_per_bounce": max(max(b["rebalances_of_others"]) for b in bounces),
                "longest_ingest_pause_s": round(pauses.longest_s, 2),
                "longest_pause_at_s": round(pauses.longest_at, 1),
                "lookups": balancer.summary(),
            }
        )
        ctx.truth, truth_one = pre.truth, ctx.truth
        try:
            out["truth_matched"], out["truth_checked"] = await check_truth(ctx, workers[0].url)
        finally:
            ctx.truth = truth_one
    finally:
        stop.set()
        for task in watchers:
            task.cancel()
        if producer is not None and producer.poll() is None:
            stop_process(producer, group=True, timeout=10)
        await counter.stop()
        for w in workers:
            await asyncio.to_thread(w.stop, 60)
    look = out["lookups"]
    log(
        f"rolling restart: {out['max_rebalances_per_bounce']:g} rebalances per bounce at most, "
        f"longest ingest pause {out['longest_ingest_pause_s']} s, lookups answered "
        f"{look['answered_share']} ({look['statuses']}), wrong {look['wrong']}; truth "
        f"{out['truth_matched']}/{out['truth_checked']}"
    )


async def preload_data(
    ctx: Ctx, sampler: Sampler, prefix: str, interactions: int | None = None
) -> Preloaded:
    args = ctx.args
    return await preload(
        ctx.bootstrap,
        prefix,
        sampler,
        interactions or args.interactions,
        args.pairs,
        args.key_by,
        top_user_sellers=args.top_user_sellers,
    )


def one_worker_rate_to(ctx: Ctx, n: int) -> int | None:
    """The single worker's rate from its first update until its updates covered n (from the
    ingest stage's 100 ms polls): the one-worker figure for a two-worker run on the first n
    of the same records. The seed fixes the records, and each partition is read in order,
    so both runs count the same prefix of every partition."""
    polls = [(t, c) for t, c in ctx.ingest_progress if c > 0]
    if not polls:
        return None
    (t0, c0), end = polls[0], next(((t, c) for t, c in polls if c >= n), None)
    if end is None or end[0] <= t0:
        return None
    return round((end[1] - c0) / (end[0] - t0))


# -- the run -----------------------------------------------------------------------------
async def bench(ctx: Ctx) -> int:
    args = ctx.args
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)

    log(f"starting the broker on 127.0.0.1:{args.kafka_port}")
    ctx.bootstrap = await asyncio.to_thread(broker_start, args.kafka_port, True)
    ctx.results["broker"] = ctx.bootstrap
    # Source topics exist before the app starts, as in production; the app's own topics
    # (re-keying, changelogs) are left to the app.
    await create_topics(ctx.bootstrap, ctx.prefix)
    ctx.meta = AIOKafkaConsumer(bootstrap_servers=ctx.bootstrap)
    await ctx.meta.start()
    ctx.updates = await UpdatesCounter(ctx.bootstrap, ctx.topic("affinity-updates")).start()
    failed = False
    try:
        sampler = Sampler(args.users, args.sellers, args.user_skew, args.seller_skew, args.seed)
        log(
            f"preloading {args.interactions:,} interactions "
            f"({args.users:,} users, {args.sellers:,} sellers; plus {args.top_user_sellers:,} "
            f"of {TOP_USER}, one per seller, for top-k)"
        )
        pre = await preload_data(ctx, sampler, ctx.prefix)
        ctx.truth = pre.truth
        ctx.top_user = pre.top_user
        ctx.lookup_pairs = pre.lookup_pairs
        ctx.pairs_file = ctx.workdir / "pairs.json"
        ctx.pairs_file.write_bytes(orjson.dumps(pre.lookup_pairs))
        ctx.results["preload"] = {
            "interactions": pre.interactions,
            "top_user": pre.top_user,
            "top_user_sellers": pre.top_user_sellers,
            "distinct_pairs": pre.distinct_pairs,
            "seconds": round(pre.seconds, 2),
            "events_per_s": round(pre.interactions / pre.seconds),
        }
        log(f"preloaded in {pre.seconds:.1f} s; {pre.distinct_pairs:,} distinct pairs")
        for name in ORDER:
            if name not in args.stages:
                continue
            ingest_failed = "error" in ctx.stages.get("ingest", {})
            needs_worker = name in ("latency", "freshness", "recovery")
            if needs_worker and (ingest_failed or not (ctx.worker and ctx.worker.alive())):
                ctx.stages[name] = {"error": "skipped: no running worker (ingest failed)"}
                failed = True
                continue
            log(f"stage {name}")
            t0 = time.monotonic()
            try:
                await globals()[f"stage_{name}"](ctx)
            except Exception as exc:
                failed = True
                ctx.stages.setdefault(name, {})["error"] = f"{type(exc).__name__}: {exc}"
                log(f"stage {name} FAILED: {type(exc).__name__}: {exc}")
            ctx.stages.setdefault(name, {})["stage_seconds"] = round(time.monotonic() - t0, 1)
    finally:
        await ctx.updates.stop()
        await ctx.meta.stop()
    return 1 if failed else 0


def git_describe() -> str:
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, timeout=10
        ).stdout.decode()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "streamapp"],
            cwd=ROOT,
            capture_output=True,
            timeout=10,
        ).stdout
        return rev.strip() + (" (streamapp/ modified)" if dirty.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "?"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="small sizes, about 14 minutes")
    p.add_argument("--interactions", type=int, help="N (full 1,000,000; quick 100,000)")
    p.add_argument("--users", type=int, help="full 100,000; quick 10,000")
    p.add_argument("--sellers", type=int, help="full 10,000; quick 1,000")
    p.add_argument("--pairs", type=int, help="exactly this many distinct pairs (default: as drawn)")
    p.add_argument("--user-skew", type=float, default=0.8, help="Zipf exponent of users")
    p.add_argument("--seller-skew", type=float, default=1.0, help="Zipf exponent of sellers")
    p.add_argument(
        "--key-by",
        choices=("user", "id"),
        default="user",
        help="key of preloaded interactions: user id (as the loader does) or interaction id",
    )
    p.add_argument(
        "--stages", default=",".join(STAGES), help="comma-separated: " + ",".join(STAGES)
    )
    p.add_argument("--rates", default="1000", help="single GET req/s, comma-separated")
    p.add_argument("--bulk-rates", default="200", help="bulk(100) POST req/s, comma-separated")
    p.add_argument("--top-rates", default="200", help="top-k (k=10) GET req/s, comma-separated")
    p.add_argument("--latency-duration", type=float, default=10.0, help="seconds per lookup run")
    p.add_argument(
        "--no-capacity",
        dest="capacity",
        action="store_false",
        help="skip finding each lookup path's capacity (and the runs at half of it)",
    )
    p.add_argument(
        "--background-rate",
        type=float,
        help="ingest/s during lookups and lookup freshness (default: half the measured "
        "ingest capacity)",
    )
    p.add_argument(
        "--freshness-rates",
        default="",
        help="interactions/s besides half the measured ingest capacity, which always runs",
    )
    p.add_argument(
        "--top-user-sellers",
        type=int,
        default=1000,
        help="sellers of the extra user u-top (one interaction each), for top-k lookups",
    )
    p.add_argument(
        "--floor-setting",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="faust setting of the floor app over streamapp.worker.faust_settings (repeatable); "
        "also monitor=lean|default and loglevel=info|warn|...",
    )
    p.add_argument(
        "--two-workers-interactions",
        type=int,
        help="N of the two-worker stage (default: --interactions)",
    )
    p.add_argument(
        "--two-workers-start",
        choices=("ready", "backlog"),
        default="ready",
        help="two workers: both ready before the records are preloaded (default), or started "
        "together on the preloaded records",
    )
    p.add_argument(
        "--rolling-interactions",
        type=int,
        default=20_000,
        help="preloaded before the rolling-restart stage (its lookups' truth)",
    )
    p.add_argument(
        "--rolling-rate", type=float, default=300.0, help="interactions/s while bouncing"
    )
    p.add_argument("--rolling-lookup-rate", type=float, default=100.0, help="lookups/s then")
    p.add_argument(
        "--rolling-gap", type=float, default=8.0, help="seconds of steady state between bounces"
    )
    p.add_argument(
        "--worker-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment of every streamapp worker (repeatable), e.g. "
        "STREAMAPP_UPDATES=each",
    )
    p.add_argument("--freshness-duration", type=float, default=10.0)
    p.add_argument("--trickle-duration", type=float, default=20.0)
    p.add_argument("--lookup-samples", type=int, default=100)
    p.add_argument("--kafka-port", type=int, default=int(os.environ.get("BENCH_KAFKA_PORT", 29092)))
    p.add_argument("--no-profile", dest="profile", action="store_false", help="skip py-spy")
    p.add_argument(
        "--no-serve",
        dest="serve",
        action="store_false",
        help="latency stage: no serving process (python -m streamapp.serve), the worker only",
    )
    p.add_argument(
        "--worker-nice",
        type=int,
        default=0,
        help="latency stage: the worker's scheduling group runs at this nice (0-19), so that "
        "lookups on shared cores wait less behind ingest (docs/performance.md)",
    )
    p.add_argument("--profile-seconds", type=float, help="py-spy duration (full 20, quick 10)")
    p.add_argument("--ingest-timeout", type=float, default=1800.0, help="seconds")
    p.add_argument("--stall-timeout", type=float, default=120.0, help="seconds without progress")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--keep-logs", action="store_true", help="keep the worker's data dir and logs")
    args = p.parse_args(argv)
    quick = args.quick
    args.interactions = args.interactions or (100_000 if quick else 1_000_000)
    args.users = args.users or (10_000 if quick else 100_000)
    args.sellers = args.sellers or (1_000 if quick else 10_000)
    args.rates = rates(args.rates)
    args.bulk_rates = rates(args.bulk_rates)
    args.top_rates = rates(args.top_rates)
    args.freshness_rates = rates(args.freshness_rates)
    try:
        args.floor_settings = dict(parse_setting(x) for x in args.floor_setting)
        args.worker_env = dict(env_setting(x) for x in args.worker_env)
    except ValueError as exc:
        p.error(str(exc))
    # All N by default: the quick run's 50,000 (about 4 s) gave ratios from 1.4 to 1.8 x
    # where 200,000 gave 1.1-1.3 x (docs/performance.md, 5 December, night).
    args.two_workers_interactions = min(
        args.interactions, args.two_workers_interactions or args.interactions
    )
    args.profile_seconds = args.profile_seconds or (10.0 if quick else 20.0)
    stages = {s.strip() for s in args.stages.split(",") if s.strip()}
    unknown = stages - set(STAGES)
    if unknown:
        p.error(f"unknown stage(s): {', '.join(sorted(unknown))}")
    if stages & {"latency", "freshness", "recovery", "ingest_two_workers"}:
        # They need a worker holding the preloaded state, or (two workers) its figure.
        stages.add("ingest")
    args.stages = stages
    return args


def env_setting(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise ValueError(f"expected NAME=VALUE, got {text!r}")
    return name.strip(), value


def rates(text: str) -> list[float]:
    return [float(r) for r in text.split(",") if r.strip()]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.kafka_port in FORBIDDEN_PORTS:
        raise SystemExit(f"bench: port {args.kafka_port} belongs to other users of this machine")
    _lock = lock_port(args.kafka_port)  # held until the process ends
    command = shlex.join(["python", "-m", "bench.run", *(sys.argv[1:] if argv is None else argv)])
    RESULTS.mkdir(parents=True, exist_ok=True)
    for stale in ("profile.svg", "profile.txt", "profile-lookups.svg", "profile-lookups.txt"):
        (RESULTS / stale).unlink(missing_ok=True)
    run_id = f"bench{time.strftime('%m%d%H%M%S')}{uuid.uuid4().hex[:4]}"
    ctx = Ctx(
        args=args,
        reaper=Reaper(),
        app_id=run_id,
        prefix=f"{run_id}-",
        workdir=Path(tempfile.mkdtemp(prefix=f"{run_id}-")),
        worker_env=args.worker_env,
    )
    ctx.results = {
        "mode": "quick" if args.quick else "full",
        "command": command,
        "started_at": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "git": git_describe(),
        "machine": {
            "cores": os.cpu_count(),
            "mem_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
            "python": platform.python_version(),
            # faust's event loop for the floor and the worker alike (FAUST_LOOP, Makefile).
            "event_loop": os.environ.get("FAUST_LOOP", "aio"),
            "loadavg_start": [round(x, 2) for x in os.getloadavg()],
        },
        "params": {
            "interactions": args.interactions,
            "users": args.users,
            "sellers": args.sellers,
            "pairs": args.pairs,
            "user_skew": args.user_skew,
            "seller_skew": args.seller_skew,
            "key_by": args.key_by,
            "stages": sorted(args.stages, key=STAGES.index),
            "rates": args.rates,
            "bulk_rates": args.bulk_rates,
            "top_rates": args.top_rates,
            "latency_duration_s": args.latency_duration,
            "serve": args.serve,
            "background_rate": args.background_rate or "half the measured ingest capacity",
            "freshness_rates": ["half the measured ingest capacity", *args.freshness_rates],
            "top_user_sellers": args.top_user_sellers,
            "two_workers_interactions": args.two_workers_interactions,
            "floor_settings": args.floor_settings,
            "worker_env": args.worker_env,
            "freshness_duration_s": args.freshness_duration,
            "partitions": PARTITIONS,
            "app_id": run_id,
        },
    }
    t0 = time.monotonic()
    rc = 1
    try:
        rc = asyncio.run(bench(ctx))
    except (KeyboardInterrupt, asyncio.CancelledError):
        ctx.results["error"] = "interrupted"
        log("interrupted")
    except Exception as exc:
        ctx.results["error"] = f"{type(exc).__name__}: {exc}"
        log(f"FAILED: {type(exc).__name__}: {exc}")
    finally:
        ctx.reaper.stop_all()
        log("stopping the broker")
        broker_stop(args.kafka_port)
        ctx.results["elapsed_s"] = round(time.monotonic() - t0, 1)
        ctx.results["git_end"] = git_describe()  # the code may change under a long run
        ctx.results["machine"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
        write_results(ctx)
        if args.keep_logs:
            log(f"worker data and logs kept in {ctx.workdir}")
        else:
            for name in (
                "worker.log",
                "serve.log",
                "loadgen.log",
                "background.log",
                "freshness.log",
                "floor.log",
                "worker-2w-0.log",
                "worker-2w-1.log",
                "worker-rr-0.log",
                "worker-rr-1.log",
                "worker-rr-2.log",
            ):
                src = ctx.workdir / name
                if src.exists():
                    shutil.copy(src, RESULTS / name)
            shutil.rmtree(ctx.workdir, ignore_errors=True)
    return rc


def write_results(ctx: Ctx) -> None:
    (RESULTS / "latest.json").write_bytes(
        orjson.dumps(ctx.results, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS)
    )
    table = report.markdown(ctx.results)
    (RESULTS / "latest.md").write_text(table)
    print(table)


if __name__ == "__main__":
    raise SystemExit(main())
