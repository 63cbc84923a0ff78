"""The ceiling: a bare aiohttp server that reads the body and answers ``+OK``, nothing else.

It runs on the same event loop (uvloop) with the same server settings as the engine, so the
engine's requests/s divided by this one's is the share of the ceiling the engine's own work leaves.
"""

from __future__ import annotations

from aiohttp import web

from bench.serving import run


async def _answer(request: web.Request) -> web.Response:
    await request.read()
    return web.Response(text="+OK", content_type="text/plain")


def main() -> None:
    app = web.Application()
    app.router.add_post("/inbound/agiletelecom", _answer)
    run(app, __doc__.splitlines()[0], 8081)


if __name__ == "__main__":
    main()
