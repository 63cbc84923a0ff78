"""A delivery: one routed message for one action, the unit every sink retries and dead-letters."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from .avro import codec
from .message import InboundMessage, decode_message, encode_message


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
    body: str
    """The canonical message as JSON text (``route`` and ``rules_version`` set), what a webhook posts."""
    received_at: float
    round: int = 0
    """0 as routed; n after its n-th replay from dead letters."""

    @classmethod
    def of(
        cls, message: InboundMessage, route: str, index: int, sink: str, action: dict[str, Any], body: str
    ) -> Delivery:
        """``body``: ``message`` as routed, in JSON (one text for all the actions of a route)."""
        digest = hashlib.sha256(f"{message.id}\x1f{route}\x1f{index}".encode()).hexdigest()
        return cls(
            id=f"msg_{digest[:32]}",
            message_id=message.id,
            route=route,
            sink=sink,
            action=action,
            body=body,
            received_at=message.received_at.timestamp(),
        )

    @property
    def message(self) -> dict[str, Any]:
        """The canonical message's fields, for sinks that template them."""
        fields: dict[str, Any] = json.loads(self.body)
        return fields

    @property
    def destination(self) -> str:
        """What deliveries queue behind: one receiver's slowness must not hold back the others."""
        return destination(self.sink, self.action)

    def encode(self) -> bytes:
        """The delivery as a ``delivery`` record; the message inside it in its own encoding."""
        return codec("delivery").encode(
            {
                "id": self.id,
                "message_id": self.message_id,
                "route": self.route,
                "sink": self.sink,
                "destination": self.destination,
                "action": json.dumps(self.action, ensure_ascii=False),
                "message": encode_message(self.message),
                "received_at": self.received_at,
                "round": self.round,
            }
        )

    @classmethod
    def decode(cls, data: bytes) -> Delivery:
        record = codec("delivery").decode(data)
        return cls(
            id=record["id"],
            message_id=record["message_id"],
            route=record["route"],
            sink=record["sink"],
            action=json.loads(record["action"]),
            body=body_of(decode_message(record["message"])),
            received_at=record["received_at"],
            round=record["round"],
        )


def body_of(fields: dict[str, Any]) -> str:
    """A canonical message's JSON text as webhooks receive it (and signatures cover)."""
    return json.dumps(fields, ensure_ascii=False, separators=(",", ":"))


def destination(sink: str, action: dict[str, Any]) -> str:
    """A webhook's scheme://host:port; other sinks queue by their kind."""
    if sink == "webhook":
        url = urlsplit(action["url"])
        return f"{url.scheme}://{url.netloc}"
    return sink
