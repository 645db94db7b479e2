"""faust settings against the faust floor, all in one run (issue #13, item 6).

    python -m bench.floor_sweep                      # the default variants, twice each
    python -m bench.floor_sweep --interactions 60000 --repeat 3 \\
        --variant baseline --variant monitor=lean --variant "broker_max_poll_records=500"

Starts its own broker (like bench.run: 127.0.0.1:$BENCH_KAFKA_PORT, default 29092, stopped
at the end whatever happens), preloads N interactions once, then runs the bare faust agent
(bench/floor_app.py) once per variant and round. Each variant is `baseline` (the settings
of streamapp.worker.faust_settings.speed_options, as the worker runs) or comma-separated
NAME=VALUE overrides of them; NAME is a faust setting, or `monitor` (lean | default), or
`loglevel` (the `faust worker -l` level). Rounds alternate the order of the variants
(forward, backward, ...), so a machine that gets busier or quieter during the sweep does
not favour the variants that ran first. CPU per event is the figure to compare: the
machine is shared, the rates move with other people's load.

Output: bench/results/floor_sweep.json and floor_sweep.md (the table is printed too).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import orjson

from bench.common import (
    FORBIDDEN_PORTS,
    RESULTS,
    Reaper,
    broker_start,
    broker_stop,
    lock_port,
    log,
)
from bench.data import Sampler, create_topics, preload
from bench.floor import parse_setting, run_floor

DEFAULT_VARIANTS = (
    "baseline",
    "broker_max_poll_records=500",
    "broker_max_poll_records=10000",
    "stream_buffer_maxsize=131072",
    "consumer_max_fetch_size=4194304",
    "consumer_max_fetch_size=16777216",
    "monitor=lean",
    "stream_wait_empty=false",
    "loglevel=warn",
)


def parse_variant(text: str) -> dict[str, Any]:
    if text.strip() == "baseline":
        return {}
    return dict(parse_setting(part) for part in text.split(",") if part.strip())


async def sweep(args: argparse.Namespace, reaper: Reaper, workdir: Path) -> dict[str, Any]:
    log(f"starting the broker on 127.0.0.1:{args.kafka_port}")
    bootstrap = await asyncio.to_thread(broker_start, args.kafka_port, True)
    run_id = f"sweep{time.strftime('%m%d%H%M%S')}{uuid.uuid4().hex[:4]}"
    prefix = f"{run_id}-"
    await create_topics(bootstrap, prefix)
    sampler = Sampler(args.users, args.sellers, 0.8, 1.0, args.seed)
    pre = await preload(bootstrap, prefix, sampler, args.interactions, None)
    log(f"preloaded {pre.interactions:,} interactions in {pre.seconds:.1f} s")
    runs: list[dict[str, Any]] = []
    for rnd in range(args.repeat):
        order = list(enumerate(args.variant))
        if rnd % 2:
            order.reverse()
        for i, variant in order:
            out = await run_floor(
                bootstrap=bootstrap,
                prefix=prefix,
                app_id=f"{run_id}-v{i}r{rnd}",
                expect=pre.interactions,
                workdir=workdir,
                reaper=reaper,
                settings=parse_variant(variant),
                timeout=args.timeout,
                log_path=workdir / "floor.log",
            )
            out.pop("settings", None)
            out.update(variant=variant, round=rnd, loadavg=[round(x, 2) for x in os.getloadavg()])
            runs.append(out)
            log(
                f"round {rnd + 1}/{args.repeat} {variant}: {out['cpu_us_per_event']} µs/event, "
                f"{out['events_per_s']:,} events/s"
            )
    return {"interactions": pre.interactions, "runs": runs}


def summarise(variants: list[str], runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    base = None
    for variant in variants:
        mine = [r for r in runs if r["variant"] == variant]
        us = [r["cpu_us_per_event"] for r in mine]
        rates = [r["events_per_s"] for r in mine]
        row = {
            "variant": variant,
            "cpu_us_per_event": us,
            "events_per_s": rates,
            "cpu_us_mean": round(statistics.fmean(us), 1) if us else None,
            "events_per_s_mean": round(statistics.fmean(rates)) if rates else None,
        }
        if variant == "baseline":
            base = row["cpu_us_mean"]
        rows.append(row)
    for row in rows:
        row["vs_baseline_pct"] = (
            round(100 * (row["cpu_us_mean"] / base - 1), 1) if base and row["cpu_us_mean"] else None
        )
    return rows


def markdown(result: dict[str, Any]) -> str:
    lines = [
        f"# faust floor settings sweep — {result['started_at']}",
        "",
        f"- command: `{result['command']}`",
        f"- {result['interactions']:,} preloaded interactions, {result['repeat']} rounds, "
        f"git {result['git']}; load average {result['loadavg_start']} → {result['loadavg_end']}",
        "- baseline: streamapp.worker.faust_settings.speed_options(), `faust worker -l info`",
        "",
        "| variant | CPU µs/event (each round) | mean | vs baseline | events/s (each round) |",
        "|---|---|---:|---:|---|",
    ]
    for row in result["summary"]:
        us = ", ".join(f"{x:g}" for x in row["cpu_us_per_event"])
        rates = ", ".join(f"{x:,}" for x in row["events_per_s"])
        delta = row["vs_baseline_pct"]
        lines.append(
            f"| `{row['variant']}` | {us} | {row['cpu_us_mean']} | "
            f"{'' if delta is None else f'{delta:+.1f} %'} | {rates} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.floor_sweep", description=__doc__)
    p.add_argument("--interactions", type=int, default=60_000)
    p.add_argument("--users", type=int, default=10_000)
    p.add_argument("--sellers", type=int, default=1_000)
    p.add_argument("--repeat", type=int, default=2, help="rounds over all variants")
    p.add_argument("--variant", action="append", help="baseline or NAME=VALUE[,NAME=VALUE]")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--timeout", type=float, default=600.0, help="seconds per floor run")
    p.add_argument("--kafka-port", type=int, default=int(os.environ.get("BENCH_KAFKA_PORT", 29092)))
    p.add_argument("--keep-logs", action="store_true")
    args = p.parse_args(argv)
    args.variant = args.variant or list(DEFAULT_VARIANTS)
    if "baseline" not in args.variant:
        args.variant.insert(0, "baseline")
    for v in args.variant:
        try:
            parse_variant(v)
        except ValueError as exc:
            p.error(str(exc))
    if args.kafka_port in FORBIDDEN_PORTS:
        raise SystemExit(f"bench: port {args.kafka_port} belongs to other users of this machine")
    _lock = lock_port(args.kafka_port)  # held until the process ends
    from bench.run import git_describe  # the same description as bench.run's results

    RESULTS.mkdir(parents=True, exist_ok=True)
    reaper = Reaper()
    workdir = Path(tempfile.mkdtemp(prefix="floor-sweep-"))
    result: dict[str, Any] = {
        "command": "python -m bench.floor_sweep " + " ".join(argv or sys.argv[1:]),
        "started_at": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "git": git_describe(),
        "repeat": args.repeat,
        "variants": args.variant,
        "loadavg_start": [round(x, 2) for x in os.getloadavg()],
    }
    rc = 1

    def interrupted(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt  # SIGTERM too ends in the finally below: broker stopped

    signal.signal(signal.SIGTERM, interrupted)
    try:
        result.update(asyncio.run(sweep(args, reaper, workdir)))
        result["summary"] = summarise(args.variant, result["runs"])
        rc = 0
    except (KeyboardInterrupt, Exception) as exc:
        result["error"] = f"{type(exc).__name__}: {exc}"
        log(f"FAILED: {result['error']}")
    finally:
        reaper.stop_all()
        log("stopping the broker")
        broker_stop(args.kafka_port)
        result["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
        (RESULTS / "floor_sweep.json").write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
        if "summary" in result:
            table = markdown(result)
            (RESULTS / "floor_sweep.md").write_text(table)
            print(table)
        if args.keep_logs:
            log(f"logs kept in {workdir}")
        else:
            if (workdir / "floor.log").exists():
                shutil.copy(workdir / "floor.log", RESULTS / "floor_sweep.log")
            shutil.rmtree(workdir, ignore_errors=True)
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
