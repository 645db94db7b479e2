"""`make soak`: the SIGKILL scenario again and again, with a CPU hog beside it on alternate
rounds, and how many rounds were exact.

Each round is one run of tests/integration/test_crash.py's SIGKILL test (a fresh app id,
four SIGKILLs, one of them with the data dir lost; exact counts, and the group's committed
offsets at the end of every partition). One broker serves every round: this script starts
it on SOAK_KAFKA_PORT (29192) unless KAFKA_BROKER is set, and stops it by its PID at the end.

  python scripts/soak.py [--rounds 20] [--hog-every 2] [--hogs 2]
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEST = "tests/integration/test_crash.py::test_sigkill_at_random_moments_loses_and_doubles_nothing"


def _spin() -> None:  # pragma: no cover - a CPU hog, killed by the parent
    while True:
        pass


def _logs_since(started: float) -> list[Path]:
    """The worker logs a round wrote (tests/harness.py keeps them under test-artifacts/)."""
    found = (ROOT / "test-artifacts").glob("*.log")
    return sorted(p for p in found if p.stat().st_mtime >= started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=int(os.environ.get("SOAK_ROUNDS", "20")))
    parser.add_argument("--hog-every", type=int, default=2, help="a CPU hog every Nth round")
    parser.add_argument("--hogs", type=int, default=os.cpu_count() or 2, help="busy processes")
    parser.add_argument("--round-timeout", type=float, default=900.0)
    args = parser.parse_args(argv)

    env = dict(os.environ)
    script = ROOT / "scripts" / "kafka-local.sh"
    broker_env = {**env, "KAFKA_LOCAL_PORT": env.get("SOAK_KAFKA_PORT", "29192")}
    started_broker = False
    if not env.get("KAFKA_BROKER"):
        out = subprocess.run(
            [script, "start"], env=broker_env, capture_output=True, text=True, timeout=600
        )
        if out.returncode != 0:
            sys.stderr.write(f"soak: could not start a broker:\n{out.stderr[-2000:]}\n")
            return 2
        started_broker = True
        env["KAFKA_BROKER"] = "kafka://" + out.stdout.strip().splitlines()[-1]
    results: list[tuple[int, bool, bool, float]] = []

    def stop(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)  # runs the clean-up below: the round, hogs, broker

    signal.signal(signal.SIGTERM, stop)
    try:
        for n in range(1, args.rounds + 1):
            hog = args.hog_every > 0 and n % args.hog_every == 0
            hogs = [multiprocessing.Process(target=_spin, daemon=True) for _ in range(args.hogs)]
            if hog:
                for p in hogs:
                    p.start()
            began, began_wall = time.monotonic(), time.time()
            round_ = subprocess.Popen(
                [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", TEST],
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            try:
                out, _ = round_.communicate(timeout=args.round_timeout)
                ok, tail = round_.returncode == 0, out[-3000:]
            except subprocess.TimeoutExpired:
                ok, tail = False, "round timed out"
            finally:
                if round_.poll() is None:  # its conftest stops its workers on SIGTERM
                    round_.terminate()
                    try:
                        round_.wait(60)
                    except subprocess.TimeoutExpired:
                        round_.kill()
                for p in hogs:
                    if p.is_alive():
                        p.kill()
                        p.join(5)
            took = time.monotonic() - began
            results.append((n, hog, ok, took))
            print(
                f"soak round {n}/{args.rounds}{' (cpu hog)' if hog else ''}: "
                f"{'exact' if ok else 'FAILED'} in {took:.0f} s",
                flush=True,
            )
            if not ok:
                print("\n".join("    " + line for line in tail.splitlines()[-25:]), flush=True)
                for log in _logs_since(began_wall):
                    print(f"    worker log: {log}", flush=True)
    finally:
        if started_broker:
            with contextlib.suppress(Exception):
                subprocess.run([script, "stop"], env=broker_env, capture_output=True, timeout=120)
    exact = sum(ok for *_, ok, _ in results)
    hogged = [r for r in results if r[1]]
    print(
        f"soak: {exact} of {len(results)} rounds exact "
        f"({sum(r[2] for r in hogged)} of {len(hogged)} with a CPU hog)"
    )
    return 0 if exact == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
