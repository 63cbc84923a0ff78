"""What every worker must see, whichever partition wrote it: the opt-out list (by number) and our
SMS replies (by the provider's id, for the delivery reports on them), in one Faust GlobalTable.

faust-streaming's advice for a GlobalTable shared by several workers is one partition and a
recovery buffer of one (else recovery may loop); with ``use_partitioner`` it can be written from any
partition and from a delivery attempt, and every worker reads every change from its changelog as a
standby. A change is visible at once on the worker that made it, and on the others once they have
read it (measured in docs/engines.md: tenths of a second).

A worker reads its own writes back from the changelog too, and a table applies what it reads: an
older entry read back would hide a newer one written since (a START read back as the STOP before
it). So a worker's own writes are kept aside until the changelog gives back the last of them, and
read first: each worker sees the changelog's order, with its own latest writes on top.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import faust
from faust.types import EventT

from ...streams.optouts import OptOut

log = logging.getLogger("smsroute.worker")

_GONE = object()
"""A deletion kept aside."""


def opt_out_key(number: str) -> str:
    return f"opt_out:{number}"


def reply_key(provider: str, provider_message_id: str) -> str:
    return f"reply:{provider}:{provider_message_id}"


class Shared:
    """The ``shared`` GlobalTable, with this worker's writes on top until they are read back."""

    def __init__(self, app: faust.App) -> None:
        self.table = app.GlobalTable(
            "shared",
            key_type=str,
            value_type=None,
            partitions=1,
            recovery_buffer_size=1,
            use_partitioner=True,
            on_changelog_event=self._read,
        )
        self.mine: dict[str, Any] = {}
        """Keys written here and not read back yet: their latest value (or _GONE)."""

    def get(self, key: str) -> Any:
        value = self.mine.get(key)
        if value is None:
            return self.table.get(key)
        return None if value is _GONE else value

    def __setitem__(self, key: str, value: Any) -> None:
        self.mine[key] = value
        self.table[key] = value

    def pop(self, key: str) -> None:
        if self.get(key) is not None:
            self.mine[key] = _GONE
            self.table.pop(key, None)

    async def _read(self, event: EventT[Any]) -> None:
        """A record read from the changelog (before the table applies it): once it is this
        worker's latest write of the key, the table holds that value and the key is no longer
        kept aside. Logged with how long after it was written (the opt-outs' consistency)."""
        key, value = event.key, event.value
        if not isinstance(key, str):
            return
        mine = self.mine.get(key)
        if mine is not None and (mine == value or (mine is _GONE and value is None)):
            del self.mine[key]
        if isinstance(value, list):
            kind = key.split(":", 1)[0]
            log.info(
                f"shared {kind} read",
                extra={
                    "event": "shared_read",
                    "kind": kind,
                    "id": value[2] if kind == "opt_out" else value[0],
                    "lag": round(time.time() - event.message.timestamp, 4),
                },
            )


class SharedOptOuts:
    """The opt-out list (the core's :class:`~smsroute.streams.state.Store` of opt-outs, and the
    reply sink's :class:`~smsroute.sinks.sms_reply.OptOutList`) in the shared table, keyed by
    number: a STOP holds for the number in every conversation, on every worker. An entry is
    ``[stopped, at, message id]``, so that a START overwrites a STOP made from any partition (last
    write wins: one changelog partition). Changes wait in :attr:`writes` until their event was
    handled (none for an event whose processing failed); processing an event again writes the
    same entry again."""

    def __init__(self, shared: Shared) -> None:
        self.shared = shared
        self.writes: list[tuple[str, list[Any]]] = []

    def get(self, number: str) -> OptOut | None:
        key = opt_out_key(number)
        for written, entry in reversed(self.writes):
            if written == key:
                return _opt_out(entry)
        return _opt_out(self.shared.get(key))

    def __setitem__(self, number: str, opt_out: OptOut) -> None:
        self.writes.append((opt_out_key(number), [True, opt_out.at, opt_out.message_id]))

    def __delitem__(self, number: str) -> None:
        self.writes.append((opt_out_key(number), [False, time.time(), None]))

    def write(self) -> None:
        """The handled event's changes into the shared table."""
        for key, entry in self.writes:
            self.shared[key] = entry
        self.writes.clear()


def _opt_out(entry: list[Any] | None) -> OptOut | None:
    return OptOut(entry[2], entry[1]) if entry is not None and entry[0] else None
