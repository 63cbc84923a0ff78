"""Bird (formerly MessageBird): Channels API webhooks, and the legacy MessageBird delivery reports.

Inbound messages are ``sms.inbound`` events, ``{"service", "event", "payload"}`` posted as JSON: the
payload's ``id``, ``channelId``, ``sender.contact.identifierValue`` (the sender's number),
``body.text.text``, ``parts[]`` (one per SMS part: Bird joins them), ``createdAt``. The payload names
no receiving number, only the channel: ``channel_numbers`` maps each channel id to our number, which
the receiver writes into the logged event as ``receiver.connector.identifierValue`` (where Bird would
put it if it sent it; one it does send is kept). Without a mapping ``to`` is the channel id, flagged.
Delivery reports are ``sms.outbound`` events (the outbound message's ``status``, ``failure.code``),
or the legacy MessageBird GET with ``id``, ``status``, ``statusErrorCode``... in the query.

With a signing key configured every request must carry one of Bird's three signatures:
``MessageBird-Signature-JWT`` (HS256/384/512 JWT, issuer MessageBird, ``nbf``/``exp`` checked with
1 s leeway, ``url_hash`` and ``payload_hash`` the SHA-256 of the URL and body: python-rest-api's
``RequestValidator``), or ``messagebird-signature`` with ``messagebird-request-timestamp``:
base64 HMAC-SHA256 over ``timestamp\\nURL\\nSHA-256(body)`` (Bird's documented scheme), or over
``timestamp\\nsorted query\\nSHA-256(body)`` (the legacy ``signed_request``); the timestamp must be
within ``signature_max_age`` of the receive time (Bird documents no window). Bird retries a non-2xx
for 8 hours at growing intervals; the answer is an empty 200.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import warnings
from urllib.parse import urlencode

import jwt
from aiohttp import web
from pydantic import Field

from ..config import Secret
from ..models.part import Part
from ..models.raw import EventKind, RawEvent
from ..models.report import DeliveryReport, ReportStatus
from .base import (
    Incoming,
    IngressError,
    Message,
    Normalizer,
    Receiver,
    SignedUrlConfig,
    bad_request,
    require,
    require_paths,
    unauthorized,
)
from .kit import JSON, Fields, at, fields_of, international, mapping, parse_time, phone

JWT_HEADER = "MessageBird-Signature-JWT"
SIGNATURE_HEADER, TIMESTAMP_HEADER = "messagebird-signature", "messagebird-request-timestamp"
EVENTS: dict[EventKind, str] = {"inbound": "sms.inbound", "status": "sms.outbound"}
REQUIRED: dict[EventKind, tuple[str, ...]] = {
    "inbound": ("payload.id", "payload.sender.contact.identifierValue", "payload.body"),
    "status": ("payload.id", "payload.status"),
}
RECIPIENT = "payload.receiver.connector.identifierValue"
JWT_LEEWAY = 1


class BirdConfig(SignedUrlConfig):
    """Bird signs webhooks with the subscription's signing key."""

    signing_key: Secret | None = Field(
        None, description="The webhook subscription's signing key; when set, every request must be signed with it."
    )
    channel_numbers: dict[str, str] = Field(
        {}, description="Bird channel id -> the number it receives on (inbound events name only the channel)."
    )
    signature_max_age: float = Field(
        300, gt=0, description="Seconds a messagebird-request-timestamp may differ from the receive time."
    )


def signature(key: str, timestamp: str, signed: str, body: bytes) -> str:
    """Bird's HMAC: base64 HMAC-SHA256 of ``timestamp\\n<signed>\\nSHA-256(body)`` (raw digest bytes),
    ``signed`` being the URL (Bird) or the sorted, form-encoded query (legacy MessageBird)."""
    message = f"{timestamp}\n{signed}\n".encode("utf-8", "surrogateescape") + hashlib.sha256(body).digest()
    return base64.b64encode(hmac.new(key.encode(), message, hashlib.sha256).digest()).decode()


def sorted_query(params: list[tuple[str, str]]) -> str:
    """The legacy scheme's signed query: parameters sorted by name, form-encoded."""
    return urlencode(sorted(params, key=lambda item: item[0]), True)


