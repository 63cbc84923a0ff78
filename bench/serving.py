"""Run a benchmark's helper server (ceiling, receiver) as its own process, as the engine runs."""

from __future__ import annotations

import argparse
import asyncio
import signal

import uvloop
from aiohttp import web


async def _serve(app: web.Application, hosts: list[str], port: int) -> None:
    """Serve until SIGINT or SIGTERM, on uvloop with no access log: the engine's own settings."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        for host in hosts:
            await web.TCPSite(runner, host, port, backlog=1024).start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    finally:
        await runner.cleanup()


def run(app: web.Application, description: str, default_port: int) -> None:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--host", action="append", help="address to listen on, repeatable (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=default_port)
    args = parser.parse_args()
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(_serve(app, args.host or ["127.0.0.1"], args.port))
