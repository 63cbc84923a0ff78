"""An aiohttp app served on a free 127.0.0.1 port for the length of a block: the tests' receivers and
fake providers; and the webhook receiver most tests deliver to (fixture ``receiver``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@asynccontextmanager
async def served(app: web.Application) -> AsyncIterator[str]:
    """Yield the app's base URL; stop it afterwards."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


@asynccontextmanager
async def serving(
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]], path: str = "/{tail:.*}", method: str = "POST"
) -> AsyncIterator[str]:
    """One route (by default every POST) served for the length of a block: yield its base URL."""
    app = web.Application()
    app.router.add_route(method, path, handler)
    async with served(app) as url:
        yield url


@dataclass
class Receiver:
    """A webhook receiver: records every request; ``fail[path]`` answers 503 that many times (-1: always)."""

    url: str = ""
    received: list[dict[str, Any]] = field(default_factory=list)
    fail: dict[str, int] = field(default_factory=dict)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.text()
        self.received.append({"path": request.path, "headers": dict(request.headers), "body": body})
        remaining = self.fail.get(request.path, 0)
        if remaining:
            self.fail[request.path] = remaining - 1 if remaining > 0 else -1
            return web.Response(status=503, text="try later")
        return web.Response(status=204)

    def at(self, path: str) -> list[dict[str, Any]]:
        return [r for r in self.received if r["path"] == path]
