"""The streamapp benchmark: one run, every figure of issue #6, against a real local broker.

    python -m bench.run             # full: 1,000,000 interactions, 100,000 users, 10,000 sellers
    python -m bench.run --quick     # about 2 minutes: 100,000 / 10,000 / 1,000
    python -m bench.run --stages ingest,ceiling --interactions 300000

Stages (each a function below, sized by the options):
  ingest     preload N interactions, then start one worker; time until affinity-updates
             holds N records (one per counted interaction, written after the table write)
  ceiling    a plain aiokafka consumer reading and decoding the same topic
  latency    open-loop lookups (single and bulk) from a separate process at fixed rates,
             while a separate producer process adds interactions at a fixed rate
  freshness  interaction produced -> its affinity-update consumed, at a fixed rate
  recovery   time to /health 200 after a restart with the data dir intact, and empty

The broker is started with scripts/kafka-local.sh on its own port (29092 unless
BENCH_KAFKA_PORT / --kafka-port say otherwise) and stopped at the end, also on failure.
Results: bench/results/latest.json and latest.md (the table is printed too).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiokafka import AIOKafkaConsumer

from bench import report
from bench.common import (
    FORBIDDEN_PORTS,
    PARTITIONS,
    RESULTS,
    ROOT,
    CpuWindow,
    Reaper,
    Worker,
    broker_start,
    broker_stop,
    clean_env,
    data_dir_bytes,
    lock_port,
    log,
    proc_status_kb,
    run_json_process,
    stop_process,
    summary_ms,
)
from bench.data import Sampler, create_topics, end_offsets_total, preload, raw_consume
from bench.profile import Recorder, summarise
from streamapp.config import Settings

STAGES = ("ingest", "ceiling", "latency", "freshness", "recovery")
# The ceiling runs first, while no worker competes with it for the two cores.
ORDER = ("ceiling", "ingest", "latency", "freshness", "recovery")


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
    expected_updates: int = 0
    truth: dict[tuple[str, str], int] = field(default_factory=dict)
    lookup_pairs: list[tuple[str, str]] = field(default_factory=list)
    pairs_file: Path = Path()
    results: dict[str, Any] = field(default_factory=dict)

    def topic(self, name: str) -> str:
        return f"{self.prefix}{name}"

    @property
    def stages(self) -> dict[str, Any]:
        return self.results.setdefault("stages", {})


# -- helpers -----------------------------------------------------------------------------
async def updates_total(ctx: Ctx) -> int:
    assert ctx.meta is not None
    return await end_offsets_total(ctx.meta, ctx.topic("affinity-updates"))


async def wait_caught_up(ctx: Ctx, timeout: float) -> float:
    """Until affinity-updates holds every expected update; seconds waited."""
    t0 = time.monotonic()
    while True:
        total = await updates_total(ctx)
        if total >= ctx.expected_updates:
            return time.monotonic() - t0
        assert ctx.worker is not None
        ctx.worker.check_alive()
        if time.monotonic() - t0 > timeout:
            raise TimeoutError(
                f"worker did not catch up in {timeout:.0f}s: {total}/{ctx.expected_updates} updates"
            )
        await asyncio.sleep(0.2)


async def query(ctx: Ctx, pairs: list[tuple[str, str]]) -> list[dict[str, Any]]:
    assert ctx.worker is not None
    body = {"pairs": [{"user_id": u, "seller_id": s} for u, s in pairs]}
    timeout = aiohttp.ClientTimeout(total=30)
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        session.post(ctx.worker.url + "/affinity/query", json=body) as resp,
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


async def check_truth(ctx: Ctx) -> tuple[int, int]:
    pairs = list(ctx.truth)
    results = await query(ctx, pairs)
    matched = sum(
        1
        for p, r in zip(pairs, results, strict=True)
        if r["number_of_interactions"] == ctx.truth[p]
    )
    return matched, len(pairs)


async def wait_responsive(ctx: Ctx, timeout: float = 60) -> None:
    """Until /health answers 200 within 50 ms (the previous load has drained)."""
    assert ctx.worker is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        t0 = time.monotonic()
        code = await asyncio.to_thread(ctx.worker.health, 1.0)
        if code == 200 and time.monotonic() - t0 < 0.05:
            return
        ctx.worker.check_alive()
        await asyncio.sleep(0.2)
    raise TimeoutError("worker stayed unresponsive after a load run")


def new_worker(ctx: Ctx, data_dir: Path) -> Worker:
    return Worker(ctx.bootstrap, ctx.app_id, ctx.prefix, data_dir, ctx.workdir / "worker.log")


# -- stages ------------------------------------------------------------------------------
async def stage_ceiling(ctx: Ctx) -> None:
    n = ctx.results["preload"]["interactions"]
    cpu = CpuWindow(pid=os.getpid()).start()
    out = await raw_consume(ctx.bootstrap, ctx.topic("interactions"), n, timeout=600)
    out["cpu"] = cpu.stop()
    ctx.stages["ceiling"] = out
    log(f"ceiling: {out['events_per_s']:,} events/s (raw consumer + orjson)")


async def stage_ingest(ctx: Ctx) -> None:
    args = ctx.args
    n = ctx.results["preload"]["interactions"]
    ctx.expected_updates = n
    worker = ctx.worker = new_worker(ctx, ctx.workdir / "data")
    worker.start(ctx.reaper)
    t0 = worker.started_at
    cpu = CpuWindow(pid=worker.pid).start()
    recorder = None
    first_t = first_total = ready_t = prof_end = None
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
            first_t, first_total = now, total
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
    done = time.monotonic()
    cpu_result = cpu.stop()
    hwm = proc_status_kb(worker.pid, "VmHWM") or 0
    worker_cpu_s = cpu_result.get("process_cpu_pct_of_one_core", 0) / 100 * cpu_result["wall_s"]
    assert first_t is not None and first_total is not None
    out: dict[str, Any] = {
        "interactions": n,
        "distinct_pairs": ctx.results["preload"]["distinct_pairs"],
        "seconds_total": round(done - t0, 3),
        "first_update_s": round(first_t - t0, 3),
        "cold_ready_s": round(ready_t, 3) if ready_t is not None else None,
        "events_per_s_total": round(n / (done - t0)),
        "events_per_s_steady": round((n - first_total) / max(done - first_t, 1e-9)),
        "updates_seen": total,
        # Records that took the re-keying hop (the rest were already in their user's partition).
        "rekeyed": routed,
        "key_by": args.key_by,
        # CPU the worker spent per interaction (both agents, the web server, faust itself):
        # less sensitive to other load on the machine than the rates are.
        "worker_cpu_us_per_event": round(worker_cpu_s / n * 1e6),
        "peak_rss_kb": max(hwm, peak_rss),
        "data_dir_mib": round(data_dir_bytes(worker.data_dir) / 2**20, 1),
        "cpu": cpu_result,
        "series": series[:: max(1, len(series) // 200)],
    }
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
    ctx.stages["ingest"] = out
    log(
        f"ingest: {out['events_per_s_total']:,}/s total, {out['events_per_s_steady']:,}/s steady, "
        f"truth {out['truth_matched']}/{out['truth_checked']}, "
        f"peak RSS {out['peak_rss_kb'] // 1024} MiB"
    )


def producer_cmd(ctx: Ctx, rate: float, duration: float, id_prefix: str, seed: int) -> list[str]:
    a = ctx.args
    return [
        "-m",
        "bench.produce",
        "--bootstrap",
        ctx.bootstrap,
        "--topic",
        ctx.topic("interactions"),
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


async def service_times(ctx: Ctx, singles: int = 300, bulks: int = 50) -> dict[str, Any]:
    """Closed loop, one request at a time, nothing else running: what one request costs."""
    assert ctx.worker is not None
    url = ctx.worker.url
    pairs = ctx.lookup_pairs
    out: dict[str, Any] = {}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        for mode, count in (("single", singles), ("bulk", bulks)):
            times = []
            for i in range(count + 10):
                if mode == "single":
                    u, s = pairs[i % len(pairs)]
                    req = session.get(f"{url}/affinity/{u}/{s}")
                else:
                    req = session.post(url + "/affinity/query", json=bulk_body(pairs, i))
                t0 = time.monotonic()
                async with req as resp:
                    await resp.read()
                    if resp.status != 200:
                        raise RuntimeError(f"{mode} lookup answered {resp.status}")
                if i >= 10:  # the first ones open the connection and warm caches
                    times.append(time.monotonic() - t0)
            out[mode] = summary_ms(times, (50, 99))
    return out


async def stage_latency(ctx: Ctx) -> None:
    args, worker = ctx.args, ctx.worker
    assert worker is not None
    out: dict[str, Any] = {"runs": []}
    ctx.stages["latency"] = out
    await wait_caught_up(ctx, timeout=300)
    await asyncio.sleep(2.0)
    cpu = CpuWindow(pid=worker.pid).start()
    await asyncio.sleep(5.0)  # nothing to do: what the worker spends on itself
    out["idle_cpu"] = cpu.stop()
    cpu = CpuWindow(pid=worker.pid).start()
    out["service_time_ms"] = await service_times(ctx)
    out["service_time_ms"]["cpu"] = cpu.stop()
    log(f"service times (idle worker, one at a time): {out['service_time_ms']}")
    if args.profile:
        await profile_lookups(ctx, seconds=min(args.profile_seconds, 8.0))
    bg_log = ctx.workdir / "background.log"
    bg = ctx.reaper.add(
        subprocess.Popen(
            [sys.executable, *producer_cmd(ctx, args.background_rate, 3600, "bg-", 99)],
            cwd=ROOT,
            env=clean_env(),
            stdout=subprocess.PIPE,
            stderr=bg_log.open("ab"),
            start_new_session=True,
        )
    )
    try:
        await asyncio.sleep(2.0)
        plan = [(r, "single") for r in args.rates] + [(r, "bulk") for r in args.bulk_rates]
        for rate, mode in sorted(plan, key=lambda x: (x[0], x[1] == "bulk")):
            await wait_responsive(ctx)
            cmd = [
                "-m",
                "bench.loadgen",
                "--url",
                worker.url,
                "--mode",
                mode,
                "--rate",
                str(rate),
                "--duration",
                str(args.latency_duration),
                "--pairs",
                str(ctx.pairs_file),
                "--bulk-size",
                "100",
            ]
            cpu = CpuWindow(pid=worker.pid).start()
            updates_before = await updates_total(ctx)
            run = await asyncio.to_thread(
                run_json_process,
                cmd,
                args.latency_duration + 60,
                ctx.reaper,
                ctx.workdir / "loadgen.log",
            )
            run["cpu"] = cpu.stop()
            # Did ingest keep up with the background producer while lookups ran?
            run["updates_per_s_during"] = round(
                (await updates_total(ctx) - updates_before) / run["cpu"]["wall_s"], 1
            )
            run["command"] = "python " + shlex.join(cmd)
            out["runs"].append(run)
            p = run["latency_ms"]
            log(
                f"latency {mode} @ {rate}/s: p50 {p['p50']} p99 {p['p99']} "
                f"p99.9 {p['p99.9']} ms, "
                f"achieved {run['achieved_rate']}/s, errors {run['errors']}"
            )
    finally:
        stop_process(bg, group=True, timeout=30)
        raw = bg.stdout.read() if bg.stdout else b""
        with contextlib.suppress(ValueError, IndexError):
            out["background"] = orjson.loads(raw.strip().splitlines()[-1])
    sent = out.get("background", {}).get("sent", 0)
    ctx.expected_updates += sent
    out["catch_up_s"] = round(await wait_caught_up(ctx, timeout=max(120, sent / 100)), 2)


async def stage_freshness(ctx: Ctx) -> None:
    args, worker = ctx.args, ctx.worker
    assert worker is not None
    runs: list[dict[str, Any]] = []
    ctx.stages["freshness"] = {"runs": runs}
    for i, rate in enumerate(args.freshness_rates):
        # Start from an idle worker: no backlog from earlier stages in the figure.
        await wait_caught_up(ctx, timeout=600)
        cmd = producer_cmd(ctx, rate, args.freshness_duration, f"fr{i}-", 123 + i)
        cmd += ["--freshness", ctx.topic("affinity-updates"), "--wait", "30"]
        cpu = CpuWindow(pid=worker.pid).start()
        out = await asyncio.to_thread(
            run_json_process,
            cmd,
            args.freshness_duration + 120,
            ctx.reaper,
            ctx.workdir / "freshness.log",
        )
        out["cpu"] = cpu.stop()
        out["command"] = "python " + shlex.join(cmd)
        runs.append(out)
        ctx.expected_updates += out["sent"]
        f = out["freshness_ms"]
        log(
            f"freshness @ {rate}/s: p50 {f['p50']} p99 {f['p99']} max {f['max']} ms, "
            f"missing {out['updates_missing']}"
        )
    await wait_caught_up(ctx, timeout=600)


async def changelog_records(ctx: Ctx) -> dict[str, int]:
    assert ctx.meta is not None
    out = {}
    for table in ("pair_state", "user_sellers", "users"):  # sellers: the catalog, no changelog
        topic = f"{ctx.app_id}-{table}-changelog"
        with contextlib.suppress(Exception):
            out[table] = await end_offsets_total(ctx.meta, topic)
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

    empty = ctx.workdir / "data-empty"
    worker.data_dir = empty
    worker.start(ctx.reaper)
    timeout = max(300.0, ctx.args.ingest_timeout)
    out["ready_empty_s"] = round(await asyncio.to_thread(worker.wait_ready, timeout), 3)
    out["empty_peak_rss_kb"] = proc_status_kb(worker.pid, "VmHWM") or 0
    after = [stable_part(v) for v in await query(ctx, pairs)]
    out["empty_matched"] = sum(a == b for a, b in zip(before, after, strict=True))
    out["data_dir_mib"] = round(data_dir_bytes(empty) / 2**20, 1)
    log(f"recovery: ready after {out['ready_empty_s']} s from an empty data dir")
    await asyncio.to_thread(worker.stop, 60)


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
    failed = False
    try:
        sampler = Sampler(args.users, args.sellers, args.user_skew, args.seller_skew, args.seed)
        log(
            f"preloading {args.interactions:,} interactions "
            f"({args.users:,} users, {args.sellers:,} sellers)"
        )
        pre = await preload(
            ctx.bootstrap, ctx.prefix, sampler, args.interactions, args.pairs, args.key_by
        )
        ctx.truth = pre.truth
        ctx.lookup_pairs = pre.lookup_pairs
        ctx.pairs_file = ctx.workdir / "pairs.json"
        ctx.pairs_file.write_bytes(orjson.dumps(pre.lookup_pairs))
        ctx.results["preload"] = {
            "interactions": pre.interactions,
            "distinct_pairs": pre.distinct_pairs,
            "seconds": round(pre.seconds, 2),
            "events_per_s": round(pre.interactions / pre.seconds),
        }
        log(f"preloaded in {pre.seconds:.1f} s; {pre.distinct_pairs:,} distinct pairs")
        for name in ORDER:
            if name not in args.stages:
                continue
            ingest_failed = "error" in ctx.stages.get("ingest", {})
            needs_worker = name not in ("ceiling", "ingest")
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
    p.add_argument("--quick", action="store_true", help="small sizes, about 2 minutes")
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
    p.add_argument(
        "--rates", help="lookup req/s, comma-separated (full 500,2000,5000; quick 200,1000)"
    )
    p.add_argument("--latency-duration", type=float, default=10.0, help="seconds per lookup run")
    p.add_argument(
        "--background-rate", type=float, help="ingest/s during lookups (1000; quick 500)"
    )
    p.add_argument(
        "--bulk-rates", help="bulk(100) req/s (default: 50 plus --rates; 50 is sustainable)"
    )
    p.add_argument("--freshness-rates", help="interactions/s (full 500,5000; quick 200,1000)")
    p.add_argument("--freshness-duration", type=float, default=10.0)
    p.add_argument("--kafka-port", type=int, default=int(os.environ.get("BENCH_KAFKA_PORT", 29092)))
    p.add_argument("--no-profile", dest="profile", action="store_false", help="skip py-spy")
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
    args.rates = [
        float(r) for r in (args.rates or ("200,1000" if quick else "500,2000,5000")).split(",")
    ]
    args.bulk_rates = [
        float(r) for r in (args.bulk_rates or ",".join(["50", *map(str, args.rates)])).split(",")
    ]
    args.freshness_rates = [
        float(r) for r in (args.freshness_rates or ("200,1000" if quick else "500,5000")).split(",")
    ]
    args.background_rate = args.background_rate or (500.0 if quick else 1000.0)
    args.profile_seconds = args.profile_seconds or (10.0 if quick else 20.0)
    stages = {s.strip() for s in args.stages.split(",") if s.strip()}
    unknown = stages - set(STAGES)
    if unknown:
        p.error(f"unknown stage(s): {', '.join(sorted(unknown))}")
    if stages & {"latency", "freshness", "recovery"}:
        stages.add("ingest")  # they need a worker holding the preloaded state
    args.stages = stages
    return args


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
            "latency_duration_s": args.latency_duration,
            "background_rate": args.background_rate,
            "bulk_rates": args.bulk_rates,
            "freshness_rates": args.freshness_rates,
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
            for name in ("worker.log", "loadgen.log", "background.log", "freshness.log"):
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
