"""One raw partition's state on a worker: in memory, changed per event, written to the ``batches``
table as ONE record per batch of events.

The processing core's stores (dedupe keys, pending parts, opt-outs), the deliveries dispatched from
this partition, the reply ledger of the conversations in it and its dead letters are plain dicts
here. Every change is also noted in the partition's open batch; the worker writes the batch as one
table record ``{"through": <offset after its last event>, "<kind>": {key: value or null}, ...}``
and only then acknowledges its events. ``through`` travels with the changes it covers, so after a
crash or a move the next owner rebuilds the state from the records and knows exactly which raw
events are already in it (see :mod:`~smsroute.engines.kafka.worker`).

Records whose every entry was superseded are deleted (tombstoned) by :class:`Records`, so the
changelog keeps about the live entries, in about a batch size times fewer records.
"""

from __future__ import annotations

import heapq
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, Generic, TypeVar

from faust.types import EventT

from ...models.part import Part
from ...streams.optouts import OptOut
from ...streams.stitch import Pending

V = TypeVar("V")
Key = tuple[str, str]
"""An entry of the state: (kind, key)."""

KINDS = ("dedupe", "pending", "opt_outs", "deliveries", "replies", "letters")
"""The kinds of entries a batch record holds (besides ``through`` and the actions' settings)."""

_MISSING = object()


class Undo:
    """The writes of one event, undone when its processing fails (the pipeline's savepoint)."""

    def __init__(self) -> None:
        self.log: list[tuple[dict[str, Any], str, Any]] | None = None

    def note(self, mapping: dict[str, Any], key: str) -> None:
        if self.log is not None:
            self.log.append((mapping, key, mapping.get(key, _MISSING)))

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        self.log = log = list[tuple[dict[str, Any], str, Any]]()
        try:
            yield
        except BaseException:
            for mapping, key, value in reversed(log):
                if value is _MISSING:
                    mapping.pop(key, None)
                else:
                    mapping[key] = value
            raise
        finally:
            self.log = None


class PartitionState:
    """A raw partition's state and its open batch."""

    def __init__(self, partition: int) -> None:
        self.partition = partition
        self.undo = Undo()
        self.dedupe: Timed[float] = Timed(self, "dedupe", lambda seen: seen, lambda seen: seen)
        self.pending: Timed[Pending] = Timed(self, "pending", _pending_json, lambda group: group.first_seen)
        self.opt_outs: Timed[OptOut] = Timed(self, "opt_outs", lambda o: [o.message_id, o.at], lambda o: o.at)
        self.deliveries: dict[str, dict[str, Any]] = {}
        """id -> {"s": pending|retry|delivered|dead, "n": attempts made, "at": due or final time,
        "r": round, "d": the delivery's fields while unfinished, "a": its attempts while unfinished}"""
        self.replies: dict[str, list[Any]] = {}
        """message id -> [delivery id, status, recipient, at, provider message id] (the reply ledger)"""
        self.letters: dict[str, list[Any]] = {}
        """dead letter id -> [stage, created at]: letters not replayed"""
        self.through = -1
        """The offset after the last raw event whose changes are in the table (-1: none yet)."""
        self.expected: int | None = None
        """The next raw offset to process (None: the first that comes)."""
        self.batch: dict[str, dict[str, Any]] = defaultdict(dict)
        self.events: list[EventT[bytes]] = []
        """Events of the open batch, acknowledged once it is written, in offset order."""
        self.last_offset = -1
        self.opened = 0.0
        """When the open batch got its first change (monotonic; 0: nothing to write)."""
        self.due: list[tuple[float, str]] = []
        """(due time, delivery id) of the retries, a heap."""
        self.open: set[str] = set()
        """Ids of the deliveries not finished (for the backlog gauges)."""
        self.expiring: list[tuple[float, str, str]] = []
        """(when, kind, key) of final deliveries and replies to forget then, a heap."""
        self.records = Records()
        self.seq = 0
        """The next record's number: records are named ``<partition>:<seq>`` and apply in that order."""
        """The next record's number: records are named ``<partition>:<seq>`` and apply in that order."""

    def note(self, kind: str, key: str, value: Any) -> None:
        """A change for the next batch record (None: the key is gone)."""
        batch = self.batch[kind]
        self.undo.note(batch, key)
        batch[key] = value
        if not self.opened:
            self.opened = time.monotonic()

    def set(self, kind: str, mapping: dict[str, Any], key: str, value: Any, encoded: Any) -> None:
        self.undo.note(mapping, key)
        mapping[key] = value
        self.note(kind, key, encoded)

    def delete(self, kind: str, mapping: dict[str, Any], key: str) -> None:
        if key in mapping:
            self.undo.note(mapping, key)
            del mapping[key]
            self.note(kind, key, None)

    def has_batch(self) -> bool:
        return bool(self.events) or any(self.batch.values())

    def take_batch(self) -> dict[str, Any]:
        """The open batch as a record, and a fresh batch opened."""
        if self.last_offset >= 0:
            self.through = max(self.through, self.last_offset + 1)
        record: dict[str, Any] = {"through": self.through, "seq": self.seq}
        self.seq += 1
        record.update((kind, changes) for kind, changes in self.batch.items() if changes)
        self.batch = defaultdict(dict)
        self.opened = 0.0
        return record

    def apply(self, record: dict[str, Any], actions: dict[str, dict[str, Any]]) -> None:
        """A record read back at recovery (records apply in the order they were written)."""
        self.through = max(self.through, record["through"])
        self.seq = max(self.seq, record["seq"] + 1)
        actions.update(record.get("actions", {}))
        self.dedupe.load(record.get("dedupe", {}), lambda seen: seen)
        self.pending.load(record.get("pending", {}), _pending_from_json)
        self.opt_outs.load(record.get("opt_outs", {}), lambda data: OptOut(*data))
        for kind, mapping in (("deliveries", self.deliveries), ("replies", self.replies), ("letters", self.letters)):
            for key, value in record.get(kind, {}).items():
                if value is None:
                    mapping.pop(key, None)
                else:
                    mapping[key] = value


