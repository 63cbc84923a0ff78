"""``smsroute worker``: a faust-streaming app running the processing core and the sinks on Kafka,
through Faust's public API only, with Faust's at-least-once guarantee and replay-safe processing.

One agent reads the raw topic (``<prefix>.raw.v1``, keyed per conversation) and the workers' control
topic, co-partitioned: the worker that serves raw partition *p* serves control partition *p* and
the ``batches`` table's partition *p*. Per raw event, the same
:class:`~smsroute.streams.pipeline.Pipeline` as the embedded engine runs over the partition's state
in memory (:mod:`~smsroute.engines.kafka.partition`); its deliveries are attempted at once
(:mod:`~smsroute.engines.kafka.dispatch`). A control event is a tick (empty: write the waiting
batch, stitch timeouts, due retries, expiry) or a replayed delivery.

A partition's changes are written as ONE table record per batch (``batch_size`` events or
``batch_interval`` seconds), with ``through``, the offset after the batch's last event; the batch's
events are acknowledged just after, in offset order. Faust's commit flushes its producer before it
commits acknowledged offsets, so a committed offset is never past the ``through`` of a written
record. After a crash or a rebalance the partition's next owner rebuilds its state from the
records (``on_recover``, before the stream resumes), skips re-read events below ``through`` and
processes the rest afresh: the ids they lead to (message, delivery, dead letter) are deterministic,
so a re-processed event leads to the same deliveries, attempted with the same ``webhook-id``.

The raw topic is written without transactions: its offsets are contiguous. An event past the next
expected offset is a hole in what Faust handed over: the worker crashes rather than skip it, and
starts again (the partition is read again from its committed offset). An event before it, handed
again, is already in the open batch.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import heapq
import json
import logging
import os
import shutil
import sys
import threading
import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any, Generic, NoReturn, TypeVar, cast, get_args

import faust
from faust.streams import Stream
from faust.types import TP, AppT, EventT, StreamT, TopicT

from ... import health, metrics
from ...config import Settings
from ...models.attempt import AttemptRecord
from ...models.avro import DecodeError
from ...models.dead_letter import DeadLetter, DeadLetterRecord
from ...models.delivery import Delivery
from ...models.report import FINAL, DeliveryReport
from ...rules.model import ActionKind
from ...rules.watch import RulesWatcher
from ...sinks.build import Sinks
from ...sinks.outcome import Verdict
from ...sinks.sms_reply import count_report
from ...streams.build import build_pipeline
from ...streams.optouts import OptOut
from ...streams.pipeline import Outcome
from ...streams.stitch import Pending
from .dispatch import CURRENT, Dispatcher, Job
from .partition import PartitionState, Timed, in_order
from .shared import Shared, SharedOptOuts, reply_key

log = logging.getLogger("smsroute.worker")
V = TypeVar("V")

GAUGES_EVERY = 2.0
"""Seconds between updates of the lag and backlog gauges."""
SINKS = get_args(ActionKind)
STAGES = ("normalize", "process", "route", "deliver")
_dead_letters_waiting = functools.cache(metrics.DEAD_LETTERS_WAITING.labels)


class Hole(RuntimeError):
    """A raw event past the next offset of its partition."""


STOP_GRACE = 15.0
"""Seconds Faust gets to stop after a hole before the worker starts again anyway: its stop after a
crash can hang (seen: the consumer left the group, then nothing), and a worker that neither serves
nor leaves stalls its partitions for good."""


def restart(hole: Hole) -> NoReturn:
    """Start again as a new process image (as a supervisor would): the partitions are read again
    from their committed offsets and the state rebuilt from the changelog, as after a crash."""
    log.warning(
        "worker restarting after a hole in a raw partition",
        extra={"event": "worker_restarting", "error": str(hole)},
    )
    os.execv(sys.executable, sys.orig_argv)


def restart_unless_stopped(hole: Hole) -> None:
    """:func:`restart` from a thread if Faust's stop is not over within :data:`STOP_GRACE` (no
    worse than a crash: nothing unwritten was acknowledged)."""
    timer = threading.Timer(STOP_GRACE, restart, (hole,))
    timer.daemon = True
    timer.start()


def topic_names(settings: Settings) -> dict[str, str]:
    """Every topic of the Kafka engine by role; the control topic is the workers' own."""
    kafka = settings.require_kafka("the Kafka worker")
    return {
        "raw": kafka.raw_topic,
        "attempts": kafka.topic("attempts.v1"),
        "dead_letters": kafka.topic("dead_letters.v1"),
        "delivery_reports": kafka.topic("delivery_reports.v1"),
        "control": kafka.topic("worker.control.v1"),
    }


