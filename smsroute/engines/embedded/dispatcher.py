"""The delivery loop: due deliveries out to their sinks, each destination on its own budget.

Deliveries queue per destination (a webhook's scheme://host:port). Each destination gets at most
``per_destination`` attempts in flight, so one slow or dead receiver fills only its own slots
while the others keep flowing. Retries are rows with a due time, never sleeps.

Each pass of the loop is one state transaction: it records the attempts finished since the last
pass and claims the next due deliveries. An attempt counts as in flight until it is recorded, so a
crash can leave at most ``per_destination`` attempts per destination unrecorded (to be tried again)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Mapping

from ...sinks.outcome import Sender, attempt_once
from .state import State
from .state.deliveries import Due, Finished

log = logging.getLogger("smsroute.sinks")


class Dispatcher:
    def __init__(
        self,
        state: State,
        senders: Mapping[str, Sender],
        *,
        per_destination: int = 32,
        idle_poll: float = 1.0,
    ) -> None:
        self.state = state
        self.senders = senders
        self.per_destination = per_destination
        self.idle_poll = idle_poll
        self.claim_at_least = max(1, per_destination // 4)
        """Free slots worth a claim while a destination is busy: claims come in batches, not one by one."""
        self.in_flight: Counter[str] = Counter()
        self._finished: list[tuple[str, Finished]] = []
        self._woken: asyncio.Future[None] | None = None
        """Ends the loop's current sleep (or the next one, when woken during a pass)."""
        self._tasks: set[asyncio.Task[None]] = set()

    def wake(self) -> None:
        """New deliveries are due, or an attempt finished: look now rather than at the next poll."""
        if self._woken is not None and not self._woken.done():
            self._woken.set_result(None)

    async def run(self, stop: asyncio.Event) -> None:
        released = self.state.deliveries.release_claims()
        if released:
            log.warning(
                "deliveries interrupted by a crash are due again", extra={"event": "claims_released", "count": released}
            )
        stopping = asyncio.ensure_future(stop.wait())
        stopping.add_done_callback(lambda _: self.wake())
        try:
            while not stop.is_set():
                self._woken = asyncio.get_running_loop().create_future()
                now = time.time()
                self._pass(now)
                await self._sleep(self._woken, now)
        finally:
            stopping.cancel()
        while self._tasks:
            await asyncio.wait(self._tasks, timeout=10)
            if self._tasks:
                log.warning(
                    "deliveries still in flight at stop: they will be tried again",
                    extra={"event": "stop_in_flight", "count": len(self._tasks)},
                )
                break
        self._pass(None)

    def _pass(self, now: float | None) -> None:
        """Record what finished; then, unless stopping (``now`` None), claim what is due."""
        finished, self._finished = self._finished, []
        with self.state.transaction():
            self.state.deliveries.record([result for _, result in finished])
            for destination, _ in finished:
                self.in_flight[destination] -= 1
            if now is None:
                return
            for destination in self.state.deliveries.due_destinations(now):
                free = self.per_destination - self.in_flight[destination]
                if free >= self.claim_at_least:
                    for due in self.state.deliveries.claim(destination, now, free):
                        self._start(destination, due)

    async def _sleep(self, woken: asyncio.Future[None], now: float) -> None:
        """Until a delivery falls due after the pass at ``now``, or a wake (stopping wakes too). What
        was due at ``now`` is claimed or waits for a slot, and a finished attempt wakes the loop:
        waiting for those too would spin while a slow receiver holds every slot. A future rather than
        an event: the loop resumes on the next turn of the event loop, not three turns later."""
        next_due = self.state.deliveries.next_due(after=now)
        timeout = self.idle_poll if next_due is None else max(0.0, min(self.idle_poll, next_due - time.time()))
        timer = asyncio.get_running_loop().call_later(timeout, self.wake)
        try:
            await woken
        finally:
            timer.cancel()

    def _start(self, destination: str, due: Due) -> None:
        self.in_flight[destination] += 1
        task = asyncio.create_task(self._attempt(destination, due))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _attempt(self, destination: str, due: Due) -> None:
        delivery = due.delivery
        verdict = await attempt_once(self.senders, delivery, due.attempts + 1)
        attempt = verdict.attempt
        self._finished.append(
            (
                destination,
                Finished(
                    delivery.id,
                    verdict.number,
                    attempt.outcome,
                    attempt.status,
                    attempt.error,
                    attempt.duration,
                    verdict.at,
                    verdict.next_at,
                ),
            )
        )
        self.wake()
