"""The canonical inbound message: what every provider's payload becomes, what routes match against,
and the JSON body a webhook receives (email and SMS templates see the same fields)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal

from .avro import codec

Encoding = Literal["text", "unicode", "binary"]


def iso(moment: datetime) -> str:
    """UTC with milliseconds and a Z, as in the design's contract."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(slots=True, frozen=True)
class Media:
    """An attachment of an MMS, where the provider keeps it."""

    url: str
    content_type: str = ""

    def to_json(self) -> dict[str, str]:
        return {"url": self.url, "content_type": self.content_type}


@dataclass(slots=True, frozen=True)
class InboundMessage:
    id: str
    """Stable across provider retries and engine restarts."""
    provider: str
    source: str
    sender: str
    """``from``: E.164 when parseable, else as given (and flagged)."""
    recipient: str
    """``to``: E.164 when parseable, else as given (and flagged)."""
    text: str
    received_at: datetime
    keyword: str = ""
    provider_message_ids: tuple[str, ...] = ()
    provider_time: datetime | None = None
    parts: int = 1
    complete: bool = True
    encoding: Encoding = "text"
    flags: tuple[str, ...] = ()
    """Oddities kept rather than refused: ``from_not_e164``, ``to_not_e164``, ``incomplete``..."""
    media: tuple[Media, ...] = ()
    """An MMS's attachments, in order."""
    route: str = ""
    rules_version: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    """Provider fields worth passing on (carrier, device name...)."""

    def routed(self, route: str, rules_version: str) -> InboundMessage:
        return replace(self, route=route, rules_version=rules_version)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "provider": self.provider,
            "source": self.source,
            "from": self.sender,
            "to": self.recipient,
            "text": self.text,
            "keyword": self.keyword,
            "received_at": iso(self.received_at),
            "provider_time": iso(self.provider_time) if self.provider_time else None,
            "provider_message_ids": list(self.provider_message_ids),
            "parts": self.parts,
            "complete": self.complete,
            "encoding": self.encoding,
            "flags": list(self.flags),
            "media": [item.to_json() for item in self.media],
            "route": self.route,
            "rules_version": self.rules_version,
            "extra": self.extra,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> InboundMessage:
        """The message again from :meth:`to_json` (as the embedded engine keeps it for search and replay)."""
        return cls(
            id=data["id"],
            provider=data["provider"],
            source=data["source"],
            sender=data["from"],
            recipient=data["to"],
            text=data["text"],
            received_at=datetime.fromisoformat(data["received_at"]),
            keyword=data["keyword"],
            provider_message_ids=tuple(data["provider_message_ids"]),
            provider_time=datetime.fromisoformat(data["provider_time"]) if data["provider_time"] else None,
            parts=data["parts"],
            complete=data["complete"],
            encoding=data["encoding"],
            flags=tuple(data["flags"]),
            media=tuple(Media(**item) for item in data["media"]),
            route=data["route"],
            rules_version=data["rules_version"],
            extra=data["extra"],
        )


def encode_message(message: dict[str, Any]) -> bytes:
    """The canonical message JSON (``InboundMessage.to_json()``) as a ``message`` record."""
    return codec("message").encode({**message, "extra": json.dumps(message["extra"], ensure_ascii=False)})


def decode_message(data: bytes) -> dict[str, Any]:
    """The canonical message JSON again, with the same keys in the same order."""
    record = codec("message").decode(data)
    record["extra"] = json.loads(record["extra"])
    return record