def app_id(settings: Settings) -> str:
    return settings.worker.app_id or f"{settings.require_kafka('the Kafka worker').topic_prefix}.worker"


class PartitionBackend:
    """The pipeline's :class:`~smsroute.streams.pipeline.Backend` over the state of the partition
    whose event is being processed. What an event leads to is kept for the worker to act on once
    the event is handled; a failed event's writes and outputs are undone together."""

    fatal: tuple[type[BaseException], ...] = (MemoryError,)

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.state = PartitionState(-1)
        self.outcome = Outcome()
        # The pipeline holds its stores for good: these follow the partition at hand.
        self.dedupe: Current[float] = Current(self, "dedupe")
        self.pending: Current[Pending] = Current(self, "pending")
        self.opt_outs = SharedOptOuts(worker.shared)

    def savepoint(self) -> Any:
        return _Savepoint(self)

    def record(self, outcome: Outcome, now: float) -> None:
        for delivery in outcome.deliveries:
            self.worker.keep_delivery(self.state, delivery, 0, now)
        for letter in outcome.dead_letters:
            self.worker.keep_letter(self.state, letter, now)
        self.outcome.extend(outcome)

    def take(self) -> Outcome:
        outcome, self.outcome = self.outcome, Outcome()
        return outcome


class Current(Generic[V]):
    """A :class:`~smsroute.streams.state.TimedStore` of the partition whose event is being processed."""

    def __init__(self, backend: PartitionBackend, kind: str) -> None:
        self.backend, self.kind = backend, kind

    def _store(self) -> Timed[V]:
        store: Timed[V] = getattr(self.backend.state, self.kind)
        return store

    def get(self, key: str) -> V | None:
        return self._store().get(key)

    def __setitem__(self, key: str, value: V) -> None:
        self._store()[key] = value

    def __delitem__(self, key: str) -> None:
        del self._store()[key]

    def older_than(self, moment: float) -> list[str]:
        return self._store().older_than(moment)

    def forget_before(self, moment: float) -> None:
        self._store().forget_before(moment)


class _Savepoint:
    def __init__(self, backend: PartitionBackend) -> None:
        self.backend = backend
        self.undo = backend.state.undo.savepoint()

    def __enter__(self) -> None:
        outcome = self.backend.outcome
        self.sizes = len(outcome.deliveries), len(outcome.dead_letters), len(outcome.reports)
        self.writes = len(self.backend.opt_outs.writes)
        self.undo.__enter__()

    def __exit__(self, kind: Any, exc: BaseException | None, tb: Any) -> bool | None:
        if exc is not None:
            outcome = self.backend.outcome
            deliveries, letters, reports = self.sizes
            del outcome.deliveries[deliveries:], outcome.dead_letters[letters:], outcome.reports[reports:]
            del self.backend.opt_outs.writes[self.writes :]
        return self.undo.__exit__(kind, exc, tb)