def valid_hmac(key: str, timestamp: str, url: str, params: list[tuple[str, str]], body: bytes, given: str) -> bool:
    """Whether ``given`` is the current (URL) or the legacy (sorted query) signature of the request."""
    given_bytes = given.strip().encode("utf-8", "surrogateescape")
    matches = [
        hmac.compare_digest(given_bytes, signature(key, timestamp, signed, body).encode())
        for signed in (url, sorted_query(params))
    ]
    return any(matches)


def jwt_problem(key: str, token: str, url: str, body: bytes, now: float) -> str | None:
    """Why ``token`` is not a valid MessageBird-Signature-JWT of the request at ``now``; None when it is."""
    try:
        with warnings.catch_warnings():  # the key's length is Bird's choice, and no reason to log every request
            warnings.simplefilter("ignore", jwt.InsecureKeyLengthWarning)
            claims = jwt.decode(
                token,
                key,
                algorithms=["HS256", "HS384", "HS512"],
                issuer="MessageBird",
                options={"require": ["iss", "nbf", "exp"], "verify_exp": False, "verify_nbf": False},
            )
    except jwt.InvalidTokenError as exc:
        return f"bad signature ({JWT_HEADER}: {str(exc)[:80]})"
    try:
        nbf, exp = float(claims["nbf"]), float(claims["exp"])
    except (TypeError, ValueError):
        return f"bad signature ({JWT_HEADER}: nbf and exp must be numbers)"
    if not nbf - JWT_LEEWAY <= now < exp + JWT_LEEWAY:
        return f"signature timestamp outside the allowed window ({JWT_HEADER} not valid now)"
    if not hmac.compare_digest(hashlib.sha256(url.encode()).hexdigest(), str(claims.get("url_hash", ""))):
        return f"bad signature ({JWT_HEADER}: url_hash)"
    payload_hash = claims.get("payload_hash")
    if bool(body) != bool(payload_hash) or (
        body and not hmac.compare_digest(hashlib.sha256(body).hexdigest(), str(payload_hash))
    ):
        return f"bad signature ({JWT_HEADER}: payload_hash)"
    return None


class Receiving(Receiver):
    provider = "bird"
    auth_scheme = "MessageBird-Signature-JWT or messagebird-signature HMAC-SHA256 with signing_key, 300 s window"
    answer_summary = "200, empty"
    kinds = frozenset({"inbound", "status"})
    methods = frozenset({"GET", "POST"})
    config_class = BirdConfig
    headers = (TIMESTAMP_HEADER, "messagebird-request-id")
    config: BirdConfig

    @property
    def signed(self) -> bool:
        return self.config.signing_key is not None

    def authenticate(self, request: Incoming) -> None:
        if self.config.signing_key is None:
            return
        key, url = self.config.signing_key.get_secret_value(), self.config.signed_url(request)
        now = request.received_at_us / 1_000_000
        if (token := request.headers.get(JWT_HEADER)) is not None:
            if (problem := jwt_problem(key, token, url, request.body, now)) is not None:
                raise unauthorized(problem)
            return
        given, timestamp = request.headers.get(SIGNATURE_HEADER), request.headers.get(TIMESTAMP_HEADER)
        if given is None or timestamp is None:
            raise unauthorized(f"missing signature: {JWT_HEADER}, or {SIGNATURE_HEADER} with {TIMESTAMP_HEADER}")
        if not valid_hmac(key, timestamp, url, list(request.query.items()), request.body, given):
            raise unauthorized("bad signature")
        try:
            seconds = float(timestamp)
        except ValueError:
            raise unauthorized(f"non-numeric {TIMESTAMP_HEADER}") from None
        if not abs(now - seconds) <= self.config.signature_max_age:
            raise unauthorized("signature timestamp outside the allowed window")

    def validate(self, request: Incoming) -> list[Fields]:
        if request.method == "GET":
            if request.kind == "inbound":
                raise IngressError(405, "method_not_allowed", "Bird posts inbound messages as JSON", {"Allow": "POST"})
            fields = request.query
            require(fields, ("id", "status"))
            return [fields]
        document = request.json()
        if not isinstance(document, dict):
            raise bad_request("body must be a JSON object (a Bird webhook event)")
        event = document.get("event")
        if event != EVENTS[request.kind]:
            raise bad_request(f"event {str(event)[:60]!r} is not received on /{request.kind} ({EVENTS[request.kind]})")
        require_paths(document, REQUIRED[request.kind])
        return [document]

    def split(self, request: Incoming, messages: list[Fields]) -> list[Message]:
        document = messages[0]
        number = self.config.channel_numbers.get(str(at(document, "payload.channelId")))
        if request.kind != "inbound" or number is None or at(document, RECIPIENT) is not None:
            return super().split(request, messages)
        payload = document["payload"]
        receiver = mapping(payload.get("receiver"))
        connector = mapping(receiver.get("connector"))
        filled = {
            **document,
            "payload": {**payload, "receiver": {**receiver, "connector": {**connector, "identifierValue": number}}},
        }
        return [Message(json.dumps(filled, ensure_ascii=False).encode(), self.key(request.kind, filled), JSON)]

    def key(self, kind: EventKind, fields: Fields) -> str:
        if kind == "status":
            return f"{self.provider}:status:{at(fields, 'payload.id') or fields.get('id')}"
        return f"{self.provider}:{at(fields, 'payload.sender.contact.identifierValue')}:{_recipient(fields)}"

    def answer(self, request: Incoming, messages: list[Message]) -> web.Response:
        return web.Response(status=200)


