"""Instructions, not seconds: the lookup and ingest code's cost under callgrind (issues 20, 21).

    python -m bench.instructions                 # every figure for this tree (~8 minutes)
    python -m bench.instructions --what bulk     # a bulk(100) of memo hits only
    python -m bench.instructions --tree DIR      # another checkout, run from inside it

Timings on this shared two-core machine move by a third from one hour to the next; the
number of instructions a piece of code executes does not (valgrind counts them whatever
else runs). Each figure is the difference of two runs of a micro-benchmark that differ only
in size, so start-up, imports and set-up cancel out:
- bulk: `bench.bulk_micro --interactions 10000 --hot-pairs 500` with 50 and with 150
  queries: instructions of one bulk(100) query whose pairs the vector memo holds (parse,
  vectors, answer), in one process, without HTTP;
- ingest: `bench.ingest_micro --users 2000 --sellers 500` with 10,000 and with 30,000
  interactions: instructions per interaction of streamapp's own ingest code (parse,
  count, write batch, changelog and update records), without faust or Kafka.
PYTHONHASHSEED is fixed; two runs of the same tree agree within a fraction of a per cent.
Needs valgrind (Debian's package); each figure takes one to three minutes.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

FIGURES = {
    # name: (module, its arguments, (the size option, small, large), what one unit is)
    "bulk": (
        "bench.bulk_micro",
        ["--interactions", "10000", "--hot-pairs", "500"],
        ("--queries", 50, 150),
        "bulk(100) query",
    ),
    "first": (
        "bench.bulk_micro",
        ["--interactions", "40000"],
        ("--queries", 50, 150),
        "bulk(100) query, most pairs at first sight",
    ),
    "ingest": (
        "bench.ingest_micro",
        ["--users", "2000", "--sellers", "500"],
        ("--interactions", 10_000, 30_000),
        "interaction",
    ),
}
COLLECTED = re.compile(r"Collected : (\d+)")
TIMEOUT_S = 900


def instructions(tree: Path, module: str, args: list[str]) -> int:
    """Instructions callgrind counted for `python -m module args` run inside `tree`."""
    env = dict(os.environ, PYTHONHASHSEED="0")
    out = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            "--callgrind-out-file=/dev/null",
            sys.executable,
            "-m",
            module,
            *args,
        ],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=True,
    )
    found = COLLECTED.search(out.stderr)
    if found is None:
        raise RuntimeError(f"no instruction count from valgrind:\n{out.stderr[-2000:]}")
    return int(found.group(1))


def figure(tree: Path, name: str) -> float:
    module, common, (option, small, large), _ = FIGURES[name]
    low = instructions(tree, module, [*common, option, str(small)])
    high = instructions(tree, module, [*common, option, str(large)])
    return (high - low) / (large - small)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--what", choices=[*FIGURES, "all"], default="all")
    p.add_argument("--tree", type=Path, default=Path.cwd(), help="checkout to measure")
    args = p.parse_args()
    if shutil.which("valgrind") is None:
        raise SystemExit("bench.instructions needs valgrind (apt-get install valgrind)")
    for name in FIGURES if args.what == "all" else [args.what]:
        per = figure(args.tree.resolve(), name)
        print(f"{name}: {per:,.0f} instructions per {FIGURES[name][3]} ({args.tree})")


if __name__ == "__main__":
    main()
