"""The dispatcher against a real receiver that holds its requests: one destination's slots are a
hard limit, and while they are all taken the dispatcher waits for a finished attempt instead of
looping over the deliveries queued behind them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from helpers import eventually
from local_server import serving
from smsroute.engines.embedded.dispatcher import Dispatcher
from smsroute.engines.embedded.state import State
from smsroute.models.delivery import Delivery
from smsroute.sinks import webhook

SLOTS = 4
QUEUED = 10
IDLE_WATCH = 0.3
"""Seconds of watching a dispatcher whose slots are all taken: one that polled the deliveries queued
behind them (its idle poll is 60 s; a loop would be milliseconds) would have made passes by then.
Nothing happens to wait for: what is checked is that nothing happens."""


class Holding:
    """A receiver that answers 204 only once ``release`` is set, noting how many requests it held at once."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.held = 0
        self.most_held = 0
        self.ids: list[str] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.ids.append(request.headers["webhook-id"])
        self.held += 1
        self.most_held = max(self.most_held, self.held)
        await self.release.wait()
        self.held -= 1
        return web.Response(status=204)


class CountingState(State):
    """The real state db, counting the dispatcher's passes (one transaction each)."""

    transactions = 0

    @contextmanager
    def transaction(self) -> Iterator[None]:
        self.transactions += 1
        with super().transaction():
            yield


@pytest.fixture
async def holding() -> AsyncIterator[tuple[Holding, str]]:
    receiver = Holding()
    async with serving(receiver.handle, "/inbox") as url:
        yield receiver, url
        receiver.release.set()


def delivered(state: State) -> int:
    return state.conn.execute("SELECT count(*) FROM deliveries WHERE state = 'delivered'").fetchone()[0]


async def test_full_slots_are_waited_on_not_polled(tmp_path: Path, holding: tuple[Holding, str]) -> None:
    receiver, url = holding
    state = CountingState(tmp_path / "state.db")
    action = {"url": f"{url}/inbox", "retry": {"delays": [1.0]}}
    now = time.time()
    queued = [Delivery(f"msg_{n:032d}", f"{n:032x}", "inbox", "webhook", action, "{}", now) for n in range(QUEUED)]
    state.deliveries.add(queued, now)
    stop = asyncio.Event()
    async with aiohttp.ClientSession() as session:
        dispatcher = Dispatcher(state, {"webhook": webhook.sender(session)}, per_destination=SLOTS, idle_poll=60.0)
        running = asyncio.create_task(dispatcher.run(stop))
        try:
            await eventually(lambda: receiver.held == SLOTS, 10)
            passes = state.transactions
            await asyncio.sleep(IDLE_WATCH)
            assert state.transactions == passes  # nothing finished, nothing newly due: no pass
            assert receiver.held == SLOTS

            receiver.release.set()
            await eventually(lambda: delivered(state) == QUEUED, 10)
        finally:
            stop.set()
            await running
    assert receiver.most_held == SLOTS
    assert sorted(receiver.ids) == sorted(set(receiver.ids)) and len(receiver.ids) == QUEUED
    state.close()
