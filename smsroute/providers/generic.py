"""A provider described in the configuration, with no code: an ingress of type ``generic`` says
where its provider puts the sender, recipient, text, id, time and concatenation fields (form field
names, or dotted JSON paths such as ``message.from`` where a number indexes a list), what to answer,
and how requests are signed. See docs/providers.md, "A provider with no code".

The mapping is applied at the door, where it is known: each message is logged as a JSON object of
its mapped values (``from``, ``to``, ``text``, ``id``, ``time``, ``concat``) beside the provider's
own ``fields``, so the log half reads it without the settings, and a later change of the mapping
does not change what logged events mean. Without an ``id`` the dedupe key is a SHA-256 of sender,
recipient, time and text (Agile Telecom's recipe). Shared tokens and IP allow-lists are the settings
every ingress has; a signature is an HMAC of the raw body (or ``timestamp.body`` with a timestamp
header, then checked against ``signature_max_age``) in a header, hex or base64, with an optional
prefix (``sha256=``).
"""

from __future__ import annotations

import base64
import hmac
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..config import IngressConfig, Secret
from ..models.part import Concat, Part
from ..models.raw import EventKind, RawEvent
from .base import Incoming, IngressError, Message, Normalizer, Receiver, bad_request, unauthorized
from .kit import Fields, Unprocessable, at, fields_of, parse_time, sha256_key

MAPPED = ("from", "to", "text", "id", "time", "concat_ref", "concat_total", "concat_part")
TIME_FORMATS = ("%Y-%m-%d %H:%M:%S", "%d/%m/%Y %H:%M:%S")


