"""The embedded engine: ingress and the SQLite log in one process, nothing to install."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Mapping

from aiohttp import web

from .config import Settings
from .eventlog.sqlite import SQLiteLog
from .ingress.app import create_app
from .ingress.base import Adapter

log = logging.getLogger("smsroute")


def describe_auth(adapter: Adapter) -> str:
    config = adapter.config
    checks = [
        name
        for name, on in (
            ("signature", adapter.signed),
            ("token", config.token is not None),
            ("ip-allow-list", bool(config.allow_ips)),
        )
        if on
    ]
    return "+".join(checks) or "none"


async def serve(settings: Settings, adapters: Mapping[str, Adapter]) -> None:
    """Run until SIGINT or SIGTERM, then finish in-flight requests and the pending commit."""
    event_log = SQLiteLog(settings.data_dir / "log.db", busy_timeout=settings.log_busy_timeout)
    event_log.start()
    runner = web.AppRunner(create_app(settings, adapters, event_log), access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, settings.host, settings.port, backlog=1024)
        await site.start()
        for name, adapter in adapters.items():
            auth = describe_auth(adapter)
            log.log(
                logging.WARNING if auth == "none" else logging.INFO,
                f"ingress {name} mounted" + (" with no authentication" if auth == "none" else ""),
                extra={"event": "ingress_mounted", "source": name, "provider": adapter.provider, "auth": auth,
                       "paths": [f"/{kind}/{name}" for kind in sorted(adapter.kinds)]},
            )
        log.info(
            f"listening on http://{settings.host}:{settings.port}",
            extra={"event": "listening", "data_dir": str(settings.data_dir), "routes": str(settings.routes)},
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        log.info("stopping", extra={"event": "stopping"})
    finally:
        await runner.cleanup()
        event_log.stop()
