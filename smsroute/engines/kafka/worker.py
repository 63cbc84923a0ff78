"""``smsroute worker``: a faust-streaming app running the processing core and the sinks on Kafka.

Two agents, each over one topic of records and one topic of ticks (a timer on every worker sends
a tick to each partition it serves, so that time-driven work runs as an event of that partition,
inside its transaction):

- ``process`` reads raw events (``<prefix>.raw.v1``, keyed per message) and runs the same
  :class:`~smsroute.streams.pipeline.Pipeline` as the embedded engine, its dedupe keys, pending
  parts and opt-outs in Faust tables; deliveries go to ``<prefix>.deliveries.v1`` keyed by
  destination, dead letters to ``<prefix>.dead_letters.v1``, delivery reports to
  ``<prefix>.delivery_reports.v1``. On a tick: stitch timeouts, expired dedupe keys.
- ``deliver`` reads deliveries and hands them to the :class:`~smsroute.engines.kafka.sink.Deliverer`; on a
  tick, due retries.

Every topic a worker reads has ``kafka.partitions`` partitions: partitions are the unit of
parallelism, each served by one worker at a time.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import shutil
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, cast

import faust
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import TopicPartition
from faust.streams import Stream
from faust.types import TP, AppT, EventT, StreamT, TopicT

from ... import health, metrics
from ...config import Settings
from ...models.avro import DecodeError
from ...models.dead_letter import DeadLetter, DeadLetterRecord
from ...models.delivery import Delivery
from ...models.part import Part
from ...rules.watch import RulesWatcher
from ...sinks.build import Sinks
from ...streams.build import build_pipeline
from ...streams.optouts import OptOut
from ...streams.pipeline import Outcome
from ...streams.stitch import Pending
from .sink import Deliverer, DeliveryState
from .tables import TableStore
from .transactions import Admission, Consumer, Gate, Progress, SourceTransactionManager, Transport

log = logging.getLogger("smsroute.worker")

Record = tuple[TopicT, bytes, bytes]
"""A record to produce: topic, key, value."""

LAG_EVERY = 2.0
"""Seconds between consumer-lag updates."""


class WorkerApp(faust.App):
    """A Faust app whose transactions follow the source partition (see ``transactions``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.gate = Gate()
        self.progress = Progress()

    def _new_transport(self) -> Transport:
        return Transport(self.conf.broker_consumer, self)


def topic_names(settings: Settings) -> dict[str, str]:
    """Every topic of the Kafka engine by role; ticks are the workers' own."""
    kafka = settings.require_kafka("the Kafka worker")
    return {
        "raw": kafka.raw_topic,
        "deliveries": kafka.topic("deliveries.v1"),
        "attempts": kafka.topic("attempts.v1"),
        "dead_letters": kafka.topic("dead_letters.v1"),
        "delivery_reports": kafka.topic("delivery_reports.v1"),
        "process_ticks": kafka.topic("worker.process-ticks"),
        "deliver_ticks": kafka.topic("worker.deliver-ticks"),
    }


def app_id(settings: Settings) -> str:
    return settings.worker.app_id or f"{settings.require_kafka('the Kafka worker').topic_prefix}.worker"


class TableBackend:
    """The pipeline's :class:`~smsroute.streams.pipeline.Backend` over Faust tables. What an event
    leads to is encoded within its savepoint (an encoding error undoes the event, which is then a
    dead letter) and kept as records for the worker to produce in the event's transaction."""

    fatal: tuple[type[BaseException], ...] = (MemoryError,)

    def __init__(
        self,
        dedupe: TableStore[float],
        pending: TableStore[Pending],
        opt_outs: TableStore[OptOut],
        encode: Callable[[Outcome, float], list[Record]],
    ) -> None:
        self.dedupe, self.pending, self.opt_outs = dedupe, pending, opt_outs
        self._encode = encode
        self._records: list[Record] = []

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        with ExitStack() as savepoints:
            for store in (self.dedupe, self.pending, self.opt_outs):
                savepoints.enter_context(store.savepoint())
            yield

    def record(self, outcome: Outcome, now: float) -> None:
        self._records += self._encode(outcome, now)

    def take(self) -> list[Record]:
        """The records of the event just handled, to produce."""
        records, self._records = self._records, []
        return records


class Worker:
    """The worker app with its topics, tables, agents and timers."""

    def __init__(self, settings: Settings, rules: RulesWatcher) -> None:
        kafka, config = settings.require_kafka("the Kafka worker"), settings.worker
        self.settings, self.rules, self.kafka = settings, rules, kafka
        self.names = names = topic_names(settings)
        self.state_dir = config.state_dir or settings.data_dir / "worker"
        self.app = app = WorkerApp(
            app_id(settings),
            broker=[f"kafka://{server}" for server in kafka.bootstrap_servers.split(",")],
            broker_client_id=kafka.client_id,
            processing_guarantee="exactly_once",
            store="rocksdb://" if config.store == "rocksdb" else "memory://",
            datadir=str(self.state_dir),
            topic_partitions=kafka.partitions,
            topic_replication_factor=kafka.replication_factor,
            table_standby_replicas=0,
            consumer_auto_offset_reset="earliest",
            broker_commit_interval=config.commit_interval,
            broker_session_timeout=config.session_timeout,
            broker_heartbeat_interval=config.session_timeout / 10,
            stream_wait_empty=False,
            web_enabled=False,
        )
        self.sources = _raw(app, names["raw"], names["process_ticks"])
        self.delivery_sources = _raw(app, names["deliveries"], names["deliver_ticks"])
        # Records are encoded (Avro, smsroute.models) before they are sent: an encoding error belongs
        # to the event that made the record, which is then a dead letter, not a failed send.
        self.deliveries = _raw(app, names["deliveries"])
        self.attempts = _raw(app, names["attempts"])
        self.dead_letters = _raw(app, names["dead_letters"])
        self.reports = _raw(app, names["delivery_reports"])
        self.ticks = {name: _raw(app, name) for name in (names["process_ticks"], names["deliver_ticks"])}
        self.dedupe = TableStore[float](_table(app, "dedupe"), float, float, lambda seen: seen)
        self.pending = TableStore[Pending](
            _table(app, "pending-parts"),
            lambda group: (
                {str(index): part.to_json() for index, part in group.parts.items()} | {"first_seen": group.first_seen}
            ),
            _pending_from_json,
            lambda group: group.first_seen,
        )
        self.opt_outs = TableStore[OptOut](
            _table(app, "opt-outs"), lambda o: [o.message_id, o.at], lambda data: OptOut(*data), lambda o: o.at
        )
        self.states = TableStore[DeliveryState](
            _table(app, "delivery-state"), DeliveryState.to_json, DeliveryState.from_json, lambda s: s.at
        )
        self.backend = TableBackend(self.dedupe, self.pending, self.opt_outs, self._records)
        self.pipeline = build_pipeline(settings, rules, self.backend)
        self.sinks = Sinks(settings, None)
        self.sink = Deliverer(
            app,
            self.states,
            self.attempts,
            self.dead_letters,
            self.sinks.senders,
            gate=app.gate,
            progress=app.progress,
            transaction=self._transaction,
            per_destination=settings.per_destination,
            max_queued=config.max_queued,
            keep=settings.dedupe_window,
        )
        self.metrics_port = config.metrics_port
        app.agent(self.sources, name="process")(self._process)
        app.agent(self.delivery_sources, name="deliver")(self._deliver)
        app.timer(config.tick_interval, name="ticks")(self._ticks)
        app.timer(LAG_EVERY, name="lag")(self._lag)
        app.task(self._serve_metrics)
        app.task(self._watch_rules)
        app.on_partitions_revoked.connect(self._revoked)  # type: ignore[arg-type]  # Faust passes keywords
        app.on_partitions_assigned.connect(self._assigned)  # type: ignore[arg-type]
        app.on_rebalance_complete.connect(self._rebalanced)  # type: ignore[arg-type]
        self.ready = False
        """Partitions assigned and their tables recovered: /readyz answers 200."""
        self.admission = Admission(contiguous=(names["raw"], names["process_ticks"], names["deliver_ticks"]))
        self._admin: AIOKafkaAdminClient | None = None

    def changelogs(self) -> list[str]:
        return [table.changelog_topic.get_topic_name() for table in self.app.tables.values()]

    # --- agents ---------------------------------------------------------------------------------

    def _transaction(self, tp: TP) -> str:
        transactions = cast(SourceTransactionManager, self.app.consumer.transactions)
        return transactions.transactional_id(tp)

    async def _process(self, stream: StreamT[bytes]) -> None:
        async for event in self._admitted(stream):
            tp, offset = event.message.tp, event.message.offset
            async with self.app.gate.processing(self._transaction(tp)):
                now = time.time()
                if tp.topic == self.names["raw"]:
                    self.pipeline.handle(event.value, now)
                else:
                    self.pipeline.housekeeping(now)
                for store in (self.dedupe, self.pending, self.opt_outs):
                    await store.flush()
                for topic, key, value in self.backend.take():
                    await topic.send(key=key, value=value)
                self.app.progress.finished(tp, offset)
            event.ack()

    def _records(self, outcome: Outcome, now: float) -> list[Record]:
        records = [(self.deliveries, d.destination.encode(), d.encode()) for d in outcome.deliveries]
        for letter in outcome.dead_letters:
            letter_id = hashlib.sha256(letter.stage.encode() + b"\x1f" + letter.payload).hexdigest()[:32]
            records.append(
                (self.dead_letters, letter_id.encode(), DeadLetterRecord.of(letter, letter_id, now).encode())
            )
        for report in outcome.reports:
            records.append((self.reports, f"{report.provider}:{report.provider_message_id}".encode(), report.encode()))
            metrics.DELIVERY_REPORTS.labels(report.provider, report.status, "false").inc()
        return records

    async def _admitted(self, stream: StreamT[bytes]) -> AsyncIterator[EventT[bytes]]:
        """The stream's events that :class:`Admission` lets in, each noted as received; the others
        acknowledged (and their partition read again where it says so)."""
        async for event in cast(Stream[bytes], stream).noack().events():
            tp, offset = event.message.tp, event.message.offset
            admitted = self.admission.admit(tp, offset)
            if admitted is True:
                self.app.progress.received(tp, offset)
                yield event
                continue
            if admitted is not False:
                await cast(Consumer, self.app.consumer).reread(tp, admitted)
            event.ack()

    async def _dead_letter(self, letter: DeadLetter, now: float) -> None:
        [(topic, key, value)] = self._records(Outcome(dead_letters=[letter]), now)
        await topic.send(key=key, value=value)

    async def _deliver(self, stream: StreamT[bytes]) -> None:
        async for event in self._admitted(stream):
            tp, offset = event.message.tp, event.message.offset
            async with self.app.gate.processing(self._transaction(tp)):
                pending = False
                if tp.topic == self.names["deliver_ticks"]:
                    self.sink.tick(time.time(), event)
                    await self.states.flush()
                else:
                    pending = await self._offer(event)
                if not pending:
                    self.app.progress.finished(tp, offset)
                    event.ack()
            await self.sink.room()

    async def _offer(self, event: EventT[bytes]) -> bool:
        try:
            delivery = Delivery.decode(event.value)
        except DecodeError as exc:
            metrics.DEAD_LETTERS.labels("deliver", "undecodable").inc()
            log.error("undecodable delivery", extra={"event": "delivery_undecodable", "error": str(exc)})
            await self._dead_letter(DeadLetter("deliver", f"undecodable: {exc}", event.value), time.time())
            return False
        return self.sink.offer(delivery, event)

    # --- timers and tasks -----------------------------------------------------------------------

    async def _ticks(self) -> None:
        """One tick per served partition of each tick topic, outside any transaction."""
        for tp in self.app.assignor.assigned_actives():
            if tp.topic in self.ticks:
                await self.ticks[tp.topic].send(value=b"", partition=tp.partition)

    async def _lag(self) -> None:
        """Records not yet processed and committed, per served partition of the record topics."""
        metrics.CONSUMER_LAG.clear()
        progress = self.app.progress
        for tp in self.app.assignor.assigned_actives():
            if tp.topic in (self.names["raw"], self.names["deliveries"]):
                position = progress.committed.get(tp)
                highwater = self.app.consumer.highwater(tp)
                if position is not None and highwater is not None:
                    metrics.CONSUMER_LAG.labels(tp.topic, str(tp.partition)).set(max(0, highwater - position))

    async def _serve_metrics(self) -> None:
        config = self.settings.worker
        runner = await health.serve(config.metrics_host, config.metrics_port, self._readiness, "rebalancing")
        self.metrics_port = runner.addresses[0][1]
        await self.sinks.open()
        self.sinks.warn_missing(self.rules.rules)
        if self.settings.sms_reply.provider is not None:
            log.warning(
                "SMS replies are sent by the embedded engine only: on the Kafka engine sms_reply deliveries"
                " become dead letters (replayable with `smsroute dead-letters replay --kafka`)",
                extra={"event": "sink_missing", "sink": "sms_reply"},
            )
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
            await self.sink.stop()
            await self.sinks.close()
            await runner.cleanup()
            if self._admin is not None:
                await self._admin.close()

    async def _watch_rules(self) -> None:
        await self.rules.run()

    def _readiness(self) -> str | None:
        if not self.ready:
            return None
        served = {tp.partition for tp in self.app.assignor.assigned_actives() if tp.topic == self.names["raw"]}
        return f"ready: {len(served)} partitions"

    async def _rebalanced(self, app: AppT, **_: Any) -> None:
        """Before records flow again: where each served partition resumes (its committed offset)."""
        sources = {self.names[role] for role in ("raw", "process_ticks", "deliveries", "deliver_ticks")}
        served = [tp for tp in self.app.assignor.assigned_actives() if tp.topic in sources]
        if self._admin is None:
            self._admin = AIOKafkaAdminClient(
                bootstrap_servers=self.kafka.bootstrap_servers, client_id=self.kafka.client_id
            )
            await self._admin.start()
        committed = await self._admin.list_consumer_group_offsets(
            self.app.conf.id, partitions=[TopicPartition(tp.topic, tp.partition) for tp in served]
        )
        offsets = {tp: committed[tp].offset if tp in committed and committed[tp].offset >= 0 else None for tp in served}
        self.admission.start({TP(tp.topic, tp.partition): offset for tp, offset in offsets.items()})
        self.ready = True

    async def _revoked(self, app: AppT, revoked: set[TP], **_: Any) -> None:
        """Before partitions move: commit what is finished, and forget the rest (it is read
        again from the committed offsets, here or by the next owner)."""
        self.ready = False
        await self.app.consumer.transactions.commit({})
        self.admission.stop(revoked)
        self.app.progress.forget(revoked)
        self.sink.drop_queued()

    async def _assigned(self, app: AppT, assigned: set[TP], **_: Any) -> None:
        """Drop table state of partitions this worker no longer serves."""
        served = {tp.partition for tp in assigned}
        gone = set(range(self.kafka.partitions)) - served
        for store in (self.dedupe, self.pending, self.opt_outs, self.states):
            store.forget(gone)


def _raw(app: faust.App, *names: str) -> TopicT:
    """Topics of bytes keys and values: records are encoded (and decoded) by smsroute.models."""
    return app.topic(*names, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")


def _table(app: faust.App, name: str) -> Any:
    return app.Table(name, key_type=bytes, value_type=bytes)  # bytes: raw on the changelog


def _pending_from_json(data: dict[str, Any]) -> Pending:
    first_seen = data.pop("first_seen")
    return Pending(first_seen, {int(index): Part.from_json(part) for index, part in data.items()})


def prepare_state_dir(settings: Settings) -> Path:
    """Local tables are a cache of their changelogs, trusted only after a clean stop: a killed
    worker may have written state its aborted transaction never committed, so it starts afresh."""
    state_dir = settings.worker.state_dir or settings.data_dir / "worker"
    marker = state_dir / "clean-stop"
    if state_dir.exists() and not marker.exists():
        shutil.rmtree(state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    marker.unlink(missing_ok=True)
    return marker
