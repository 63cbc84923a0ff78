"""Infobip inbound SMS (the default MO_JSON_2 renderer) and outbound SMS delivery reports: a JSON
object whose ``results[]`` holds one message (or report) each, so a request is a batch and makes one
event per result, in order. A result missing a required field refuses the whole request (400,
nothing logged): it is one HTTP request, retried whole.

Inbound results: ``messageId``, ``from`` and ``to`` (digits without ``+``), ``text``, ``cleanText``
(the text without the keyword), ``keyword`` (the one provider here that sends its match: kept as the
part's ``extra["keyword"]``), ``receivedAt``, ``smsCount`` (Infobip joins long messages itself),
``price``, ``callbackData``. Reports: ``messageId``, ``to``, ``status`` {``groupId``, ``id``,
``name``...}, ``error`` {...}, ``doneAt``: mapped by status group, the status id kept as the code.

Authentication: HTTP Basic (the subscription's BASIC security setting), or none with an IP
allow-list for number-level configurations. Infobip's HMAC security setting is not supported: no
public document or SDK says which header it signs into or over what, and a scheme guessed would
refuse genuine traffic. The answer is an empty 200; Infobip documents no retry policy, so a
transient fault answers 503 (which it is safest to assume it retries).
"""

from __future__ import annotations

from aiohttp import web

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
from .kit import Fields, at, fields_of, international, parse_time, phone

REQUIRED: dict[EventKind, tuple[str, ...]] = {
    "inbound": ("messageId", "from", "to", "text"),
    "status": ("messageId", "status.groupId"),
}
GROUPS: dict[str, ReportStatus] = {"1": "sent", "2": "failed", "3": "delivered", "4": "failed", "5": "failed"}
"""Status group -> ours: PENDING (forwarded, not confirmed), UNDELIVERABLE, DELIVERED, EXPIRED, REJECTED."""


class InfobipConfig(BasicAuthConfig):
    """Infobip logs in with the BASIC security setting of the subscription (HMAC is not supported)."""


class Receiving(BasicAuthReceiver):
    provider = "infobip"
    answer_summary = "200, empty"
    kinds = frozenset({"inbound", "status"})
    config_class = InfobipConfig
    config: InfobipConfig

    def validate(self, request: Incoming) -> list[Fields]:
        document = request.json()
        results = document.get("results") if isinstance(document, dict) else None
        if not isinstance(results, list) or not results:
            raise bad_request("body must be a JSON object with a non-empty results list")
        for number, result in enumerate(results, 1):
            where = f" in result {number} of {len(results)}" if len(results) > 1 else ""
            if not isinstance(result, dict):
                raise bad_request(f"result {number} of {len(results)} is not a JSON object")
            require_paths(result, REQUIRED[request.kind], where)
        return results

    def split(self, request: Incoming, messages: list[Fields]) -> list[Message]:
        return self.each(request.kind, messages)

    def key(self, kind: EventKind, fields: Fields) -> str:
        if kind == "status":
            return f"{self.provider}:status:{fields['messageId']}"
        return f"{self.provider}:{fields['from']}:{fields['to']}"

    def answer(self, request: Incoming, messages: list[Message]) -> web.Response:
        return web.Response(status=200)


class Normalizing(Normalizer):
    provider = "infobip"

    def normalize(self, event: RawEvent, region: str | None) -> Part:
        if event.kind != "inbound":
            return super().normalize(event, region)
        fields = fields_of(event)
        message_id = str(fields.get("messageId") or "")
        extra = {name: fields[name] for name in ("keyword", "cleanText", "callbackData") if fields.get(name)}
        count = fields.get("smsCount")
        if isinstance(count, int) and not isinstance(count, bool) and count > 1:
            extra["segments"] = count  # joined by Infobip: told, not stitched
        return self.part(
            event,
            region,
            sender=international(str(fields.get("from") or "")),
            recipient=international(str(fields.get("to") or "")),
            text=str(fields.get("text") or ""),
            dedupe_key=f"{self.provider}:{message_id}",
            provider_message_id=message_id,
            provider_time=parse_time(str(fields.get("receivedAt") or "")),
            extra=extra,
        )

    def report(self, event: RawEvent, region: str | None) -> DeliveryReport:
        if event.kind != "status":
            return super().report(event, region)
        fields = fields_of(event)
        code = at(fields, "status.id")
        return DeliveryReport(
            provider=self.provider,
            provider_message_id=str(fields.get("messageId") or ""),
            status=GROUPS.get(str(at(fields, "status.groupId")), "unknown"),
            code="" if code is None else str(code),
            description=str(at(fields, "status.description") or at(fields, "status.name") or ""),
            recipient=phone(international(str(fields.get("to") or "")), region, "to")[0],
            received_at=self.received_at(event),
            provider_time=parse_time(str(fields.get("doneAt") or "")),
        )
