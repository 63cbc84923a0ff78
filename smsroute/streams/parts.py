"""A normalized provider message (a whole SMS or one part of a concatenated one), and the helpers
adapters share to build one: phone numbers, user data headers, text decoding, timestamps."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import gsm0338  # noqa: F401  (registers the "gsm03.38" codec)
import phonenumbers

from ..message import Encoding, Media


class Unprocessable(ValueError):
    """A raw event that can never become a message; it goes to dead letters with this reason."""


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


def has_surrogate(text: str) -> bool:
    """Whether ``text`` holds a lone surrogate (from a ``\\ud800`` escape): no UTF-8 can carry it."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def printable(text: str) -> str:
    """``text`` safe to store and log: lone surrogates shown as escapes."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8") if has_surrogate(text) else text


def sha256_key(*fields: str) -> str:
    """Agile Telecom's own dedupe recipe: SHA-256 over the identifying fields, concatenated."""
    return hashlib.sha256("".join(fields).encode()).hexdigest()


@lru_cache(maxsize=65536)  # the same numbers come back all day (ours above all): parse each once
def phone(number: str, region: str | None, role: str) -> tuple[str, tuple[str, ...]]:
    """E.164 when the number parses, else as given with a ``<role>_not_e164`` flag.

    Without a leading +, a number is tried as a valid national number of the default ``region``
    first, then as international (providers often drop the +)."""
    raw = number.strip()
    attempts = [(raw, None)] if raw.startswith("+") else [(raw, region), ("+" + raw, None)]
    for candidate, country in attempts:
        try:
            parsed = phonenumbers.parse(candidate, country)
        except phonenumbers.NumberParseException:
            continue
        usable = phonenumbers.is_valid_number(parsed) if country else phonenumbers.is_possible_number(parsed)
        if usable:
            return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164), ()
    return number, (f"{role}_not_e164",)


def parse_udh(udh: bytes) -> tuple[Concat | None, int]:
    """Concatenation info from a user data header (IEI 0x00: 8-bit reference, 0x08: 16-bit).

    Returns the concat info (None when the header has none) and the header's total length."""
    if not udh:
        return None, 0
    length = udh[0] + 1
    header = udh[1:length]  # an element may not reach past the header into the user data
    if len(header) < length - 1:
        raise Unprocessable(f"user data header declares {length - 1} bytes but has {len(udh) - 1}")
    position = 0
    concat = None
    while position < len(header):
        if position + 2 > len(header) or position + 2 + header[position + 1] > len(header):
            raise Unprocessable("truncated information element in user data header")
        iei, size = header[position], header[position + 1]
        value = header[position + 2 : position + 2 + size]
        if iei == 0x00 and size == 3:
            concat = Concat(ref=f"{value[0]:02x}", total=value[1], index=value[2])
        elif iei == 0x08 and size == 4:
            concat = Concat(ref=f"{int.from_bytes(value[:2], 'big'):04x}", total=value[2], index=value[3])
        position += 2 + size
    if concat is not None and not 1 <= concat.index <= concat.total:
        raise Unprocessable(f"user data header part {concat.index} of {concat.total} is out of range")
    return concat, length


def decode_user_data(data: bytes, encoding: Encoding) -> str:
    """Text of a payload: GSM 03.38 (one septet per byte), UCS-2/UTF-16 big-endian, or binary (hex)."""
    if encoding == "unicode":
        return data.decode("utf-16-be", errors="replace")
    if encoding == "text":
        return data.decode("gsm03.38", errors="replace")
    return data.hex()


def from_hex(value: str, what: str) -> bytes:
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise Unprocessable(f"{what} is not hexadecimal: {value[:40]!r}") from None


def parse_time(value: str | int | float | None, *formats: str) -> datetime | None:
    """Provider time as an aware UTC datetime: Unix seconds, ISO 8601, or one of ``formats`` (UTC)."""
    if value in (None, ""):
        return None
    if isinstance(value, (int, float)) or str(value).isdigit():
        try:
            seconds = float(value)
            return datetime.fromtimestamp(seconds / 1000 if seconds > 1e11 else seconds, UTC)
        except (ValueError, OverflowError, OSError):  # NaN, "²", a year past 9999: no time, no crash
            return None
    text = str(value)
    try:  # first: fromisoformat is C, strptime is slow Python
        moment = datetime.fromisoformat(text)
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    except ValueError:
        pass
    for fmt in formats:
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=UTC)
        except ValueError:
            pass
    return None


def part_to_json(part: Part) -> dict[str, Any]:
    """A part as JSON-able values, for state stores (pending parts survive restarts)."""
    return {
        **{name: getattr(part, name) for name in _PLAIN},
        "received_at": part.received_at.isoformat(),
        "provider_time": part.provider_time.isoformat() if part.provider_time else None,
        "concat": [part.concat.ref, part.concat.total, part.concat.index] if part.concat else None,
        "flags": list(part.flags),
        "media": [item.to_json() for item in part.media],
    }


def part_from_json(data: dict[str, Any]) -> Part:
    return Part(
        **{name: data[name] for name in _PLAIN},
        received_at=datetime.fromisoformat(data["received_at"]),
        provider_time=datetime.fromisoformat(data["provider_time"]) if data["provider_time"] else None,
        concat=Concat(*data["concat"]) if data["concat"] else None,
        flags=tuple(data["flags"]),
        media=tuple(Media(**item) for item in data.get("media", ())),  # absent from parts stored before media
    )


_PLAIN = ("provider", "source", "sender", "recipient", "text", "dedupe_key", "encoding", "provider_message_id", "extra")
