"""Micro-benchmark: reads of a pair database that already exists, as a restarted worker and a
serving process open it (faust_fixes 18., kafka/rocksdb.open_db).

    python -m bench.reopen_micro                 # 150,000 keys, several table files

Writes a database as the worker does (bloom filters, a flush every 25,000 keys, so reads
search several table files), closes it, then times single-key reads of present and missing
keys, twice over the same keys (the second pass: every block cached), through three
openings: rocksdict's plain `Rdict(path, options)` (what faust and the serving process did:
the options' table settings are dropped for an existing database), `open_db` with the same
options, and a secondary as the serving process opens it. CPU time of the reading thread,
microseconds per key; RocksDB's own count of reads a bloom filter answered beside it.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from rocksdict import Cache, Options, Rdict

from streamapp.kafka.rocksdb import open_db, table_options
from streamapp.serving.secondaries import open_secondary

MIB = 1024 * 1024


def options(statistics: bool = True) -> Options:
    """The worker's pair table options (worker/tables.py defaults), counting."""
    out = Options(raw_mode=True)
    out.create_if_missing(True)
    out.set_write_buffer_size(8 * MIB)
    out.set_max_write_buffer_number(2)
    if statistics:
        out.enable_statistics()
    table_options(out, Cache(16 * MIB))
    return out


def per_key(db: Rdict, keys: list[bytes]) -> float:
    """µs of the reading thread's CPU per key, on the second of two passes."""
    for _ in range(2):
        t0 = time.thread_time()
        for key in keys:
            db.get(key)
        spent = time.thread_time() - t0
    return round(spent / len(keys) * 1e6, 2)


def filtered(opts: Options) -> int:
    found = re.search(r"rocksdb\.bloom\.filter\.useful COUNT : (\d+)", opts.get_statistics() or "")
    return int(found.group(1)) if found else 0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--keys", type=int, default=150_000)
    p.add_argument("--probes", type=int, default=20_000)
    args = p.parse_args()
    rng = random.Random(1)
    keys = [
        f"u{rng.randrange(20_000)}\x1fs{rng.randrange(2_000)}".encode() for _ in range(args.keys)
    ]
    values = [rng.randbytes(60) + bytes(100) for _ in range(100)]
    folder = Path(tempfile.mkdtemp(prefix="reopen-micro-"))
    try:
        path = str(folder / "pairs")
        db = open_db(path, options(statistics=False))
        for n, key in enumerate(keys):
            db[key] = values[n % 100]
            if n % 25_000 == 24_999:
                db.flush()
        db.flush()
        db.close()
        hits = rng.sample(keys, args.probes)
        misses = [key + b"0" for key in rng.sample(keys, args.probes)]
        openings: dict[str, Callable[[Options], Rdict]] = {
            "Rdict(path, options)": lambda o: Rdict(path, o),
            "open_db": lambda o: open_db(path, o),
        }
        out: dict[str, dict[str, float]] = {}
        for name, opening in openings.items():
            opts = options()
            db = opening(opts)
            out[name] = {"hit_us": per_key(db, hits), "miss_us": per_key(db, misses)}
            out[name]["filtered_reads"] = filtered(opts)
            db.close()
        db = open_secondary(path, folder / "secondary", Cache(16 * MIB))
        out["open_secondary"] = {"hit_us": per_key(db, hits), "miss_us": per_key(db, misses)}
        db.close()
        print(json.dumps({"keys": args.keys, "probes": args.probes, **out}))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
