"""A delivery: one routed message for one action, the unit every sink retries and dead-letters."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Literal
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
    body: str
    """The canonical message as JSON text (``route`` and ``rules_version`` set), what a webhook posts."""
    received_at: float
    round: int = 0
    """0 as routed; n after its n-th replay from dead letters."""

    @classmethod
    def of(cls, message: InboundMessage, route: str, index: int, sink: str, action: dict[str, Any], body: str) -> Delivery:
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
        return json.loads(self.body)

    @property
    def destination(self) -> str:
        """What deliveries queue behind: one receiver's slowness must not hold back the others."""
        return destination(self.sink, self.action)


def body_of(fields: dict[str, Any]) -> str:
    """A canonical message's JSON text as webhooks receive it (and signatures cover)."""
    return json.dumps(fields, ensure_ascii=False, separators=(",", ":"))


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
