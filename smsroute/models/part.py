"""A normalized provider message: a whole SMS, or one part of a concatenated one."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .message import Encoding, Media


@dataclass(slots=True, frozen=True)
class Concat:
    """Where a part sits in a concatenated message (``index`` is 1-based)."""

    ref: str
    total: int
    index: int


@dataclass(slots=True, frozen=True)
class Part:
    provider: str
    source: str
    sender: str
    recipient: str
    text: str
    received_at: datetime
    dedupe_key: str
    """The provider's message id where it has one, else a SHA-256 of the identifying fields."""
    encoding: Encoding = "text"
    provider_message_id: str = ""
    provider_time: datetime | None = None
    concat: Concat | None = None
    flags: tuple[str, ...] = ()
    media: tuple[Media, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def stitch_key(self) -> str:
        """Parts of one message share (provider, from, to, reference, total)."""
        assert self.concat is not None
        return "\x1f".join((self.provider, self.sender, self.recipient, self.concat.ref, str(self.concat.total)))

    def to_json(self) -> dict[str, Any]:
        """The part as JSON-able values, for state stores (pending parts survive restarts)."""
        return {
            **{name: getattr(self, name) for name in _PLAIN},
            "received_at": self.received_at.isoformat(),
            "provider_time": self.provider_time.isoformat() if self.provider_time else None,
            "concat": [self.concat.ref, self.concat.total, self.concat.index] if self.concat else None,
            "flags": list(self.flags),
            "media": [item.to_json() for item in self.media],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Part:
        return cls(
            **{name: data[name] for name in _PLAIN},
            received_at=datetime.fromisoformat(data["received_at"]),
            provider_time=datetime.fromisoformat(data["provider_time"]) if data["provider_time"] else None,
            concat=Concat(*data["concat"]) if data["concat"] else None,
            flags=tuple(data["flags"]),
            media=tuple(Media(**item) for item in data.get("media", ())),  # absent from parts stored before media
        )


_PLAIN = ("provider", "source", "sender", "recipient", "text", "dedupe_key", "encoding", "provider_message_id", "extra")
