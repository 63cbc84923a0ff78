"""Delivery reports (DLRs): what a provider says became of an SMS it sent, in one vocabulary.

Every provider's status codes map to ``pending`` (not sent yet), ``sent`` (handed to the network),
``delivered`` or ``failed``; a code no document lists is kept as ``unknown`` rather than guessed."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from .avro import codec

ReportStatus = Literal["pending", "sent", "delivered", "failed", "unknown"]
FINAL: frozenset[ReportStatus] = frozenset({"delivered", "failed"})


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    provider: str
    provider_message_id: str
    """The id the provider gave the SMS when it took it: how a report finds our reply."""
    status: ReportStatus
    code: str
    """The provider's status code, as sent."""
    description: str
    recipient: str
    received_at: datetime
    provider_time: datetime | None = None

    def encode(self) -> bytes:
        return codec("delivery_report").encode({name: getattr(self, name) for name in self.__slots__})

    @classmethod
    def decode(cls, data: bytes) -> DeliveryReport:
        return cls(**codec("delivery_report").decode(data))
