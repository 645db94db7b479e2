"""A serving process: lookups in a process of their own, beside a worker.

    python -m streamapp.serve     (or `make serve`: the same environment as the worker,
                                   plus STREAMAPP_SERVE_PORT, default WEB_PORT + 100)

The worker answers every endpoint itself, but its lookups share one event loop (one core)
with ingest. A serving process answers the lookup endpoints from the worker's own RocksDB
databases, opened as RocksDB *secondary* instances (read-only, catching up with the
worker's writes every STREAMAPP_SERVE_CATCH_UP_MS), so a flood of lookups cannot slow
ingest and a long ingest batch cannot delay a lookup. Which partitions it may answer for
comes from the worker's serving map (serving_map.py); a request for a user of another
partition is forwarded, signed, to the worker that owns it, exactly as the workers forward
among themselves. Every other path is passed on to the local worker.

The answers are computed by the same code as the worker's (lookup.py, lookup_api.py);
they may trail the worker's by one catch-up interval.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path

import uvloop

from streamapp.core.config import ConfigError, load_settings
from streamapp.kafka import baked_settings
from streamapp.serving.node import ServeNode
from streamapp.serving.server import run
from streamapp.serving.settings import serve_settings


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s] [%(process)d] %(message)s")
    if argv is None:
        argv = sys.argv[1:]
    if argv and argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    try:
        settings = load_settings()
        serve = serve_settings(settings, dict(os.environ))
    except ConfigError as exc:
        sys.stderr.write(f"streamapp serve: configuration error: {exc}\n")
        return 2
    # Scores computed with another half-life than the worker's state was built with are
    # wrong (baked_settings.py); the worker records what it checked in the data dir.
    local = baked_settings.read_local(settings.data_dir)
    problem = baked_settings.format_problem(settings.app_id, local) or baked_settings.mismatch(
        settings, local
    )
    if problem is not None:
        sys.stderr.write(f"streamapp serve: {problem}\n")
        return 2
    scratch = Path(tempfile.mkdtemp(prefix="streamapp-serve-"))
    node = ServeNode(settings, serve, scratch)
    try:
        # uvloop, as the worker runs (FAUST_LOOP): its C transports cut the web layer's
        # share of a lookup (docs/performance.md, 6 December, night).
        uvloop.run(run(node))
    except OSError as exc:  # the port is taken, typically
        sys.stderr.write(f"streamapp serve: cannot listen on {serve.host}:{serve.port}: {exc}\n")
        return 2
    finally:
        node.close()
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