class Replies:
    """The SMS reply sink's opt-out list (the shared table's) and reply ledger (that of the partition
    whose delivery is being attempted, :data:`~smsroute.engines.kafka.dispatch.CURRENT`). A
    conversation (provider, sender, recipient) lives in one partition, so its messages and its
    replies are there, in order. The ledger's records reach the table with the partition's next
    batch record; a reply the provider took is also noted in the shared table by the provider's id,
    for the delivery reports on it (which arrive on the partition of that id)."""

    def __init__(self, worker: Worker, keep: float) -> None:
        self.worker = worker
        self.keep = keep
        """Seconds a reply is remembered: the dedupe window (a retry of its message is answered no more)."""

    def get(self, number: str) -> OptOut | None:
        return self.worker.backend.opt_outs.get(number)

    def reply_for(self, message_id: str) -> tuple[str, str] | None:
        entry = CURRENT.get()[0].replies.get(message_id)
        return None if entry is None else (entry[0], entry[1])

    def recent_replies(self, recipient: str, since: float) -> int:
        replies = CURRENT.get()[0].replies.values()
        return sum(1 for entry in replies if entry[2] == recipient and entry[3] >= since and entry[1] != "failed")

    def reserve(self, delivery_id: str, message_id: str, recipient: str, provider: str, now: float) -> None:
        state = CURRENT.get()[0]
        entry = [delivery_id, "reserved", recipient, now, None, provider]
        state.set("replies", state.replies, message_id, entry, entry)
        heapq.heappush(state.expiring, (now + self.keep, "replies", message_id))

    def sent(self, delivery_id: str, provider_message_id: str | None, now: float) -> None:
        entry = self._status("sent", provider_message_id)
        if entry is not None and provider_message_id and len(entry) > 5:
            key = reply_key(entry[5], provider_message_id)
            if self.worker.shared.get(key) is None:  # an attempt made again keeps the reports seen
                self.worker.shared[key] = [delivery_id, "sent", []]

    def failed(self, delivery_id: str, now: float) -> None:
        self._status("failed", None)

    def sync(self) -> None:
        """Nothing to do here: the record is written with the partition's next batch."""

    def _status(self, status: str, provider_message_id: str | None) -> list[Any] | None:
        state, delivery = CURRENT.get()
        entry = state.replies.get(delivery.message_id)
        if entry is None:
            return None
        updated = [entry[0], status, entry[2], entry[3], provider_message_id or entry[4], *entry[5:]]
        state.set("replies", state.replies, delivery.message_id, updated, updated)
        return updated


