"""Gauges of what waits in the embedded engine: unprocessed log records, unfinished deliveries,
dead letters not replayed.

They are read from SQLite on a timer rather than kept in memory, so they are right after a
restart too; each read is a handful of indexed aggregate queries."""

from __future__ import annotations

import asyncio
import time
from typing import get_args

from . import metrics
from .aio import wait_any
from .eventlog.sqlite import SQLiteLog
from .rules.model import ActionKind
from .streams.statedb import StateDB

EVERY = 2.0
"""Seconds between reads: fresh enough for a 15 s scrape, cheap enough to ignore."""

SINKS = get_args(ActionKind)
STAGES = ("normalize", "route", "deliver")


def export(state: StateDB, event_log: SQLiteLog, now: float) -> None:
    """Set every backlog gauge; sinks and stages with nothing waiting read 0, not absent."""
    metrics.PROCESSOR_BACKLOG.set(max(0, event_log.last_offset() - state.offset()))
    backlog = {row.sink: row for row in state.backlog(now)}
    for sink in {*SINKS, *backlog}:
        row = backlog.get(sink)
        metrics.DELIVERY_BACKLOG.labels(sink, "due").set(row.due if row else 0)
        metrics.DELIVERY_BACKLOG.labels(sink, "scheduled").set(row.scheduled if row else 0)
        metrics.DELIVERY_BACKLOG.labels(sink, "sending").set(row.sending if row else 0)
        oldest = row.oldest_due if row else None
        metrics.DELIVERY_BACKLOG_AGE.labels(sink).set(0 if oldest is None else max(0.0, now - oldest))
    waiting = state.dead_letters_waiting()
    for stage in {*STAGES, *waiting}:
        metrics.DEAD_LETTERS_WAITING.labels(stage).set(waiting.get(stage, 0))


async def run(state: StateDB, event_log: SQLiteLog, stop: asyncio.Event, every: float = EVERY) -> None:
    """Export every ``every`` seconds until ``stop`` is set."""
    while not stop.is_set():
        export(state, event_log, time.time())
        await wait_any(stop, timeout=every)
