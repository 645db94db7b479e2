"""The serving process's HTTP server: the lookup endpoints (lookup_api, answered by the
ServeNode), every other path passed on to the local worker, and the loop that follows the
worker while requests are served."""

from __future__ import annotations

import asyncio
import logging
import signal

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from yarl import URL

from streamapp.http import forwarding, lookup_api
from streamapp.http.errors import HTTPError
from streamapp.runtime import tune_gc
from streamapp.serving import metrics as serve_metrics
from streamapp.serving.node import ServeNode

log = logging.getLogger("streamapp.serve")


def build_app(node: ServeNode) -> web.Application:
    app = web.Application(
        middlewares=[lookup_api.json_errors(node.settings, node.forwarder)],
        handler_args=lookup_api.SERVER_LIMITS,
    )

    async def health(request: web.Request) -> web.Response:
        if node.is_ready():
            return web.json_response({"status": "ok"})
        return web.json_response({"status": "recovering"}, status=503, headers={"Retry-After": "1"})

    async def live(request: web.Request) -> web.Response:
        return web.json_response({"status": "alive", "ready": node.is_ready()})

    async def affinity(request: web.Request) -> web.Response:
        info = request.match_info
        return await lookup_api.affinity(node, request, info["user_id"], info["seller_id"])

    async def bulk(request: web.Request) -> web.Response:
        return await lookup_api.bulk(node, request)

    async def top(request: web.Request) -> web.Response:
        return await lookup_api.top_sellers(node, request, request.match_info["user_id"])

    async def own_metrics(request: web.Request) -> web.Response:
        """This process's own series (serving/metrics.py); the worker's are at its /metrics."""
        node.refresh_gauges()
        return web.Response(
            body=generate_latest(serve_metrics.REGISTRY),
            content_type=CONTENT_TYPE_LATEST.split(";")[0],
        )

    async def to_worker(request: web.Request) -> web.StreamResponse:
        """Everything else: the local worker answers it (profiles, stats, the page...)."""
        if node.map is None:
            raise HTTPError(503, "no worker found yet, retry shortly", {"Retry-After": "1"})
        url = URL(node.map.worker_url).with_path(request.raw_path.split("?", 1)[0], encoded=True)
        body = await request.read() if request.can_read_body else None
        headers = {k: v for k, v in request.headers.items() if k.lower() in PASSED_HEADERS}
        client, target = node.http_client(), url.with_query(request.query)
        status, payload, _, got = await forwarding.call(
            client, request.method, target, headers, body, "worker"
        )
        returned = {k: v for k, v in got.items() if k.lower() in RETURNED_HEADERS}
        return web.Response(body=payload, status=status, headers=returned)

    app.router.add_get("/health", health)
    app.router.add_get("/live", live)
    app.router.add_get("/metrics", own_metrics)
    app.router.add_get("/affinity/{user_id:[^/]+}/{seller_id:[^/]+}", affinity)
    app.router.add_post("/affinity/query", bulk)
    app.router.add_get("/users/{user_id:[^/]+}/top-sellers", top)
    app.router.add_route("*", "/{tail:.*}", to_worker)
    return app


PASSED_HEADERS = frozenset({"authorization", "content-type", "accept"})
RETURNED_HEADERS = frozenset({"content-type", "retry-after", "www-authenticate", "allow"})


async def follow(node: ServeNode) -> None:
    while True:
        try:
            await node.refresh()
        except Exception:  # never stop following; the next tick tries again
            log.exception("catching up with the worker failed")
        await asyncio.sleep(node.serve.catch_up_s)


async def run(node: ServeNode) -> None:
    await node.refresh()
    follower = asyncio.ensure_future(follow(node))
    runner = web.AppRunner(build_app(node), access_log=None)
    await runner.setup()
    tune_gc()  # the app and the node are built: long-lived from here on
    site = web.TCPSite(runner, node.serve.host, node.serve.port, reuse_port=node.serve.reuse_port)
    await site.start()
    log.info(
        "streamapp serve: http://%s:%d, following the worker in %s",
        node.serve.host,
        node.serve.port,
        node.settings.data_dir,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        follower.cancel()
        await runner.cleanup()
        if node.client is not None:
            await node.client.close()
