"""Exactly-once for a topology that re-keys: Kafka's read-process-write transaction, per partition.

Faust's ``exactly_once`` keeps one transactional producer per assigned partition and commits each
source partition's offsets in that producer's transaction, but three things in it do not hold for
us, and this module replaces them:

- **Which transaction a record joins.** Faust picks the producer by the record's *destination*
  partition, which works only when outputs are co-partitioned with inputs. Ours are not (raw events
  are keyed by message, deliveries by destination), so a delivery from raw partition 0 may be bound
  for deliveries partition 5, whose producer lives on another worker (the send fails) or commits at
  another moment (the decision is no longer atomic with its input). Here a record sent while an
  event is processed joins the transaction of *that event's* partition, whatever its destination.
  Records sent outside any event (timer ticks) belong to no decision and go out at once through the
  plain idempotent producer.
- **Which offsets a transaction commits.** Faust derives them from its acknowledgements, which can
  run past an event still being processed (faust-streaming issue 606: a single missing offset at
  the head is taken for a compaction gap) and may be computed before the transaction's last
  records were written. Here the agents report each event as received and as finished
  (:class:`Progress`) and a transaction commits, for each partition, up to the first event not yet
  finished: every event whose offset is committed has its outputs in the same or an earlier
  committed transaction, and no event's outputs are committed without its offset, except those
  finished out of order behind an unfinished one (the sinks), whose re-run after a crash the sink
  recognises from its state.
- **When a commit happens.** Processing an event (its state writes, its outputs, its "finished")
  and committing its transaction exclude each other (:class:`Gate`), so a commit never splits an
  event; each transaction commits on its own, so one partition's commit does not stall the others.

One more repair: table recovery needs the changelogs' end offsets (see :class:`ConsumerThread`).

A worker killed mid-transaction leaves it open; the next owner of the partition starts a producer
with the same transactional id, which fences the dead one and aborts its transaction, then resumes
from the committed offsets with the committed state (consumers read ``read_committed``).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable, Iterable, Mapping
from contextlib import asynccontextmanager
from typing import Any, cast

from aiokafka.errors import ProducerFenced
from aiokafka.structs import RecordMetadata, TopicPartition
from faust.streams import current_event
from faust.transport.consumer import TransactionManager
from faust.transport.drivers import aiokafka as driver
from faust.types import TP


class Gate:
    """Per transaction: event processing (shared, many at once) and its commit (exclusive)."""

    def __init__(self) -> None:
        self._holders: Counter[str] = Counter()
        self._idle: defaultdict[str, asyncio.Event] = defaultdict(_set_event)
        self._open: defaultdict[str, asyncio.Event] = defaultdict(_set_event)

    @asynccontextmanager
    async def processing(self, transaction: str) -> AsyncIterator[None]:
        while not self._open[transaction].is_set():
            await self._open[transaction].wait()
        self._holders[transaction] += 1
        self._idle[transaction].clear()
        try:
            yield
        finally:
            self._holders[transaction] -= 1
            if not self._holders[transaction]:
                self._idle[transaction].set()

    @asynccontextmanager
    async def committing(self, transaction: str) -> AsyncIterator[None]:
        self._open[transaction].clear()  # no new event starts: a busy stream cannot starve the commit
        try:
            await self._idle[transaction].wait()
            yield
        finally:
            self._open[transaction].set()


def _set_event() -> asyncio.Event:
    event = asyncio.Event()
    event.set()
    return event


class Progress:
    """Per source partition, the offsets handed to the agents (in order) and which are finished."""

    def __init__(self) -> None:
        self._open: dict[TP, dict[int, bool]] = {}
        self._next: dict[TP, int] = {}
        self.committed: dict[TP, int] = {}
        """The last offset committed per partition (the next one to read after a restart)."""

    def received(self, tp: TP, offset: int) -> None:
        self._open.setdefault(tp, {})[offset] = False

    def finished(self, tp: TP, offset: int) -> None:
        pending = self._open.get(tp)
        if pending is not None and offset in pending:
            pending[offset] = True

    def committable(self, tps: Iterable[TP]) -> dict[TP, int]:
        """For each partition that moved on: the offset after its finished prefix."""
        offsets = {}
        for tp in tps:
            pending = self._open.get(tp, {})
            while pending:
                offset, done = next(iter(pending.items()))
                if not done:
                    break
                del pending[offset]
                self._next[tp] = offset + 1
            if tp in self._next and self._next[tp] != self.committed.get(tp):
                offsets[tp] = self._next[tp]
        return offsets

    def forget(self, tps: Iterable[TP]) -> None:
        """Partitions no longer ours: their next owner starts from the committed offsets."""
        for tp in tps:
            self._open.pop(tp, None)
            self._next.pop(tp, None)
            self.committed.pop(tp, None)


class Admission:
    """Lets each partition's records into the agents once, in offset order, from the committed
    offset on: what :class:`Progress` commits is then exactly what was processed.

    Around a rebalance Faust can hand an agent records out of order or with holes (records fetched
    before its seek to the committed offsets, records skipped while its flow control was paused),
    and a commit past a hole loses the records in it. A record below the next expected offset was
    already processed: skipped. A record above it may follow a hole, or offsets that hold no record
    (transaction markers, aborted records): the partition is read again from the expected offset,
    records fetched before that are skipped, and the first record of the new reading is let in
    (the offsets before it hold nothing).

    Topics written in transactions have such empty offsets after every transaction, so reading
    them again for each would cost more than the work: their gaps are checked for ``settle``
    seconds after a rebalance, when Faust's holes happen; topics in ``contiguous`` (written
    without transactions, where any gap is a hole) always.
    """

    def __init__(self, contiguous: Iterable[str], settle: float = 30.0) -> None:
        self.contiguous = set(contiguous)
        self.settle = settle
        self._expected: dict[TP, int | None] = {}
        self._probing: dict[TP, int] = {}
        self._started = 0.0

    def start(self, committed: Mapping[TP, int | None]) -> None:
        """After a rebalance: the partitions served now and their committed offsets (None: none
        committed yet, the first record is the first there is)."""
        self._expected = dict(committed)
        self._probing.clear()
        self._started = time.monotonic()

    def stop(self, tps: Iterable[TP]) -> None:
        for tp in tps:
            self._expected.pop(tp, None)
            self._probing.pop(tp, None)

    def admit(self, tp: TP, offset: int) -> bool | int:
        """True: process it. False: skip it. An offset: skip it and read the partition again from there."""
        if tp not in self._expected:
            return False  # not (or no longer) served: the next rebalance settles it
        expected = self._expected[tp]
        if expected is not None and offset < expected:
            return False  # processed already
        probing = self._probing.get(tp)
        if expected is not None and offset > expected and self._checks_gaps(tp):
            if probing is None:
                self._probing[tp] = offset
                return expected
            if offset > probing:
                return False  # fetched before the partition was read again
            # The reading again from ``expected`` starts here: the offsets before hold no record.
        self._probing.pop(tp, None)
        self._expected[tp] = offset + 1
        return True

    def _checks_gaps(self, tp: TP) -> bool:
        return tp.topic in self.contiguous or tp in self._probing or time.monotonic() - self._started < self.settle


class SourceTransactionManager(TransactionManager):
    """Needs an app with a :class:`Gate` (``app.gate``) and a :class:`Progress` (``app.progress``)
    shared with its agents."""

    async def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        partition: int | None,
        timestamp: float | None,
        headers: Any,
        *,
        transactional_id: str | None = None,
    ) -> Awaitable[RecordMetadata]:
        event = current_event()
        transactional_id = None if event is None else self.transactional_id(event.message.tp)
        return await self.producer.send(
            topic, key, value, partition, timestamp, headers, transactional_id=transactional_id
        )

    async def commit(self, offsets: Mapping[TP, int], start_new_transaction: bool = True) -> bool:
        """Commit each transaction with its partitions' finished prefixes, all transactions at
        once and each under its own gate (``offsets``, Faust's own idea, is ignored)."""
        by_transaction: defaultdict[str, list[TP]] = defaultdict(list)
        for tp in self.app.assignor.assigned_actives():
            by_transaction[self.transactional_id(tp)].append(tp)
        done = await asyncio.gather(
            *(self._commit(transaction, tps, start_new_transaction) for transaction, tps in by_transaction.items())
        )
        return any(done)

    async def _commit(self, transaction: str, tps: list[TP], start_new_transaction: bool) -> bool:
        gate: Gate = self.app.gate  # type: ignore[attr-defined]
        progress: Progress = self.app.progress  # type: ignore[attr-defined]
        async with gate.committing(transaction):
            mine = progress.committable(tps)
            if not mine:
                return False
            offsets = {TopicPartition(tp.topic, tp.partition): offset for tp, offset in mine.items()}
            try:
                await self.producer.commit_transactions(
                    {transaction: offsets}, self.app.conf.id, start_new_transaction=start_new_transaction
                )
            except ProducerFenced as exc:  # another worker took the partition over: this one must stop
                await self.app.crash(exc)
                return False
            progress.committed.update(mine)
            return True

    def transactional_id(self, tp: TP) -> str:
        """The transaction that events of ``tp`` are processed in."""
        return f"{self.app.conf.id}-{self.app.assignor.group_for_topic(tp.topic)}-{tp.partition}"


class ConsumerThread(driver.AIOKafkaConsumerThread):
    async def _highwaters(self, partitions: list[TP]) -> Mapping[TP, int]:
        """End offsets asked of the broker (the last stable offsets, reading committed data only).
        Under exactly_once Faust answers with each partition's cached last stable offset instead,
        unknown (-1) until something was fetched from it: table recovery would then take every
        changelog for empty and start a worker with none of its partitions' state."""
        offsets: Mapping[TP, int] = await self._ensure_consumer().end_offsets(partitions)
        return offsets

    async def reread(self, tp: TP, offset: int) -> None:
        async def seek() -> None:
            self._ensure_consumer().seek(TopicPartition(tp.topic, tp.partition), offset)

        await self.call_thread(seek)


class _Unfiltered(dict[TP, int | None]):
    """Faust's read offsets, as its fetch loop sees them: never known. That loop drops any record
    below the highest offset it has queued, so after a seek back (its own at a rebalance, or
    :class:`Admission`'s) the records read again are dropped whenever records fetched before the
    seek were queued after it. :class:`Admission` orders and filters the records instead."""

    def __getitem__(self, tp: TP) -> int | None:
        return None


class Consumer(driver.Consumer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._read_offset = _Unfiltered()

    def _new_consumer_thread(self) -> ConsumerThread:
        return ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def reread(self, tp: TP, offset: int) -> None:
        """Read ``tp`` again from ``offset`` (:class:`Admission`'s holes). The seek runs on the
        consumer's own thread: Faust's ``seek`` calls aiokafka from the app's thread, where it
        does not take."""
        await cast(ConsumerThread, self._thread).reread(tp, offset)
        self._read_offset[tp] = offset


class Transport(driver.Transport):
    """The aiokafka transport with :class:`SourceTransactionManager` and :class:`ConsumerThread`."""

    Consumer = Consumer
    TransactionManager = SourceTransactionManager
