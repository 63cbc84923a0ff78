"""Agile Telecom inbound SMS: a form POST of originator, destination, date_time and text.

Agile Telecom treats any answer but the body ``+OK`` as a failure and retries 3 times, 15 minutes
apart, then drops the message: so ``+OK`` is sent only once the event is durable.

It also delivers inbound SMS by email, from smsin@agiletelecom.com, with the fields From, To,
Date/Time and Body (see :mod:`smsroute.ingress.smtp`). They are read as the webhook's four fields,
so an SMS has the same dedupe key whichever way it came.
"""

from __future__ import annotations

from aiohttp import web

from ..models.part import Part
from ..models.raw import EventKind, RawEvent
from . import mail
from .base import Incoming, Message, Normalizer, Receiver, require
from .kit import Fields, fields_of, parse_time, sha256_key

REQUIRED = ("originator", "destination", "date_time", "text")
EMAIL_LABELS = {"From": "originator", "To": "destination", "Date/Time": "date_time", "Body": "text"}
"""The email's labels -> the webhook's field names: an SMS has the same fields whichever way it came."""


class Receiving(Receiver):
    provider = "agiletelecom"
    answer_summary = "200 +OK (text/plain)"
    email_labels = EMAIL_LABELS
    email_text_label = "Body"

    def validate(self, request: Incoming) -> list[Fields]:
        fields = request.form()
        require(fields, REQUIRED)
        return [fields]

    def key(self, kind: EventKind, fields: Fields) -> str:
        return f"{self.provider}:{fields['originator']}:{fields['destination']}"

    def answer(self, request: Incoming, messages: list[Message]) -> web.Response:
        return web.Response(text="+OK", content_type="text/plain")


class Normalizing(Normalizer):
    provider = "agiletelecom"

    def normalize(self, event: RawEvent, region: str | None) -> Part:
        fields: Fields
        if event.content_type == mail.RFC822:
            fields = mail.labelled(mail.text(mail.parse(event.body)), EMAIL_LABELS, "Body")
        else:
            fields = fields_of(event)
        values = [str(fields.get(name, "")) for name in REQUIRED]
        return self.part(
            event,
            region,
            sender=values[0],
            recipient=values[1],
            text=values[3],
            dedupe_key=f"{self.provider}:{sha256_key(*values)}",
            provider_time=parse_time(values[2], "%Y-%m-%d %H:%M:%S", "%d/%m/%Y %H:%M:%S"),
        )
