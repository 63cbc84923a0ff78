"""The two halves of every provider module, and what they work on.

:class:`Receiver`, the HTTP half, is four small steps called in this order by the ingress for each
request: ``authenticate`` (signatures), ``validate`` (content type, required fields), ``split``
(one raw event per message) and ``answer`` (the provider's idea of "received"), and two rarely
needed asynchronous hooks around them: ``prepare`` (before ``authenticate``: fetch what it needs)
and ``settle`` (after the events are durable, before the answer). Access rules
common to all providers (IP allow-list, shared token) are applied before, by
:mod:`smsroute.ingress.access`. One receiver is made per configured ingress, with its settings.

:class:`Normalizer`, the log half, reads a logged raw event: ``normalize`` makes it a canonical
part, ``report`` a delivery report. It needs no settings and keeps no state: the pipeline holds one
per provider type.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any, ClassVar
from urllib.parse import urlencode, urlsplit

from aiohttp import BasicAuth, web
from multidict import CIMultiDictProxy, MultiDict
from pydantic import Field, field_validator, model_validator

from ..config import IngressConfig, Secret
from ..models.part import Part
from ..models.raw import EventKind, RawEvent
from ..models.report import DeliveryReport
from . import mail
from .kit import FORM, JSON, Fields, Unprocessable, at, parse_form, parse_json, phone


class IngressError(Exception):
    """A request the ingress answers with ``status`` and a short ``reason``; ``code`` labels metrics."""

    def __init__(
        self, status: int, code: str, reason: str, headers: Mapping[str, str] | None = None, *, close: bool = False
    ) -> None:
        super().__init__(reason)
        self.status = status
        self.code = code
        self.reason = reason
        self.headers = dict(headers or {})
        self.close = close
        """The connection is closed after the answer (what follows on it cannot be read)."""


class SignedUrlConfig(IngressConfig):
    """Settings of a provider that signs the URL it calls: behind a proxy, that URL is not ours."""

    public_url: str | None = Field(
        None,
        description="The URL the provider calls (scheme, host, path), when a proxy stands between; "
        "the query string is taken from the request as received. Default: the request's own URL.",
    )

    @field_validator("public_url")
    @classmethod
    def _no_query(cls, value: str | None) -> str | None:
        if value is not None and ("?" in value or "#" in value):
            raise ValueError("public_url takes no query string or fragment: the request's own query is appended")
        return value

    def signed_url(self, request: Incoming) -> str:
        """The URL as the provider called it: the public URL when configured, with the request's query."""
        if self.public_url is None:
            return request.url
        query = urlsplit(request.url).query
        return f"{self.public_url}?{query}" if query else self.public_url


class BasicAuthConfig(IngressConfig):
    """Settings of a provider that logs in with HTTP Basic auth (RFC 7617) set on its side."""

    username: str | None = Field(
        None, description="Basic auth user name the provider sends; with password, every request must carry both."
    )
    password: Secret | None = Field(None, description="Basic auth password, with username; never logged.")

    @model_validator(mode="after")
    def _both(self) -> BasicAuthConfig:
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password go together: set both, or neither")
        return self

    @property
    def basic(self) -> bool:
        return self.password is not None

    def check_basic(self, request: Incoming) -> None:
        """401 with a Basic challenge unless the request logs in with the configured user and password."""
        if self.username is None or self.password is None:
            return
        challenge = {"WWW-Authenticate": 'Basic realm="smsroute", charset="UTF-8"'}
        header = request.headers.get("Authorization")
        if header is None:
            raise IngressError(401, "unauthorized", "missing Basic credentials", challenge)
        try:
            given = BasicAuth.decode(header, encoding="utf-8")
        except ValueError:
            raise IngressError(401, "unauthorized", "malformed Basic credentials", challenge) from None
        checks = [
            hmac.compare_digest(given.login.encode("utf-8", "surrogateescape"), self.username.encode()),
            hmac.compare_digest(
                given.password.encode("utf-8", "surrogateescape"), self.password.get_secret_value().encode()
            ),
        ]
        if not all(checks):
            raise IngressError(401, "unauthorized", "wrong Basic credentials", challenge)


def bad_request(reason: str) -> IngressError:
    return IngressError(400, "bad_request", reason)


def unauthorized(reason: str) -> IngressError:
    return IngressError(401, "unauthorized", reason)


