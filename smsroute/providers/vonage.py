"""Vonage (Nexmo) inbound SMS: JSON POST by default, also form POST or GET with the fields in the query.

Vonage resends for 24 hours anything not answered 200 or 204, so 204 is sent only once the event is
durable. Fields: ``type`` (text, unicode, binary), ``to``, ``msisdn``, ``messageId``,
``message-timestamp`` (optional: it only feeds ``provider_time``); ``text`` for text and unicode, ``data`` (and ``udh``) for binary; concatenated
parts carry ``concat``, ``concat-ref``, ``concat-total`` and ``concat-part``. An unknown ``type`` is
kept: the stream processors dead-letter it with a reason, the door rejects only what can never work.

With a signature secret configured every message must carry ``sig`` over all its other fields and a
``timestamp`` within ``signature_max_age`` seconds of the receive time (so a captured request cannot be
replayed later). A JSON body may be a list of messages: each is checked and logged on its own.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Literal

from aiohttp import web
from pydantic import Field

from ..config import IngressConfig, Secret
from ..models.part import Concat, Part
from ..models.raw import EventKind, RawEvent
from .base import Incoming, Message, Normalizer, Receiver, require_each, unauthorized
from .kit import FORM, JSON, Fields, Unprocessable, decode_user_data, fields_of, from_hex, parse_time, parse_udh

REQUIRED = ("type", "to", "msisdn", "messageId")
"""``message-timestamp`` only feeds ``provider_time``: a message without it is still a message."""
BY_TYPE = {"text": ("text",), "unicode": ("text",), "binary": ("data",)}
CONCAT = ("concat-ref", "concat-total", "concat-part")

SignatureMethod = Literal["md5hash", "md5", "sha1", "sha256", "sha512"]


class VonageConfig(IngressConfig):
    """Vonage signs inbound messages when the account has signed webhooks on (``sig`` with a ``timestamp``)."""

    signature_secret: Secret | None = Field(
        None, description="The account's signature secret; when set, unsigned or wrongly signed messages get 401."
    )
    signature_method: SignatureMethod = Field(
        "md5hash", description="As set in the Vonage dashboard: md5hash, or HMAC with md5, sha1, sha256 or sha512."
    )
    signature_max_age: float = Field(
        300, gt=0, description="Seconds a signed message's timestamp may differ from the receive time."
    )


def signature(params: Fields, secret: str, method: SignatureMethod) -> str:
    """Vonage's signature of ``params`` (every field but ``sig``), computed as its SDKs do.

    Each field, sorted by name, adds ``&name=value`` with ``&`` and ``=`` in the value turned into
    ``_``. Values of a JSON body that are not strings are signed as their JSON text (``true``, ``3``):
    what they were as text before the sender's JSON encoder typed them."""
    signed = "".join(
        f"&{name}={_signed_value(value)}"
        for name, value in sorted(params.items(), key=lambda item: item[0])
        if name != "sig"
    ).encode()
    if method == "md5hash":
        return hashlib.md5(signed + secret.encode()).hexdigest()
    return hmac.new(secret.encode(), signed, method).hexdigest()


def _signed_value(value: object) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return text.replace("&", "_").replace("=", "_")


class Receiving(Receiver):
    provider = "vonage"
    auth_scheme = "sig (md5hash or HMAC) with signature_secret and a timestamp window"
    answer_summary = "204"
    methods = frozenset({"GET", "POST"})
    config_class = VonageConfig
    config: VonageConfig

    @property
    def signed(self) -> bool:
        return self.config.signature_secret is not None

    def authenticate(self, request: Incoming) -> None:
        secret = self.config.signature_secret
        if secret is None:
            return
        now = request.received_at_us / 1_000_000
        for fields in _messages(request):
            given = fields.get("sig")
            if given is None:
                raise unauthorized("missing signature")
            try:
                timestamp = float(fields["timestamp"])
            except (KeyError, TypeError, ValueError, OverflowError):
                raise unauthorized("missing or non-numeric signature timestamp") from None
            expected = signature(fields, secret.get_secret_value(), self.config.signature_method)
            if not hmac.compare_digest(str(given).lower().encode(), expected.encode()):
                raise unauthorized("bad signature")
            # Checked after the signature, so a genuine but late message is told apart from a forgery;
            # written so that a NaN timestamp fails too.
            if not abs(now - timestamp) <= self.config.signature_max_age:
                raise unauthorized("signature timestamp outside the allowed window")

    def validate(self, request: Incoming) -> list[Fields]:
        messages = _messages(request)
        require_each(messages, _required)
        return messages

    def key(self, kind: EventKind, fields: Fields) -> str:
        return f"{self.provider}:{fields['msisdn']}:{fields['to']}"

    def answer(self, request: Incoming, messages: list[Message]) -> web.Response:
        return web.Response(status=204)


class Normalizing(Normalizer):
    provider = "vonage"

    def normalize(self, event: RawEvent, region: str | None) -> Part:
        fields = fields_of(event)
        kind = str(fields.get("type"))
        if kind == "binary":
            udh = from_hex(str(fields.get("udh") or ""), "udh")
            concat, _ = parse_udh(udh)
            text = decode_user_data(from_hex(str(fields.get("data", "")), "data"), "binary")
        elif kind in ("text", "unicode"):
            concat, text = None, str(fields.get("text", ""))
        else:
            raise Unprocessable(f"unknown vonage message type {kind!r}")
        if str(fields.get("concat")).lower() == "true":
            concat = _concat(fields)
        return self.part(
            event,
            region,
            sender=fields.get("msisdn", ""),
            recipient=fields.get("to", ""),
            text=text,
            encoding=kind,
            dedupe_key=f"{self.provider}:{fields.get('messageId')}",
            provider_message_id=str(fields.get("messageId", "")),
            provider_time=parse_time(fields.get("message-timestamp"), "%Y-%m-%d %H:%M:%S"),
            concat=concat,
            extra={"udh": fields["udh"]} if fields.get("udh") else {},
        )


def _concat(fields: Fields) -> Concat:
    try:
        concat = Concat(str(fields["concat-ref"]), int(fields["concat-total"]), int(fields["concat-part"]))
    except (KeyError, ValueError) as exc:
        raise Unprocessable(f"bad concatenation fields: {exc}") from None
    if not 1 <= concat.index <= concat.total:
        raise Unprocessable(f"concat-part {concat.index} is outside 1..{concat.total}")
    return concat


def _messages(request: Incoming) -> list[Fields]:
    """The request's messages: the query or form fields, or the JSON object or list of objects."""
    if request.method == "POST":
        request.expect(JSON, FORM)
    if request.method == "GET" or request.content_type == FORM:
        return [request.params()]
    return request.json_messages()


def _required(fields: Fields) -> list[str]:
    names = [*REQUIRED, *BY_TYPE.get(str(fields.get("type")), ())]
    if str(fields.get("concat")).lower() == "true":
        names += CONCAT
    return names
