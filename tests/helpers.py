"""Helpers shared by the tests: waiting for a condition, and the core's pipeline over memory."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager

from smsroute.streams.pipeline import Outcome
from smsroute.streams.state import MemoryStore


async def eventually(check: Callable[[], bool | Awaitable[bool]], timeout: float = 30.0, what: str = "") -> None:
    """Until ``check()`` (or the coroutine it returns) is true; an AssertionError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:g} s: {what or 'condition not reached'}")
        await asyncio.sleep(0.02)


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
