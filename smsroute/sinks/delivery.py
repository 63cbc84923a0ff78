"""A delivery: one routed message for one action, the unit every sink retries and dead-letters."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ..message import InboundMessage


@dataclass(frozen=True, slots=True)
class Delivery:
    id: str
    """Stable across retries and restarts: the webhook-id receivers dedupe on."""
    message_id: str
    route: str
    sink: str
    """webhook, email or sms_reply."""
    action: dict[str, Any]
    """The action's settings as they were when the message was routed."""
    message: dict[str, Any]
    """The canonical message JSON (``route`` and ``rules_version`` set)."""
    received_at: float
    round: int = 0
    """0 as routed; n after its n-th replay from dead letters."""

    @classmethod
    def of(cls, message: InboundMessage, route: str, index: int, sink: str, action: dict[str, Any]) -> Delivery:
        digest = hashlib.sha256(f"{message.id}\x1f{route}\x1f{index}".encode()).hexdigest()
        return cls(
            id=f"msg_{digest[:32]}",
            message_id=message.id,
            route=route,
            sink=sink,
            action=action,
            message=message.to_json(),
            received_at=message.received_at.timestamp(),
        )

    @property
    def destination(self) -> str:
        """What deliveries queue behind: one receiver's slowness must not hold back the others."""
        return destination(self.sink, self.action)

    def body(self) -> str:
        return json.dumps(self.message, ensure_ascii=False, separators=(",", ":"))


def destination(sink: str, action: dict[str, Any]) -> str:
    """A webhook's scheme://host:port; other sinks queue by their kind."""
    if sink == "webhook":
        url = urlsplit(action["url"])
        return f"{url.scheme}://{url.netloc}"
    return sink


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """What could not be processed or delivered, with the reason and what is needed to replay it."""

    stage: str
    """normalize, route or deliver."""
    reason: str
    payload: bytes
    """The raw event record (normalize, route) or the delivery's message JSON (deliver)."""
    delivery_id: str | None = None
