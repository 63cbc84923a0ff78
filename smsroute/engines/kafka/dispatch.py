"""Deliveries out of the raw partitions' state: each is attempted as soon as it is routed, with at most
``per_destination`` attempts in flight per destination (a webhook's scheme://host:port), the rest
waiting in memory in routing order, so one slow receiver holds back only its own queue.

There is no deliveries topic: the delivery work follows the raw partitions (keyed by sender), so
one receiver is served by every worker. A verdict goes back into its partition's state, which the
next batch record carries; an attempt whose partition moved meanwhile is forgotten (the next owner
attempts the delivery again, with the same id: receivers drop the repeat by ``webhook-id``).

The partition and the delivery an attempt runs for are in :data:`CURRENT` while it runs, so the SMS
reply sink's guards read and write that partition's reply ledger and opt-outs."""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from ...models.delivery import Delivery
from ...sinks.outcome import Sender, Verdict, attempt_once
from .partition import PartitionState

log = logging.getLogger("smsroute.worker")

CURRENT: contextvars.ContextVar[tuple[PartitionState, Delivery]] = contextvars.ContextVar("smsroute_attempt")
"""The partition and delivery of the attempt running in this task."""


@dataclass(slots=True)
class Job:
    state: PartitionState
    delivery: Delivery
    number: int
    """Which try this is, 1-based within the delivery's round."""


class Dispatcher:
    def __init__(
        self,
        senders: Mapping[str, Sender],
        record: Callable[[Job, Verdict], None],
        *,
        per_destination: int,
    ) -> None:
        self.senders = senders
        self.record = record
        self.per_destination = per_destination
        self.in_flight: Counter[str] = Counter()
        """Attempts in flight by destination."""
        self.sending: Counter[str] = Counter()
        """Attempts in flight by sink kind."""
        self.queued = 0
        self._queues: dict[str, deque[Job]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._room = asyncio.Event()
        self._room.set()
        self.max_queued = 0
        """Set by the worker: the agent waits while this many deliveries wait for a slot."""

    def enqueue(self, job: Job) -> None:
        destination = job.delivery.destination
        self._queues.setdefault(destination, deque()).append(job)
        self.queued += 1
        if self.max_queued and self.queued >= self.max_queued:
            self._room.clear()
        self._pump(destination)

    async def room(self) -> None:
        """Wait while too many deliveries wait for a slot (backpressure on the agent)."""
        await self._room.wait()

    def waiting(self) -> list[Job]:
        return [job for queue in self._queues.values() for job in queue]

    def drop(self, partitions: set[int]) -> None:
        """Forget the queued deliveries of partitions no longer served here."""
        for destination, queue in list(self._queues.items()):
            kept = [job for job in queue if job.state.partition not in partitions]
            self.queued -= len(queue) - len(kept)
            queue.clear()
            queue.extend(kept)
            if not queue:
                del self._queues[destination]
        if self.queued < self.max_queued or not self.max_queued:
            self._room.set()

    async def stop(self) -> None:
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=10)

    def _pump(self, destination: str) -> None:
        queue = self._queues.get(destination)
        while queue and self.in_flight[destination] < self.per_destination:
            job = queue.popleft()
            self.queued -= 1
            self.in_flight[destination] += 1
            self.sending[job.delivery.sink] += 1
            context = contextvars.copy_context()
            context.run(CURRENT.set, (job.state, job.delivery))
            task = asyncio.create_task(self._run(job), context=context)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        if queue is not None and not queue:
            del self._queues[destination]
        if not self.max_queued or self.queued < self.max_queued:
            self._room.set()

    async def _run(self, job: Job) -> None:
        delivery = job.delivery
        try:
            verdict = await attempt_once(self.senders, delivery, job.number)
            self.record(job, verdict)
        except Exception:  # a bug must not stop the sink: the delivery is attempted again after a restart
            log.exception("delivery attempt crashed", extra={"event": "delivery_crashed", "delivery_id": delivery.id})
        finally:
            self.in_flight[delivery.destination] -= 1
            self.sending[delivery.sink] -= 1
            self._pump(delivery.destination)
