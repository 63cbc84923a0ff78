"""Bandwidth Messaging (v2) callbacks: always a JSON array of events, one event per message.

Inbound events are ``message-received``: ``to`` (our number), ``message.id``, ``message.from``,
``message.owner`` (ours, in a group message the copy's own number), ``message.to[]`` (every
recipient), ``message.text``, ``message.media[]`` (MMS), ``message.segmentCount`` (Bandwidth
delivers the text joined), ``message.time``. Status events are ``message-sending``,
``message-sent``, ``message-delivered``, ``message-failed`` (with ``errorCode``) and
``message-read``. An event of the wrong kind for the endpoint is refused with 400 naming the right
one: point the application's callbacks at ``/inbound/<name>`` and our replies' at ``/status/<name>``.

Bandwidth does not sign callbacks: the application logs in with HTTP Basic auth (``username``,
``password``); without them configured, use an IP allow-list. It retries anything but a 2xx for 24
hours (4xx included) and waits 10 seconds; the answer is an empty 200.
"""

from __future__ import annotations

from aiohttp import web

from ..models.message import Media
from ..models.part import Part
from ..models.raw import EventKind, RawEvent
from ..models.report import DeliveryReport, ReportStatus
from .base import (
    BasicAuthConfig,
    BasicAuthReceiver,
    Incoming,
    Message,
    Normalizer,
    bad_request,
    require_paths,
)
from .kit import Fields, at, fields_of, parse_time, phone

STATUSES: dict[str, ReportStatus] = {
    "message-sending": "pending",
    "message-sent": "sent",
    "message-delivered": "delivered",
    "message-failed": "failed",
    "message-read": "delivered",
}
"""Status event type -> ours (``message-read`` is RBM's, after delivery)."""
TYPES: dict[EventKind, frozenset[str]] = {"inbound": frozenset({"message-received"}), "status": frozenset(STATUSES)}


class BandwidthConfig(BasicAuthConfig):
    """Bandwidth logs in with the user name and password set on the messaging application."""


class Receiving(BasicAuthReceiver):
    provider = "bandwidth"
    answer_summary = "200, empty"
    kinds = frozenset({"inbound", "status"})
    config_class = BandwidthConfig
    config: BandwidthConfig

    def validate(self, request: Incoming) -> list[Fields]:
        events = request.json_messages()
        for number, event in enumerate(events, 1):
            where = f" in event {number} of {len(events)}" if len(events) > 1 else ""
            kind = event.get("type")
            if kind not in TYPES[request.kind]:
                other = next((name for name, types in TYPES.items() if kind in types), None)
                hint = f": {kind} events go to /{other}/{self.name}" if other else ""
                raise bad_request(f"type {str(kind)[:60]!r}{where} is not received on /{request.kind}{hint}")
            paths = ["message.id", "message.from"] if request.kind == "inbound" else ["message.id"]
            require_paths(event, paths, where)
            if request.kind == "inbound" and _owner(event) is None:
                raise bad_request(f"missing required field{where}: message.owner (or to)")
        return events

    def split(self, request: Incoming, messages: list[Fields]) -> list[Message]:
        return self.each(request.kind, messages)

    def key(self, kind: EventKind, fields: Fields) -> str:
        if kind == "status":
            return f"{self.provider}:status:{at(fields, 'message.id')}"
        return f"{self.provider}:{at(fields, 'message.from')}:{_owner(fields)}"

    def answer(self, request: Incoming, messages: list[Message]) -> web.Response:
        return web.Response(status=200)


def _owner(event: Fields) -> str | None:
    """Our number: the message's owner (the copy's own number in a group message), else ``to``."""
    owner = at(event, "message.owner") or event.get("to")
    return None if owner is None else str(owner)


class Normalizing(Normalizer):
    provider = "bandwidth"

    def normalize(self, event: RawEvent, region: str | None) -> Part:
        if event.kind != "inbound":
            return super().normalize(event, region)
        fields = fields_of(event)
        message = fields.get("message")
        message = message if isinstance(message, dict) else {}
        message_id = str(message.get("id") or "")
        extra = {name: message[name] for name in ("applicationId", "tag") if message.get(name)}
        if fields.get("carrierName"):
            extra["carrierName"] = fields["carrierName"]
        segments = message.get("segmentCount")
        if isinstance(segments, int) and not isinstance(segments, bool) and segments > 1:
            extra["segments"] = segments  # delivered joined: told, not stitched
        media = message.get("media")
        return self.part(
            event,
            region,
            sender=str(message.get("from") or ""),
            recipient=_owner(fields) or "",
            text=str(message.get("text") or ""),
            dedupe_key=f"{self.provider}:{message_id}",
            provider_message_id=message_id,
            provider_time=parse_time(str(message.get("time") or "")),
            media=tuple(Media(url, "") for url in media if isinstance(url, str)) if isinstance(media, list) else (),
            extra=extra,
        )

    def report(self, event: RawEvent, region: str | None) -> DeliveryReport:
        if event.kind != "status":
            return super().report(event, region)
        fields = fields_of(event)
        kind = str(fields.get("type") or "")
        code = fields.get("errorCode")
        return DeliveryReport(
            provider=self.provider,
            provider_message_id=str(at(fields, "message.id") or ""),
            status=STATUSES.get(kind, "unknown"),
            code="" if code is None else str(code),
            description=str(fields.get("description") or kind),
            recipient=phone(str(fields.get("to") or ""), region, "to")[0],
            received_at=self.received_at(event),
            provider_time=parse_time(str(fields.get("time") or "")),
        )
