"""The processing core's stores (``smsroute.streams.state``) on Faust tables.

A store serves the partition of the event being processed: every worker holds the tables of the
partitions assigned to it, and a key lives in the partition of the events that wrote it (all the
parts and retries of a message share one). Writes go to the table's local store (memory or
RocksDB) at once and to its changelog topic when :meth:`TableStore.flush` is awaited, still inside
the event: so the changelog records join the event's transaction (see ``transactions``) and the
state commits with the outputs it led to. Faust's own table writes would be sent later from a
background task, outside any transaction.

Each value carries its partition and a time (first seen, or due), so that expiry finds, per
partition, the keys older than a moment without scanning the table: an in-memory heap per
partition, rebuilt from the table after each recovery.
"""

from __future__ import annotations

import heapq
import json
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, Generic, TypeVar

from faust.streams import current_event
from faust.types import TableT

V = TypeVar("V")


class TableStore(Generic[V]):
    """A :class:`~smsroute.streams.state.TimedStore` over one Faust table (bytes keys and values)."""

    def __init__(
        self,
        table: TableT[bytes, bytes],
        encode: Callable[[V], Any],
        decode: Callable[[Any], V],
        stamp: Callable[[V], float],
    ) -> None:
        self.table = table
        self._encode, self._decode, self._stamp = encode, decode, stamp
        self._unsent: list[tuple[int, bytes, bytes | None]] = []
        self._undo: list[tuple[bytes, bytes | None]] | None = None
        """While a savepoint is open: each write in it, with the value it replaced."""
        self._index: defaultdict[int, list[tuple[float, bytes]]] = defaultdict(list)
        table.on_recover(self._rebuild_index)

    def get(self, key: str) -> V | None:
        raw = self.table.data.get(key.encode())
        return None if raw is None else self._decode(json.loads(raw)["v"])

    def __setitem__(self, key: str, value: V) -> None:
        partition = _partition()
        stamp = self._stamp(value)
        raw = json.dumps({"p": partition, "t": stamp, "v": self._encode(value)}, separators=(",", ":")).encode()
        if self._undo is not None:
            self._undo.append((key.encode(), self.table.data.get(key.encode())))
        self.table.data[key.encode()] = raw
        heapq.heappush(self._index[partition], (stamp, key.encode()))
        self._unsent.append((partition, key.encode(), raw))

    def __delitem__(self, key: str) -> None:
        replaced = self.table.data.pop(key.encode(), None)
        if self._undo is not None:
            self._undo.append((key.encode(), replaced))
        self._unsent.append((_partition(), key.encode(), None))

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """The writes of the block are undone (locally, and never sent to the changelog) when it raises."""
        unsent, undo = len(self._unsent), list[tuple[bytes, bytes | None]]()
        self._undo = undo
        try:
            yield
        except BaseException:
            for key, raw in reversed(undo):
                if raw is None:
                    self.table.data.pop(key, None)
                else:
                    self.table.data[key] = raw
            del self._unsent[unsent:]
            raise
        finally:
            self._undo = None

    def older_than(self, moment: float) -> Iterable[str]:
        """Keys of this event's partition whose time is before ``moment`` (each reported once
        per write: a key written again is reported again when its new time comes)."""
        heap = self._index[_partition()]
        due: dict[str, None] = {}
        while heap and heap[0][0] < moment:
            stamp, key = heapq.heappop(heap)
            raw = self.table.data.get(key)
            if raw is not None and json.loads(raw)["t"] == stamp:  # not rewritten or deleted since
                due[key.decode()] = None
        return list(due)

    def forget_before(self, moment: float) -> None:
        for key in self.older_than(moment):
            del self[key]

    async def flush(self) -> None:
        """Send the writes of this event to the changelog, within the event's transaction."""
        unsent, self._unsent = self._unsent, []
        for partition, key, raw in unsent:
            await self.table.changelog_topic.send(key=key, value=raw, partition=partition)

    async def _rebuild_index(self) -> None:
        self._index.clear()
        for key, raw in self.table.data.items():
            entry = json.loads(raw)
            self._index[entry["p"]].append((entry["t"], key))
        for heap in self._index.values():
            heapq.heapify(heap)

    def forget(self, partitions: set[int]) -> None:
        """Drop what this worker holds of partitions it no longer serves: another worker now
        writes them, so what is here may be stale (or never committed) when they come back."""
        stale = [key for key, raw in self.table.data.items() if json.loads(raw)["p"] in partitions]
        for key in stale:
            self.table.data.pop(key, None)
        for partition in partitions:
            self._index.pop(partition, None)


def _partition() -> int:
    event = current_event()
    if event is None:
        raise RuntimeError("table stores are used while processing an event")
    return event.message.partition
