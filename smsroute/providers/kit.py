"""What provider modules share to read requests and logged events: strict body parsing, phone
numbers, user data headers, text decoding, timestamps, dedupe keys. Every parser raises
:class:`Unprocessable` with the reason: the door answers it as a 400, the pipeline as a dead letter."""

from __future__ import annotations

import codecs
import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qsl

import gsm0338  # noqa: F401  (registers the "gsm03.38" codec)
import phonenumbers
from multidict import MultiDict

from ..models.message import Encoding
from ..models.part import Concat
from ..models.raw import RawEvent
from ..models.text import has_surrogate

FORM = "application/x-www-form-urlencoded"
JSON = "application/json"

Fields = Mapping[str, Any]


class Unprocessable(ValueError):
    """A raw event that can never become a message; it goes to dead letters with this reason."""


CHARSETS = frozenset({"utf-8", "ascii", "iso8859-1", "iso8859-15", "cp1252"})
"""Charsets a body may declare (Python's canonical codec names): what providers send. Any other
(utf-7, idna, a made-up name) is refused with 415: exotic codecs turn bytes into text no one
expects, lone surrogates among it."""

MAX_FIELDS = 1000
"""Fields a form or query may hold; more is not a provider's message."""


def codec_of(charset: str | None) -> str:
    """The codec of a declared charset (utf-8 when none is declared); :class:`Unprocessable` when it
    is not one of :data:`CHARSETS`."""
    if charset is None:
        return "utf-8"
    try:
        name = codecs.lookup(charset).name
    except (LookupError, UnicodeError, ValueError):
        name = ""
    if name not in CHARSETS:
        raise Unprocessable(
            f"charset {charset!r} is not accepted (utf-8, us-ascii, iso-8859-1, iso-8859-15, windows-1252)"
        )
    return name


def parse_form(data: bytes, charset: str | None = None, errors: str = "strict") -> MultiDict[str]:
    """The fields of an urlencoded body or query, repeated names kept in order (``get`` gives the
    first: validation, partition key and normalization all read the same value). Text that does not
    decode is :class:`Unprocessable`, unless ``errors`` is ``replace``."""
    codec = codec_of(charset)
    try:
        text = data.decode(codec, errors)
        return MultiDict(
            parse_qsl(text, keep_blank_values=True, encoding=codec, errors=errors, max_num_fields=MAX_FIELDS)
        )
    except UnicodeDecodeError as exc:
        raise Unprocessable(f"form is not valid {codec}: {exc.reason} at byte {exc.start}") from None
    except ValueError as exc:  # too many fields
        raise Unprocessable(f"form cannot be read: {exc}") from None


def parse_json(data: bytes, charset: str | None = None) -> Any:
    """The JSON document of a body: strictly decoded, no NaN or Infinity, no lone surrogates (they
    come from ``\\ud800`` escapes and can be neither stored nor sent on); :class:`Unprocessable`
    otherwise, with the reason."""
    try:
        document = json.loads(data.decode(codec_of(charset)), parse_constant=_no_constant)
    except UnicodeDecodeError as exc:
        raise Unprocessable(f"body is not valid {exc.encoding}: {exc.reason} at byte {exc.start}") from None
    except RecursionError:
        raise Unprocessable("body is not valid JSON: nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, an integer of thousands of digits, NaN
        raise Unprocessable(f"body is not valid JSON: {exc}") from None
    if b"\\u" in data and (where := _surrogate(document)) is not None:
        raise Unprocessable(f"body holds a lone surrogate (an invalid \\u escape) in {where or 'the document'}")
    return document


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def _surrogate(value: Any, where: str = "") -> str | None:
    """Where in a JSON document a string (or key) holds a lone surrogate, or None."""
    if isinstance(value, str):
        return where if has_surrogate(value) else None
    if isinstance(value, dict):
        for key, item in value.items():
            if has_surrogate(key):
                return f"{where}.{key!a}".lstrip(".")
            if (found := _surrogate(item, f"{where}.{key}".lstrip("."))) is not None:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            if (found := _surrogate(item, f"{where}[{index}]")) is not None:
                return found
    return None


def fields_of(event: RawEvent, errors: str = "strict") -> Fields:
    """The fields of a logged event, parsed as the ingress parsed the request (the first of a
    repeated name wins, as it did there); :class:`Unprocessable` when they cannot be read."""
    mimetype, _, parameters = event.content_type.partition(";")
    charset = parameters.partition("charset=")[2].strip().strip('"') or None
    if event.method == "GET" or not event.body:
        return parse_form(event.query.encode("utf-8"), None, errors)
    if mimetype == JSON or mimetype.endswith("+json"):
        data = parse_json(event.body, charset)
        if not isinstance(data, dict):
            raise Unprocessable("JSON body is not an object")
        return data
    return parse_form(event.body, charset, errors)


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


def at(document: Any, path: str) -> Any:
    """The value at a dotted path of a JSON document (``data.payload.to.0.phone_number``: a number
    indexes a list), or None where the path does not lead."""
    value = document
    for step in path.split("."):
        if isinstance(value, dict):
            value = value.get(step)
        elif isinstance(value, list) and step.isdigit() and int(step) < len(value):
            value = value[int(step)]
        else:
            return None
    return value


def international(number: str) -> str:
    """A number a provider documents as international without its ``+`` (``385916242493``), with
    it: else a default region would read it as a national number of its own. Anything but digits
    (an alphanumeric sender) is kept as given."""
    return "+" + number if number.isascii() and number.isdigit() else number


def mapping(value: Any) -> dict[str, Any]:
    """``value`` when it is a JSON object, else an empty one: for optional objects of a payload."""
    return value if isinstance(value, dict) else {}
