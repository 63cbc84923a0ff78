"""The embedded engine: ingress, the SQLite log, the processors and the sinks in one process.

Nothing to install: the raw log is ``<data_dir>/log.db``, the processing state ``<data_dir>/state.db``."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Mapping

import aiohttp
from aiohttp import web

from .config import Settings
from .eventlog.sqlite import SQLiteLog
from .ingress.app import create_app
from .ingress.base import Adapter
from .ingress.providers import available
from .ingress.smtp import MailReceiver
from .rules.watch import RulesWatcher
from .sinks import email, webhook
from .sinks.dispatcher import Dispatcher
from .streams.dedupe import Dedupe
from .streams.pipeline import Pipeline
from .streams.processor import Processor
from .streams.statedb import StateDB
from .streams.stitch import Stitcher

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


def normalizers() -> dict[str, Adapter]:
    """One adapter per provider type, for normalizing: it needs no ingress settings."""
    return {provider: adapter(provider, adapter.config_class(provider=provider)) for provider, adapter in available().items()}


def build_pipeline(settings: Settings, state: StateDB, rules: RulesWatcher) -> Pipeline:
    return Pipeline(
        normalizers(),
        Dedupe(state.dedupe, settings.dedupe_window),
        Stitcher(state.pending, settings.stitch_timeout),
        lambda: rules.rules,
        settings.default_region,
    )


class Engine:
    """Everything of the embedded engine, started and stopped as one (tests run it in-process)."""

    def __init__(self, settings: Settings, adapters: Mapping[str, Adapter], rules: RulesWatcher) -> None:
        self.settings = settings
        self.adapters = adapters
        self.rules = rules
        self.log = SQLiteLog(settings.data_dir / "log.db", busy_timeout=settings.log_busy_timeout)
        self.mail = (  # first: a configuration error must not leave a data directory behind
            MailReceiver.build(settings.inbound_email, set(adapters), self.log, settings.log_timeout)
            if settings.inbound_email.enabled
            else None
        )
        self.state = StateDB(settings.data_dir / "state.db")
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._runner = web.AppRunner(create_app(settings, adapters, self.log), access_log=None)
        self.port = settings.port

    async def start(self) -> None:
        settings = self.settings
        self.log.start()
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, limit_per_host=settings.per_destination)
        )
        senders = {"webhook": webhook.sender(self._session)}
        self._smtp = email.Pool(settings.smtp) if settings.smtp is not None else None
        if self._smtp is not None:
            senders["email"] = email.sender(self._smtp)
        self.dispatcher = Dispatcher(self.state, senders, per_destination=settings.per_destination)
        self.processor = Processor(self.log, self.state, build_pipeline(settings, self.state, self.rules), self.dispatcher.wake)
        self.log.on_commit = self.processor.appended
        if self.mail is not None:  # before HTTP: an engine that answers /healthz takes email too
            await self.mail.start()
        await self._runner.setup()
        site = web.TCPSite(self._runner, settings.host, settings.port, backlog=1024)
        await site.start()
        self.port = self._runner.addresses[0][1]
        self._tasks = [
            asyncio.create_task(job)
            for job in (self.processor.run(self._stop), self.dispatcher.run(self._stop), self.rules.run(self._stop))
        ]
        _log_mounts(self.adapters)
        log.info(
            f"listening on http://{settings.host}:{self.port}",
            extra={"event": "listening", "data_dir": str(settings.data_dir), "routes": str(settings.routes),
                   "rules_version": self.rules.rules.version},
        )

    async def wait(self) -> None:
        """Until stop() is called or a loop of the engine fails (which is then raised)."""
        stopping = asyncio.ensure_future(self._stop.wait())
        done, _ = await asyncio.wait([stopping, *self._tasks], return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        for task in done:
            if task is not stopping and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]

    def request_stop(self) -> None:
        self._stop.set()

    async def stop(self) -> None:
        """Finish in-flight requests, the pending log commit and in-flight deliveries, then close."""
        if self._runner.server is None:
            return
        self._stop.set()
        if self.mail is not None:
            await self.mail.stop()
        await self._runner.cleanup()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._session.close()
        if self._smtp is not None:
            await self._smtp.close()
        self.log.stop()
        self.state.close()


async def serve(settings: Settings, adapters: Mapping[str, Adapter], rules: RulesWatcher) -> None:
    """Run until SIGINT or SIGTERM."""
    engine = Engine(settings, adapters, rules)
    await engine.start()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, engine.request_stop)
    try:
        await engine.wait()
    finally:
        log.info("stopping", extra={"event": "stopping"})
        await engine.stop()


def _log_mounts(adapters: Mapping[str, Adapter]) -> None:
    for name, adapter in adapters.items():
        auth = describe_auth(adapter)
        log.log(
            logging.WARNING if auth == "none" else logging.INFO,
            f"ingress {name} mounted" + (" with no authentication" if auth == "none" else ""),
            extra={"event": "ingress_mounted", "source": name, "provider": adapter.provider, "auth": auth,
                   "paths": [f"/{kind}/{name}" for kind in sorted(adapter.kinds)]},
        )