class Worker:
    """The worker app with its topics, table, agent and timers."""

    def __init__(self, settings: Settings, rules: RulesWatcher) -> None:
        kafka, config = settings.require_kafka("the Kafka worker"), settings.worker
        self.settings, self.rules, self.kafka, self.config = settings, rules, kafka, config
        self.names = names = topic_names(settings)
        self.state_dir = config.state_dir or settings.data_dir / "worker"
        self.app = app = faust.App(
            app_id(settings),
            broker=[f"kafka://{server}" for server in kafka.bootstrap_servers.split(",")],
            broker_client_id=kafka.client_id,
            processing_guarantee="at_least_once",
            store="rocksdb://" if config.store == "rocksdb" else "memory://",
            datadir=str(self.state_dir),
            topic_partitions=kafka.partitions,
            topic_replication_factor=kafka.replication_factor,
            table_standby_replicas=1,
            consumer_auto_offset_reset="earliest",
            broker_commit_interval=config.commit_interval,
            broker_session_timeout=config.session_timeout,
            broker_heartbeat_interval=config.session_timeout / 10,
            producer_linger=0.005,
            producer_acks=-1,
            stream_wait_empty=False,
            web_enabled=False,
        )
        self.sources = _topic(app, names["raw"], names["control"])
        self.control = _topic(app, names["control"])
        self.table = app.Table("batches", key_type=str, value_type=None)
        self.table.on_recover(self._recovered)
        self.shared = Shared(app)
        """Opt-outs by number and our replies by the provider's id, on every worker (a GlobalTable)."""
        self.parts: dict[int, PartitionState] = {}
        self.actions: dict[str, dict[str, Any]] = {}
        """Actions' settings by key (a hash of them): deliveries refer to them."""
        self._action_keys: dict[int, tuple[dict[str, Any], str]] = {}
        self.backend = PartitionBackend(self)
        self.pipeline = build_pipeline(settings, rules, self.backend)
        replies = Replies(self, settings.dedupe_window)
        self.sinks = Sinks(settings, (replies, replies))
        self.dispatcher = Dispatcher(self.sinks.senders, self._verdict, per_destination=settings.per_destination)
        self.dispatcher.max_queued = config.max_queued
        self.metrics_port = config.metrics_port
        self.ticked: set[int] = set()
        """Partitions with a tick on its way."""
        app.agent(self.sources, name="process")(self._process)
        app.timer(config.tick_interval, name="ticks")(self._ticks)
        app.timer(GAUGES_EVERY, name="gauges")(self._gauges)
        app.task(self._serve_metrics)
        app.task(self._watch_rules)
        app.on_partitions_revoked.connect(self._revoked)  # type: ignore[arg-type]  # Faust passes keywords
        app.on_rebalance_complete.connect(self._rebalanced)  # type: ignore[arg-type]
        self.ready = False
        """Partitions assigned and their state rebuilt: /readyz answers 200."""
        self.hole: Hole | None = None
        """Why the worker stopped, when it was a hole in a raw partition: it then starts again."""

    def changelogs(self) -> list[str]:
        return [table.changelog_topic.get_topic_name() for table in self.app.tables.values()]

    # --- the agent ------------------------------------------------------------------------------

    async def _process(self, stream: StreamT[bytes]) -> None:
        """Every event handled whole in one turn of the loop. Nothing may raise here (an exception
        in a no-ack agent restarts it and lets later offsets be acknowledged past the failed one):
        anything unexpected crashes the worker, and the partition is read again."""
        async for event in cast(Stream[bytes], stream).noack().events():
            try:
                if event.message.topic == self.names["raw"]:
                    self._raw(event)
                else:
                    self._control(event)
            except Exception as exc:
                log.exception("worker stopped: its partitions are read again", extra={"event": "worker_crashed"})
                if isinstance(exc, Hole):
                    self.hole = exc
                    restart_unless_stopped(exc)
                await self.app.crash(exc)
                return
            if self.dispatcher.queued >= self.config.max_queued:
                await self.dispatcher.room()

    def _raw(self, event: EventT[bytes]) -> None:
        partition, offset = event.message.partition, event.message.offset
        state = self.parts.get(partition)
        if state is None:  # of a partition revoked meanwhile: never acknowledged, read again by its owner
            return
        if offset < state.through:  # already in the written state: a re-read
            event.ack()
            return
        if state.expected is not None and offset < state.expected:
            # Handed again (Faust seeks back to the committed offset at some rebalances): between
            # ``through`` and ``expected``, the open batch holds it already; acknowledged with it.
            if state.events and state.events[-1].message.offset == state.expected - 1:  # the first again
                log.info(
                    f"raw partition {partition}: offset {offset} handed again ({state.expected} is next)",
                    extra={"event": "handed_again", "partition": partition, "offset": offset},
                )
            state.events.append(event)
            return
        if state.expected is not None and offset != state.expected:
            raise Hole(f"raw partition {partition}: offset {offset} where {state.expected} was expected")
        state.expected = offset + 1
        self.backend.state = state
        now = time.time()
        self.pipeline.handle(event.value, now)
        self._act(state, self.backend.take(), now)
        state.events.append(event)
        state.last_offset = offset
        if not state.opened:
            state.opened = time.monotonic()
        if len(state.events) >= self.config.batch_size or time.monotonic() - state.opened >= self.config.batch_interval:
            self._flush(state)

    def _control(self, event: EventT[bytes]) -> None:
        state = self.parts.get(event.message.partition)
        if state is None:
            return
        self.ticked.discard(state.partition)
        now = time.time()
        if event.value:
            self._replayed(state, event.value, now)
        self.backend.state = state
        if self._housekeeping_due(state, now):
            self.pipeline.housekeeping(now)
            self._act(state, self.backend.take(), now)
        self._expire(state, now)
        self._retries(state, now)
        if state.has_batch():
            self._flush(state)
        event.ack()

    def _act(self, state: PartitionState, outcome: Outcome, now: float) -> None:
        """What an event led to: its opt-outs written, its deliveries started, its dead letters and
        reports produced."""
        self.backend.opt_outs.write()
        for delivery in outcome.deliveries:
            self.dispatcher.enqueue(Job(state, delivery, 1))
        for letter in outcome.dead_letters:
            record = DeadLetterRecord.of(letter, _letter_id(letter), now)
            self._send(self.names["dead_letters"], record.id, record.encode(), state.partition)
        for report in outcome.reports:
            key = f"{report.provider}:{report.provider_message_id}"
            self._send(self.names["delivery_reports"], key, report.encode(), None)
            self._link(report)

    def _link(self, report: DeliveryReport) -> None:
        """A delivery report linked to our reply it reports on (found in the shared table by the
        provider's id); a final status (delivered, failed) becomes the reply's, once. A report on
        a reply seen before (the provider's repeat, or the event processed again) counts once."""
        key = reply_key(report.provider, report.provider_message_id)
        link = self.shared.get(key)
        if link is None:
            count_report(report, None, None)
            return
        if report.code in link[2]:
            return
        became = report.status if report.status in FINAL and link[1] not in FINAL else None
        self.shared[key] = [link[0], became or link[1], [*link[2], report.code]]
        count_report(report, link[0], became)

    def _send(self, topic: str, key: str, value: bytes, partition: int | None) -> None:
        """Produce without waiting: Faust's commit flushes the producer before it commits offsets."""
        sending = self.app.producer.send(topic, key.encode(), value, partition, None, None)
        asyncio.ensure_future(sending)

    def _flush(self, state: PartitionState) -> None:
        """The partition's batch as one table record (this is an event of that partition), records
        it superseded deleted, then its events acknowledged in offset order."""
        record = state.take_batch()
        name = f"{state.partition}:{record['seq']}"
        self.table[name] = record
        state.records.written(name, record)
        for dead in state.records.take_dead():
            del self.table[dead]
        for event in state.events:
            event.ack()
        state.events.clear()

    # --- state of deliveries and dead letters ----------------------------------------------------

    def keep_delivery(self, state: PartitionState, delivery: Delivery, attempts: int, now: float) -> None:
        """A delivery to make (routed, or replayed), in the partition's state."""
        key = self._action_key(delivery.action)
        state.note("actions", key, delivery.action)
        entry = {
            "s": "pending",
            "n": attempts,
            "at": now,
            "r": delivery.round,
            "d": [delivery.message_id, delivery.route, delivery.sink, key, delivery.body, delivery.received_at],
            "a": [],
        }
        state.set("deliveries", state.deliveries, delivery.id, entry, entry)
        state.open.add(delivery.id)

    def keep_letter(self, state: PartitionState, letter: DeadLetter, now: float) -> None:
        letter_id = _letter_id(letter)
        entry = [letter.stage, now]
        state.set("letters", state.letters, letter_id, entry, entry)

    def _action_key(self, action: dict[str, Any]) -> str:
        """An action's settings are shared by the deliveries of its route: kept once, by hash."""
        found = self._action_keys.get(id(action))
        if found is None or found[0] is not action:
            key = hashlib.sha256(json.dumps(action, sort_keys=True).encode()).hexdigest()[:16]
            found = self._action_keys[id(action)] = (action, key)
            self.actions[key] = action
        return found[1]

    def _delivery(self, delivery_id: str, entry: dict[str, Any]) -> Delivery:
        message_id, route, sink, action, body, received_at = entry["d"]
        return Delivery(delivery_id, message_id, route, sink, self.actions[action], body, received_at, entry["r"])

    def _verdict(self, job: Job, verdict: Verdict) -> None:
        """An attempt's verdict into its partition's state (unless the partition moved meanwhile:
        its next owner attempts the delivery again)."""
        state, delivery = job.state, job.delivery
        entry = state.deliveries.get(delivery.id)
        if self.parts.get(state.partition) is not state or entry is None or entry["r"] != delivery.round:
            return
        attempt = verdict.attempt
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
        self._send(self.names["attempts"], delivery.id, record.encode(), state.partition)
        keep = verdict.at + self.settings.dedupe_window
        if verdict.next == "retry":
            assert verdict.next_at is not None
            updated = {
                **entry,
                "s": "retry",
                "n": verdict.number,
                "at": verdict.next_at,
                "a": [*entry["a"], asdict(record)],
            }
            state.note("actions", entry["d"][3], delivery.action)
            heapq.heappush(state.due, (verdict.next_at, delivery.id))
        elif verdict.next == "done":
            updated = {"s": "delivered", "n": verdict.number, "at": keep, "r": delivery.round}
        else:
            updated = {"s": "dead", "n": verdict.number, "at": keep, "r": delivery.round}
            attempts = [AttemptRecord(**a) for a in entry["a"]] + [record]
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
            self._send(self.names["dead_letters"], letter.id, letter.encode(), state.partition)
            state.set("letters", state.letters, letter.id, [letter.stage, verdict.at], [letter.stage, verdict.at])
        state.set("deliveries", state.deliveries, delivery.id, updated, updated)
        if verdict.next != "retry":
            state.open.discard(delivery.id)
            heapq.heappush(state.expiring, (keep, "deliveries", delivery.id))

    def _replayed(self, state: PartitionState, value: bytes, now: float) -> None:
        """A dead delivery sent again (``dead-letters replay``): a new round, if not taken yet."""
        try:
            delivery = Delivery.decode(value)
        except DecodeError as exc:
            log.error("undecodable replay", extra={"event": "replay_undecodable", "error": str(exc)})
            return
        entry = state.deliveries.get(delivery.id)
        if entry is not None and entry["r"] >= delivery.round:
            return  # replayed twice: this round is taken
        state.delete("letters", state.letters, f"{delivery.id}:{delivery.round - 1}")
        self.keep_delivery(state, delivery, 0, now)
        self.dispatcher.enqueue(Job(state, delivery, 1))

    def _retries(self, state: PartitionState, now: float) -> None:
        while state.due and state.due[0][0] <= now:
            at, delivery_id = heapq.heappop(state.due)
            entry = state.deliveries.get(delivery_id)
            if entry is not None and entry["s"] == "retry" and entry["at"] == at:
                self.dispatcher.enqueue(Job(state, self._delivery(delivery_id, entry), entry["n"] + 1))

    def _expire(self, state: PartitionState, now: float) -> None:
        """Final deliveries and replies past the dedupe window: a provider retry can no longer
        bring their message back."""
        while state.expiring and state.expiring[0][0] < now:
            at, kind, key = heapq.heappop(state.expiring)
            if kind == "deliveries":
                entry = state.deliveries.get(key)
                if entry is not None and entry["s"] in ("delivered", "dead") and entry["at"] == at:
                    state.delete(kind, state.deliveries, key)
            else:
                reply = state.replies.get(key)
                if reply is not None and reply[3] + self.settings.dedupe_window == at:
                    state.delete(kind, state.replies, key)
                    if reply[4] and len(reply) > 5:
                        self.shared.pop(reply_key(reply[5], reply[4]))

    def _housekeeping_due(self, state: PartitionState, now: float) -> bool:
        pending, dedupe = state.pending.first(), state.dedupe.first()
        return (pending is not None and pending < now - self.settings.stitch_timeout) or (
            dedupe is not None and dedupe < now - self.settings.dedupe_window
        )

    # --- timers and tasks -----------------------------------------------------------------------

    async def _ticks(self) -> None:
        """A tick to each served partition with something due and no event coming to do it: a
        batch waiting, a retry, a stitch timeout, expiry. Idle partitions get none."""
        now = time.time()
        for partition, state in list(self.parts.items()):
            if partition not in self.ticked and self._tick_due(state, now):
                self.ticked.add(partition)
                await self.control.send(value=b"", partition=partition)

    def _tick_due(self, state: PartitionState, now: float) -> bool:
        waiting = state.has_batch() and time.monotonic() - (state.opened or now) >= self.config.batch_interval
        retry = bool(state.due) and state.due[0][0] <= now
        expiry = bool(state.expiring) and state.expiring[0][0] < now
        return waiting or retry or expiry or self._housekeeping_due(state, now)

    async def _gauges(self) -> None:
        """Lag, delivery backlog and dead letters waiting, over the partitions served here."""
        now = time.time()
        metrics.CONSUMER_LAG.clear()
        raw = self.names["raw"]
        for partition, state in self.parts.items():
            highwater = self.app.consumer.highwater(TP(raw, partition))
            position = state.expected if state.expected is not None else max(state.through, 0)
            if highwater is not None:
                metrics.CONSUMER_LAG.labels(raw, str(partition)).set(max(0, highwater - position))
        backlog: Counter[tuple[str, str]] = Counter()
        oldest: dict[str, float] = {}
        for state in self.parts.values():
            for delivery_id in state.open:
                entry = state.deliveries.get(delivery_id)
                if entry is not None and entry["s"] in ("pending", "retry"):
                    sink = entry["d"][2]
                    due = entry["at"] <= now
                    backlog[sink, "due" if due else "scheduled"] += 1
                    if due:
                        oldest[sink] = min(oldest.get(sink, now), entry["at"])
        for sink in SINKS:
            sending = self.dispatcher.sending[sink]
            metrics.DELIVERY_BACKLOG.labels(sink, "due").set(max(0, backlog[sink, "due"] - sending))
            metrics.DELIVERY_BACKLOG.labels(sink, "sending").set(sending)
            metrics.DELIVERY_BACKLOG.labels(sink, "scheduled").set(backlog[sink, "scheduled"])
            metrics.DELIVERY_BACKLOG_AGE.labels(sink).set(max(0.0, now - oldest[sink]) if sink in oldest else 0)
        waiting = Counter(entry[0] for state in self.parts.values() for entry in state.letters.values())
        for stage in {*STAGES, *waiting}:
            _dead_letters_waiting(stage).set(waiting[stage])

    async def _serve_metrics(self) -> None:
        config = self.settings.worker
        runner = await health.serve(config.metrics_host, config.metrics_port, self._readiness, "rebalancing")
        self.metrics_port = runner.addresses[0][1]
        await self.sinks.open()
        self.sinks.warn_missing(self.rules.rules)
        log.info(
            f"worker metrics on http://{config.metrics_host}:{self.metrics_port}/metrics",
            extra={
                "event": "worker_listening",
                "port": self.metrics_port,
                "app_id": self.app.conf.id,
                "rules_version": self.rules.rules.version,
            },
        )
        try:
            await asyncio.Event().wait()
        finally:
            await self.dispatcher.stop()
            await self.sinks.close()
            await runner.cleanup()

    async def _watch_rules(self) -> None:
        await self.rules.run()

    def _readiness(self) -> str | None:
        return f"ready: {len(self.parts)} partitions" if self.ready else None

    # --- rebalances and recovery ----------------------------------------------------------------

    async def _recovered(self) -> None:
        """After Faust recovered the table, before the stream resumes: each served partition's
        state rebuilt from its records, and its unfinished deliveries started again."""
        served = {tp.partition for tp in self.app.assignor.assigned_actives() if tp.topic == self.names["raw"]}
        records: dict[int, list[tuple[str, dict[str, Any]]]] = {partition: [] for partition in served}
        for name, record in self.table.data.items():
            partition = int(name.split(":", 1)[0])
            if partition in records:
                records[partition].append((name, record))
        self.dispatcher.drop(set(self.parts))
        self.parts = {}
        for partition, found in records.items():
            state = self.parts[partition] = PartitionState(partition)
            for name, record in in_order(found):
                state.apply(record, self.actions)
                state.records.written(name, record)
            state.records.take_dead()  # deleted with the next record, by whoever writes it
            state.expected = state.through if state.through >= 0 else None
            for delivery_id, entry in state.deliveries.items():
                if entry["s"] == "pending":
                    state.open.add(delivery_id)
                    self.dispatcher.enqueue(Job(state, self._delivery(delivery_id, entry), entry["n"] + 1))
                elif entry["s"] == "retry":
                    state.open.add(delivery_id)
                    heapq.heappush(state.due, (entry["at"], delivery_id))
                else:
                    heapq.heappush(state.expiring, (entry["at"], "deliveries", delivery_id))
            for message_id, reply in state.replies.items():
                heapq.heappush(state.expiring, (reply[3] + self.settings.dedupe_window, "replies", message_id))
            await asyncio.sleep(0)
        self.ticked.clear()

    async def _revoked(self, app: AppT, revoked: set[TP], **_: Any) -> None:
        """Before partitions move: their state and queued deliveries are forgotten (their unwritten
        batches were never acknowledged: they are read again, here or by the next owner)."""
        self.ready = False
        gone = {tp.partition for tp in revoked if tp.topic == self.names["raw"]}
        self.dispatcher.drop(gone)
        for partition in gone:
            self.parts.pop(partition, None)

    async def _rebalanced(self, app: AppT, **_: Any) -> None:
        self.ready = True


def _topic(app: faust.App, *names: str) -> TopicT:
    """Topics of bytes keys and values: records are encoded (and decoded) by smsroute.models."""
    return app.topic(*names, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")


def _letter_id(letter: DeadLetter) -> str:
    """Deterministic: the same event fails into the same letter when it is processed again."""
    return hashlib.sha256(letter.stage.encode() + b"\x1f" + letter.payload).hexdigest()[:32]


def prepare_state_dir(settings: Settings) -> Path:
    """Local tables are a cache of their changelogs, trusted only after a clean stop: Faust records
    RocksDB offsets as changelog records are sent, so a killed worker's files may claim records
    they never stored. It starts afresh and recovers from the changelog (or its standby)."""
    state_dir = settings.worker.state_dir or settings.data_dir / "worker"
    marker = state_dir / "clean-stop"
    if state_dir.exists() and not marker.exists():
        shutil.rmtree(state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    marker.unlink(missing_ok=True)
    return marker
