"""AWS End User Messaging SMS (formerly Pinpoint SMS) two-way SMS, through an SNS HTTP/S subscription.

SNS posts one JSON envelope a request (``text/plain; charset=UTF-8`` by default, ``application/json``
when the delivery policy says so): ``Type``, ``MessageId``, ``TopicArn``, ``Message`` (a string
holding the SMS as JSON: ``originationNumber``, ``destinationNumber``, ``messageKeyword``,
``messageBody``, ``inboundMessageId``, ``previousPublishedMessageId``), ``Timestamp``,
``SignatureVersion``, ``Signature``, ``SigningCertURL``.

With ``topic_arns`` configured, every request is verified as AWS's own validators do
(aws-php-sns-message-validator): ``SigningCertURL`` must be https, end in ``.pem`` and be on a host
``sns.<region>.amazonaws.com(.cn)`` (refused before anything is fetched: an S3 URL under
amazonaws.com would let anyone sign); the certificate is fetched once per URL and cached; the
signature (version 1: SHA1withRSA, 2: SHA256withRSA) must verify over the envelope's signed fields;
and the topic must be one of ``topic_arns``, since SNS signs for anyone's topic. A
``SubscriptionConfirmation`` is then confirmed by a GET of its ``SubscribeURL`` (same host rule)
before the 200; an ``UnsubscribeConfirmation`` is acknowledged and nothing more. Without
``topic_arns`` nothing is verified and no subscription is confirmed: use an IP allow-list.

Delivery reports: End User Messaging SMS publishes SMS events (``eventType`` ``TEXT_DELIVERED``,
``TEXT_BLOCKED``..., ``messageId``, ``messageStatus``, ``destinationPhoneNumber``, ``eventTimestamp``
in ms) to a configuration set's event destination; an SNS topic one arrives in the same envelope,
on ``/status/<name>`` (its topic among ``topic_arns`` too). Events of other channels (``VOICE_*``,
``MEDIA_*``) are refused with a 400: choose the ``TEXT_*`` event types for that destination.

SNS retries a 5xx (three times, 20 s apart by default) but drops a 4xx: a certificate or a
confirmation that cannot be fetched now answers 503.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import re
import socket
import ssl
from collections import OrderedDict
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from pydantic import Field, FilePath

from ..config import IngressConfig
from ..models.part import Part
from ..models.raw import EventKind, RawEvent
from ..models.report import DeliveryReport, ReportStatus
from .base import Incoming, IngressError, Message, Normalizer, Receiver, bad_request, require, unauthorized
from .kit import JSON, Fields, Unprocessable, parse_json, parse_time, phone

SNS_HOST = re.compile(r"^sns\.[a-zA-Z0-9\-]{3,}\.amazonaws\.com(\.cn)?$")
SIGNED: dict[str, tuple[str, ...]] = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
    "UnsubscribeConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
}
"""The fields each message type signs, in order; an absent one (a Notification's Subject) is skipped."""
HASHES: dict[str, type[hashes.HashAlgorithm]] = {"1": hashes.SHA1, "2": hashes.SHA256}
SMS_FIELDS = ("originationNumber", "destinationNumber", "messageBody", "inboundMessageId")
EVENT_FIELDS = ("eventType", "messageId")
CONTENT_TYPES = (JSON, "text/plain")


class AwsConfig(IngressConfig):
    """SNS signs with AWS's certificate; what proves the message is ours is its topic."""

    topic_arns: tuple[str, ...] = Field(
        (),
        description="SNS topics whose messages are accepted (and whose subscriptions are confirmed); when set, "
        "every request's SNS signature is verified. Empty: nothing verified, nothing confirmed.",
    )
    fetch_timeout: float = Field(
        5, gt=0, le=30, description="Seconds fetching a signing certificate or confirming a subscription may take."
    )
    ca_file: FilePath | None = Field(
        None, description="CA bundle to trust when fetching from SNS (a TLS-inspecting proxy). Default: the system's."
    )
    resolve: dict[str, str] = Field(
        {},
        description="SNS host -> address:port to connect to instead of its DNS answer, as curl --resolve does "
        "(a private endpoint, or a test server); the host name is still the one verified.",
    )


def string_to_sign(envelope: Fields) -> bytes:
    """What SNS signs: ``name\\nvalue\\n`` for each signed field of the message's type that is present."""
    names = SIGNED.get(str(envelope.get("Type")), ())
    return "".join(f"{name}\n{envelope[name]}\n" for name in names if envelope.get(name) is not None).encode()


def valid(envelope: Fields, key: rsa.RSAPublicKey) -> bool:
    """Whether the envelope's ``Signature`` verifies with ``key`` (version 1: SHA-1, 2: SHA-256)."""
    algorithm = HASHES.get(str(envelope.get("SignatureVersion")))
    if algorithm is None:
        return False
    try:
        signature = base64.b64decode(str(envelope.get("Signature", "")), validate=True)
        key.verify(signature, string_to_sign(envelope), padding.PKCS1v15(), algorithm())
    except (binascii.Error, ValueError, InvalidSignature):
        return False
    return True


def sns_url(url: str, *, certificate: bool) -> bool:
    """Whether ``url`` is an https URL on an SNS host (a certificate's also ending in ``.pem``)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
    except ValueError:
        return False
    return parts.scheme == "https" and bool(SNS_HOST.match(host)) and (not certificate or parts.path.endswith(".pem"))


def public_key(pem: bytes) -> rsa.RSAPublicKey:
    """The RSA key of a PEM certificate; ValueError when it is not one."""
    key = x509.load_pem_x509_certificate(pem).public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError("the signing certificate's key is not RSA")
    return key


class Certificates:
    """Signing keys by certificate URL, the most recent few: AWS rotates its certificate rarely."""

    def __init__(self, size: int = 32) -> None:
        self.size = size
        self.keys: OrderedDict[str, rsa.RSAPublicKey] = OrderedDict()

    def get(self, url: str) -> rsa.RSAPublicKey | None:
        key = self.keys.get(url)
        if key is not None:
            self.keys.move_to_end(url)
        return key

    def put(self, url: str, key: rsa.RSAPublicKey) -> None:
        self.keys[url] = key
        self.keys.move_to_end(url)
        while len(self.keys) > self.size:
            self.keys.popitem(last=False)


CERTIFICATES = Certificates()
"""One cache for the process: every ingress of SNS trusts the same certificates."""


class _Resolver(AbstractResolver):
    """DNS, but for the configured hosts the configured address and port."""

    def __init__(self, fixed: dict[str, str]) -> None:
        self.fixed = fixed
        self.dns = DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if host not in self.fixed:
            return await self.dns.resolve(host, port, family)
        address, _, fixed_port = self.fixed[host].rpartition(":")
        return [
            ResolveResult(hostname=host, host=address, port=int(fixed_port), family=socket.AF_INET, proto=0, flags=0)
        ]

    async def close(self) -> None:
        await self.dns.close()


class Receiving(Receiver):
    provider = "aws"
    auth_scheme = "SNS signature v1/v2 with the allow-listed signing certificate; topic_arns"
    answer_summary = "200, empty; SubscriptionConfirmation confirmed first"
    kinds = frozenset({"inbound", "status"})
    config_class = AwsConfig
    headers = ("x-amz-sns-message-type", "x-amz-sns-subscription-arn")
    config: AwsConfig

    @property
    def signed(self) -> bool:
        return bool(self.config.topic_arns)

    async def prepare(self, request: Incoming) -> None:
        """The signing certificate, fetched when it is allowed and not cached yet."""
        if not self.signed:
            return
        envelope = _envelope(request)
        url = str(envelope.get("SigningCertURL") or "")
        if envelope.get("TopicArn") not in self.config.topic_arns:
            return  # refused by authenticate: no fetch on behalf of someone else's topic
        if not sns_url(url, certificate=True) or CERTIFICATES.get(url) is not None:
            return  # a URL not allowed is refused by authenticate, with the reason
        try:
            CERTIFICATES.put(url, public_key(await self._get(url)))
        except ValueError as exc:
            raise IngressError(502, "bad_certificate", f"the signing certificate cannot be read: {exc}") from None

    def authenticate(self, request: Incoming) -> None:
        if not self.signed:
            return
        envelope = _envelope(request)
        if str(envelope.get("SignatureVersion")) not in HASHES:
            raise unauthorized(f"SignatureVersion {str(envelope.get('SignatureVersion'))[:20]!r} is not 1 or 2")
        url = str(envelope.get("SigningCertURL") or "")
        if not sns_url(url, certificate=True):
            raise unauthorized("SigningCertURL is not an https .pem URL on an sns.<region>.amazonaws.com host")
        key = CERTIFICATES.get(url)
        if key is None or not valid(envelope, key):
            raise unauthorized("bad signature")
        if envelope.get("TopicArn") not in self.config.topic_arns:
            raise IngressError(403, "forbidden", f"TopicArn {str(envelope.get('TopicArn'))[:200]!r} is not configured")

    def validate(self, request: Incoming) -> list[Fields]:
        envelope = _envelope(request)
        kind = envelope.get("Type")
        if kind == "Notification":
            require(envelope, ("MessageId", "Message"))
            self._check_message(request.kind, _sms(envelope))
            return [envelope]
        if kind == "SubscriptionConfirmation":
            if not self.signed:
                raise IngressError(403, "forbidden", "subscriptions are confirmed only with topic_arns configured")
            require(envelope, ("SubscribeURL",))
            if not sns_url(str(envelope["SubscribeURL"]), certificate=False):
                raise bad_request("SubscribeURL is not an https URL on an sns.<region>.amazonaws.com host")
            return []
        if kind == "UnsubscribeConfirmation":
            return []
        raise bad_request(f"Type {str(kind)[:60]!r} is not an SNS message type")

    def _check_message(self, kind: EventKind, sms: dict[str, Any]) -> None:
        """An inbound SMS on /inbound, an SMS event on /status; the other on the wrong path is told where it goes."""
        event = "eventType" in sms
        if kind == "status" and not event and "originationNumber" in sms:
            raise bad_request(f"Message is an inbound SMS, not an SMS event: it goes to /inbound/{self.name}")
        if kind == "inbound" and event and "originationNumber" not in sms:
            raise bad_request(f"Message is an SMS event, not an inbound SMS: it goes to /status/{self.name}")
        if kind == "inbound":
            require(sms, SMS_FIELDS, " in Message")
            return
        require(sms, EVENT_FIELDS, " in Message")
        given = sms["eventType"]
        if not isinstance(given, str) or not given.startswith("TEXT_"):
            raise bad_request(
                f"eventType {str(given)[:60]!r} is not an SMS event (TEXT_*): send only SMS events to this destination"
            )

    def split(self, request: Incoming, messages: list[Fields]) -> list[Message]:
        return super().split(request, messages) if messages else []

    async def settle(self, request: Incoming, messages: list[Message]) -> None:
        envelope = _envelope(request)
        if envelope.get("Type") == "SubscriptionConfirmation":
            await self._get(str(envelope["SubscribeURL"]))

    def key(self, kind: EventKind, fields: Fields) -> str:
        sms = _sms(fields)
        if kind == "status":
            return f"{self.provider}:status:{sms['messageId']}"
        return f"{self.provider}:{sms['originationNumber']}:{sms['destinationNumber']}"

    def answer(self, request: Incoming, messages: list[Message]) -> web.Response:
        return web.Response(status=200)

    async def _get(self, url: str) -> bytes:
        """The body of an SNS URL (503 when it cannot be had now: SNS retries a 5xx, never a 4xx)."""
        context = ssl.create_default_context(cafile=self.config.ca_file)
        connector = aiohttp.TCPConnector(ssl=context, resolver=_Resolver(self.config.resolve))
        try:
            async with (
                aiohttp.ClientSession(connector=connector) as http,
                asyncio.timeout(self.config.fetch_timeout),
                http.get(url, allow_redirects=False) as response,
            ):
                response.raise_for_status()
                return await response.content.read(MAX_FETCHED)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            host = urlsplit(url).hostname
            raise IngressError(
                503, "sns_unavailable", f"cannot reach {host} now ({exc.__class__.__name__}); retry"
            ) from None


MAX_FETCHED = 64 * 1024
"""Bytes read from an SNS URL: a certificate is about 2 KiB, a confirmation's answer less."""


def _envelope(request: Incoming) -> Fields:
    """The SNS envelope: a JSON object, sent as text/plain or application/json."""
    request.expect(*CONTENT_TYPES)
    try:
        document = parse_json(request.body, request.charset)
    except Unprocessable as exc:
        raise bad_request(str(exc)) from None
    if not isinstance(document, dict):
        raise bad_request("body must be a JSON object (an SNS message)")
    return document


def _sms(envelope: Fields) -> dict[str, Any]:
    """The SMS inside a Notification's Message (400 when there is none)."""
    try:
        sms = json.loads(str(envelope.get("Message")))
    except ValueError:
        raise bad_request("Message is not JSON: not an End User Messaging SMS or SMS event") from None
    if not isinstance(sms, dict):
        raise bad_request("Message is not a JSON object: not an End User Messaging SMS or SMS event")
    return sms


class Normalizing(Normalizer):
    provider = "aws"

    def normalize(self, event: RawEvent, region: str | None) -> Part:
        if event.kind != "inbound":
            return super().normalize(event, region)
        envelope, sms = _logged(event)
        message_id = str(sms.get("inboundMessageId") or "")
        extra = {name: sms[name] for name in ("previousPublishedMessageId",) if sms.get(name)}
        if sms.get("messageKeyword"):
            extra["keyword"] = sms["messageKeyword"]
        extra["sns_message_id"] = str(envelope.get("MessageId") or "")
        return self.part(
            event,
            region,
            sender=str(sms.get("originationNumber") or ""),
            recipient=str(sms.get("destinationNumber") or ""),
            text=str(sms.get("messageBody") or ""),
            dedupe_key=f"{self.provider}:{message_id}",
            provider_message_id=message_id,
            provider_time=parse_time(str(envelope.get("Timestamp") or "")),
            extra=extra,
        )

    def report(self, event: RawEvent, region: str | None) -> DeliveryReport:
        if event.kind != "status":
            return super().report(event, region)
        _, sms = _logged(event)
        given = str(sms.get("eventType") or "")
        moment = sms.get("eventTimestamp")
        return DeliveryReport(
            provider=self.provider,
            provider_message_id=str(sms.get("messageId") or ""),
            status=STATUSES.get(given, "unknown"),
            code=given,
            description=str(sms.get("messageStatusDescription") or sms.get("messageStatus") or given),
            recipient=phone(str(sms.get("destinationPhoneNumber") or ""), region, "to")[0],
            received_at=self.received_at(event),
            provider_time=parse_time(moment) if _number(moment) else None,
        )


def _number(value: object) -> bool:
    """Whether ``value`` is a JSON number (``eventTimestamp``, Unix ms), not a boolean."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _logged(event: RawEvent) -> tuple[Fields, dict[str, Any]]:
    """A logged SNS envelope and the JSON object inside its Message."""
    envelope = parse_json(event.body)
    if not isinstance(envelope, dict):
        raise Unprocessable("the SNS envelope is not a JSON object")
    try:
        sms = json.loads(str(envelope.get("Message")))
    except ValueError:
        raise Unprocessable("the SNS Message is not JSON") from None
    if not isinstance(sms, dict):
        raise Unprocessable("the SNS Message is not a JSON object")
    return envelope, sms


STATUSES: dict[str, ReportStatus] = {
    "TEXT_QUEUED": "pending",
    "TEXT_PENDING": "pending",
    "TEXT_SUCCESSFUL": "sent",
    "TEXT_DELIVERED": "delivered",
    "TEXT_BLOCKED": "failed",
    "TEXT_TTL_EXPIRED": "failed",
    "TEXT_CARRIER_UNREACHABLE": "failed",
    "TEXT_INVALID": "failed",
    "TEXT_INVALID_MESSAGE": "failed",
    "TEXT_CARRIER_BLOCKED": "failed",
    "TEXT_UNREACHABLE": "failed",
    "TEXT_SPAM": "failed",
    "TEXT_UNKNOWN": "failed",
    "TEXT_PROTECT_BLOCKED": "failed",
}
"""An SMS event's ``eventType`` -> ours. ``TEXT_SUCCESSFUL`` is the recipient's carrier accepting it
(final where the country gives no handset receipt): sent, not delivered. ``TEXT_UNKNOWN`` is
documented as not delivered for a reason no other type covers (also what AWS gives after 72 h
without a final carrier event): failed. A type not listed here is kept as ``unknown``."""
