"""Agile Telecom inbound SMS: a form POST of originator, destination, date_time and text.

Agile Telecom treats any answer but the body ``+OK`` as a failure and retries 3 times, 15 minutes
apart, then drops the message: so ``+OK`` is sent only once the event is durable.
"""

from __future__ import annotations

from aiohttp import web

from ...events import EventKind
from ..base import Adapter, Fields, Incoming, Message, require

REQUIRED = ("originator", "destination", "date_time", "text")


class AgileTelecom(Adapter):
    provider = "agiletelecom"

    def validate(self, request: Incoming) -> list[Fields]:
        fields = request.form()
        require(fields, REQUIRED)
        return [fields]

    def key(self, kind: EventKind, fields: Fields) -> str:
        return f"{self.provider}:{fields['originator']}:{fields['destination']}"

    def answer(self, request: Incoming, messages: list[Message]) -> web.Response:
        return web.Response(text="+OK", content_type="text/plain")


ADAPTER = AgileTelecom
