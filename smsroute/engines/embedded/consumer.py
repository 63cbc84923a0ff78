"""The embedded engine's log consumer: reads the raw log in order and runs the pipeline over it.

Each batch is one state transaction: the deliveries, dead letters and delivery reports it produced,
its dedupe keys, pending parts and opt-outs, and the new log offset commit together or not at all.
Inside it each event is a savepoint (the pipeline's isolation): one bad event becomes a dead letter
and never stops the stream. Errors of the database itself (a full disk, an I/O error) are not the
event's fault: they stop the batch, which is done again."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Callable
from contextlib import AbstractContextManager

from ... import metrics
from ...aio import wait_any
from ...models.report import DeliveryReport
from ...sinks.sms_reply import count_report
from ...streams.pipeline import Outcome, Pipeline
from .log import SQLiteLog
from .state import State

log = logging.getLogger("smsroute.streams")

TURNS_BETWEEN_BATCHES = 4
"""Turns of the event loop left to the rest of the process between two batches of a backlog. A
delivery's round trip through the dispatcher takes about four (its answer read, its attempt
finished, the pass that claims the next delivery, that request written): with one turn per batch,
as many batches went by for every round trip and deliveries all but stopped until the backlog was
processed. Turns with nothing to do cost next to nothing."""


class StateBackend:
    """The pipeline's :class:`~smsroute.streams.pipeline.Backend` over ``state.db``: what an event
    leads to is written in the batch's transaction, within the event's savepoint."""

    fatal: tuple[type[BaseException], ...] = (sqlite3.OperationalError, MemoryError)

    def __init__(self, state: State) -> None:
        self.state = state
        self.dedupe = state.dedupe
        self.pending = state.pending
        self.opt_outs = state.opt_outs
        self.delivering = False
        """Whether what was recorded since the flag was last cleared holds deliveries."""
        self.offset = 0
        """The log offset of the raw event being handled (what its :class:`Seen` is kept under)."""

    def savepoint(self) -> AbstractContextManager[None]:
        return self.state.savepoint()

    def record(self, outcome: Outcome, now: float) -> None:
        self.state.deliveries.add(outcome.deliveries, now)
        self.state.dead_letters.add(outcome.dead_letters, now)
        seen = outcome.seen
        if outcome.messages:
            self.state.messages.add(outcome.messages, self.offset if seen is not None else None)
        if seen is not None and seen.decision != "message":
            self.state.messages.seen(self.offset, seen, now)
        for report in outcome.reports:
            self._report(report, now)
        self.delivering = self.delivering or bool(outcome.deliveries)

    def _report(self, report: DeliveryReport, now: float) -> None:
        """Store a delivery report; one about our reply moves that reply's outcome."""
        linked = self.state.reports.add(report, now)
        if linked is None:
            return  # the provider sent the same report again
        count_report(report, linked.delivery_id, linked.became)


class LogConsumer:
    def __init__(
        self,
        event_log: SQLiteLog,
        state: State,
        pipeline: Pipeline,
        backend: StateBackend,
        on_deliveries: Callable[[], None],
        *,
        batch: int = 100,
        housekeeping_every: float = 1.0,
    ) -> None:
        self.log = event_log
        self.state = state
        self.pipeline = pipeline
        self.backend = backend
        self.on_deliveries = on_deliveries
        self.batch = batch
        self.housekeeping_every = housekeeping_every
        self._appended = asyncio.Event()
        self._last_housekeeping = 0.0

    def appended(self) -> None:
        """The log has new events (called by the log after each commit)."""
        self._appended.set()

    async def run(self, stop: asyncio.Event) -> None:
        offset = self.state.offsets.get()
        while not stop.is_set():
            self._appended.clear()
            rows = self.log.read(after=offset, limit=self.batch)
            now = time.time()
            housekeeping = now - self._last_housekeeping >= self.housekeeping_every
            if rows or housekeeping:
                offset = self._step(rows, offset, now, housekeeping)
            if len(rows) < self.batch:
                await wait_any(stop, self._appended, timeout=self.housekeeping_every)
            else:
                for _ in range(TURNS_BETWEEN_BATCHES):
                    await asyncio.sleep(0)

    def _step(self, rows: list[tuple[int, str, bytes]], offset: int, now: float, housekeeping: bool) -> int:
        started = time.perf_counter()
        self.backend.delivering = False
        with self.state.transaction():
            for row_offset, _, record in rows:
                self.backend.offset = row_offset
                self.pipeline.handle(record, now)
                offset = row_offset
            if housekeeping:
                self.pipeline.housekeeping(now)
                self._last_housekeeping = now
            self.state.offsets.set(offset)
        if rows:
            metrics.PROCESSOR_BATCH_SECONDS.observe(time.perf_counter() - started)
        if self.backend.delivering:
            self.on_deliveries()
        return offset
