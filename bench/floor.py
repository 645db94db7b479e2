"""Run the faust floor (bench/floor_app.py) once over a preloaded topic and measure it.

Used by the `faust_floor` stage of bench.run and by bench.floor_sweep. The floor app takes
its own marks (time and /proc/self/stat CPU at the first, the N/10-th and the N-th event);
this side only starts it, waits (bounded) until it has seen every event, and stops it by
its process group.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import orjson

from bench.common import CpuWindow, Reaper, Worker, proc_cpu_s


def parse_setting(text: str) -> tuple[str, Any]:
    """'NAME=VALUE' -> (NAME, VALUE); VALUE is JSON when it parses (500, 4194304, false,
    null), else a string ('lean', 'warn')."""
    name, sep, raw = text.partition("=")
    if not sep or not name.strip():
        raise ValueError(f"expected NAME=VALUE, got {text!r}")
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        value = raw
    return name.strip(), value


def split_settings(settings: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """(faust settings for BENCH_FLOOR_SETTINGS, the CLI log level): `loglevel` is not a
    faust setting but `faust worker -l`, which changes the cost per event (field notes)."""
    faust_settings = dict(settings)
    loglevel = str(faust_settings.pop("loglevel", "info"))
    return faust_settings, loglevel


def window(marks: list[dict[str, Any]], first: int, last: int) -> dict[str, Any]:
    """Rate and CPU per event between two marks (by event number)."""
    by_n = {m["events"]: m for m in marks}
    a, b = by_n[first], by_n[last]
    events = last - first
    seconds = b["monotonic"] - a["monotonic"]
    return {
        "from_event": first,
        "to_event": last,
        "seconds": round(seconds, 3),
        "events_per_s": round(events / max(seconds, 1e-9)),
        "cpu_us_per_event": round((b["cpu_s"] - a["cpu_s"]) / max(events, 1) * 1e6, 1),
        "cpu_pct_of_one_core": round(100 * (b["cpu_s"] - a["cpu_s"]) / max(seconds, 1e-9), 1),
    }


async def run_floor(
    *,
    bootstrap: str,
    prefix: str,
    app_id: str,
    expect: int,
    workdir: Path,
    reaper: Reaper,
    settings: dict[str, Any] | None = None,
    timeout: float = 600.0,
    stall_timeout: float = 60.0,
    log_path: Path | None = None,
) -> dict[str, Any]:
    """Start the floor app on `prefix`interactions (N = expect records), wait until it has
    seen all of them, stop it; its figures over the steady part (first event -> N-th)."""
    faust_settings, loglevel = split_settings(settings or {})
    proc = Worker(
        bootstrap,
        app_id,
        prefix,
        workdir / f"{app_id}-data",
        log_path or workdir / "floor.log",
        module="bench.floor_app",
        env={
            "BENCH_FLOOR_EXPECT": str(expect),
            "BENCH_FLOOR_SETTINGS": orjson.dumps(faust_settings).decode(),
        },
        loglevel=loglevel,
    )
    proc.start(reaper)
    t0 = proc.started_at
    cpu = CpuWindow(pid=proc.pid).start()
    state: dict[str, Any] | None = None
    last_events, last_progress = -1, t0
    try:
        while True:
            # Polls are cheap for the floor (a few a second); the figures come from its marks.
            await asyncio.sleep(0.25)
            proc.check_alive()
            state = await asyncio.to_thread(proc.get_json, "/floor", 1.0) or state
            now = time.monotonic()
            if state is not None:
                if state["done"]:
                    break
                if state["events"] > last_events:
                    last_events, last_progress = state["events"], now
            if now - last_progress > stall_timeout:
                raise TimeoutError(
                    f"floor: no progress for {stall_timeout:.0f}s at {last_events}/{expect}"
                )
            if now - t0 > timeout:
                raise TimeoutError(f"floor: not done in {timeout:.0f}s ({last_events}/{expect})")
        done_at = time.monotonic()
        whole = cpu.stop()
        total_cpu = proc_cpu_s(proc.pid)
    finally:
        stop_s = await asyncio.to_thread(proc.stop, 30)
    assert state is not None
    marks = state["marks"]
    numbers = [m["events"] for m in marks]
    steady = window(marks, numbers[0], expect)
    out: dict[str, Any] = {
        "events": expect,
        "events_per_s": steady["events_per_s"],
        "cpu_us_per_event": steady["cpu_us_per_event"],
        "steady": steady,
        # The same from the 10 % mark on: start-up effects (first fetches) excluded too.
        "after_tenth": window(marks, numbers[1], expect) if len(numbers) > 2 else None,
        "first_event_s": round(marks[0]["monotonic"] - t0, 3),
        "seconds_total": round(done_at - t0, 3),
        # Whole process, start-up (imports, faust, first rebalance) included.
        "process_cpu_s": round(total_cpu, 2) if total_cpu is not None else None,
        "cpu": whole,
        "stop_s": round(stop_s, 2),
        "loglevel": loglevel,
        "settings_overrides": faust_settings,
        "settings": state.get("settings", {}),
        "delivery": state.get("delivery"),
        "app_id": app_id,
    }
    return out