class FieldMap(BaseModel):
    """Where each canonical field is in the provider's message."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    sender: str = Field(alias="from", description="Field (form) or dotted path (JSON) of the sender's number.")
    recipient: str = Field(alias="to", description="Field or path of the number the message was sent to.")
    text: str = Field(description="Field or path of the message text.")
    id: str | None = Field(None, description="Field or path of the provider's message id (the dedupe key).")
    time: str | None = Field(None, description="Field or path of the provider's time (ISO 8601 or Unix seconds).")
    concat_ref: str | None = Field(None, description="Field or path of a concatenated part's reference.")
    concat_total: str | None = Field(None, description="Field or path of a concatenated message's part count.")
    concat_part: str | None = Field(None, description="Field or path of a concatenated part's number (1-based).")

    def paths(self) -> dict[str, str]:
        """Canonical name -> where it is, for the fields configured."""
        named = dict(zip(MAPPED, (self.sender, self.recipient, self.text, self.id, self.time), strict=False))
        named |= {"concat_ref": self.concat_ref, "concat_total": self.concat_total, "concat_part": self.concat_part}
        return {name: path for name, path in named.items() if path is not None}


class GenericConfig(IngressConfig):
    """A provider described by a mapping: its format, where its fields are, its answer, its signature."""

    format: Literal["form", "json"] = Field(
        "json", description="How messages arrive: a form POST (or GET query), or a JSON body."
    )
    methods: tuple[Literal["GET", "POST"], ...] = Field(("POST",), description="HTTP methods accepted.")
    fields: FieldMap = Field(description="Where from, to, text (required) and id, time, concat_* are.")
    required: tuple[str, ...] = Field(
        (), description="Fields or paths every message must carry (400 naming the absent). Default: from, to, text."
    )
    batch: str | None = Field(
        None, description="JSON path of a list of messages (a batch: one event each). A top-level list always is."
    )
    answer_status: int = Field(200, ge=200, le=299, description="Status of the answer once the events are durable.")
    answer_body: str = Field("", description="Body of that answer.")
    answer_content_type: str = Field("text/plain", description="Content type of that answer.")
    hmac_secret: Secret | None = Field(
        None, description="Secret of the provider's HMAC signature; when set, every request must carry it."
    )
    hmac_header: str = Field("X-Signature", description="Header carrying the signature.")
    hmac_algorithm: Literal["sha1", "sha256", "sha512"] = Field("sha256", description="The HMAC's hash.")
    hmac_encoding: Literal["hex", "base64"] = Field("hex", description="How the signature is written.")
    hmac_prefix: str = Field("", description="Text before the signature in the header (e.g. sha256=).")
    timestamp_header: str | None = Field(
        None, description="Header of a signed timestamp (Unix seconds): the HMAC covers timestamp.body."
    )
    signature_max_age: float = Field(
        300, gt=0, description="Seconds a signed timestamp may differ from the receive time."
    )

    @model_validator(mode="after")
    def _usable(self) -> GenericConfig:
        if self.format == "form" and self.batch is not None:
            raise ValueError("batch is a JSON path: a form carries one message")
        if self.format == "json" and "GET" in self.methods:
            raise ValueError("a JSON provider posts: GET carries a query, use format = form")
        return self


def signature(config: GenericConfig, secret: str, timestamp: str | None, body: bytes) -> str:
    """The configured HMAC of the body (after ``timestamp.`` when there is a timestamp), encoded."""
    signed = body if timestamp is None else timestamp.encode("utf-8", "surrogateescape") + b"." + body
    digest = hmac.new(secret.encode(), signed, config.hmac_algorithm).digest()
    return config.hmac_prefix + (digest.hex() if config.hmac_encoding == "hex" else base64.b64encode(digest).decode())


class Receiving(Receiver):
    provider = "generic"
    kinds = frozenset({"inbound"})
    methods = frozenset({"GET", "POST"})
    config_class = GenericConfig
    default_mount = False  # nothing to receive without a mapping
    auth_scheme = "as configured: shared token, IP allow-list, HMAC of the body in a header"
    answer_summary = "as configured (answer_status, answer_body)"
    config: GenericConfig

    @property
    def signed(self) -> bool:
        return self.config.hmac_secret is not None

    def authenticate(self, request: Incoming) -> None:
        if request.method not in self.config.methods:
            allowed = ", ".join(self.config.methods)
            raise IngressError(405, "method_not_allowed", f"method must be {allowed}", {"Allow": allowed})
        if self.config.hmac_secret is None:
            return
        given = request.headers.get(self.config.hmac_header)
        timestamp = None if self.config.timestamp_header is None else request.headers.get(self.config.timestamp_header)
        if given is None or (self.config.timestamp_header is not None and timestamp is None):
            raise unauthorized(f"missing signature: {self.config.hmac_header}")
        expected = signature(self.config, self.config.hmac_secret.get_secret_value(), timestamp, request.body)
        if not hmac.compare_digest(given.strip().encode("utf-8", "surrogateescape"), expected.encode()):
            raise unauthorized("bad signature")
        if timestamp is not None:
            try:
                seconds = float(timestamp)
            except ValueError:
                raise unauthorized("non-numeric signature timestamp") from None
            if not abs(request.received_at_us / 1_000_000 - seconds) <= self.config.signature_max_age:
                raise unauthorized("signature timestamp outside the allowed window")

    def validate(self, request: Incoming) -> list[Fields]:
        if self.config.format == "form":
            messages: list[Fields] = [request.query if request.method == "GET" else request.form()]
        else:
            document = request.json()
            items = at(document, self.config.batch) if self.config.batch and isinstance(document, dict) else document
            if not isinstance(items, dict | list) or not items:
                where = f" at {self.config.batch}" if self.config.batch else ""
                raise bad_request(f"no message{where}: the body must hold a JSON object or a list of objects")
            messages = items if isinstance(items, list) else [items]
        required = self.config.required or (
            self.config.fields.sender,
            self.config.fields.recipient,
            self.config.fields.text,
        )
        return [self._mapped(fields, required, number, len(messages)) for number, fields in enumerate(messages, 1)]

    def _mapped(self, fields: Any, required: tuple[str, ...], number: int, count: int) -> Fields:
        """The message as logged: its mapped values beside the provider's own fields."""
        where = f" in message {number} of {count}" if count > 1 else ""
        if not isinstance(fields, dict) and not hasattr(fields, "getone"):
            raise bad_request(f"message {number} of {count} is not a JSON object")
        plain = dict(fields) if isinstance(fields, dict) else {name: fields.getone(name) for name in fields}
        missing = [path for path in required if _value(plain, path) is None]
        if missing:
            raise bad_request(f"missing required field{'s' if len(missing) > 1 else ''}{where}: {', '.join(missing)}")
        mapped: dict[str, Any] = {}
        for name, path in self.config.fields.paths().items():
            value = _value(plain, path)
            if isinstance(value, dict | list):
                raise bad_request(f"{path}{where} is not a single value")
            mapped[name] = None if value is None else str(value)
        return {**mapped, "fields": plain}

    def split(self, request: Incoming, messages: list[Fields]) -> list[Message]:
        return self.each(request.kind, messages)

    def key(self, kind: EventKind, fields: Fields) -> str:
        return f"{self.provider}:{fields.get('from')}:{fields.get('to')}"

    def answer(self, request: Incoming, messages: list[Message]) -> web.Response:
        config = self.config
        return web.Response(
            status=config.answer_status, text=config.answer_body, content_type=config.answer_content_type
        )


def _value(fields: dict[str, Any], path: str) -> Any:
    """A form field by its name, a JSON value by its name or its dotted path."""
    return fields[path] if path in fields else at(fields, path)


class Normalizing(Normalizer):
    provider = "generic"

    def normalize(self, event: RawEvent, region: str | None) -> Part:
        mapped = fields_of(event)
        sender, recipient, text = (str(mapped.get(name) or "") for name in ("from", "to", "text"))
        moment = mapped.get("time")
        key = mapped.get("id") or sha256_key(sender, recipient, str(moment or ""), text)
        return self.part(
            event,
            region,
            sender=sender,
            recipient=recipient,
            text=text,
            dedupe_key=f"{event.ingress}:{key}",
            provider_message_id=str(mapped.get("id") or ""),
            provider_time=parse_time(moment, *TIME_FORMATS),
            concat=_concat(mapped),
        )


def _concat(mapped: Fields) -> Concat | None:
    values = [mapped.get(name) for name in ("concat_ref", "concat_total", "concat_part")]
    if all(value is None for value in values):
        return None
    try:
        concat = Concat(str(values[0]), int(str(values[1])), int(str(values[2])))
    except ValueError:
        raise Unprocessable(f"bad concatenation fields: {values}") from None
    if not 1 <= concat.index <= concat.total:
        raise Unprocessable(f"concatenated part {concat.index} is outside 1..{concat.total}")
    return concat
