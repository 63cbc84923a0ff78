"""The processing half of the embedded engine: processor, dispatcher and rules over ``state.db``.

It only reads the raw log, so it can run beside the ingress in the same event loop or in a process
of its own (``smsroute.pipeline_process``); either way the ingress tells it when the log grew."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

import aiohttp

from .config import Settings
from .eventlog.sqlite import SQLiteLog
from .ingress.base import Adapter
from .ingress.providers import available
from .rules.watch import RulesWatcher
from .sinks import email, sms_reply, webhook
from .sinks.dispatcher import Dispatcher
from .sinks.outcome import Sender
from .sinks.outbound import build_provider
from .streams.dedupe import Dedupe
from .streams.optouts import OptOut, OptOuts
from .streams.pipeline import Pipeline
from .streams.processor import Processor
from .streams.state import Store, TimedStore
from .streams.statedb import StateDB
from .streams.stitch import Pending, Stitcher

log = logging.getLogger("smsroute")


def normalizers() -> dict[str, Adapter]:
    """One adapter per provider type, for normalizing: it needs no ingress settings."""
    return {provider: adapter(provider, adapter.config_class(provider=provider)) for provider, adapter in available().items()}


def build_pipeline(
    settings: Settings, rules: RulesWatcher, dedupe: TimedStore[float], pending: TimedStore[Pending], opt_outs: Store[OptOut]
) -> Pipeline:
    """The processing core over an engine's stores (SQLite tables, or Faust tables on Kafka)."""
    return Pipeline(
        normalizers(),
        Dedupe(dedupe, settings.dedupe_window),
        Stitcher(pending, settings.stitch_timeout),
        lambda: rules.rules,
        settings.default_region,
        opt_outs=OptOuts(opt_outs),
    )


def build_senders(settings: Settings, state: StateDB, session: aiohttp.ClientSession) -> dict[str, Sender]:
    """The HTTP sinks by action kind (email has its own connections); a kind without a sink
    dead-letters its deliveries with that reason."""
    senders: dict[str, Sender] = {"webhook": webhook.sender(session)}
    provider = build_provider(settings.sms_reply, session)
    if provider is not None:
        senders["sms_reply"] = sms_reply.sender(provider, settings.sms_reply, state.opt_outs, state)
    return senders


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


def log_missing_sinks(rules: RulesWatcher, senders: Mapping[str, Sender]) -> None:
    """Routes whose actions have no sink would fill the dead letters: say so at start-up."""
    for kind in sorted({action.kind for route in rules.rules.routes for action in route.actions} - set(senders)):
        log.warning(
            f"routes have {kind} actions but no {kind} sink is configured: their deliveries become dead letters",
            extra={"event": "sink_missing", "sink": kind},
        )
