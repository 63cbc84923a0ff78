"""What every provider adapter shares: the request as adapters see it, the refusal, the interface.

An adapter is four small steps, called in this order by the ingress handler:
``authenticate`` (signatures), ``validate`` (content type, required fields), ``split`` (one raw
event per message) and ``answer`` (the provider's idea of "received"). Access rules common to all
providers (IP allow-list, shared token) are applied before, by :mod:`smsroute.ingress.access`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlencode

from aiohttp import web
from multidict import CIMultiDictProxy, MultiDict

from ..config import IngressConfig
from ..events import EventKind, RawEvent
from ..streams.parts import Part, Unprocessable, phone

FORM = "application/x-www-form-urlencoded"
JSON = "application/json"

Fields = Mapping[str, Any]


class IngressError(Exception):
    """A request the ingress answers with ``status`` and a short ``reason``; ``code`` labels metrics."""

    def __init__(self, status: int, code: str, reason: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.code = code
        self.reason = reason
        self.headers = dict(headers or {})


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
    _parsed: dict[str, Any] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return str(self.http.url)

    @property
    def query(self) -> MultiDict[str]:
        """The query's fields; a copy, so that access rules may remove a token from it."""
        if "query" not in self._parsed:
            self._parsed["query"] = MultiDict(self.http.query)
        return self._parsed["query"]

    @property
    def query_string(self) -> str:
        """The query as received, or as rewritten when a field was removed from it."""
        if "query" not in self._parsed:
            return self.http.query_string
        return urlencode(list(self._parsed["query"].items()))

    def form(self) -> MultiDict[str]:
        """The urlencoded body's fields (415 for any other content type)."""
        if "form" not in self._parsed:
            self.expect(FORM)
            text = self.body.decode(self.charset or "utf-8", errors="replace")
            self._parsed["form"] = MultiDict(parse_qsl(text, keep_blank_values=True, errors="replace"))
        return self._parsed["form"]

    def json(self) -> Any:
        """The JSON body (415 for another content type, 400 if it does not parse)."""
        if "json" not in self._parsed:
            self.expect(JSON)
            try:
                self._parsed["json"] = json.loads(self.body.decode(self.charset or "utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise bad_request(f"body is not valid JSON: {exc}") from None
        return self._parsed["json"]

    def json_messages(self) -> list[dict[str, Any]]:
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
        return batch

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
    missing = [name for name in names if fields.get(name) is None]
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


class Adapter:
    """Base of all provider adapters. Subclasses set the class attributes and override what differs."""

    provider: ClassVar[str]
    kinds: ClassVar[frozenset[EventKind]] = frozenset({"inbound"})
    methods: ClassVar[frozenset[str]] = frozenset({"POST"})
    config_class: ClassVar[type[IngressConfig]] = IngressConfig
    headers: ClassVar[tuple[str, ...]] = ()
    """Request headers worth keeping in the raw event (never secrets)."""

    def __init__(self, name: str, config: IngressConfig) -> None:
        self.name = name
        self.config = config

    @property
    def signed(self) -> bool:
        """True when the adapter verifies a provider signature."""
        return False

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
        return [
            Message(json.dumps(fields, ensure_ascii=False).encode(), self.key(request.kind, fields), JSON)
            for fields in messages
        ]

    def answer(self, request: Incoming, messages: list[Message]) -> web.Response:
        """The provider's "received": sent only after the events are durable."""
        return web.Response(status=200, text="OK")

    def normalize(self, event: RawEvent, region: str | None) -> Part:
        """The logged event as a canonical part; :class:`Unprocessable` when it never can be one."""
        raise Unprocessable(f"{self.provider} events of kind {event.kind} are not processed")

    def part(self, event: RawEvent, region: str | None, *, sender: str, recipient: str, **fields: Any) -> Part:
        """A part of this provider's, with numbers in E.164 where they parse (flagged where not)."""
        sender, sender_flags = phone(str(sender), region, "from")
        recipient, recipient_flags = phone(str(recipient), region, "to")
        return Part(
            provider=self.provider,
            source=event.ingress,
            sender=sender,
            recipient=recipient,
            received_at=datetime.fromtimestamp(event.received_at_us / 1_000_000, UTC),
            flags=sender_flags + recipient_flags,
            **fields,
        )


def fields_of(event: RawEvent) -> Fields:
    """The fields of a logged event, parsed as the ingress parsed the request."""
    if event.method == "GET" or not event.body:
        return dict(parse_qsl(event.query, keep_blank_values=True))
    mimetype, _, parameters = event.content_type.partition(";")
    charset = parameters.partition("charset=")[2].strip() or "utf-8"
    if mimetype == JSON or mimetype.endswith("+json"):
        try:
            data = json.loads(event.body.decode(charset))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise Unprocessable(f"body is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise Unprocessable("JSON body is not an object")
        return data
    return dict(parse_qsl(event.body.decode(charset, errors="replace"), keep_blank_values=True, encoding=charset))
