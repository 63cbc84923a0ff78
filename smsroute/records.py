"""Avro forms of what the Kafka engine puts on its topics: deliveries, attempts, dead letters and
delivery reports.

Each record is encoded with its own schema (``schemas/<name>.v<n>.avsc``) and revision byte; a
record carried inside another (the message inside a delivery, a delivery inside a dead letter) is
carried in its own encoding, so each family evolves on its own."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

from .avro import codec
from .sinks.delivery import DeadLetter, Delivery, body_of
from .streams.reports import DeliveryReport


def encode_message(message: dict[str, Any]) -> bytes:
    """The canonical message JSON (``InboundMessage.to_json()``) as a ``message`` record."""
    return codec("message").encode({**message, "extra": json.dumps(message["extra"], ensure_ascii=False)})


def decode_message(data: bytes) -> dict[str, Any]:
    """The canonical message JSON again, with the same keys in the same order."""
    record = codec("message").decode(data)
    record["extra"] = json.loads(record["extra"])
    return record


def encode_delivery(delivery: Delivery) -> bytes:
    return codec("delivery").encode(
        {
            "id": delivery.id,
            "message_id": delivery.message_id,
            "route": delivery.route,
            "sink": delivery.sink,
            "destination": delivery.destination,
            "action": json.dumps(delivery.action, ensure_ascii=False),
            "message": encode_message(delivery.message),
            "received_at": delivery.received_at,
            "round": delivery.round,
        }
    )


def decode_delivery(data: bytes) -> Delivery:
    record = codec("delivery").decode(data)
    return Delivery(
        id=record["id"],
        message_id=record["message_id"],
        route=record["route"],
        sink=record["sink"],
        action=json.loads(record["action"]),
        body=body_of(decode_message(record["message"])),
        received_at=record["received_at"],
        round=record["round"],
    )


def encode_report(report: DeliveryReport) -> bytes:
    return codec("delivery_report").encode({name: getattr(report, name) for name in report.__slots__})


def decode_report(data: bytes) -> DeliveryReport:
    return DeliveryReport(**codec("delivery_report").decode(data))


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    """One try of a delivery as the attempts topic keeps it (schema ``attempt``)."""

    delivery_id: str
    message_id: str
    route: str
    sink: str
    round: int
    attempt: int
    at: float
    outcome: Literal["delivered", "failed", "suppressed"]
    status: int | None
    error: str
    duration: float
    next: Literal["done", "retry", "dead_letter"]
    next_at: float | None = None

    def encode(self) -> bytes:
        return codec("attempt").encode({name: getattr(self, name) for name in self.__slots__})

    @classmethod
    def decode(cls, data: bytes) -> AttemptRecord:
        return cls(**codec("attempt").decode(data))


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
