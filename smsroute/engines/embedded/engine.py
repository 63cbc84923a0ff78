"""The embedded engine: the ingress (HTTP, and SMTP when enabled) with its SQLite log, and the
processing half beside it.

Nothing to install: the raw log is ``<data_dir>/log.db``, the processing state ``<data_dir>/state.db``.
The processing half runs in a child process by default (``pipeline_process``), so the ingress and
the processors each get a CPU core; tests also run both halves in one event loop."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Protocol

from ... import gc_tuning
from ...aio import on_stop_signals
from ...config import Settings
from ...ingress.server import IngressServer
from ...ingress.smtp import MailReceiver
from ...providers.base import Receiver
from ...rules.watch import RulesWatcher
from . import backlog
from .child import PipelineProcess
from .log import SQLiteLog
from .processing import Processing

log = logging.getLogger("smsroute")


class ProcessingHalf(Protocol):
    """:class:`Processing` in this process, or :class:`PipelineProcess` running it in a child."""

    async def start(self) -> None: ...
    def appended(self) -> None: ...
    async def run(self, stop: asyncio.Event) -> None: ...
    async def metrics(self) -> list[str]: ...
    async def close(self) -> None: ...


class Engine:
    """Both halves, started and stopped as one."""

    def __init__(self, settings: Settings, receivers: Mapping[str, Receiver], processing: ProcessingHalf) -> None:
        self.settings = settings
        self.receivers = receivers
        self.processing = processing
        self.log = SQLiteLog(settings.data_dir / "log.db", busy_timeout=settings.log_busy_timeout)
        self.mail = (  # first: a configuration error must not start anything
            MailReceiver.build(settings.inbound_email, set(receivers), self.log, settings.log_timeout)
            if settings.inbound_email.enabled
            else None
        )
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.ingress = IngressServer(settings, receivers, self.log, processing.metrics)
        self.port = settings.port

    async def start(self) -> None:
        settings = self.settings
        self.log.start()
        await self.processing.start()
        self.log.on_commit = self.processing.appended
        if self.mail is not None:  # before HTTP: an engine that answers /healthz takes email too
            await self.mail.start()
        await self.ingress.start(
            data_dir=str(settings.data_dir), routes=str(settings.routes), pipeline_process=settings.pipeline_process
        )
        self.port = self.ingress.port
        self._tasks = [
            asyncio.create_task(job)
            for job in (
                self.processing.run(self._stop),
                backlog.Exporter(settings.data_dir / "state.db", settings.data_dir / "log.db").run(self._stop),
            )
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
        """Finish in-flight requests and the pending log commit, then the processing half's in-flight work."""
        if not self.ingress.running:
            return
        self._stop.set()
        if self.mail is not None:
            await self.mail.stop()
        await self.ingress.stop()
        self.log.stop()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.processing.close()


async def serve(settings: Settings, receivers: Mapping[str, Receiver]) -> None:
    """Run until SIGINT or SIGTERM."""
    processing: ProcessingHalf = (
        PipelineProcess(settings) if settings.pipeline_process else Processing(settings, RulesWatcher(settings.routes))
    )
    engine = Engine(settings, receivers, processing)
    await engine.start()
    gc_tuning.settle()
    on_stop_signals(engine.request_stop)
    try:
        await engine.wait()
    finally:
        log.info("stopping", extra={"event": "stopping"})
        await engine.stop()
