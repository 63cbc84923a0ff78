"""The raw event: what the ingress writes to the log for every provider message."""

from __future__ import annotations

import dataclasses
import uuid
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
    event_id: str = field(default_factory=lambda: uuid.uuid4().hex)

    def encode(self) -> bytes:
        return codec("raw_event").encode({name: getattr(self, name) for name in _FIELDS})

    @classmethod
    def decode(cls, data: bytes) -> RawEvent:
        record: dict[str, Any] = codec("raw_event").decode(data)
        return cls(**record)


_FIELDS = tuple(f.name for f in dataclasses.fields(RawEvent))
