"""The embedded engine: the ingress (HTTP, and SMTP when enabled) with its SQLite log, and the
processing half beside it.

Nothing to install: the raw log is ``<data_dir>/log.db``, the processing state ``<data_dir>/state.db``.
The processing half runs in a child process by default (``pipeline_process``), so the ingress and
the processors each get a CPU core; tests also run both halves in one event loop."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Mapping

from ...config import Settings
from ...ingress.server import IngressServer
from ...ingress.smpp import Binds
from ...ingress.smtp import MailReceiver
from ...providers.base import Receiver
from ...rules.watch import RulesWatcher
from . import backlog, console
from .child import ChildProcess
from .log import SQLiteLog
from .processing import InProcess, ProcessingHalf

SWITCH_INTERVAL = 0.0005
"""Seconds the event loop may hold the GIL while the log writer thread waits for it (Python's
default is 5 ms). The writer needs the GIL to start each commit and again when its fsync returns,
and a busy event loop made it wait the whole interval each time: at 2,000 requests/s a commit took
about 9 ms instead of 1.5 ms, and every request in it waited that long for its answer."""


def processing_half(settings: Settings) -> ProcessingHalf:
    """The processing half as configured: in a child process of its own (the default), or in this one."""
    return ChildProcess(settings) if settings.pipeline_process else InProcess(settings, RulesWatcher(settings.routes))


class Engine:
    """Both halves, a :class:`~smsroute.engines.base.Service` started and stopped as one."""

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
        self._tasks: list[asyncio.Task[None]] = []
        self.ingress = IngressServer(settings, receivers, self.log, processing.metrics, console.mount(settings))
        self.smpp = Binds(settings.smpp, self.log, settings.log_timeout)
        self.port = settings.port

    async def start(self) -> None:
        settings = self.settings
        sys.setswitchinterval(SWITCH_INTERVAL)
        self.log.start()
        await self.processing.start()
        self.log.on_commit = self.processing.appended
        if self.mail is not None:  # before HTTP: an engine that answers /healthz takes email too
            await self.mail.start()
        await self.ingress.start(
            data_dir=str(settings.data_dir), routes=str(settings.routes), pipeline_process=settings.pipeline_process
        )
        self.port = self.ingress.port
        await self.smpp.start()  # beside HTTP: the binds connect in the background, and reconnect

    async def run(self, stop: asyncio.Event) -> None:
        """Until ``stop`` is set, or until the processing half or the backlog gauges fail (raised).
        What they have in flight is finished by :meth:`close`, once the ingress has stopped."""
        exporter = backlog.Exporter(self.settings.data_dir / "state.db", self.settings.data_dir / "log.db")
        self._tasks = [asyncio.create_task(self.processing.run(stop)), asyncio.create_task(exporter.run(stop))]
        stopping = asyncio.ensure_future(stop.wait())
        done, _ = await asyncio.wait([stopping, *self._tasks], return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        stop.set()
        for task in done:
            if task is not stopping and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]

    async def close(self) -> None:
        """Finish in-flight requests and the pending log commit, then the processing half's in-flight work."""
        if not self.ingress.running:
            return
        await self.smpp.stop()  # answers what is in flight, then unbinds
        if self.mail is not None:
            await self.mail.stop()
        await self.ingress.stop()
        self.log.stop()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.processing.close()
