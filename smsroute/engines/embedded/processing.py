"""The processing half of the embedded engine: the log consumer, the dispatcher, the rules and the
retention thread over ``state.db``.

It only reads the raw log, so it can run beside the ingress in the same event loop
(:class:`InProcess`) or in a process of its own (:class:`~.child.ChildProcess`); either way the
ingress tells it when the log grew, through :class:`ProcessingHalf`."""

from __future__ import annotations

import asyncio
from typing import Protocol

from ...config import Settings
from ...rules.watch import RulesWatcher
from ...sinks.build import Sinks
from ...streams.build import build_pipeline
from .consumer import LogConsumer, StateBackend
from .dispatcher import Dispatcher
from .log import SQLiteLog
from .retention import Pruner
from .state import State


class ProcessingHalf(Protocol):
    """What the ingress half needs of the processing half, wherever it runs."""

    async def start(self) -> None: ...

    def appended(self) -> None:
        """The log has new events."""

    async def run(self, stop: asyncio.Event) -> None:
        """Until ``stop`` is set (in-flight deliveries finished), or until it fails (raised)."""

    async def metrics(self) -> list[str]:
        """Its metrics in the text format, when they are not in this process's registry."""
        ...

    async def close(self) -> None: ...


class InProcess:
    """The processing half in this process. It reads the raw log through a connection of its own."""

    def __init__(self, settings: Settings, rules: RulesWatcher) -> None:
        self.settings = settings
        self.rules = rules
        self.log = SQLiteLog(settings.data_dir / "log.db", busy_timeout=settings.log_busy_timeout)
        self.state = State(settings.data_dir / "state.db")
        self.sinks = Sinks(settings, (self.state.opt_outs, self.state.replies))

    async def start(self) -> None:
        settings, state = self.settings, self.state
        await self.sinks.open()
        self.sinks.warn_missing(self.rules.rules)
        self.dispatcher = Dispatcher(state, self.sinks.senders, per_destination=settings.per_destination)
        backend = StateBackend(state)
        pipeline = build_pipeline(settings, self.rules, backend)
        self.consumer = LogConsumer(self.log, state, pipeline, backend, self.dispatcher.wake)
        self.pruner = Pruner(settings.data_dir, settings.retention)
        self.pruner.start()

    def appended(self) -> None:
        self.consumer.appended()

    async def run(self, stop: asyncio.Event) -> None:
        await asyncio.gather(self.consumer.run(stop), self.dispatcher.run(stop), self.rules.run(stop))

    async def metrics(self) -> list[str]:
        """Nothing to add: this process's registry already holds the processing metrics."""
        return []

    async def close(self) -> None:
        self.pruner.stop()
        await self.sinks.close()
        self.log.stop()
        self.state.close()