@dataclass(slots=True)
class Incoming:
    """A provider request, fully read, nothing interpreted yet. URL and query are derived from the
    aiohttp request on first use: most providers never look at them."""

    http: web.BaseRequest
    source: str
    kind: EventKind
    method: str
    path: str
    headers: CIMultiDictProxy[str]
    content_type: str
    charset: str | None
    body: bytes
    remote: str
    received_at_us: int
    text_errors: str = "strict"
    """How undecodable form text is met: ``strict`` refuses it (400), ``replace`` keeps the rest of
    the message (for providers whose real traffic carries such junk)."""
    _parsed: dict[str, Any] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return str(self.http.url)

    @property
    def query(self) -> MultiDict[str]:
        """The query's fields (400 when they do not decode); a copy, so that access rules may
        remove a token from it."""
        if "query" not in self._parsed:
            raw = self.http.rel_url.raw_query_string.encode("utf-8", "surrogateescape")  # the bytes as sent
            self._parsed["query"] = self._read(parse_form, raw)
        query: MultiDict[str] = self._parsed["query"]
        return query

    @property
    def query_string(self) -> str:
        """The query as received (still percent-encoded), or as rewritten when a field was removed."""
        if "query" not in self._parsed:
            return self.http.rel_url.raw_query_string
        return urlencode(list(self._parsed["query"].items()))

    def form(self) -> MultiDict[str]:
        """The urlencoded body's fields (415 for any other content type, 400 when they do not decode)."""
        if "form" not in self._parsed:
            self.expect(FORM)
            self._parsed["form"] = self._read(parse_form, self.body, self.charset, self.text_errors)
        form: MultiDict[str] = self._parsed["form"]
        return form

    def json(self) -> Any:
        """The JSON body (415 for another content type, 400 if it does not parse)."""
        if "json" not in self._parsed:
            self.expect(JSON)
            self._parsed["json"] = self._read(parse_json, self.body, self.charset)
        return self._parsed["json"]

    @staticmethod
    def _read(parse: Callable[..., Any], *args: Any) -> Any:
        try:
            return parse(*args)
        except Unprocessable as exc:
            raise bad_request(str(exc)) from None

    def json_messages(self) -> list[Fields]:
        """The messages of a JSON body: one object, or a list of objects (a batch)."""
        data = self.json()
        if not isinstance(data, dict | list):
            raise bad_request("JSON body must be an object or a list of objects")
        batch = data if isinstance(data, list) else [data]
        if not batch:
            raise bad_request("JSON list holds no messages")
        for number, item in enumerate(batch, 1):
            if not isinstance(item, dict):
                raise bad_request(f"message {number} of {len(batch)} is not a JSON object")
        return list(batch)

    @property
    def batched(self) -> bool:
        """True when the body is a JSON list of messages, however many."""
        return isinstance(self._parsed.get("json"), list)

    def params(self) -> Mapping[str, Any]:
        """Fields of a GET (query), form POST or JSON POST, whichever this request is."""
        if self.method == "GET":
            return self.query
        if self.content_type == JSON or self.content_type.endswith("+json"):
            data = self.json()
            if not isinstance(data, dict):
                raise bad_request("JSON body must be an object")
            return data
        return self.form()

    def expect(self, *content_types: str) -> None:
        if self.content_type not in content_types and not (
            JSON in content_types and self.content_type.endswith("+json")
        ):
            raise IngressError(
                415,
                "unsupported_media_type",
                f"content type must be {' or '.join(content_types)}, not {self.content_type or 'missing'}",
            )


def require(fields: Fields, names: Sequence[str], where: str = "") -> None:
    """400 naming every required field that is absent."""
    _missing([name for name in names if fields.get(name) is None], where)


def require_paths(document: Any, paths: Sequence[str], where: str = "") -> None:
    """400 naming every dotted path (:func:`~.kit.at`) that leads to nothing or to null."""
    _missing([path for path in paths if at(document, path) is None], where)


def _missing(missing: Sequence[str], where: str) -> None:
    if missing:
        raise bad_request(f"missing required field{'s' if len(missing) > 1 else ''}{where}: {', '.join(missing)}")


def require_each(messages: Sequence[Fields], names: Callable[[Fields], Sequence[str]]) -> None:
    """:func:`require` for every message of a batch, naming the message when there are several."""
    for number, fields in enumerate(messages, 1):
        require(fields, names(fields), f" in message {number} of {len(messages)}" if len(messages) > 1 else "")


@dataclass(slots=True, frozen=True)
class Message:
    """One message of a request: its payload bytes and its partition key."""

    body: bytes
    key: str
    content_type: str


