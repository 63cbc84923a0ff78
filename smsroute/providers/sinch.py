"""Sinch SMS REST API (XMS) callbacks: one JSON object a request.

Inbound: ``type`` ``mo_text`` (``body`` is the text, joined by Sinch), ``mo_binary`` (``body`` is
base64, ``udh`` hex: concatenation lives there) or ``mo_media`` (``body`` is {``subject``,
``message``, ``media[]``}); ``id``, ``from`` (often without ``+``), ``to``, ``received_at``,
``sent_at``, ``operator_id``, ``client_reference``. Delivery reports: per recipient
(``recipient_delivery_report_sms``/``_mms``: ``batch_id``, ``recipient``, ``status``, ``code``,
``at``) or per batch (``delivery_report_sms``/``_mms``: ``statuses[]`` with ``recipients[]``), which
makes one event per listed recipient.

Authentication, as the account manager provisions it: HTTP Basic (``username``, ``password``) or
an OAuth 2.0 bearer token (``bearer_token``, compared as a static token: either one matching is
enough when both are set), and, independently, the SDKs' ``x-sinch-webhook-signature``
(HMAC-SHA256, or SHA512, of ``body.nonce.timestamp`` with ``hmac_secret``; a timestamp outside
``signature_max_age`` is refused, the SDKs themselves not checking it).

Sinch retries a 5xx and a 429 (5 s, then doubling, for almost 23 hours) but **never another 4xx**:
every 400, 401 or 415 loses the event on their side. So this receiver refuses only what can never
be accepted (a request that is not a Sinch callback, or not authentic); a transient fault, such as
the log being unavailable, answers 503. A required field is only what makes a message: ``id``,
``from``, ``to``, ``body`` (not ``udh``: a binary message needs none).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

from aiohttp import web
from pydantic import Field

from ..config import Secret
from ..models.message import Media
from ..models.part import Part
from ..models.raw import EventKind, RawEvent
from ..models.report import DeliveryReport, ReportStatus
from .base import (
    BasicAuthConfig,
    Incoming,
    Message,
    Normalizer,
    Receiver,
    bad_request,
    require,
    unauthorized,
)
from .kit import (
    Fields,
    Unprocessable,
    decode_user_data,
    fields_of,
    from_hex,
    international,
    parse_time,
    parse_udh,
    phone,
)

SIGNATURE = "x-sinch-webhook-signature"
NONCE, TIMESTAMP, ALGORITHM = (f"{SIGNATURE}-{name}" for name in ("nonce", "timestamp", "algorithm"))
ALGORITHMS = {"hmacsha256": hashlib.sha256, "hmacsha512": hashlib.sha512}
INBOUND = frozenset({"mo_text", "mo_binary", "mo_media"})
BATCH_REPORTS = frozenset({"delivery_report_sms", "delivery_report_mms"})
RECIPIENT_REPORTS = frozenset({"recipient_delivery_report_sms", "recipient_delivery_report_mms"})


class SinchConfig(BasicAuthConfig):
    """Sinch callbacks carry Basic or bearer credentials, and may be HMAC-signed (SDK "Sinch Events")."""

    bearer_token: Secret | None = Field(
        None, description="The OAuth 2.0 access token Sinch sends as Authorization: Bearer (compared as given)."
    )
    hmac_secret: Secret | None = Field(
        None, description="Secret of the x-sinch-webhook-signature HMAC; when set, every request must be signed."
    )
    signature_max_age: float = Field(
        300, gt=0, description="Seconds a signed callback's signature timestamp may differ from the receive time."
    )


def signature(secret: str, body: bytes, nonce: str, timestamp: str, algorithm: str = "HmacSHA256") -> str | None:
    """The SDKs' ``x-sinch-webhook-signature``: base64 HMAC of ``body.nonce.timestamp``; None for an
    algorithm they do not know."""
    digest = ALGORITHMS.get(algorithm.lower())
    if digest is None:
        return None
    signed = body + f".{nonce}.{timestamp}".encode("utf-8", "surrogateescape")
    return base64.b64encode(hmac.new(secret.encode(), signed, digest).digest()).decode()


def valid(secret: str, body: bytes, nonce: str, timestamp: str, given: str, algorithm: str = "HmacSHA256") -> bool:
    expected = signature(secret, body, nonce, timestamp, algorithm)
    return expected is not None and hmac.compare_digest(given.encode("utf-8", "surrogateescape"), expected.encode())


class Receiving(Receiver):
    provider = "sinch"
    auth_scheme = "Basic (username/password) or Bearer (bearer_token); x-sinch-webhook-signature HMAC with hmac_secret"
    answer_summary = "200, empty; 503 for what may succeed later (Sinch retries no other 4xx)"
    kinds = frozenset({"inbound", "status"})
    config_class = SinchConfig
    headers = (NONCE, TIMESTAMP)
    config: SinchConfig

    @property
    def signed(self) -> bool:
        return self.config.basic or self.config.bearer_token is not None or self.config.hmac_secret is not None

    def authenticate(self, request: Incoming) -> None:
        self._credentials(request)
        if self.config.hmac_secret is not None:
            self._signature(request, self.config.hmac_secret.get_secret_value())

    def _credentials(self, request: Incoming) -> None:
        """Basic or bearer, whichever is configured (either one, when both are)."""
        bearer = self.config.bearer_token
        if bearer is None:
            self.config.check_basic(request)
            return
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(
            token.strip().encode("utf-8", "surrogateescape"), bearer.get_secret_value().encode()
        ):
            return
        if self.config.basic and scheme.lower() == "basic":
            self.config.check_basic(request)
            return
        raise unauthorized("missing or wrong bearer token")

    def _signature(self, request: Incoming, secret: str) -> None:
        headers = request.headers
        given, nonce, timestamp = headers.get(SIGNATURE), headers.get(NONCE), headers.get(TIMESTAMP)
        if given is None or nonce is None or timestamp is None:
            raise unauthorized(f"missing signature: {SIGNATURE} with its -nonce and -timestamp")
        if not valid(secret, request.body, nonce, timestamp, given, headers.get(ALGORITHM, "HmacSHA256")):
            raise unauthorized("bad signature")
        try:
            seconds = float(timestamp)
        except ValueError:
            raise unauthorized(f"non-numeric {TIMESTAMP}") from None
        if not abs(request.received_at_us / 1_000_000 - seconds) <= self.config.signature_max_age:
            raise unauthorized("signature timestamp outside the allowed window")

    def validate(self, request: Incoming) -> list[Fields]:
        document = request.json()
        if not isinstance(document, dict):
            raise bad_request("body must be a JSON object (a Sinch callback)")
        kind = document.get("type")
        if request.kind == "inbound":
            if kind not in INBOUND:
                raise bad_request(f"type {str(kind)[:60]!r} is not an inbound message ({', '.join(sorted(INBOUND))})")
            require(document, ("id", "from", "to", "body"))
            return [document]
        if kind in RECIPIENT_REPORTS:
            require(document, ("batch_id", "status"))
            return [document]
        if kind in BATCH_REPORTS:
            require(document, ("batch_id", "statuses"))
            return _per_recipient(document)
        raise bad_request(f"type {str(kind)[:60]!r} is not a delivery report")

    def split(self, request: Incoming, messages: list[Fields]) -> list[Message]:
        if request.kind == "status" and messages[0].get("type") in BATCH_REPORTS:
            return self.each(request.kind, messages)
        return super().split(request, messages)

    def key(self, kind: EventKind, fields: Fields) -> str:
        if kind == "status":
            return f"{self.provider}:status:{fields['batch_id']}"
        return f"{self.provider}:{fields['from']}:{fields['to']}"

    def answer(self, request: Incoming, messages: list[Message]) -> web.Response:
        return web.Response(status=200)


def _per_recipient(report: Fields) -> list[Fields]:
    """A batch report as one report per recipient it lists (one per status when it lists none)."""
    statuses = report["statuses"]
    if not isinstance(statuses, list) or not statuses or not all(isinstance(item, dict) for item in statuses):
        raise bad_request("statuses must be a non-empty list of objects")
    common = {name: value for name, value in report.items() if name != "statuses"}
    found: list[Fields] = []
    for item in statuses:
        if item.get("status") is None:
            raise bad_request("missing required field in statuses: status")
        recipients = item.get("recipients") or [None]
        if not isinstance(recipients, list):
            raise bad_request("statuses recipients must be a list")
        entry = {name: value for name, value in item.items() if name != "recipients"}
        found += [{**common, **entry, "recipient": recipient} for recipient in recipients]
    return found


class Normalizing(Normalizer):
    provider = "sinch"

    def normalize(self, event: RawEvent, region: str | None) -> Part:
        if event.kind != "inbound":
            return super().normalize(event, region)
        fields = fields_of(event)
        kind, body = fields.get("type"), fields.get("body")
        concat, media = None, tuple[Media, ...]()
        if kind == "mo_binary":
            try:
                data = base64.b64decode(str(body), validate=True)
            except binascii.Error:
                raise Unprocessable("mo_binary body is not base64") from None
            concat, _ = parse_udh(from_hex(str(fields.get("udh") or ""), "udh"))
            text, encoding = decode_user_data(data, "binary"), "binary"
        elif kind == "mo_media" and isinstance(body, dict):
            text, encoding = str(body.get("message") or ""), "text"
            items = body.get("media")
            media = tuple(
                Media(str(item["url"]), str(item.get("content_type") or ""))
                for item in (items if isinstance(items, list) else ())
                if isinstance(item, dict) and item.get("url")
            )
        elif kind == "mo_text":
            text, encoding = str(body or ""), "text"
        else:
            raise Unprocessable(f"unknown sinch inbound type {str(kind)[:60]!r}")
        message_id = str(fields.get("id") or "")
        return self.part(
            event,
            region,
            sender=international(str(fields.get("from") or "")),
            recipient=international(str(fields.get("to") or "")),
            text=text,
            encoding=encoding,
            dedupe_key=f"{self.provider}:{message_id}",
            provider_message_id=message_id,
            provider_time=parse_time(str(fields.get("received_at") or "")),
            concat=concat,
            media=media,
            extra={name: fields[name] for name in EXTRA if fields.get(name)},
        )

    def report(self, event: RawEvent, region: str | None) -> DeliveryReport:
        if event.kind != "status":
            return super().report(event, region)
        fields = fields_of(event)
        given, code = str(fields.get("status") or ""), fields.get("code")
        return DeliveryReport(
            provider=self.provider,
            provider_message_id=str(fields.get("batch_id") or ""),
            status=STATUSES.get(given.lower(), "unknown"),
            code="" if code is None else str(code),
            description=given,
            recipient=phone(international(str(fields.get("recipient") or "")), region, "to")[0],
            received_at=self.received_at(event),
            provider_time=parse_time(str(fields.get("operator_status_at") or fields.get("at") or "")),
        )


STATUSES: dict[str, ReportStatus] = {
    "queued": "pending",
    "dispatched": "sent",
    "delivered": "delivered",
    "aborted": "failed",
    "cancelled": "failed",
    "rejected": "failed",
    "deleted": "failed",
    "failed": "failed",
    "expired": "failed",
    "unknown": "sent",
}
"""Sinch status -> ours; ``Unknown`` is final: delivered to the SMSC, no receipt came."""
EXTRA = ("type", "operator_id", "client_reference", "sent_at")
