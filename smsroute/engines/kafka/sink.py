"""The sink agent's engine: deliveries from the delivery topic out to their sinks, with retries
scheduled in a table and dead letters on their topic. Nothing here sleeps or blocks a partition.

Each delivery is attempted as its own task; a destination (a webhook's scheme://host:port) has at
most ``per_destination`` attempts in flight, the rest wait in memory in arrival order (their events
stay unfinished, so a crash re-reads them), so one slow receiver holds back only its own queue.
After each attempt the verdict is recorded within the delivery event's transaction: the attempt on
the attempts topic, the delivery's state in the ``delivery-state`` table (retry at a time,
delivered, dead) and, when dead, a dead letter. Retries come back from the table on the partition's
next tick, once due. A delivery whose state is already final for its round is not attempted again:
that is how a delivery re-read after a crash (or read again after a rebalance) is recognised.

POSTs themselves are at least once: an attempt in flight when a worker dies is made again by the
partition's next owner. Receivers drop the repeat by its ``webhook-id``, the delivery id.
"""

from __future__ import annotations

import asyncio
import base64
import contextvars
import logging
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from aiokafka.errors import KafkaError
from faust.exceptions import ProducerSendError
from faust.types import TP, AppT, EventT, TopicT

from ...models.attempt import AttemptRecord
from ...models.dead_letter import DeadLetterRecord
from ...models.delivery import Delivery
from ...sinks.outcome import Sender, Verdict, attempt_once
from .tables import TableStore
from .transactions import Gate, Progress

log = logging.getLogger("smsroute.worker")


@dataclass(slots=True)
class DeliveryState:
    """Where a delivery stands, as the ``delivery-state`` table keeps it."""

    state: Literal["scheduled", "delivered", "dead"]
    round: int
    at: float
    """scheduled: when the next attempt is due; delivered, dead: when the state is forgotten."""
    attempts: list[dict[str, Any]] = field(default_factory=list)
    """The attempts of this round so far (while scheduled)."""
    delivery: str = ""
    """The delivery's encoding, base64 (while scheduled)."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DeliveryState:
        return cls(**data)


@dataclass(slots=True)
class Job:
    delivery: Delivery
    number: int
    """Which try this is, 1-based within the round."""
    attempts: list[AttemptRecord]
    event: EventT[bytes]
    """The event it runs for (its delivery's, or a tick's for a retry): that partition's transaction
    takes what the attempt leads to. Held here, as Faust's current-event reference is weak."""
    context: contextvars.Context
    """That event's context."""
    finish: EventT[bytes] | None
    """The delivery event that recording the verdict finishes: the latest reading of the delivery
    (None for a retry)."""


