"""The endpoints every smsroute process serves to operators: ``/healthz`` (the process is up),
``/readyz`` (it can do its work now: 503 otherwise) and ``/metrics`` (Prometheus text format)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from . import metrics

Readiness = Callable[[], str | None]
"""What ``/readyz`` says when ready (``"ready"``...), or None when not."""
MoreMetrics = Callable[[], Awaitable[list[str]]]
"""The text exposition of the engine's other processes, added into ``/metrics``."""


def add_routes(app: web.Application, ready: Readiness, not_ready: str, more_metrics: MoreMetrics | None = None) -> None:
    """``/healthz``, ``/readyz`` (``not_ready`` with 503 while ``ready()`` is None) and ``/metrics``."""

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(request: web.Request) -> web.Response:
        state = ready()
        return web.Response(text=f"{state}\n") if state is not None else web.Response(status=503, text=f"{not_ready}\n")

    async def exposition(request: web.Request) -> web.Response:
        response = web.Response(body=metrics.exposition(await more_metrics() if more_metrics else []))
        response.content_type = CONTENT_TYPE_LATEST.split(";")[0]
        return response

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", exposition)


async def serve(
    host: str, port: int, ready: Readiness = lambda: "ready", not_ready: str = "not ready"
) -> web.AppRunner:
    """The endpoints alone, on ``host:port`` (0: a free port, ``runner.addresses`` says which), for
    processes that serve nothing else; ``runner.cleanup()`` stops them."""
    app = web.Application()
    add_routes(app, ready, not_ready)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
