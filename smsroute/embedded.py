"""The embedded engine: ingress, the SQLite log, the processors and the sinks in one process.

Nothing to install: the raw log is ``<data_dir>/log.db``, the processing state ``<data_dir>/state.db``."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

import aiohttp

from .aio import on_stop_signals
from .config import Settings
from .eventlog.sqlite import SQLiteLog
from .ingress.base import Adapter
from .ingress.providers import available
from .ingress.server import IngressServer
from .rules.watch import RulesWatcher
from .sinks import webhook
from .sinks.dispatcher import Dispatcher
from .streams.dedupe import Dedupe
from .streams.pipeline import Pipeline
from .streams.processor import Processor
from .streams.statedb import StateDB
from .streams.stitch import Stitcher

log = logging.getLogger("smsroute")


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
        self.state = StateDB(settings.data_dir / "state.db")
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.ingress = IngressServer(settings, adapters, self.log)
        self.port = settings.port

    async def start(self) -> None:
        settings = self.settings
        self.log.start()
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, limit_per_host=settings.per_destination)
        )
        self.dispatcher = Dispatcher(
            self.state, {"webhook": webhook.sender(self._session)}, per_destination=settings.per_destination
        )
        self.processor = Processor(self.log, self.state, build_pipeline(settings, self.state, self.rules), self.dispatcher.wake)
        self.log.on_commit = self.processor.appended
        await self.ingress.start(
            data_dir=str(settings.data_dir), routes=str(settings.routes), rules_version=self.rules.rules.version
        )
        self.port = self.ingress.port
        self._tasks = [
            asyncio.create_task(job)
            for job in (self.processor.run(self._stop), self.dispatcher.run(self._stop), self.rules.run(self._stop))
        ]

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
        if not self.ingress.running:
            return
        self._stop.set()
        await self.ingress.stop()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._session.close()
        self.log.stop()
        self.state.close()


async def serve(settings: Settings, adapters: Mapping[str, Adapter], rules: RulesWatcher) -> None:
    """Run until SIGINT or SIGTERM."""
    engine = Engine(settings, adapters, rules)
    await engine.start()
    on_stop_signals(engine.request_stop)
    try:
        await engine.wait()
    finally:
        log.info("stopping", extra={"event": "stopping"})
        await engine.stop()
