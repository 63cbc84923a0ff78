"""SMSGateway24 (an Android phone as gateway): JSON webhooks for incoming SMS and delivery status.

Incoming SMS carry ``address``, ``date``, ``date_sent``, ``body``, ``internal_id``, ``sim``,
``sms_id``, ``device_id`` and ``device_name``; newer payloads have ``channel_id`` instead of
``sim``, plus ``type``. Delivery reports carry ``sms_id``, ``status_id``, ``status_message``,
``sendto``, ``senttime``, ``sim`` and ``device_id``. The documents type ``address`` as an int, real
phones send strings: values are kept as given, never refused for their type, and status codes
unknown today are accepted (they are mapped downstream). A JSON list is a batch.

Delivery reports map every status code of the document (:data:`STATUSES`); ``sms_id`` is the id
SMSGateway24's ``addsms`` returned when we queued a reply, which links the report to it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from ..models.part import Part
from ..models.raw import EventKind, RawEvent
from ..models.report import DeliveryReport, ReportStatus
from .base import Incoming, Normalizer, Receiver, require_each
from .kit import Fields, fields_of, parse_time, phone

REQUIRED: dict[EventKind, tuple[str, ...]] = {
    "inbound": ("address", "body", "sms_id"),  # sms_id is the provider's message id: the dedupe key
    "status": ("sms_id", "status_id"),
}


class Receiving(Receiver):
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


class Normalizing(Normalizer):
    provider = "smsgateway24"

    def normalize(self, event: RawEvent, region: str | None) -> Part:
        """The phone posts no number of its own: ``to`` is the device id (flagged as not E.164)."""
        if event.kind != "inbound":
            return super().normalize(event, region)
        fields = fields_of(event)
        sms_id = _text(fields.get("sms_id"))
        return self.part(
            event,
            region,
            sender=_text(fields.get("address")),
            recipient=_text(fields.get("device_id")),
            text=_text(fields.get("body")),
            dedupe_key=f"{self.provider}:{_text(fields.get('device_id'))}:{sms_id}",
            provider_message_id=sms_id,
            provider_time=parse_time(fields.get("date_sent") or fields.get("date"), "%Y-%m-%d %H:%M:%S"),
            extra={name: fields[name] for name in EXTRA if fields.get(name) is not None},
        )

    def report(self, event: RawEvent, region: str | None) -> DeliveryReport:
        if event.kind != "status":
            return super().report(event, region)
        fields = fields_of(event)
        code = _text(fields.get("status_id")).strip()
        status, meaning = STATUSES.get(code, ("unknown", "a status code the document does not list"))
        words = _text(fields.get("status_message")).strip()
        return DeliveryReport(
            provider=self.provider,
            provider_message_id=_text(fields.get("sms_id")),
            status=status,
            code=code,
            description=f"{meaning}: {words}" if words else meaning,
            recipient=phone(_text(fields.get("sendto")), region, "to")[0],
            received_at=datetime.fromtimestamp(event.received_at_us / 1_000_000, UTC),
            provider_time=parse_time(fields.get("senttime"), "%Y-%m-%d %H:%M:%S"),
        )


STATUSES: dict[str, tuple[ReportStatus, str]] = {
    "1": ("pending", "waiting on the server"),
    "2": ("pending", "taken by the phone"),
    "3": ("pending", "queued for sending on the phone"),
    # 5 is the status of an incoming SMS: on a report about one we sent it says nothing final.
    "5": ("pending", "incoming SMS"),
    "6": ("sent", "sent by the phone"),
    "7": ("delivered", "delivered"),
    "8": ("failed", "not delivered"),
    "9": ("failed", "not sent: generic error"),
    "10": ("failed", "not sent: no service"),
    "11": ("failed", "not sent: null PDU"),
    "12": ("failed", "not sent: radio off"),
    "100": ("failed", "not sent: not allowed (the app lacks the SMS permission)"),
    "101": ("failed", "not sent: not allowed (the app lacks the SMS permission)"),
}
"""status_id -> (status, meaning), for every code of SMSGateway24's status webhook document."""


EXTRA = ("device_id", "device_name", "sim", "channel_id", "type", "internal_id")


def _text(value: Any) -> str:
    """A key part: absent or null is empty, an int and its string give the same key."""
    return "" if value is None else str(value)
