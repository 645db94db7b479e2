"""Results -> a markdown table, judged against the targets of issues #13 and #10 (and the
memory and restart targets of issue #6, which they did not replace)."""

from __future__ import annotations

from typing import Any

from bench.common import MainThreadIdle

GIB_KB = 1024 * 1024
TARGET_PAIRS = 10_000_000
# Issue #10: (mode, req/s) -> latency limits in ms, with ingest at half capacity beside them.
LOOKUP_TARGETS: dict[tuple[str, float], dict[str, float]] = {
    ("single", 1000): {"p99": 2.0, "p99.9": 10.0},
    ("bulk", 200): {"p99": 10.0},
    ("top", 200): {"p99": 5.0},
}


def _ms(v: float | None) -> str:
    return "fail" if v is None else f"{v:,.1f}" if v >= 100 else f"{v:.2f}"


def _num(v: float | None) -> str:
    return "—" if v is None else f"{v:,.0f}"


def _verdict(ok: bool | None) -> str:
    return {True: "**met**", False: "**not met**", None: "not measured"}[ok]


def rows(res: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    """(figure, measured, target, verdict, how) for every figure present in `res`."""
    out: list[tuple[str, str, str, str, str]] = []
    st = res.get("stages", {})

    ing = st.get("ingest", {})
    ceil = st.get("ceiling", {})
    floor = st.get("faust_floor", {})
    if "events_per_s" in floor:
        out.append(
            (
                "faust floor: bare agent, first → N-th event",
                f"{_num(floor['events_per_s'])} /s, {floor['cpu_us_per_event']:,} µs CPU each",
                "",
                "",
                "`async for event in stream.events(): n += 1`, the worker's faust settings "
                f"(streamapp/faust_settings.py), `-l {floor.get('loglevel', 'info')}`, "
                f"delivery {floor.get('delivery')} (faust_fixes 12.)"
                + (
                    f", overrides {floor['settings_overrides']}"
                    if floor.get("settings_overrides")
                    else ""
                )
                + f"; first event after {floor['first_event_s']:.1f} s",
            )
        )
    if "events_per_s_total" in ing:
        n = ing["interactions"]
        out.append(
            (
                "Ingest, worker start → last update",
                f"{_num(ing['events_per_s_total'])} /s ({n:,} in {ing['seconds_total']:.1f} s)",
                "",
                "",
                "preloaded topic, one fresh worker; done when the affinity-updates cover N "
                "interactions (sum of interactions_covered, 1 when absent)",
            )
        )
        floor_rate = floor.get("events_per_s")
        out.append(
            (
                "Ingest, first → last update (steady)",
                f"{_num(ing['events_per_s_steady'])} /s"
                + (
                    f" = {ing['events_per_s_steady'] / floor_rate:.2f} x floor"
                    if floor_rate
                    else ""
                ),
                "≥ 0.7 x faust floor",
                _verdict(ing["events_per_s_steady"] >= 0.7 * floor_rate if floor_rate else None),
                f"start-up excluded: first update after {ing['first_update_s']:.1f} s",
            )
        )
        if "events_per_s_unprofiled" in ing:
            out.append(
                (
                    "Ingest, steady, outside the profiling window",
                    f"{_num(ing['events_per_s_unprofiled'])} /s",
                    "",
                    "",
                    "py-spy takes CPU on the same two cores while it samples",
                )
            )
        us = ing.get("cpu_us_per_event")
        floor_us = floor.get("cpu_us_per_event")
        if us:
            ratio = us / floor_us if floor_us else None
            out.append(
                (
                    "Worker CPU per interaction (steady)",
                    f"{us:,} µs" + (f" = {ratio:.2f} x floor" if ratio else ""),
                    "≤ 1.5 x faust floor (stretch 1.2 x)",
                    _verdict(ratio <= 1.5 if ratio else None)
                    + (" (stretch met)" if ratio and ratio <= 1.2 else ""),
                    f"/proc/<pid>/stat, first → last update; from process start: "
                    f"{ing.get('worker_cpu_us_per_event', '—')} µs",
                )
            )
        cpu = ing.get("cpu", {})
        out.append(
            (
                "Worker CPU during ingest",
                f"{cpu.get('process_cpu_pct_of_one_core', '—')} % of one core",
                "",
                "",
                f"machine busy {cpu.get('machine_busy_pct', '—')} % of {cpu.get('cores')} cores "
                f"(everything, other users included)",
            )
        )
        if ing.get("update_records") is not None:
            out.append(
                (
                    "affinity-updates records during ingest",
                    f"{ing['update_records']:,} for {ing['interactions_covered']:,} interactions",
                    "",
                    "",
                    "one per interaction with STREAMAPP_UPDATES=each; fewer when coalesced",
                )
            )
        if "rekeyed" in ing:
            out.append(
                (
                    "Interactions that took the re-keying hop",
                    f"{ing['rekeyed']:,} of {n:,}",
                    "",
                    "",
                    f"preloaded with key = {ing.get('key_by', 'user')} id; the rest were "
                    "counted in the partition they arrived on",
                )
            )
        out.append(
            (
                "Answers correct after ingest",
                f"{ing['truth_matched']}/{ing['truth_checked']} sample pairs",
                "all",
                _verdict(ing["truth_matched"] == ing["truth_checked"]),
                "number_of_interactions vs the generator's own count",
            )
        )
    if "events_per_s" in ceil:
        out.append(
            (
                "Ceiling: raw consumer + JSON decode",
                f"{_num(ceil['events_per_s'])} /s",
                "",
                "",
                "aiokafka, one process, same topic, orjson.loads per record",
            )
        )
    if "events_per_s_steady" in ing and ("events_per_s" in ceil or "events_per_s" in floor):
        parts = []
        if "events_per_s" in floor:
            parts.append(f"{ing['events_per_s_steady'] / floor['events_per_s']:.3f} of the floor")
        if "events_per_s" in ceil:
            parts.append(f"{ing['events_per_s_steady'] / ceil['events_per_s']:.4f} of the ceiling")
        out.append(
            (
                "Worker steady rate as a ratio",
                ", ".join(parts),
                "",
                "",
                "floor: what any faust agent reaches here; ceiling: a raw consumer",
            )
        )
    two = st.get("ingest_two_workers", {})
    if "events_per_s_steady" in two:
        ratio = two.get("ratio_to_one")
        after = two.get("after_both_ready") or {}
        out.append(
            (
                "Ingest with 2 workers (steady)",
                f"{_num(two['events_per_s_steady'])} /s = {ratio} x one worker",
                "≥ 1.6 x one worker",
                _verdict(ratio >= 1.6 if ratio is not None else None),
                f"{two['interactions']:,} of the same records, both workers on this machine's "
                f"{res['machine']['cores']} cores; one worker "
                f"{_num(two.get('one_worker_events_per_s_steady'))} /s "
                f"({two.get('one_worker_window', 'first -> last update')}); "
                f"{two['cpu_us_per_event']:,} µs CPU per interaction (both); after both answered "
                f"/health at {two.get('both_ready_s')} s: {_num(after.get('events_per_s'))} /s; "
                f"truth {two.get('truth_matched')}/{two.get('truth_checked')}; "
                f"share of the records counted {two.get('share_counted')} (faust assigns "
                f"partitions by count, not load: at most {two.get('ratio_ceiling_from_share')} x "
                "with each worker at one worker's rate)",
            )
        )

    roll = st.get("rolling_restart", {})
    if "bounces" in roll:
        look = roll["lookups"]
        most = roll["max_rebalances_per_bounce"]
        out.append(
            (
                "Rolling restart of 3 workers: rebalances per bounce",
                f"{most:g} at most",
                "≤ 1 (0 within the session timeout)",
                _verdict(most <= 1),
                "each worker SIGTERMed and started again in turn; out for "
                + ", ".join(f"{b['down_s']} s" for b in roll["bounces"])
                + f"; {roll['background_rate']:g} interactions/s meanwhile",
            )
        )
        out.append(
            (
                "Rolling restart: longest ingest pause",
                f"{roll['longest_ingest_pause_s']} s",
                "≤ 5 s",
                _verdict(roll["longest_ingest_pause_s"] <= 5),
                "longest time the group's affinity-updates did not grow while interactions came in",
            )
        )
        phases = look.get("phases", {})
        bouncing = phases.get("bounces", look)
        share = bouncing["answered_share"]
        out.append(
            (
                "Rolling restart: lookups answered 200",
                f"{share * 100:.2f} %" if share is not None else "—",
                "≥ 99 %",
                _verdict(share >= 0.99 if share is not None else None),
                f"{look['sent']:,} single lookups at {look['rate']:g}/s through a health-checking "
                f"balancer that retries once on another worker; {look['answered_by_replica']:,} "
                f"from a standby; {look['wrong']} wrong; statuses {look['statuses']}; sample "
                f"{roll.get('truth_matched')}/{roll.get('truth_checked')} exact afterwards, "
                f"updates covered {roll.get('covered_after'):,} of {roll.get('covered_want'):,}",
            )
        )
        joined = phases.get("scale_out")
        if joined and joined["answered_share"] is not None:
            out.append(
                (
                    "Rolling restart, then a 4th worker joins: lookups answered 200",
                    f"{joined['answered_share'] * 100:.2f} %",
                    "",
                    "",
                    f"an eager rebalance of every worker, all ready in "
                    f"{roll.get('scale_out_ready_s')} s; statuses and sources {joined['statuses']}",
                )
            )

    lat = st.get("latency", {})
    if "idle_cpu" in lat:
        out.append(
            (
                "Worker CPU when idle (caught up, no requests)",
                f"{lat['idle_cpu'].get('process_cpu_pct_of_one_core', '—')} % of one core",
                "",
                "",
                "5 s: faust's timers, fetch loops, commits",
            )
        )
    serve = lat.get("serve", {})
    if "ready_s" in serve:
        out.append(
            (
                "Serving process (python -m streamapp.serve) ready",
                f"{serve['ready_s']:.2f} s",
                "",
                "",
                "process start → /health 200, beside the caught-up worker; idle CPU "
                f"{serve.get('idle_cpu_pct_of_one_core', '—')} % of one core",
            )
        )
    for t in lat.get("truth", []):
        if t.get("via") == "serve":
            out.append(
                (
                    "Answers correct via serve, before the lookup runs",
                    f"{t['matched']}/{t['checked']} sample pairs",
                    "all",
                    _verdict(t["matched"] == t["checked"]),
                    "number_of_interactions vs the generator's own count",
                )
            )
    for when, name in (("before", "before the lookup runs"), ("after", "after them, caught up")):
        ag = serve.get(f"agreement_{when}")
        if ag:
            out.append(
                (
                    f"Serve answers = worker answers, {name}",
                    f"{ag['pairs'] - ag['mismatched']}/{ag['pairs']} pairs, top-k "
                    + {True: "same", False: "different", None: "not checked"}[ag["top_k_same"]],
                    "all",
                    _verdict(ag["agreed"]),
                    "every field but as_of, the score within what the two as_of allow; "
                    + (
                        f"agreed after {ag['attempts']} attempt(s), {ag['seconds']} s"
                        if ag["agreed"]
                        else f"still different after {ag['seconds']} s, differing fields "
                        f"{ag.get('fields', 'not recorded')}"
                    ),
                )
            )
    if serve.get("error"):
        out.append(("Serving process", "failed", "", "", serve["error"]))
    procs = serve.get("processes", {})
    if procs.get("ratio_two_to_one") is not None:
        out.append(
            (
                "Two serving processes on one port / one (bulk(100) capacity)",
                f"{procs['ratio_two_to_one']} x ({procs['one']['requests_per_s']:,.0f} -> "
                f"{procs['two']['requests_per_s']:,.0f} /s)",
                "",
                "",
                f"closed loop, {procs['connections']} connections, worker idle, SO_REUSEPORT",
            )
        )
    floor = lat.get("web_floor", {})
    floor_p99 = floor.get("p99")
    if floor_p99:
        out.append(
            (
                "Web floor (bench/web_floor.py), one at a time, in turns with single lookups",
                f"p50 {_ms(floor['p50'])} / p99 {_ms(floor_p99)} ms",
                "",
                "",
                f"a pre-encoded {floor['body_bytes']}-byte body, the serving process's web layer",
            )
        )
    for svc in _service_times(lat):
        via = f" via {svc['via']}" if "via" in svc else ""
        for mode, name in (
            ("single", "single GET"),
            ("bulk", "bulk(100) POST"),
            ("bulk_again", "bulk(100) POST, the same pairs again"),
            ("top", "top-k GET"),
        ):
            if mode in svc:
                s = svc[mode]
                target, verdict = "", ""
                # Against the floor of the same seconds (its requests took turns with these).
                floor_p99 = s.get("web_floor", {}).get("p99") or lat.get("web_floor", {}).get("p99")
                if floor_p99 and s["p99"] is not None and mode == "single":
                    target = f"p99 <= 1.5 x web floor ({1.5 * floor_p99:.2f} ms)"
                    verdict = _verdict(s["p99"] <= 1.5 * floor_p99)
                elif floor_p99 and s["p99"] is not None and mode in ("bulk", "bulk_again"):
                    target = f"p99 <= web floor + 1.5 ms ({floor_p99 + 1.5:.2f} ms)"
                    verdict = _verdict(s["p99"] <= floor_p99 + 1.5)
                out.append(
                    (
                        f"Service time {name}{via}, one at a time",
                        f"p50 {_ms(s['p50'])} / p99 {_ms(s['p99'])} ms",
                        target,
                        verdict,
                        f"closed loop, no ingest, n={s['n']}: at most "
                        f"~{1000 / s['p50']:,.0f} req/s",
                    )
                )
    bg_rate = lat.get("background_rate")
    if bg_rate:
        bg = lat.get("background", {})
        out.append(
            (
                "Background ingest during lookups",
                f"{bg_rate:,.0f} /s target (producer achieved {bg.get('achieved_rate', '—')} /s)",
                "",
                "",
                f"{lat.get('background_rate_source')}: measured ingest capacity "
                f"{_num(lat.get('capacity_events_per_s'))} /s ({lat.get('capacity_from')})",
            )
        )
    for key, beside in (("capacity", ""), ("capacity_beside_ingest", " beside ingest")):
        for mode, by_via in lat.get(key, {}).items():
            for via, found in by_via.items():
                condition = (
                    f"ingest kept at >= 0.8 x its {found['beside_ingest_per_s']:,.0f} /s"
                    if found.get("beside_ingest_per_s")
                    else "no ingest"
                )
                out.append(
                    (
                        f"Capacity {mode} via {via}{beside}",
                        f"{found['rate']:,.0f} req/s",
                        "",
                        "",
                        f"highest open-loop rate with p99 < {found['p99_limit_ms']:g} ms and no "
                        f"errors, {condition} ({len(found['probes'])} probes of "
                        f"{found['probe_s']:g}-8 s)",
                    )
                )
    idle_p99 = {
        (m, svc.get("via", "worker")): svc[m]["p99"]
        for svc in _service_times(lat)
        for m in ("single", "bulk", "top")
        if svc.get(m, {}).get("p99") is not None
    }
    for run in lat.get("runs", []):
        mode = run["mode"]
        kind = {
            "single": "single GET",
            "bulk": f"bulk({run['bulk_size']}) POST",
            "top": f"top-k (k={run.get('k', 10)}) GET",
        }[mode]
        p = run["latency_ms"]
        target, verdict = "", ""
        limits = LOOKUP_TARGETS.get((mode, run["target_rate"]))
        idle = idle_p99.get((mode, run.get("via", "worker")))
        if run.get("fraction_of_capacity") == 0.5 and idle is not None:
            target = f"p99 < 5 x idle service p99 ({5 * idle:.1f} ms)"
            verdict = _verdict(p["p99"] is not None and p["p99"] < 5 * idle)
        elif limits:
            target = " and ".join(f"{q} < {v:g} ms" for q, v in limits.items())
            verdict = _verdict(all(p[q] is not None and p[q] < v for q, v in limits.items()))
        errs = sum(run["errors"].values())
        lag = run["client_lag_ms"]["p99"]
        behind = " — the generator fell behind its schedule" if lag is not None and lag > 5 else ""
        via = f" via {run['via']}" if "via" in run else ""
        kind += via
        out.append(
            (
                f"Lookup {kind} @ {run['target_rate']:,.0f} req/s"
                + (
                    f" ({run['fraction_of_capacity']:g} x capacity"
                    + (" beside ingest)" if run.get("capacity_basis") == "beside_ingest" else ")")
                    if run.get("fraction_of_capacity")
                    else ""
                ),
                f"p50 {_ms(p['p50'])} / p99 {_ms(p['p99'])} / p99.9 {_ms(p['p99.9'])} ms",
                target,
                verdict,
                f"achieved {run['achieved_rate']:,.0f} req/s, {errs} errors"
                f"{' ' + str(run['errors']) if errs else ''}, client lag p99 "
                f"{_ms(lag)} ms{behind}, n={run['requests']}",
            )
        )
        during = run.get("updates_per_s_during")
        if during is not None and bg_rate:
            out.append(
                (
                    f"Ingest during {kind} @ {run['target_rate']:,.0f} req/s",
                    f"{during:,.0f} /s = {during / bg_rate:.2f} x background",
                    "≥ 0.8 x background rate",
                    _verdict(during >= 0.8 * bg_rate),
                    f"backlog at start {run.get('backlog_at_start', '?')} interactions",
                )
            )

    fresh = st.get("freshness", {})
    trickle = fresh.get("trickle")
    for fr in ([trickle] if trickle else []) + fresh.get("runs", []):
        f = fr["freshness_ms"]
        half = fr.get("half_capacity")
        share = fr.get("fraction_of_capacity")
        if fr.get("trickle"):
            label, target, limit = " (trickle, idle worker)", "p99 < 50 ms", 50
        elif half:
            label, target, limit = " (half the measured capacity)", "p99 < 100 ms", 100
        elif share is not None and abs(share - 0.8) < 0.05:
            label, target, limit = " (80 % of the measured capacity)", "p99 < 500 ms", 500
        else:
            label, target, limit = "", "", None
        steps = fr.get("steps", {})
        loop = MainThreadIdle.describe(fr.get("main_thread") or {})
        loop = f"{loop}; " if loop else ""
        out.append(
            (
                f"Freshness @ {fr['target_rate']:,.0f} interactions/s" + label,
                f"p50 {_ms(f['p50'])} / p99 {_ms(f['p99'])} / max {_ms(f['max'])} ms",
                target,
                _verdict(f["p99"] is not None and f["p99"] < limit) if limit else "",
                f"achieved {fr['achieved_rate']} /s for {fr['seconds']:.0f} s, "
                f"{fr['updates_missing']} missing, producer lag p99 "
                f"{_ms(fr['send_lag_ms']['p99'])} ms; {loop}steps p99 <= "
                + ", ".join(f"{k} {v.get('p99_le_ms')} ms" for k, v in steps.items()),
            )
        )
    lookups = fresh.get("lookup_freshness", {})
    for when, limits in (("idle", {"worker": 50}), ("half_capacity", {"serve": 150})):
        for who, f in lookups.get(when, {}).items():
            limit = limits.get(who)
            out.append(
                (
                    f"Lookup freshness ({who}, {when.replace('_', ' ')})",
                    f"p50 {_ms(f['p50'])} / p99 {_ms(f['p99'])} ms",
                    f"p99 < {limit} ms" if limit else "",
                    _verdict(f["p99"] is not None and f["p99"] < limit) if limit else "",
                    "produce acknowledgement -> GET /affinity shows it",
                )
            )

    if "peak_rss_kb" in ing:
        pairs = ing.get("distinct_pairs", 0)
        rss = ing["peak_rss_kb"]
        met: bool | None = None
        if rss >= GIB_KB:
            met = False
        elif pairs >= TARGET_PAIRS:
            met = True
        out.append(
            (
                "Peak RSS during ingest",
                f"{rss / 1024:,.0f} MiB with {pairs:,} pairs",
                "< 1 GiB with 10M pairs",
                _verdict(met),
                f"VmHWM of the worker; data dir {ing.get('data_dir_mib', 0):,.0f} MiB"
                + ("" if pairs >= TARGET_PAIRS else f"; only {pairs:,} pairs measured"),
            )
        )
    rec = st.get("recovery", {})
    if "ready_intact_s" in rec:
        out.append(
            (
                "Ready after restart, data dir intact",
                f"{rec['ready_intact_s']:.2f} s",
                "< 5 s",
                _verdict(rec["ready_intact_s"] < 5),
                f"process start → /health 200; sample {rec['intact_matched']}/{rec['checked']} "
                "same",
            )
        )
    if "ready_empty_s" in rec:
        # Issue 21: a rebuild at most a quarter of the time the worker took to ingest the
        # same interactions (worker start -> last update), measured in the same run.
        ingest_s, ratio = ing.get("seconds_total"), rec.get("ratio_to_ingest")
        out.append(
            (
                "Ready after restart, empty data dir",
                f"{rec['ready_empty_s']:.2f} s"
                + ("" if ratio is None else f" = {ratio:.2f} x the ingest's {ingest_s:.1f} s"),
                "≤ 0.25 x the ingest's time",
                _verdict(None if ratio is None else ratio <= 0.25),
                f"full changelog recovery: {sum(rec.get('changelog_records', {}).values()):,} "
                f"records, {rec.get('records_per_s') or 0:,}/s; peak RSS "
                f"{rec['empty_peak_rss_kb'] / 1024:,.0f} MiB; "
                f"sample {rec['empty_matched']}/{rec['checked']} same",
            )
        )
    if "cold_ready_s" in ing:
        out.append(
            (
                "Cold start, no state → /health 200",
                f"{ing['cold_ready_s']:.2f} s",
                "",
                "",
                "Python + faust start-up, first rebalance",
            )
        )
    return out


def _service_times(lat: dict[str, Any]) -> list[dict[str, Any]]:
    """The no-ingest service times, one entry per process asked (older results: one)."""
    if lat.get("service_times"):
        return lat["service_times"]
    return [lat["service_time_ms"]] if lat.get("service_time_ms") else []


def lookup_table(res: dict[str, Any]) -> list[str]:
    """Worker and serving process side by side: each lookup run, then the service times."""
    lat = res.get("stages", {}).get("latency", {})
    runs = lat.get("runs", [])
    if not runs:
        return []
    bg = lat.get("background_rate")
    vias = ["worker", "serve"]
    runs = sorted(
        runs,
        key=lambda r: (
            ("single", "bulk", "top").index(r["mode"]),
            r["target_rate"],
            vias.index(r.get("via", "worker")),
        ),
    )
    lines = [
        "",
        f"Lookups with ingest at {_num(bg)} /s, worker and serving process side by side "
        "(latency from the scheduled send time, ms; ingest during = affinity-updates covered "
        "per second while the run lasted):",
        "",
        "| mode | rate req/s | via | p50 | p99 | p99.9 | achieved req/s | errors "
        "| ingest during /s | CPU % of one core |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        p = run["latency_ms"]
        during = run.get("updates_per_s_during")
        ingest = "—" if during is None else f"{during:,.0f}"
        if during is not None and bg:
            ingest += f" ({during / bg:.2f} x)"
        cpu = run.get("cpu_pct_of_one_core") or {
            run.get("via", "worker"): run.get("cpu", {}).get("process_cpu_pct_of_one_core")
        }
        lines.append(
            f"| {run['mode']} | {run['target_rate']:,.0f} | {run.get('via', 'worker')} "
            f"| {_ms(p['p50'])} | {_ms(p['p99'])} | {_ms(p['p99.9'])} "
            f"| {_num(run.get('achieved_rate'))} | {sum(run['errors'].values())} | {ingest} "
            f"| {', '.join(f'{k} {v}' for k, v in cpu.items())} |"
        )
    services = _service_times(lat)
    if services:
        lines += [
            "",
            "Service times, one request at a time, no ingest (ms):",
            "",
            "| mode | via | p50 | p99 | n | server CPU per request |",
            "|---|---|---|---|---|---|",
        ]
        for mode in ("single", "bulk", "bulk_again", "top"):
            for svc in services:
                if mode in svc:
                    s = svc[mode]
                    cpu = s.get("server_cpu_ms")
                    lines.append(
                        f"| {mode} | {svc.get('via', 'worker')} | {_ms(s['p50'])} "
                        f"| {_ms(s['p99'])} | {s['n']} | {'—' if cpu is None else _ms(cpu)} |"
                    )
    return lines


def markdown(res: dict[str, Any]) -> str:
    m = res["machine"]
    prm = res["params"]
    lines = [
        f"# streamapp benchmark, {res['mode']} mode — {res['started_at']}",
        "",
        f"- command: `{res['command']}`",
        f"- machine: {m['cores']} cores, {m['mem_gib']} GiB; load average at start "
        f"{m['loadavg_start']}, at end {m['loadavg_end']} (other work shares these cores)",
        f"- git {res.get('git', '?')} at start, {res.get('git_end', '?')} at end; "
        f"python {m['python']}, faust event loop {m.get('event_loop', 'aio')}; "
        f"total {res['elapsed_s']:.0f} s",
        f"- data: {prm['interactions']:,} interactions, {prm['users']:,} users, "
        f"{prm['sellers']:,} sellers, skew users {prm['user_skew']} / sellers "
        f"{prm['seller_skew']}",
        "",
        f"Every figure below: {m['cores']} cores, command `{res['command']}`.",
        "",
        "| figure | measured | target | verdict | how / notes |",
        "|---|---|---|---|---|",
    ]
    for r in rows(res):
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in r) + " |")
    lines += lookup_table(res)
    errors = {k: v["error"] for k, v in res.get("stages", {}).items() if "error" in v}
    if errors:
        lines += ["", "Errors:"]
        lines += [f"- {k}: {v}" for k, v in errors.items()]
    prof = res.get("profile", {})
    if prof.get("top_self"):
        lines += [
            "",
            f"Profile of ingest (py-spy --gil, {prof['samples']} samples over {prof['seconds']} s; "
            f"a thread held the GIL {prof.get('gil_held_pct', '?')} % of that time; ingest ran at "
            f"{prof.get('events_per_s_during', '?')} /s meanwhile; % of GIL-holding samples):",
            "",
            "| # | function (self) | self % | | function (inclusive) | incl. % |",
            "|---|---|---|---|---|---|",
        ]
        for i, (a, b) in enumerate(zip(prof["top_self"], prof["top_inclusive"], strict=False), 1):
            lines.append(f"| {i} | `{a[0]}` | {a[1]:.1f} | | `{b[0]}` | {b[1]:.1f} |")
        lines += _package_line(prof)
    lk = res.get("profile_lookups", {})
    if lk.get("top_self"):
        lines += [
            "",
            f"Profile of bulk(100) lookups back to back, no ingest (py-spy --gil, {lk['samples']} "
            f"samples over {lk['seconds']} s, {lk['requests_per_s_during']} req/s; GIL held "
            f"{lk['gil_held_pct']} % of the time):",
            "",
            "| # | function (self) | self % | | function (inclusive) | incl. % |",
            "|---|---|---|---|---|---|",
        ]
        for i, (a, b) in enumerate(zip(lk["top_self"], lk["top_inclusive"], strict=False), 1):
            lines.append(f"| {i} | `{a[0]}` | {a[1]:.1f} | | `{b[0]}` | {b[1]:.1f} |")
        lines += _package_line(lk)
    return "\n".join(lines) + "\n"


def _package_line(prof: dict[str, Any]) -> list[str]:
    if not prof.get("by_package"):
        return []
    return ["", "By package (self %): " + ", ".join(f"{k} {v:.1f}" for k, v in prof["by_package"])]
