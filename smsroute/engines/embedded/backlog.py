"""Gauges of what waits in the embedded engine: unprocessed log records, unfinished deliveries,
dead letters not replayed.

They are read from SQLite on a timer rather than kept in memory, so they are right after a
restart too. The reads scan the unfinished deliveries (about 0.3 s for 100,000 of them, see
``bench/backlog.py``), so they run in a thread of their own, on connections of their own, never
on the event loop that answers providers, and less often when they take long."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import get_args

from ... import metrics
from ...aio import wait_any
from ...rules.model import ActionKind
from .log import SQLiteLog
from .state import State

log = logging.getLogger("smsroute.backlog")

EVERY = 2.0
"""Seconds between reads: fresh enough for a 15 s scrape, cheap enough to ignore."""

SINKS = get_args(ActionKind)
STAGES = ("normalize", "process", "route", "deliver")


def export(state: State, event_log: SQLiteLog, now: float) -> None:
    """Set every backlog gauge; sinks and stages with nothing waiting read 0, not absent."""
    metrics.PROCESSOR_BACKLOG.set(max(0, event_log.last_offset() - state.offsets.get()))
    backlog = {row.sink: row for row in state.deliveries.backlog(now)}
    for sink in {*SINKS, *backlog}:
        row = backlog.get(sink)
        metrics.DELIVERY_BACKLOG.labels(sink, "due").set(row.due if row else 0)
        metrics.DELIVERY_BACKLOG.labels(sink, "scheduled").set(row.scheduled if row else 0)
        metrics.DELIVERY_BACKLOG.labels(sink, "sending").set(row.sending if row else 0)
        oldest = row.oldest_due if row else None
        metrics.DELIVERY_BACKLOG_AGE.labels(sink).set(0 if oldest is None else max(0.0, now - oldest))
    waiting = state.dead_letters.waiting()
    for stage in {*STAGES, *waiting}:
        metrics.DEAD_LETTERS_WAITING.labels(stage).set(waiting.get(stage, 0))


class Exporter:
    """Exports from one thread, whose connections are opened there and used nowhere else."""

    def __init__(self, state_path: Path, log_path: Path) -> None:
        self.state_path, self.log_path = state_path, log_path
        self._stores: tuple[State, SQLiteLog] | None = None

    def export(self) -> float:
        """One export; returns the seconds it took."""
        started = time.perf_counter()
        if self._stores is None:
            self._stores = State(self.state_path), SQLiteLog(self.log_path)
        try:
            export(*self._stores, time.time())
        except sqlite3.Error as exc:  # stale gauges are better than a stopped engine
            log.warning("backlog gauges not updated", extra={"event": "backlog_export_failed", "error": str(exc)})
        return time.perf_counter() - started

    def close(self) -> None:
        if self._stores is not None:
            state, event_log = self._stores
            event_log.stop()
            state.close()

    async def run(self, stop: asyncio.Event, every: float = EVERY) -> None:
        """Export every ``every`` seconds (or ten times as long as an export takes) until ``stop``."""
        loop = asyncio.get_running_loop()
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="backlog") as thread:
            try:
                while not stop.is_set():
                    took = await loop.run_in_executor(thread, self.export)
                    await wait_any(stop, timeout=max(every, 10 * took))
            finally:
                await loop.run_in_executor(thread, self.close)
