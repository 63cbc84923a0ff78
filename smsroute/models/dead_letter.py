"""A dead letter: what could not be processed or delivered, with the reason, ready to replay."""

from __future__ import annotations

from dataclasses import dataclass, field

from .avro import codec


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """What could not be processed or delivered, with the reason and what is needed to replay it."""

    stage: str
    """normalize, route or deliver."""
    reason: str
    payload: bytes
    """The raw event record (normalize, route) or the delivery's message JSON (deliver)."""
    delivery_id: str | None = None


@dataclass(frozen=True, slots=True)
class DeadLetterRecord:
    """A dead letter as the dead-letter topic keeps it (schema ``dead_letter``). The latest record
    of an ``id`` is its state: a replay appends a copy with ``replayed_at`` set."""

    id: str
    stage: str
    reason: str
    payload: bytes
    created_at: float
    delivery_id: str | None = None
    delivery: bytes | None = None
    attempts: tuple[bytes, ...] = field(default=())
    replayed_at: float | None = None

    @classmethod
    def of(cls, letter: DeadLetter, letter_id: str, now: float) -> DeadLetterRecord:
        return cls(letter_id, letter.stage, letter.reason, letter.payload, now, letter.delivery_id)

    def encode(self) -> bytes:
        record = {name: getattr(self, name) for name in self.__slots__}
        record["attempts"] = list(self.attempts)
        return codec("dead_letter").encode(record)

    @classmethod
    def decode(cls, data: bytes) -> DeadLetterRecord:
        record = codec("dead_letter").decode(data)
        record["attempts"] = tuple(record["attempts"])
        return cls(**record)