class Timed(Generic[V]):
    """A :class:`~smsroute.streams.state.TimedStore` over one dict of a partition's state, with a
    heap of first-seen times so that expiry finds the old keys without scanning them all."""

    def __init__(
        self, state: PartitionState, kind: str, encode: Callable[[V], Any], stamp: Callable[[V], float]
    ) -> None:
        self.state, self.kind, self.encode, self.stamp = state, kind, encode, stamp
        self.data: dict[str, V] = {}
        self._heap: list[tuple[float, str]] = []

    def get(self, key: str) -> V | None:
        return self.data.get(key)

    def __setitem__(self, key: str, value: V) -> None:
        stamp = self.stamp(value)
        old = self.data.get(key)
        if old is None or self.stamp(old) != stamp:
            heapq.heappush(self._heap, (stamp, key))
        self.state.set(self.kind, self.data, key, value, self.encode(value))

    def __delitem__(self, key: str) -> None:
        self.state.delete(self.kind, self.data, key)

    def __len__(self) -> int:
        return len(self.data)

    def older_than(self, moment: float) -> list[str]:
        """Keys first written before ``moment`` (each reported once per time it was written with)."""
        heap, due = self._heap, dict[str, None]()
        while heap and heap[0][0] < moment:
            stamp, key = heapq.heappop(heap)
            value = self.data.get(key)
            if value is not None and self.stamp(value) == stamp:
                due[key] = None
        return list(due)

    def forget_before(self, moment: float) -> None:
        for key in self.older_than(moment):
            del self[key]

    def first(self) -> float | None:
        """The oldest time in the heap (perhaps of a key since rewritten: a cheap lower bound)."""
        return self._heap[0][0] if self._heap else None

    def load(self, entries: dict[str, Any], decode: Callable[[Any], V]) -> None:
        for key, value in entries.items():
            if value is None:
                self.data.pop(key, None)
            else:
                self.data[key] = decoded = decode(value)
                heapq.heappush(self._heap, (self.stamp(decoded), key))


class Records:
    """Which batch records still hold a live entry: the others are deleted from the table.

    An entry is live in the latest record that mentions its key. A deletion stays live while an
    older record still holds a value of the key (or recovery would bring the value back). The
    newest record is always kept: it carries the highest ``through``."""

    def __init__(self) -> None:
        self.latest: dict[Key, str] = {}
        self.deleted: set[Key] = set()
        """Keys whose latest mention is a deletion."""
        self.mentions: Counter[Key] = Counter()
        self.keys: dict[str, list[Key]] = {}
        self.live: Counter[str] = Counter()
        self.newest: str | None = None
        self.dead: list[str] = []
        """Records to delete at the next write."""

    def written(self, name: str, record: dict[str, Any]) -> None:
        """Account for a record written (or read back at recovery) under ``name``."""
        keys = self.keys[name] = []
        for kind in KINDS:
            for key, value in record.get(kind, {}).items():
                entry = (kind, key)
                previous = self.latest.get(entry)
                if previous is not None and self._needed(entry):
                    self._release(previous)
                self.latest[entry] = name
                self.mentions[entry] += 1
                keys.append(entry)
                if value is None:
                    self.deleted.add(entry)
                else:
                    self.deleted.discard(entry)
                if self._needed(entry):
                    self.live[name] += 1
        newest, self.newest = self.newest, name
        if newest is not None and not self.live[newest]:
            self._drop(newest)

    def take_dead(self) -> list[str]:
        dead, self.dead = self.dead, []
        return dead

    def _needed(self, entry: Key) -> bool:
        return entry not in self.deleted or self.mentions[entry] > 1

    def _release(self, name: str) -> None:
        self.live[name] -= 1
        if not self.live[name] and name != self.newest:
            self._drop(name)

    def _drop(self, name: str) -> None:
        del self.live[name]
        self.dead.append(name)
        for entry in self.keys.pop(name, ()):
            self.mentions[entry] -= 1
            if not self.mentions[entry]:
                del self.mentions[entry]
                self.latest.pop(entry, None)
                self.deleted.discard(entry)
            elif self.mentions[entry] == 1 and entry in self.deleted and self.latest[entry] != name:
                self._release(self.latest[entry])  # the deletion no longer hides anything


def in_order(records: Iterable[tuple[str, dict[str, Any]]]) -> list[tuple[str, dict[str, Any]]]:
    """Records of one partition in the order they were written."""
    return sorted(records, key=lambda named: int(named[1]["seq"]))


def _pending_json(group: Pending) -> dict[str, Any]:
    return {"first_seen": group.first_seen, "parts": {str(i): part.to_json() for i, part in group.parts.items()}}


def _pending_from_json(data: dict[str, Any]) -> Pending:
    return Pending(data["first_seen"], {int(i): Part.from_json(part) for i, part in data["parts"].items()})
