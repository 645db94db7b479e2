"""Results -> a markdown table, judged against the targets of issue #6."""

from __future__ import annotations

from typing import Any

GIB_KB = 1024 * 1024
TARGET_PAIRS = 10_000_000
TARGET_RATE = 2000  # req/s at which the lookup targets apply
TARGET_FRESHNESS_RATE = 5000  # interactions/s at which the freshness target applies


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
    if "events_per_s_total" in ing:
        n = ing["interactions"]
        out.append(
            (
                "Ingest, worker start → last update",
                f"{_num(ing['events_per_s_total'])} /s ({n:,} in {ing['seconds_total']:.1f} s)",
                "≥ 50,000 /s",
                _verdict(ing["events_per_s_total"] >= 50_000),
                "preloaded topic, one fresh worker; done when affinity-updates has N records",
            )
        )
        out.append(
            (
                "Ingest, first → last update (steady)",
                f"{_num(ing['events_per_s_steady'])} /s",
                "≥ 50,000 /s",
                _verdict(ing["events_per_s_steady"] >= 50_000),
                f"start-up excluded: first update after {ing['first_update_s']:.1f} s",
            )
        )
        if "events_per_s_unprofiled" in ing:
            out.append(
                (
                    "Ingest, steady, outside the profiling window",
                    f"{_num(ing['events_per_s_unprofiled'])} /s",
                    "≥ 50,000 /s",
                    _verdict(ing["events_per_s_unprofiled"] >= 50_000),
                    "py-spy takes CPU on the same two cores while it samples",
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
        us = ing.get("worker_cpu_us_per_event")
        if us:
            out.append(
                (
                    "Worker CPU per interaction",
                    f"{us:,} µs",
                    "≤ 20 µs (what 50,000/s on one core needs)",
                    _verdict(us <= 20),
                    f"→ at most {1e6 / us:,.0f} /s with a whole core to itself",
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
    if "events_per_s_steady" in ing and "events_per_s" in ceil:
        ratio = ing["events_per_s_steady"] / ceil["events_per_s"]
        out.append(
            (
                "Worker / ceiling (steady)",
                f"{ratio:.3f}",
                "≥ 0.5",
                _verdict(ratio >= 0.5),
                "",
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
    svc = lat.get("service_time_ms", {})
    for mode in ("single", "bulk"):
        if mode in svc:
            s = svc[mode]
            name = "single GET" if mode == "single" else "bulk(100) POST"
            out.append(
                (
                    f"Service time {name}, one at a time",
                    f"p50 {_ms(s['p50'])} / p99 {_ms(s['p99'])} ms",
                    "",
                    "",
                    f"closed loop, no ingest, n={s['n']}: at most ~{1000 / s['p50']:,.0f} req/s",
                )
            )
    for run in lat.get("runs", []):
        kind = "single GET" if run["mode"] == "single" else f"bulk({run['bulk_size']}) POST"
        limit = 2.0 if run["mode"] == "single" else 10.0
        p = run["latency_ms"]
        target, verdict = "", ""
        if run["target_rate"] == TARGET_RATE:
            target = f"p99 < {limit:g} ms"
            verdict = _verdict(p["p99"] is not None and p["p99"] < limit)
        errs = sum(run["errors"].values())
        lag = run["client_lag_ms"]["p99"]
        behind = " — the generator fell behind its schedule" if lag is not None and lag > 5 else ""
        out.append(
            (
                f"Lookup {kind} @ {run['target_rate']:,.0f} req/s",
                f"p50 {_ms(p['p50'])} / p99 {_ms(p['p99'])} / p99.9 {_ms(p['p99.9'])} ms",
                target,
                verdict,
                f"achieved {run['achieved_rate']:,.0f} req/s, {errs} errors"
                f"{' ' + str(run['errors']) if errs else ''}, client lag p99 "
                f"{_ms(lag)} ms{behind}, n={run['requests']}; ingest meanwhile "
                f"{run.get('updates_per_s_during', '?')} /s",
            )
        )
    if lat.get("runs") and not any(r["target_rate"] == TARGET_RATE for r in lat["runs"]):
        out.append(
            (
                f"Lookup p99 @ {TARGET_RATE:,} req/s",
                "—",
                "single < 2 ms, bulk(100) < 10 ms",
                _verdict(None),
                "this run used other rates (quick mode)",
            )
        )
    if "background" in lat:
        bg = lat["background"]
        out.append(
            (
                "Background ingest during lookups",
                f"{bg.get('achieved_rate')} /s",
                "",
                "",
                f"{bg.get('sent')} interactions from a separate producer process",
            )
        )

    for fr in st.get("freshness", {}).get("runs", []):
        f = fr["freshness_ms"]
        met = None
        if fr["target_rate"] == TARGET_FRESHNESS_RATE:
            met = f["p99"] is not None and f["p99"] < 100
        out.append(
            (
                f"Freshness @ {fr['target_rate']:,.0f} interactions/s",
                f"p50 {_ms(f['p50'])} / p99 {_ms(f['p99'])} / max {_ms(f['max'])} ms",
                "p99 < 100 ms @ 5,000/s",
                _verdict(met),
                f"achieved {fr['achieved_rate']} /s for {fr['seconds']:.0f} s, "
                f"{fr['updates_missing']} missing, producer lag p99 "
                f"{_ms(fr['send_lag_ms']['p99'])} ms",
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
        out.append(
            (
                "Ready after restart, empty data dir",
                f"{rec['ready_empty_s']:.2f} s",
                "",
                "",
                f"full changelog recovery; peak RSS {rec['empty_peak_rss_kb'] / 1024:,.0f} MiB; "
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
        f"python {m['python']}; total {res['elapsed_s']:.0f} s",
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
