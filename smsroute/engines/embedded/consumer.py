"""The embedded engine's processor: reads the raw log in order and runs the pipeline over it.

Each batch is one state transaction: the deliveries, dead letters and delivery reports it produced,
its dedupe keys, pending parts and opt-outs, and the new log offset commit together or not at all.

Inside it each event is a savepoint: when anything in its path raises (a bug, text SQLite cannot
store), its writes are undone and it becomes a dead letter with its raw record, so one bad event
never stops the stream nor, logged, stops it again at every restart. Errors of the database itself
(a full disk, an I/O error) are not the event's fault: they stop the batch, which is done again."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Callable
from functools import partial

from ... import metrics
from ...aio import wait_any
from ...models.report import DeliveryReport
from ...streams.pipeline import Outcome, Pipeline
from .log import SQLiteLog
from .state import StateDB

log = logging.getLogger("smsroute.streams")

TURNS_BETWEEN_BATCHES = 4
"""Turns of the event loop left to the rest of the process between two batches of a backlog. A
delivery's round trip through the dispatcher takes about four (its answer read, its attempt
finished, the pass that claims the next delivery, that request written): with one turn per batch,
as many batches went by for every round trip and deliveries all but stopped until the backlog was
processed. Turns with nothing to do cost next to nothing."""


class Processor:
    def __init__(
        self,
        event_log: SQLiteLog,
        state: StateDB,
        pipeline: Pipeline,
        on_deliveries: Callable[[], None],
        *,
        batch: int = 100,
        housekeeping_every: float = 1.0,
    ) -> None:
        self.log = event_log
        self.state = state
        self.pipeline = pipeline
        self.on_deliveries = on_deliveries
        self.batch = batch
        self.housekeeping_every = housekeeping_every
        self._appended = asyncio.Event()
        self._last_housekeeping = 0.0
        self._delivering = False
        """Whether the batch being processed made deliveries (the dispatcher is woken after it)."""

    def appended(self) -> None:
        """The log has new events (called by the log after each commit)."""
        self._appended.set()

    async def run(self, stop: asyncio.Event) -> None:
        offset = self.state.offset()
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
        pipeline = self.pipeline
        self._delivering = False
        with self.state.transaction():
            for row_offset, _, record in rows:
                self._isolated(partial(pipeline.process, record, now), partial(pipeline.failed, record), now)
                offset = row_offset
            if housekeeping:
                for key in pipeline.stitcher.due(now):
                    self._isolated(partial(pipeline.release, key), partial(pipeline.abandon, key), now)
                self.state.forget_dedupe(now - pipeline.dedupe.window)
                self._last_housekeeping = now
            self.state.set_offset(offset)
        if rows:
            metrics.PROCESSOR_BATCH_SECONDS.observe(time.perf_counter() - started)
        if self._delivering:
            self.on_deliveries()
        return offset

    def _isolated(self, work: Callable[[], Outcome], failed: Callable[[Exception], Outcome], now: float) -> None:
        """Record what ``work`` leads to; when it raises, undo its writes and record ``failed``'s instead."""
        try:
            with self.state.savepoint():
                self._record(work(), now)
        except (sqlite3.OperationalError, MemoryError):
            raise
        except Exception as exc:
            self._record(failed(exc), now)

    def _record(self, outcome: Outcome, now: float) -> None:
        self.state.add_deliveries(outcome.deliveries, now)
        self.state.add_dead_letters(outcome.dead_letters, now)
        for report in outcome.reports:
            self._report(report, now)
        self._delivering = self._delivering or bool(outcome.deliveries)

    def _report(self, report: DeliveryReport, now: float) -> None:
        """Store a delivery report; one about our reply moves that reply's outcome."""
        linked = self.state.add_report(report, now)
        if linked is None:
            return  # the provider sent the same report again
        metrics.DELIVERY_REPORTS.labels(report.provider, report.status, str(linked.delivery_id is not None).lower()).inc()
        if linked.became is not None:
            metrics.SMS_REPLIES.labels(report.provider, linked.became).inc()
        log.info(
            f"delivery report: {report.status} ({report.description})",
            extra={"event": "delivery_report", "provider": report.provider,
                   "provider_message_id": report.provider_message_id, "status": report.status, "code": report.code,
                   "delivery_id": linked.delivery_id},
        )

