"""Twilio Messaging inbound SMS/MMS: a form POST (MessageSid, AccountSid, From, To, Body, NumMedia...).
An MMS carries its attachments as ``MediaUrl<n>`` and ``MediaContentType<n>``: they become the
message's ``media``.

Twilio signs each request in ``X-Twilio-Signature`` with the account's auth token; with a token
configured the signature is required. The answer is an empty TwiML document: received, no reply
(auto-replies are the sinks' job, after routing).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable
from urllib.parse import urlsplit

from aiohttp import web
from pydantic import Field

from ..config import Secret
from ..models.message import Media
from ..models.part import Part
from ..models.raw import EventKind, RawEvent
from .base import Incoming, Message, Normalizer, Receiver, SignedUrlConfig, bad_request, require, unauthorized
from .kit import Fields, fields_of

REQUIRED = ("MessageSid", "AccountSid", "From", "To")
SIGNATURE_HEADER = "X-Twilio-Signature"
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'


class TwilioConfig(SignedUrlConfig):
    """Twilio signs every request with the account's auth token (``X-Twilio-Signature``, HMAC-SHA1)."""

    auth_token: Secret | None = Field(
        None, description="Account auth token; when set, every request must carry a valid signature."
    )


def signature(auth_token: str, url: str, params: Iterable[tuple[str, str]]) -> str:
    """Twilio's request signature: base64 HMAC-SHA1 of the URL followed by every POST parameter's
    name and value, sorted by name; a repeated name's distinct values sorted too, as Twilio's own
    request validators do."""
    values: dict[str, set[str]] = {}
    for name, value in params:
        values.setdefault(name, set()).add(value)
    signed = url + "".join(name + value for name in sorted(values) for value in sorted(values[name]))
    digest = hmac.new(auth_token.encode(), signed.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def valid(auth_token: str, url: str, params: list[tuple[str, str]], given: str) -> bool:
    """Whether ``given`` is Twilio's signature of the request, over its URL with or without the port."""
    # surrogateescape: the header's bytes as sent, so junk in it is a mismatch, not an encoding error
    given_bytes = given.encode("utf-8", "surrogateescape")
    matches = [
        hmac.compare_digest(given_bytes, signature(auth_token, variant, params).encode())
        for variant in port_variants(url)
    ]
    return any(matches)


def port_variants(url: str) -> tuple[str, str]:
    """The URL without its port and with it (the scheme's default when none is given): Twilio signs
    whichever form it was configured with, and its own validators accept both."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    bare = host.rsplit(":", 1)[0] if parts.port is not None else host
    port = parts.port or (443 if parts.scheme == "https" else 80)
    prefix = parts.netloc[: len(parts.netloc) - len(host)]
    return (
        parts._replace(netloc=prefix + bare).geturl(),
        parts._replace(netloc=f"{prefix}{bare}:{port}").geturl(),
    )


class Receiving(Receiver):
    provider = "twilio"
    auth_scheme = "X-Twilio-Signature HMAC-SHA1 with auth_token"
    answer_summary = "200 empty TwiML <Response></Response> (text/xml)"
    config_class = TwilioConfig
    headers = (SIGNATURE_HEADER,)
    config: TwilioConfig

    @property
    def signed(self) -> bool:
        return self.config.auth_token is not None

    def authenticate(self, request: Incoming) -> None:
        if self.config.auth_token is None:
            return
        given = request.headers.get(SIGNATURE_HEADER)
        if given is None:
            raise unauthorized(f"missing {SIGNATURE_HEADER}")
        token = self.config.auth_token.get_secret_value()
        if not valid(token, self.config.signed_url(request), list(request.form().items()), given):
            raise unauthorized("bad signature")

    def validate(self, request: Incoming) -> list[Fields]:
        fields = request.form()
        require(fields, REQUIRED)
        if fields.get("Body") is None and fields.get("NumMedia") is None:
            raise bad_request("missing content: Body or NumMedia is required")
        return [fields]

    def key(self, kind: EventKind, fields: Fields) -> str:
        return f"{self.provider}:{fields['From']}:{fields['To']}"

    def answer(self, request: Incoming, messages: list[Message]) -> web.Response:
        return web.Response(text=EMPTY_TWIML, content_type="text/xml")


class Normalizing(Normalizer):
    provider = "twilio"

    def normalize(self, event: RawEvent, region: str | None) -> Part:
        fields = fields_of(event)
        sid = fields.get("MessageSid") or fields.get("SmsSid") or ""
        return self.part(
            event,
            region,
            sender=fields.get("From", ""),
            recipient=fields.get("To", ""),
            text=fields.get("Body", ""),
            encoding="text",
            dedupe_key=f"{self.provider}:{sid}",
            provider_message_id=sid,
            media=_media(fields),
            extra={name: fields[name] for name in EXTRA if fields.get(name)},
        )


def _media(fields: Fields) -> tuple[Media, ...]:
    """An MMS's attachments: ``MediaUrl0..N`` with ``MediaContentType0..N`` (Twilio sends up to 10)."""
    found = []
    for index in range(MAX_MEDIA):
        url = fields.get(f"MediaUrl{index}")
        if not url:
            break
        found.append(Media(url, fields.get(f"MediaContentType{index}", "")))
    return tuple(found)


MAX_MEDIA = 10


EXTRA = ("AccountSid", "MessagingServiceSid", "NumMedia", "NumSegments", "FromCountry", "ToCountry")
