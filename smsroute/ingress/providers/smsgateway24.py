"""SMSGateway24 (an Android phone as gateway): JSON webhooks for incoming SMS and delivery status.

Incoming SMS carry ``address``, ``date``, ``date_sent``, ``body``, ``internal_id``, ``sim``,
``sms_id``, ``device_id`` and ``device_name``; newer payloads have ``channel_id`` instead of
``sim``, plus ``type``. Delivery reports carry ``sms_id``, ``status_id``, ``status_message``,
``sendto``, ``senttime``, ``sim`` and ``device_id``. The documents type ``address`` as an int, real
phones send strings: values are kept as given, never refused for their type, and status codes
unknown today are accepted (they are mapped downstream). A JSON list is a batch.
"""

from __future__ import annotations

from typing import Any

from ...events import EventKind
from ..base import Adapter, Fields, Incoming, require_each

REQUIRED: dict[EventKind, tuple[str, ...]] = {
    "inbound": ("address", "body", "sms_id"),  # sms_id is the provider's message id: the dedupe key
    "status": ("sms_id", "status_id"),
}


class SMSGateway24(Adapter):
    provider = "smsgateway24"
    kinds = frozenset({"inbound", "status"})

    def validate(self, request: Incoming) -> list[Fields]:
        messages = request.json_messages()
        require_each(messages, lambda fields: REQUIRED[request.kind])
        return messages

    def key(self, kind: EventKind, fields: Fields) -> str:
        if kind == "status":
            return f"{self.provider}:status:{fields['sms_id']}"
        return f"{self.provider}:{fields['address']}:{_text(fields.get('device_id'))}"


def _text(value: Any) -> str:
    """A key part: absent or null is empty, an int and its string give the same key."""
    return "" if value is None else str(value)


ADAPTER = SMSGateway24
