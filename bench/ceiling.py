"""The ceiling: a bare aiohttp server that reads the body and answers ``+OK``, nothing else.

It runs on the same event loop (uvloop) with the same server settings as the engine, so the
engine's requests/s divided by this one's is the share of the ceiling the engine's own work leaves.
"""

from __future__ import annotations

import argparse
import asyncio
import signal

import uvloop
from aiohttp import web


async def _answer(request: web.Request) -> web.Response:
    await request.read()
    return web.Response(text="+OK", content_type="text/plain")


async def serve(host: str, port: int) -> None:
    """Serve ``POST /inbound/agiletelecom`` until SIGINT or SIGTERM."""
    app = web.Application()
    app.router.add_post("/inbound/agiletelecom", _answer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port, backlog=1024).start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    finally:
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    args = parser.parse_args()
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
