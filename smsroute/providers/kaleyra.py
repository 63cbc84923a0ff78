"""Kaleyra (formerly mGage) inbound SMS and MMS, as forwarded through Acoustic Campaign: a form POST.

The fields are device_address (the sender), inbound_address (our code), router, carrier, channel,
message, message_orig, message_id, message_subid, status, status_code, a2w_mo_ref_id, country_code,
and for MMS attachment and mmsID. Real traffic carries junk (the provider's own sample has
``device_address=1447ß7665544``): it is logged as given and left to normalization, never refused
here, since a refusal only buys retries (1, 5, 10, 60, 120, 360, 720 min) and then a deletion. For
the same reason bytes that are not text in the declared charset are replaced (U+FFFD) rather than
refused, and the message is flagged ``undecodable_text``.
Only 208.71.240.0/21 is Kaleyra's: set that as the ingress's ``allow_ips``.
"""

from __future__ import annotations

import phonenumbers

from ..models.part import Part
from ..models.raw import EventKind, RawEvent
from .base import Incoming, Normalizer, Receiver, bad_request, require
from .kit import Fields, Unprocessable, fields_of, sha256_key

REQUIRED = ("device_address", "inbound_address")
CONTENT = ("message", "message_orig", "attachment", "mmsID")
"""An SMS has a text, an MMS an attachment id: a post with none of them carries nothing."""


class Receiving(Receiver):
    provider = "kaleyra"
    strict_text = False

    def validate(self, request: Incoming) -> list[Fields]:
        fields = request.form()
        require(fields, REQUIRED)
        if all(fields.get(name) is None for name in CONTENT):
            raise bad_request(f"missing content: one of {', '.join(CONTENT)} is required")
        return [fields]

    def key(self, kind: EventKind, fields: Fields) -> str:
        return f"{self.provider}:{fields['device_address']}:{fields['inbound_address']}"


class Normalizing(Normalizer):
    provider = "kaleyra"

    def normalize(self, event: RawEvent, region: str | None) -> Part:
        flags: tuple[str, ...] = ()
        try:
            fields = fields_of(event)
        except Unprocessable:  # accepted at the door with its junk: kept, replaced and flagged
            fields, flags = fields_of(event, errors="replace"), ("undecodable_text",)
        country = str(fields.get("country_code", ""))
        if country.isdigit():  # the sender's country, better than the configured default (unless unknown)
            found = phonenumbers.region_code_for_country_code(int(country))
            region = region if found == phonenumbers.UNKNOWN_REGION else found
        sender, recipient = fields.get("device_address", ""), fields.get("inbound_address", "")
        text = fields.get("message_orig") or fields.get("message") or ""
        message_id = fields.get("message_id") or fields.get("mmsID") or ""
        return self.part(
            event,
            region,
            sender=sender,
            recipient=recipient,
            text=text,
            dedupe_key=f"{self.provider}:{message_id or sha256_key(sender, recipient, text)}",
            provider_message_id=message_id,
            flags=flags,
            extra={name: fields[name] for name in EXTRA if fields.get(name)},
        )


EXTRA = ("carrier", "router", "channel", "country_code", "attachment", "mmsID", "a2w_mo_ref_id")
