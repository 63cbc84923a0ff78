"""The processing half of the embedded engine: processor, dispatcher and rules over ``state.db``.

It only reads the raw log, so it can run beside the ingress in the same event loop or in a process
of its own (:mod:`.child`); either way the ingress tells it when the log grew."""

from __future__ import annotations

import asyncio
import logging

import aiohttp

from ...config import Settings
from ...rules.watch import RulesWatcher
from ...sinks import email
from ...sinks.build import build_senders, log_missing_sinks
from ...streams.build import build_pipeline
from .consumer import Processor
from .dispatcher import Dispatcher
from .log import SQLiteLog
from .state import StateDB

log = logging.getLogger("smsroute")


class Processing:
    """Raw events in, deliveries out. It reads the raw log through a connection of its own."""

    def __init__(self, settings: Settings, rules: RulesWatcher) -> None:
        self.settings = settings
        self.rules = rules
        self.log = SQLiteLog(settings.data_dir / "log.db", busy_timeout=settings.log_busy_timeout)
        self.state = StateDB(settings.data_dir / "state.db")

    async def start(self) -> None:
        settings = self.settings
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, limit_per_host=settings.per_destination)
        )
        senders = build_senders(settings, self.state, self._session)
        self._smtp = email.Pool(settings.smtp) if settings.smtp is not None else None
        if self._smtp is not None:
            senders["email"] = email.sender(self._smtp)
        self.dispatcher = Dispatcher(self.state, senders, per_destination=settings.per_destination)
        state = self.state
        pipeline = build_pipeline(settings, self.rules, state.dedupe, state.pending, state.opt_outs)
        self.processor = Processor(self.log, state, pipeline, self.dispatcher.wake)
        log_missing_sinks(self.rules, senders)

    def appended(self) -> None:
        """The log has new events."""
        self.processor.appended()

    async def run(self, stop: asyncio.Event) -> None:
        """Until ``stop`` is set; in-flight deliveries are finished before it returns."""
        await asyncio.gather(self.processor.run(stop), self.dispatcher.run(stop), self.rules.run(stop))

    async def metrics(self) -> list[str]:
        """Nothing to add: this process's registry already holds the processing metrics."""
        return []

    async def close(self) -> None:
        await self._session.close()
        if self._smtp is not None:
            await self._smtp.close()
        self.log.stop()
        self.state.close()