def _recipient(fields: Fields) -> str:
    """Our number, where the receiver wrote it (else the channel id)."""
    return str(at(fields, RECIPIENT) or at(fields, "payload.channelId") or "")


class Normalizing(Normalizer):
    provider = "bird"

    def normalize(self, event: RawEvent, region: str | None) -> Part:
        if event.kind != "inbound":
            return super().normalize(event, region)
        fields = fields_of(event)
        payload = mapping(fields.get("payload"))
        message_id = str(payload.get("id") or "")
        extra = {name: payload[name] for name in ("channelId", "reference") if payload.get(name)}
        parts = payload.get("parts")
        if isinstance(parts, list) and len(parts) > 1:
            extra["segments"] = len(parts)  # joined by Bird: told, not stitched
        return self.part(
            event,
            region,
            sender=str(at(payload, "sender.contact.identifierValue") or ""),
            recipient=_recipient(fields),
            text=str(at(payload, "body.text.text") or ""),
            dedupe_key=f"{self.provider}:{message_id}",
            provider_message_id=message_id,
            provider_time=parse_time(str(payload.get("createdAt") or "")),
            extra=extra,
        )

    def report(self, event: RawEvent, region: str | None) -> DeliveryReport:
        if event.kind != "status":
            return super().report(event, region)
        fields = fields_of(event)
        if isinstance(payload := fields.get("payload"), dict):  # a Channels API sms.outbound event
            given, code = str(payload.get("status") or ""), at(payload, "failure.code")
            message_id, recipient = payload.get("id"), at(payload, "receiver.contacts.0.identifierValue")
            moment = payload.get("lastStatusAt")
        else:  # a legacy MessageBird delivery report
            given, code = str(fields.get("status") or ""), fields.get("statusErrorCode")
            message_id, recipient, moment = fields.get("id"), fields.get("recipient"), fields.get("statusDatetime")
        return DeliveryReport(
            provider=self.provider,
            provider_message_id=str(message_id or ""),
            status=STATUSES.get(given, "unknown"),
            code="" if code is None else str(code),
            description=given,
            recipient=phone(international(str(recipient or "")), region, "to")[0],
            received_at=self.received_at(event),
            provider_time=parse_time(str(moment or "")),
        )


STATUSES: dict[str, ReportStatus] = {
    "accepted": "pending",
    "scheduled": "pending",
    "processing": "pending",
    "sent": "sent",
    "buffered": "sent",
    "delivered": "delivered",
    "sending_failed": "failed",
    "delivery_failed": "failed",
    "rejected": "failed",
    "expired": "failed",
}
"""Bird's (and legacy MessageBird's) message status -> ours."""
