"""Telnyx Messaging webhooks: one JSON event a request, ``{"data": {"event_type", "id", "payload"},
"meta": {"attempt"}}``. Inbound messages are ``message.received`` (payload: ``id``,
``from.phone_number``, ``to[]``, ``text``, ``encoding`` GSM-7 or UCS-2, ``parts``, ``media[]``,
``received_at``); delivery updates are ``message.sent`` and ``message.finalized`` (the outbound
message, its status in ``to[].status``, errors in ``errors[]``).

Telnyx signs each event with the account's Ed25519 key: ``telnyx-signature-ed25519`` (base64) over
``telnyx-timestamp|raw body``. With the public key configured both headers are required, the
signature must verify and the timestamp be within ``signature_max_age`` of the receive time (as
telnyx-python's ``verify_webhook_signature`` does, default 300 s).

Telnyx wants a 2xx within 2 seconds and tries a URL at most three times before its failover URL,
so the answer is an empty 200 sent as soon as the event is durable. A messaging profile has one
webhook URL for every event: an event of the wrong kind for the endpoint (``message.sent`` on
``/inbound``) is refused with 400 and a reason naming the right endpoint (set the profile's URL to
``/inbound/<name>`` and the per-message ``webhook_url`` of our replies to ``/status/<name>``).
"""

from __future__ import annotations

import base64
import binascii

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import Field, field_validator

from ..config import IngressConfig
from ..models.message import Encoding, Media
from ..models.part import Part
from ..models.raw import EventKind, RawEvent
from ..models.report import DeliveryReport, ReportStatus
from .base import Incoming, Normalizer, Receiver, bad_request, require_paths, unauthorized
from .kit import Fields, Unprocessable, at, fields_of, parse_time, phone

SIGNATURE_HEADER = "telnyx-signature-ed25519"
TIMESTAMP_HEADER = "telnyx-timestamp"
EVENTS: dict[EventKind, frozenset[str]] = {
    "inbound": frozenset({"message.received"}),
    "status": frozenset({"message.sent", "message.finalized"}),
}
REQUIRED: dict[EventKind, tuple[str, ...]] = {
    "inbound": ("data.payload.id", "data.payload.from.phone_number", "data.payload.to.0.phone_number"),
    "status": ("data.payload.id", "data.payload.to.0.status"),
}


class TelnyxConfig(IngressConfig):
    """Telnyx signs every webhook with Ed25519; the public key is in the Mission Control portal."""

    public_key: str | None = Field(
        None,
        description="The account's Ed25519 public key (base64, as the portal shows it); when set, every request "
        "must carry a valid telnyx-signature-ed25519 and a recent telnyx-timestamp.",
    )
    signature_max_age: float = Field(
        300, gt=0, description="Seconds a signed event's telnyx-timestamp may differ from the receive time."
    )

    @field_validator("public_key")
    @classmethod
    def _ed25519(cls, value: str | None) -> str | None:
        if value is not None:
            public_key(value)
        return value


def public_key(text: str) -> Ed25519PublicKey:
    """The key of a base64 Ed25519 public key (32 bytes); ValueError saying why when it is not one."""
    try:
        raw = base64.b64decode(text, validate=True)
    except binascii.Error:
        raise ValueError("not base64") from None
    if len(raw) != 32:
        raise ValueError(f"an Ed25519 public key is 32 bytes, this one {len(raw)}")
    return Ed25519PublicKey.from_public_bytes(raw)


def valid(key: Ed25519PublicKey, timestamp: str, body: bytes, given: str) -> bool:
    """Whether ``given`` (base64) is the Ed25519 signature of ``timestamp|body``."""
    try:
        key.verify(base64.b64decode(given, validate=True), timestamp.encode() + b"|" + body)
    except (binascii.Error, ValueError, InvalidSignature):
        return False
    return True


