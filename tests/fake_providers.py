"""Real HTTP servers on 127.0.0.1 playing the outbound SMS providers, as their documents describe
them: openvoip's ``sms_send_soa.php`` and SMSGateway24's ``getdata/addsms``. They check what they
receive on their own (``verify`` is computed here, not by the code under test) and answer what a
test queues."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import pytest
from aiohttp import web

from local_server import serving

OPENVOIP_SECRET = "s3cr3t-Contratto"
ID_CALL_GR = "9999"
OPENVOIP_SENDER = "ACME"
OPENVOIP_PARAMETERS = ["archivia", "verify", "id_call_gr", "sms_text", "sms_destination", "sms_sender"]
OPENVOIP_WORDS = {
    "000": "Messaggio Inoltrato Correttamente",
    "020": "Errore nel numero di destinazione",
    "099": "Errore generico",
    "-1": "Security error",
}
GATEWAY24_TOKEN = "abbde3e31e9d026c02f41119fc551111e"
GATEWAY24_DEVICE = "4242"


def openvoip_verify(sender: str, text: str, destination: str, secret: str, id_call_gr: str) -> str:
    """The document's PHP: md5(sha1($sms_sender . $sms_text . $sms_destination . $secret . $id_call_gr))."""
    return hashlib.md5(
        hashlib.sha1((sender + text + destination + secret + id_call_gr).encode()).hexdigest().encode()
    ).hexdigest()


@dataclass
class FakeOpenVoip:
    """Answers each GET with the next queued code (``000`` when none is queued), or ``-1`` when
    ``verify`` is wrong, as the gateway does. ``answers`` may also queue a raw (status, body)."""

    url: str = ""
    requests: list[dict[str, Any]] = field(default_factory=list)
    answers: list[str | tuple[int, str]] = field(default_factory=list)
    delay: float = 0.0

    async def handle(self, request: web.Request) -> web.Response:
        raw = request.raw_path.partition("?")[2]  # as sent: aiohttp's query_string is already decoded
        pairs = parse_qsl(raw, keep_blank_values=True)  # decoded once, as PHP fills $_GET
        params = dict(pairs)
        self.requests.append({"raw": raw, "names": [name for name, _ in pairs], "params": params})
        if self.delay:
            await asyncio.sleep(self.delay)
        expected = openvoip_verify(
            params.get("sms_sender", ""),
            params.get("sms_text", ""),
            params.get("sms_destination", ""),
            OPENVOIP_SECRET,
            params.get("id_call_gr", ""),
        )
        if params.get("verify") != expected:
            return web.json_response({"exit_status": "-1", "exit_string": "Security error"})
        answer = self.answers.pop(0) if self.answers else "000"
        if isinstance(answer, tuple):
            return web.Response(status=answer[0], text=answer[1])
        return web.json_response({"exit_status": answer, "exit_string": OPENVOIP_WORDS.get(answer, "Boh")})

    def settings(self, **overrides: Any) -> dict[str, Any]:
        """``[sms_reply.openvoip]`` pointing at this server."""
        return {
            "url": f"{self.url}/sms_send_soa.php",
            "id_call_gr": ID_CALL_GR,
            "secret": OPENVOIP_SECRET,
            "sender": OPENVOIP_SENDER,
            **overrides,
        }


@dataclass
class FakeGateway24:
    """``addsms``: queues the SMS and answers its ``sms_id`` (from 22074938 up), or a queued refusal."""

    url: str = ""
    requests: list[dict[str, Any]] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)
    next_id: int = 22074938

    async def handle(self, request: web.Request) -> web.Response:
        form = dict(await request.post())
        self.requests.append(
            {"query": request.raw_path.partition("?")[2], "form": form, "content_type": request.content_type}
        )
        if form.get("token") != GATEWAY24_TOKEN:
            return web.json_response({"error": 1, "message": "Token incorrect"})
        if self.refusals:
            return web.json_response({"error": 1, "message": self.refusals.pop(0)})
        sms_id, self.next_id = self.next_id, self.next_id + 1
        return web.json_response({"error": 0, "sms_id": sms_id, "message": "Sms has been saved successfully"})

    def settings(self, **overrides: Any) -> dict[str, Any]:
        """``[sms_reply.smsgateway24]`` pointing at this server."""
        return {
            "url": f"{self.url}/getdata/addsms",
            "token": GATEWAY24_TOKEN,
            "device_id": GATEWAY24_DEVICE,
            **overrides,
        }


@pytest.fixture
async def openvoip() -> AsyncIterator[FakeOpenVoip]:
    fake = FakeOpenVoip()
    async with serving(fake.handle, "/sms_send_soa.php", "GET") as fake.url:
        yield fake


@pytest.fixture
async def gateway24() -> AsyncIterator[FakeGateway24]:
    fake = FakeGateway24()
    async with serving(fake.handle, "/getdata/addsms") as fake.url:
        yield fake