class Deliverer:
    def __init__(
        self,
        app: AppT,
        states: TableStore[DeliveryState],
        attempts: TopicT,
        dead_letters: TopicT,
        senders: Mapping[str, Sender],
        *,
        gate: Gate,
        progress: Progress,
        transaction: Callable[[TP], str],
        per_destination: int,
        max_queued: int,
        keep: float,
    ) -> None:
        self.app = app
        self.states = states
        self.attempts_topic = attempts
        self.dead_letters = dead_letters
        self.senders = senders
        self.gate = gate
        self.progress = progress
        self.transaction = transaction
        self.per_destination = per_destination
        self.max_queued = max_queued
        self.keep = keep
        self.in_flight: Counter[str] = Counter()
        self._queues: dict[str, deque[Job]] = {}
        self._queued = 0
        self._room = asyncio.Event()
        self._room.set()
        self._jobs: dict[str, Job] = {}
        """Every delivery queued or in flight here, by id."""
        self._tasks: set[asyncio.Task[None]] = set()

    def offer(self, delivery: Delivery, event: EventT[bytes]) -> bool:
        """Take a delivery from its event; False when it needs nothing (already final, or
        already queued or in flight here: the event was read again after a rebalance)."""
        job = self._jobs.get(delivery.id)
        if job is not None and job.delivery.round == delivery.round:
            job.finish = event
            return True
        state = self.states.get(delivery.id)
        if state is not None and state.round >= delivery.round:
            return False
        self._enqueue(Job(delivery, 1, [], event, contextvars.copy_context(), event))
        return True

    def tick(self, now: float, event: EventT[bytes]) -> None:
        """Due retries into their queues; final states past their keep time forgotten."""
        for key in self.states.older_than(now):
            state = self.states.get(key)
            if state is None:
                continue
            if state.state != "scheduled":
                del self.states[key]
            elif key not in self._jobs:
                delivery = Delivery.decode(base64.b64decode(state.delivery))
                attempts = [AttemptRecord(**attempt) for attempt in state.attempts]
                self._enqueue(Job(delivery, len(attempts) + 1, attempts, event, contextvars.copy_context(), None))

    async def room(self) -> None:
        """Wait while ``max_queued`` deliveries are waiting for a slot (backpressure)."""
        await self._room.wait()

    def drop_queued(self) -> None:
        """At a rebalance: queued deliveries are read again from the committed offsets."""
        for queue in self._queues.values():
            for job in queue:
                self._jobs.pop(job.delivery.id, None)
        self._queues.clear()
        self._queued = 0
        self._room.set()

    async def stop(self) -> None:
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=10)

    def _enqueue(self, job: Job) -> None:
        self._jobs[job.delivery.id] = job
        destination = job.delivery.destination
        self._queues.setdefault(destination, deque()).append(job)
        self._queued += 1
        if self._queued >= self.max_queued:
            self._room.clear()
        self._pump(destination)

    def _pump(self, destination: str) -> None:
        queue = self._queues.get(destination)
        while queue and self.in_flight[destination] < self.per_destination:
            job = queue.popleft()
            self._queued -= 1
            self.in_flight[destination] += 1
            task = asyncio.create_task(self._run(job), context=job.context)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        if queue is not None and not queue:
            del self._queues[destination]
        if self._queued < self.max_queued:
            self._room.set()

    async def _run(self, job: Job) -> None:
        delivery = job.delivery
        try:
            verdict = await attempt_once(self.senders, delivery, job.number)
            async with self.gate.processing(self.transaction(job.event.message.tp)):
                await self._record(job, verdict)
                if job.finish is not None:
                    self.progress.finished(job.finish.message.tp, job.finish.message.offset)
                    job.finish.ack()
        except (ProducerSendError, KafkaError) as exc:
            # The partition moved to another worker meanwhile: its uncommitted work is redone there.
            log.warning(
                "delivery verdict not recorded: partition reassigned",
                extra={"event": "verdict_dropped", "delivery_id": delivery.id, "error": str(exc)},
            )
        except Exception:  # a bug must not stop the sink: the delivery is re-read after a restart
            log.exception("delivery attempt crashed", extra={"event": "delivery_crashed", "delivery_id": delivery.id})
        finally:
            self._jobs.pop(delivery.id, None)
            self.in_flight[delivery.destination] -= 1
            self._pump(delivery.destination)

    async def _record(self, job: Job, verdict: Verdict) -> None:
        delivery, attempt = job.delivery, verdict.attempt
        record = AttemptRecord(
            delivery.id,
            delivery.message_id,
            delivery.route,
            delivery.sink,
            delivery.round,
            verdict.number,
            verdict.at,
            attempt.outcome,
            attempt.status,
            attempt.error,
            attempt.duration,
            verdict.next,
            verdict.next_at,
        )
        attempts = [*job.attempts, record]
        if verdict.next == "retry":
            assert verdict.next_at is not None
            self.states[delivery.id] = DeliveryState(
                "scheduled",
                delivery.round,
                verdict.next_at,
                [asdict(a) for a in attempts],
                base64.b64encode(delivery.encode()).decode(),
            )
        else:
            final: Literal["delivered", "dead"] = "delivered" if verdict.next == "done" else "dead"
            self.states[delivery.id] = DeliveryState(final, delivery.round, verdict.at + self.keep)
        await self.states.flush()
        await self.attempts_topic.send(key=delivery.id.encode(), value=record.encode())
        if verdict.next == "dead_letter":
            letter = DeadLetterRecord(
                id=f"{delivery.id}:{delivery.round}",
                stage="deliver",
                reason=attempt.error,
                payload=delivery.body.encode(),
                created_at=verdict.at,
                delivery_id=delivery.id,
                delivery=delivery.encode(),
                attempts=tuple(a.encode() for a in attempts),
            )
            await self.dead_letters.send(key=letter.id.encode(), value=letter.encode())