class Receiving(Receiver):
    provider = "telnyx"
    auth_scheme = "telnyx-signature-ed25519 over timestamp|body with public_key, 300 s window"
    answer_summary = "200, empty"
    kinds = frozenset({"inbound", "status"})
    config_class = TelnyxConfig
    headers = (TIMESTAMP_HEADER,)
    config: TelnyxConfig

    def __init__(self, name: str, config: IngressConfig) -> None:
        super().__init__(name, config)
        self.verifier = None if self.config.public_key is None else public_key(self.config.public_key)

    @property
    def signed(self) -> bool:
        return self.verifier is not None

    def authenticate(self, request: Incoming) -> None:
        if self.verifier is None:
            return
        given, timestamp = request.headers.get(SIGNATURE_HEADER), request.headers.get(TIMESTAMP_HEADER)
        if given is None or timestamp is None:
            raise unauthorized(f"missing signature: {SIGNATURE_HEADER} and {TIMESTAMP_HEADER} are required")
        if not valid(self.verifier, timestamp, request.body, given):
            raise unauthorized("bad signature")
        try:
            seconds = float(timestamp)
        except ValueError:
            raise unauthorized(f"non-numeric {TIMESTAMP_HEADER}") from None
        # after the signature, so a genuine but late event is told apart from a forgery; NaN fails too
        if not abs(request.received_at_us / 1_000_000 - seconds) <= self.config.signature_max_age:
            raise unauthorized("signature timestamp outside the allowed window")

    def validate(self, request: Incoming) -> list[Fields]:
        document = request.json()
        if not isinstance(document, dict) or not isinstance(document.get("data"), dict):
            raise bad_request("body must be a JSON object with a data object (a Telnyx webhook event)")
        event = at(document, "data.event_type")
        if event not in EVENTS[request.kind]:
            other = next((kind for kind, events in EVENTS.items() if event in events), None)
            where = f": {event} events go to /{other}/{self.name}" if other else ""
            raise bad_request(f"data.event_type {str(event)[:60]!r} is not received on /{request.kind}{where}")
        require_paths(document, REQUIRED[request.kind])
        payload = document["data"]["payload"]
        if request.kind == "inbound" and payload.get("text") is None and not payload.get("media"):
            raise bad_request("missing content: data.payload.text or data.payload.media is required")
        return [document]

    def key(self, kind: EventKind, fields: Fields) -> str:
        if kind == "status":
            return f"{self.provider}:status:{at(fields, 'data.payload.id')}"
        return f"{self.provider}:{at(fields, 'data.payload.from.phone_number')}:{_recipient(fields)}"


class Normalizing(Normalizer):
    provider = "telnyx"

    def normalize(self, event: RawEvent, region: str | None) -> Part:
        if event.kind != "inbound":
            return super().normalize(event, region)
        payload = _payload(fields_of(event))
        message_id = str(payload.get("id") or "")
        extra = {name: payload[name] for name in EXTRA if payload.get(name)}
        parts = payload.get("parts")
        if isinstance(parts, int) and not isinstance(parts, bool) and parts > 1:
            extra["segments"] = parts  # Telnyx delivers the message joined: told, not stitched
        return self.part(
            event,
            region,
            sender=str(at(payload, "from.phone_number") or ""),
            recipient=_recipient({"data": {"payload": payload}}),
            text=str(payload.get("text") or ""),
            encoding=ENCODINGS.get(str(payload.get("encoding")), "text"),
            dedupe_key=f"{self.provider}:{message_id}",
            provider_message_id=message_id,
            provider_time=parse_time(_text(payload.get("received_at"))),
            media=tuple(
                Media(str(item["url"]), str(item.get("content_type") or ""))
                for item in payload.get("media") or ()
                if isinstance(item, dict) and item.get("url")
            ),
            extra=extra,
        )

    def report(self, event: RawEvent, region: str | None) -> DeliveryReport:
        if event.kind != "status":
            return super().report(event, region)
        fields = fields_of(event)
        payload = _payload(fields)
        given = str(at(payload, "to.0.status") or "")
        code = at(payload, "errors.0.code")
        return DeliveryReport(
            provider=self.provider,
            provider_message_id=str(payload.get("id") or ""),
            status=STATUSES.get(given, "unknown"),
            code="" if code is None else str(code),
            description=str(at(payload, "errors.0.title") or given),
            recipient=phone(str(at(payload, "to.0.phone_number") or ""), region, "to")[0],
            received_at=self.received_at(event),
            provider_time=parse_time(_text(at(fields, "data.occurred_at"))),
        )


def _payload(fields: Fields) -> Fields:
    payload = at(fields, "data.payload")
    if not isinstance(payload, dict):
        raise Unprocessable("no data.payload object")
    return payload


def _recipient(fields: Fields) -> str:
    """Our number: the first of ``to[]`` (a group MMS lists the others after it)."""
    return str(at(fields, "data.payload.to.0.phone_number") or "")


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


ENCODINGS: dict[str, Encoding] = {"GSM-7": "text", "UCS-2": "unicode"}
STATUSES: dict[str, ReportStatus] = {
    "queued": "pending",
    "sending": "pending",
    "sent": "sent",
    "delivered": "delivered",
    "sending_failed": "failed",
    "delivery_failed": "failed",
    "delivery_unconfirmed": "sent",
}
"""A recipient's ``to[].status`` -> ours (``delivery_unconfirmed`` is final: sent, no receipt came)."""
EXTRA = ("type", "subject", "messaging_profile_id", "tags")