class Receiver:
    """The HTTP half of a provider. Subclasses set the class attributes and override what differs."""

    provider: ClassVar[str]
    kinds: ClassVar[frozenset[EventKind]] = frozenset({"inbound"})
    methods: ClassVar[frozenset[str]] = frozenset({"POST"})
    config_class: ClassVar[type[IngressConfig]] = IngressConfig
    headers: ClassVar[tuple[str, ...]] = ()
    """Request headers worth keeping in the raw event (never secrets)."""
    email_labels: ClassVar[Mapping[str, str]] = {}
    """SMS by email: the labels of the fields in the email's text, as the provider writes them, ->
    the names of the same fields in its webhook, so both arrive as the same fields. Empty: the
    provider sends no email."""
    email_text_label: ClassVar[str] = ""
    """The label of the SMS text, which may run over several lines."""
    default_mount: ClassVar[bool] = True
    """Mounted under its own name when no ingress is configured; False for a type that needs settings."""
    auth_scheme: ClassVar[str] = "none of its own (shared token or IP allow-list)"
    """How the provider proves a request is its own, for ``smsroute providers list``."""
    answer_summary: ClassVar[str] = "200 OK"
    """What it is answered once its events are durable, for ``smsroute providers list``."""
    strict_text: ClassVar[bool] = True
    """False for a provider whose real traffic carries undecodable bytes in form fields: they are
    replaced (and the message flagged) rather than refused, since a refusal only buys retries."""

    def __init__(self, name: str, config: IngressConfig) -> None:
        self.name = name
        self.config = config

    @property
    def signed(self) -> bool:
        """True when the receiver verifies a provider signature."""
        return False

    async def prepare(self, request: Incoming) -> None:
        """Fetch what ``authenticate`` needs and cannot know yet (SNS: the signing certificate)."""

    def authenticate(self, request: Incoming) -> None:
        """Check the provider's signature, if it has one and it is configured (401 if wrong)."""

    def validate(self, request: Incoming) -> list[Fields]:
        """Each message's fields; 4xx for what can never be processed."""
        raise NotImplementedError

    def key(self, kind: EventKind, fields: Fields) -> str:
        """Partition key: every part and every retry of one message must share it.

        Inbound messages use ``<provider>:<sender>:<recipient>`` as the provider sends them: the
        stitch key is (provider, from, to, reference, total), so all parts of a message share
        this key, and a provider retry repeats the same numbers. A message id would split parts
        (each has its own), the provider alone would put a burst on one partition; the ingress
        name is left out so that ingresses of one provider stitch together. Delivery reports
        are keyed by the id of the message they report on. On Kafka the key picks the partition.
        """
        raise NotImplementedError

    def split(self, request: Incoming, messages: list[Fields]) -> list[Message]:
        """One payload per message: the body itself, or each element of a batched JSON body."""
        if not request.batched:
            content_type = request.content_type + (f"; charset={request.charset}" if request.charset else "")
            return [Message(request.body, self.key(request.kind, messages[0]), content_type)]
        return self.each(request.kind, messages)

    def each(self, kind: EventKind, messages: list[Fields]) -> list[Message]:
        """One JSON payload per message of a batch."""
        return [
            Message(json.dumps(fields, ensure_ascii=False).encode(), self.key(kind, fields), JSON)
            for fields in messages
        ]

    async def settle(self, request: Incoming, messages: list[Message]) -> None:
        """What a request asks for beyond logging it (SNS: confirming a subscription), once its events
        are durable and before the answer; an :class:`IngressError` answers instead."""

    def answer(self, request: Incoming, messages: list[Message]) -> web.Response:
        """The provider's "received": sent only after the events are durable."""
        return web.Response(status=200, text="OK")

    def email_fields(self, message: EmailMessage) -> Fields:
        """The fields of one of the provider's SMS emails; :class:`~.mail.Refused` when it is not one."""
        return mail.labelled(mail.text(message), self.email_labels, self.email_text_label)


class BasicAuthReceiver(Receiver):
    """A provider whose only authentication is HTTP Basic (:class:`BasicAuthConfig`)."""

    auth_scheme = "Basic (username/password)"
    config: BasicAuthConfig

    @property
    def signed(self) -> bool:
        return self.config.basic

    def authenticate(self, request: Incoming) -> None:
        self.config.check_basic(request)


class Normalizer:
    """The log half of a provider: what its logged events mean."""

    provider: ClassVar[str]

    def normalize(self, event: RawEvent, region: str | None) -> Part:
        """The logged event as a canonical part; :class:`Unprocessable` when it never can be one."""
        raise Unprocessable(f"{self.provider} events of kind {event.kind} are not processed")

    def report(self, event: RawEvent, region: str | None) -> DeliveryReport:
        """A logged status event as a delivery report; :class:`Unprocessable` when it never can be one."""
        raise Unprocessable(f"{self.provider} sends no delivery reports")

    @staticmethod
    def received_at(event: RawEvent) -> datetime:
        """When the ingress received the event."""
        return datetime.fromtimestamp(event.received_at_us / 1_000_000, UTC)

    def part(
        self,
        event: RawEvent,
        region: str | None,
        *,
        sender: str,
        recipient: str,
        flags: tuple[str, ...] = (),
        **fields: Any,
    ) -> Part:
        """A part of this provider's, with numbers in E.164 where they parse (flagged where not)."""
        sender, sender_flags = phone(str(sender), region, "from")
        recipient, recipient_flags = phone(str(recipient), region, "to")
        return Part(
            provider=self.provider,
            source=event.ingress,
            sender=sender,
            recipient=recipient,
            received_at=self.received_at(event),
            flags=sender_flags + recipient_flags + flags,
            **fields,
        )
