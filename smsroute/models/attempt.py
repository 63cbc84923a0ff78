"""A delivery attempt: what one try came to, and the record of it the Kafka engine keeps."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .avro import codec


@dataclass(frozen=True, slots=True)
class Attempt:
    """What one try of a delivery came to. ``suppressed``: a guard decided it must not be delivered
    (an SMS reply to an opted-out number...): final, counted, not retried, not a dead letter."""

    outcome: Literal["delivered", "failed", "suppressed"]
    status: int | None
    """The receiver's answer: an HTTP status, an SMTP reply code."""
    error: str
    """Why it failed or was suppressed; empty when delivered."""
    duration: float
    retry_after: float | None = None
    code: str = "error"
    """Why it failed, as a bounded metric label (http_5xx, smtp_4xx, timeout, network, ...); unused when delivered."""
    permanent: bool = False
    """The receiver refused for good (an SMTP 5xx, a template that cannot render): no retry can help,
    so the delivery is a dead letter at once rather than after the whole retry schedule."""


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
