"""Plivo inbound SMS/MMS and message status callbacks: a form POST (or a GET with the same fields in
the query, when the application's method is GET).

Inbound fields: ``MessageUUID``, ``From``, ``To`` (digits without ``+``), ``Type`` (sms, mms),
``Text`` (SMS) or ``Body`` (MMS), ``Units`` (how many parts the message took: Plivo joins long
messages itself, so there is nothing to stitch), ``MessageIntent`` (optout, optin, help or blank),
``MediaCount`` and ``Media1..N`` for MMS. Status callbacks: ``MessageUUID``, ``Status``,
``ErrorCode`` (failed and undelivered only), ``DeliveryReportTime``...

Signatures, with the auth token configured: ``X-Plivo-Signature-V3`` (HMAC-SHA256 over the URL, its
sorted query, the sorted POST parameters and the nonce; several comma-separated signatures may be
sent, one matching is enough) is checked when present; else ``X-Plivo-Signature-V2`` (the URL
without its query and the nonce: it does not cover the body, so it is accepted only when no V3 is
sent). Neither has a timestamp: there is no replay window to check, the dedupe on ``MessageUUID``
is what stops a replay from being delivered twice. Plivo retries a non-2xx three times over about
seven minutes; the answer is an empty XML ``<Response/>`` (no reply: replies are the sinks' job).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable, Mapping
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from aiohttp import web
from pydantic import Field

from ..config import Secret
from ..models.message import Media
from ..models.part import Part
from ..models.raw import EventKind, RawEvent
from ..models.report import DeliveryReport, ReportStatus
from .base import Incoming, Message, Normalizer, Receiver, SignedUrlConfig, bad_request, require, unauthorized
from .kit import Fields, fields_of, international, parse_time, phone

V3, V3_NONCE = "X-Plivo-Signature-V3", "X-Plivo-Signature-V3-Nonce"
V2, V2_NONCE = "X-Plivo-Signature-V2", "X-Plivo-Signature-V2-Nonce"
REQUIRED: dict[EventKind, tuple[str, ...]] = {
    "inbound": ("MessageUUID", "From", "To"),
    "status": ("MessageUUID", "Status"),
}
EMPTY_RESPONSE = "<Response></Response>"
TIME_FORMAT = "%Y-%m-%d %H:%M:%S.%f"


class PlivoConfig(SignedUrlConfig):
    """Plivo signs every request with the auth token of the account owning the number."""

    auth_token: Secret | None = Field(
        None,
        description="Auth token of the (sub)account owning the numbers; when set, every request must carry "
        "a valid X-Plivo-Signature-V3 (or, without it, X-Plivo-Signature-V2).",
    )


def _sorted_pairs(values: Mapping[str, list[str]], joiner: str, pair: str) -> str:
    return joiner.join(f"{name}{pair}{value}" for name in sorted(values) for value in sorted(values[name]))


def signature_v3(auth_token: str, url: str, method: str, params: Iterable[tuple[str, str]], nonce: str) -> str:
    """Plivo's V3 signature, as plivo-python's ``signature_v3`` and plivo-go's ``utils.go`` compute it."""
    parts = urlsplit(url)
    base = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
    query: dict[str, list[str]] = {}
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        query.setdefault(name, []).append(value)
    posted: dict[str, list[str]] = {}
    for name, value in params:
        posted.setdefault(name, []).append(value)
    if method == "GET":
        joined = _sorted_pairs({**query, **posted}, "&", "=")
        signed = base + ("?" + joined if joined else "")
    elif posted:
        joined = _sorted_pairs(query, "&", "=")
        signed = base + "?" + joined + ("." if joined else "") + _sorted_pairs(posted, "", "")
    else:
        joined = _sorted_pairs(query, "&", "=")
        signed = base + ("?" + joined if joined else "")
    digest = hmac.new(auth_token.encode(), f"{signed}.{nonce}".encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def signature_v2(auth_token: str, url: str, nonce: str) -> str:
    """Plivo's V2 signature: the URL without its query, then the nonce (the body is not covered)."""
    parts = urlsplit(url)
    base = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
    return base64.b64encode(hmac.new(auth_token.encode(), (base + nonce).encode(), hashlib.sha256).digest()).decode()


def _matches(given: str, expected: str) -> bool:
    # surrogateescape: the header's bytes as sent, so junk in it is a mismatch, not an encoding error
    return hmac.compare_digest(given.strip().encode("utf-8", "surrogateescape"), expected.encode())


def valid_v3(auth_token: str, url: str, method: str, params: list[tuple[str, str]], given: str, nonce: str) -> bool:
    """Whether one of the comma-separated signatures in ``given`` is the request's V3 signature."""
    expected = signature_v3(auth_token, url, method, params, nonce)
    return any([_matches(candidate, expected) for candidate in given.split(",")])


def valid_v2(auth_token: str, url: str, given: str, nonce: str) -> bool:
    return _matches(given, signature_v2(auth_token, url, nonce))


class Receiving(Receiver):
    provider = "plivo"
    auth_scheme = "X-Plivo-Signature-V3 (else V2) HMAC-SHA256 with auth_token"
    answer_summary = "200 <Response></Response> (application/xml)"
    kinds = frozenset({"inbound", "status"})
    methods = frozenset({"GET", "POST"})
    config_class = PlivoConfig
    headers = (V3_NONCE, V2_NONCE)
    config: PlivoConfig

    @property
    def signed(self) -> bool:
        return self.config.auth_token is not None

    def authenticate(self, request: Incoming) -> None:
        if self.config.auth_token is None:
            return
        token = self.config.auth_token.get_secret_value()
        url = self.config.signed_url(request)
        headers = request.headers
        if (given := headers.get(V3)) is not None:
            params = [] if request.method == "GET" else list(_fields(request).items())
            if not valid_v3(token, url, request.method, params, given, headers.get(V3_NONCE, "")):
                raise unauthorized(f"bad signature ({V3})")
        elif (given := headers.get(V2)) is not None:
            if not valid_v2(token, url, given, headers.get(V2_NONCE, "")):
                raise unauthorized(f"bad signature ({V2})")
        else:
            raise unauthorized(f"missing signature: {V3} or {V2}")

    def validate(self, request: Incoming) -> list[Fields]:
        fields = _fields(request)
        require(fields, REQUIRED[request.kind])
        if request.kind == "inbound" and not any(fields.get(name) is not None for name in ("Text", "Body", "Media1")):
            raise bad_request("missing content: Text, Body or Media1 is required")
        return [fields]

    def key(self, kind: EventKind, fields: Fields) -> str:
        if kind == "status":
            return f"{self.provider}:status:{fields['MessageUUID']}"
        return f"{self.provider}:{fields['From']}:{fields['To']}"

    def answer(self, request: Incoming, messages: list[Message]) -> web.Response:
        return web.Response(text=EMPTY_RESPONSE, content_type="application/xml")


def _fields(request: Incoming) -> Fields:
    """A GET's query or a POST's form (415 for any other body)."""
    return request.query if request.method == "GET" else request.form()


class Normalizing(Normalizer):
    provider = "plivo"

    def normalize(self, event: RawEvent, region: str | None) -> Part:
        if event.kind != "inbound":
            return super().normalize(event, region)
        fields = fields_of(event)
        uuid = str(fields.get("MessageUUID", ""))
        extra = {name: fields[name] for name in EXTRA if fields.get(name)}
        units = str(fields.get("Units", ""))
        if units.isdigit() and int(units) > 1:
            extra["segments"] = int(units)  # joined by Plivo: told, not stitched
        return self.part(
            event,
            region,
            sender=international(str(fields.get("From", ""))),
            recipient=international(str(fields.get("To", ""))),
            text=fields.get("Text") or fields.get("Body") or "",
            encoding="text",
            dedupe_key=f"{self.provider}:{uuid}",
            provider_message_id=uuid,
            media=tuple(Media(url, "") for index in range(1, MAX_MEDIA + 1) if (url := fields.get(f"Media{index}"))),
            extra=extra,
        )

    def report(self, event: RawEvent, region: str | None) -> DeliveryReport:
        if event.kind != "status":
            return super().report(event, region)
        fields = fields_of(event)
        given = str(fields.get("Status", ""))
        status = STATUSES.get(given, "unknown")
        return DeliveryReport(
            provider=self.provider,
            provider_message_id=str(fields.get("MessageUUID", "")),
            status=status,
            code=str(fields.get("ErrorCode") or ""),
            description=given,
            recipient=phone(international(str(fields.get("To", ""))), region, "to")[0],
            received_at=self.received_at(event),
            provider_time=parse_time(fields.get("DeliveryReportTime") or fields.get("SentTime"), TIME_FORMAT),
        )


MAX_MEDIA = 10
STATUSES: dict[str, ReportStatus] = {
    "queued": "pending",
    "sent": "sent",
    "delivered": "delivered",
    "undelivered": "failed",
    "failed": "failed",
    "rejected": "failed",
    "read": "delivered",
}
"""Plivo's message status -> ours (``read`` is WhatsApp's, after delivery)."""
EXTRA = ("Type", "MessageIntent", "PowerpackUUID", "TotalRate", "TotalAmount", "MediaCount")
