"""Helpers shared by the tests: waiting for a condition, holding a database's write lock, and the
core's pipeline over memory."""

from __future__ import annotations

import asyncio
import inspect
import sqlite3
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from smsroute.streams.pipeline import Outcome
from smsroute.streams.state import MemoryStore


async def eventually(
    check: Callable[[], bool | Awaitable[bool]],
    timeout: float = 30.0,
    what: str | Callable[[], str] = "",
    *,
    interval: float = 0.02,
) -> None:
    """Until ``check()`` (or the awaitable it returns) is true, looking every ``interval`` seconds;
    an AssertionError saying ``what`` (a string, or a function giving one then) after ``timeout``.

    The one way the tests wait: for the event a test is about (a request received, a state
    recorded, a metric moved), never for a fixed time. An exception ``check`` raises ends the wait
    at once (a process that died need not be waited on)."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            said = what() if callable(what) else what
            raise AssertionError(f"not within {timeout:g} s: {said or 'condition not reached'}")
        await asyncio.sleep(interval)


@contextmanager
def write_locked(db: Path) -> Iterator[None]:
    """Hold the database's write lock from another connection, as another writer would."""
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        conn.execute("ROLLBACK")
        conn.close()


class MemoryBackend:
    """The pipeline's backend over dicts, for tests of the core: it keeps every outcome recorded."""

    fatal = (MemoryError,)

    def __init__(self) -> None:
        self.dedupe = MemoryStore[float](lambda seen: seen)
        self.pending = MemoryStore(lambda group: group.first_seen)
        self.opt_outs = MemoryStore(lambda opt_out: opt_out.at)
        self.outcomes: list[Outcome] = []

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        yield  # dicts cannot undo: tests of isolation use the engines' real stores

    def record(self, outcome: Outcome, now: float) -> None:
        self.outcomes.append(outcome)
