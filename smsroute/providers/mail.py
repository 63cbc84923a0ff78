"""SMS by email: what a provider's email says, read the same way when it is received and when it is
normalized from the log.

Providers that deliver inbound SMS by email write the SMS fields as labelled lines of plain text
(Agile Telecom: From, To, Date/Time, Body). People and mail systems bend such layouts, so reading is
tolerant: labels in any case and spacing (``Date/Time``, ``DATE-TIME``, ``**From:**``), table rows
(``| From | +39... |``), quoted lines, the text on the label's line or below it, over several lines,
and a signature (``-- ``) cut off. What cannot be read is refused with the SMTP reply that says why.
"""

from __future__ import annotations

import email
import email.policy
import re
from collections.abc import Mapping
from email.message import EmailMessage
from email.utils import getaddresses

from .kit import Unprocessable

RFC822 = "message/rfc822"
"""The content type of a raw event that is a whole email."""

_LABELLED = re.compile(r"(?P<label>[^:\t|]{1,40}?)[ \t]*[:\t][ \t]?(?P<value>.*)")
_BOLD = re.compile(r"\*+(?P<label>[^*:\t]{1,40}?)[ \t]*(?::\*+|\*+[ \t]*:)[ \t]?(?P<value>.*)")
"""``**From:** +39...`` and ``**From**: +39...``"""
_SIGNATURE = "-- "


class Refused(Unprocessable):
    """An email that can never be a message: the SMTP reply refusing it and the metric outcome."""

    def __init__(self, reply: str, outcome: str, reason: str) -> None:
        super().__init__(reason)
        self.reply = reply
        self.outcome = outcome
        self.reason = reason

    @property
    def answer(self) -> str:
        return f"{self.reply} {self.reason}"


def parse(raw: bytes) -> EmailMessage:
    return email.message_from_bytes(raw, _class=EmailMessage, policy=email.policy.default)


def sender(message: EmailMessage) -> str:
    """The one address of the From header, lower case (550 when there is not exactly one)."""
    addresses = [address for _, address in getaddresses(message.get_all("From", [])) if "@" in address]
    if len(addresses) != 1:
        raise Refused("550 5.7.1", "forbidden", "the email needs exactly one From address")
    return addresses[0].lower()


def text(message: EmailMessage) -> str:
    """The email's plain text (554 when it has none, or it cannot be decoded)."""
    body = message.get_body(preferencelist=("plain",))
    if body is None:
        raise Refused("554 5.6.0", "unsupported_media_type", "the email has no text/plain part to read the SMS from")
    try:
        return str(body.get_content())
    except (LookupError, UnicodeError, ValueError) as exc:
        raise Refused("554 5.6.0", "unsupported_media_type", f"the email's text cannot be decoded: {exc}") from None


def fold(label: str) -> str:
    """``Date/Time``, ``date-time`` and ``**DATE TIME**`` are all ``datetime``."""
    return "".join(char for char in label.lower() if char.isalpha())


def labelled(content: str, labels: Mapping[str, str], text_label: str) -> dict[str, str]:
    """The fields ``labels`` names (label as the provider writes it -> field name), read from
    ``content``. The ``text_label`` field (the SMS) runs on over the following lines until the next
    label not seen yet, so a multi-line SMS stays whole, even one that says "From:" itself; other
    fields are one line. 554 names every label missing."""
    wanted = {fold(label): field for label, field in labels.items()}
    text_key = fold(text_label)
    found: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in content.replace("\r\n", "\n").split("\n"):
        if line == _SIGNATURE:
            break
        pair = _field(line)
        if pair is not None and pair[0] in wanted and pair[0] not in found:
            found[pair[0]] = [pair[1]]
            current = found[pair[0]] if pair[0] == text_key else None
        elif current is not None:
            current.append(line)
    missing = [label for label in labels if fold(label) not in found]
    if missing:
        plural = "s" if len(missing) > 1 else ""
        raise Refused("554 5.6.0", "bad_request", f"the email lacks the field{plural} {', '.join(missing)}")
    return {wanted[key]: "\n".join(lines).strip() for key, lines in found.items()}


def _field(line: str) -> tuple[str, str] | None:
    """(folded label, value) of a labelled line or table row."""
    line = line.lstrip(" \t>")
    if line.startswith("|"):
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        return (fold(cells[0]), "|".join(cells[1:]).strip()) if len(cells) > 1 else None
    found = _BOLD.fullmatch(line) or _LABELLED.fullmatch(line)
    return (fold(found["label"]), found["value"]) if found else None
