"""The raw event: what the ingress writes to the log for every provider message."""

from __future__ import annotations

import dataclasses
import itertools
import os
from dataclasses import dataclass, field
from typing import Any, Literal

from .avro import codec

EventKind = Literal["inbound", "status"]


@dataclass(slots=True)
class RawEvent:
    """One provider message as received, before any interpretation (schema ``raw_event``)."""

    ingress: str
    provider: str
    kind: EventKind
    received_at_us: int
    remote_addr: str
    method: str
    path: str
    query: str
    content_type: str
    headers: dict[str, str]
    body: bytes
    key: str
    batch_index: int = 0
    batch_size: int = 1
    event_id: str = field(default_factory=lambda: _next_id())

    def encode(self) -> bytes:
        return codec("raw_event").encode({name: getattr(self, name) for name in _FIELDS})

    @classmethod
    def decode(cls, data: bytes) -> RawEvent:
        record: dict[str, Any] = codec("raw_event").decode(data)
        return cls(**record)


_ID_PREFIX = os.urandom(8).hex()
_ID_COUNTER = itertools.count()


def _next_id() -> str:
    """Unique without a system call per event: a random per-process prefix and a counter."""
    return f"{_ID_PREFIX}{next(_ID_COUNTER):016x}"


_FIELDS = tuple(f.name for f in dataclasses.fields(RawEvent))
