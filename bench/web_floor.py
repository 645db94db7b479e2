"""The web floor (issue 20): what a request costs the serving process's web layer alone.

    python -m bench.web_floor --port 7001 --bytes 420

An aiohttp server built like the serving process's (streamapp/serving/main.py and
server.py: one process on uvloop, the same server limits, no access log) whose one handler
answers GET /floor with a pre-encoded JSON body of the given size: parsing, routing and the
response, and nothing of a lookup. bench/run.py times it like the lookups, in the same run,
and reports each lookup's service time as a ratio to it.
"""

from __future__ import annotations

import argparse
import asyncio
import signal

import orjson
import uvloop
from aiohttp import web

from streamapp.http import lookup_api


def body_of(size: int) -> bytes:
    """A JSON object of `size` bytes (at least its skeleton's)."""
    skeleton = orjson.dumps({"pad": ""})
    return orjson.dumps({"pad": "x" * max(0, size - len(skeleton))})


async def serve(port: int, size: int) -> None:
    body = body_of(size)

    async def floor(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    app = web.Application(handler_args=lookup_api.SERVER_LIMITS)
    app.router.add_get("/floor", floor)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    print(f"web floor: http://127.0.0.1:{port}/floor ({len(body)} bytes)", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--bytes", type=int, default=400)
    args = p.parse_args()
    uvloop.run(serve(args.port, args.bytes))  # the serving process's loop


if __name__ == "__main__":
    main()
