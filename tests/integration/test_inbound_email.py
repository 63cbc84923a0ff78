"""Inbound SMS by email (Agile Telecom): a real SMTP client sends to the engine's SMTP receiver, and
the message reaches a real webhook receiver as canonical JSON; what is refused never reaches the log."""

from __future__ import annotations

import json
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiohttp
import aiosmtplib
import pytest
from prometheus_client import REGISTRY

from engine_process import EngineProcess, free_port
from engines import EmbeddedRunning as Running
from engines import StartEngine
from helpers import eventually, write_locked
from local_server import Receiver
from samples import AGILE
from smsroute.config import ConfigError
from smsroute.providers import agiletelecom, mail

AGILE_SENDER = "smsin@agiletelecom.com"
BODY = "From: +393331234567\nTo: +393201234567\nDate/Time: 2026-11-21 10:00:00\nBody: Ciao a tutti\n"


def agile_email(
    body: str = BODY, sender: str = f"Agile Telecom <{AGILE_SENDER}>", html: str | None = None
) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = "sms@example.com"
    message["Subject"] = "Nuovo SMS ricevuto"
    if body:
        message.set_content(body)
    if html is not None:
        message.add_alternative(html, subtype="html") if body else message.set_content(html, subtype="html")
    return message


async def start(start_engine: StartEngine, **inbound: Any) -> Running:
    return await start_engine(inbound_email={"enabled": True, "port": 0, **inbound})


async def send(run: Running, message: EmailMessage) -> tuple[int, str]:
    assert run.engine.mail is not None
    errors, reply = await aiosmtplib.send(  # the envelope as the provider's mail server would give it
        message,
        sender=AGILE_SENDER,
        recipients=["sms@example.com"],
        hostname="127.0.0.1",
        port=run.engine.mail.port,
        timeout=30,
    )
    assert errors == {}
    return 250, reply


def requests(source: str, outcome: str) -> float:
    return REGISTRY.get_sample_value("smsroute_ingress_requests_total", {"source": source, "outcome": outcome}) or 0.0


async def test_an_sms_email_arrives_as_canonical_json(start_engine: StartEngine, receiver: Receiver) -> None:
    run = await start(start_engine)
    accepted = requests("agiletelecom-email", "accepted")
    body = BODY.replace("Ciao a tutti", "Ciao a tutti,\nperché non\nFrom: me") + "-- \nAgile Telecom S.p.A.\n"
    status, reply = await send(run, agile_email(body))
    assert (status, reply) == (250, "2.0.0 OK: stored")
    await eventually(lambda: len(receiver.at("/inbox")) == 1)
    message = json.loads(receiver.at("/inbox")[0]["body"])
    assert (message["from"], message["to"]) == ("+393331234567", "+393201234567")
    assert message["text"] == "Ciao a tutti,\nperché non\nFrom: me"
    assert (message["provider"], message["source"], message["keyword"]) == (
        "agiletelecom",
        "agiletelecom-email",
        "CIAO",
    )
    assert message["provider_time"] == "2026-11-21T10:00:00.000Z"
    assert len(run.engine.log.read()) == 1
    assert requests("agiletelecom-email", "accepted") == accepted + 1


async def test_the_same_sms_by_webhook_and_by_email_is_delivered_once(
    start_engine: StartEngine, receiver: Receiver
) -> None:
    run = await start(start_engine)
    assert await run.post("/inbound/agiletelecom", data={**AGILE, "text": "Ciao a tutti"}) == 200
    await send(run, agile_email())
    await eventually(lambda: len(run.engine.log.read()) == 2)
    await eventually(lambda: run.engine.processing.state.offsets.get() == 2)
    await eventually(lambda: len(receiver.at("/inbox")) == 1)
    assert json.loads(receiver.at("/inbox")[0]["body"])["source"] == "agiletelecom"


@pytest.mark.parametrize(
    ("message", "code", "reason", "outcome"),
    [
        (
            agile_email(sender="someone@example.com"),
            550,
            "5.7.1 sender someone@example.com is not allowed here",
            "forbidden",
        ),
        (
            agile_email(sender="undisclosed-recipients:;"),
            550,
            "5.7.1 the email needs exactly one From address",
            "forbidden",
        ),
        (
            agile_email(BODY.replace("Date/Time: 2026-11-21 10:00:00\nBody: Ciao a tutti\n", "Ciao\n")),
            554,
            "5.6.0 the email lacks the fields Date/Time, Body",
            "bad_request",
        ),
        (
            agile_email("", html="<p>From: +393331234567</p>"),
            554,
            "5.6.0 the email has no text/plain part to read the SMS from",
            "unsupported_media_type",
        ),
        (agile_email(BODY + "x" * 2000), 552, "Error: message size exceeds fixed maximum message size", "too_large"),
    ],
    ids=["sender", "no-sender", "fields", "html-only", "too-large"],
)
async def test_what_is_not_an_sms_email_is_refused_and_never_logged(
    start_engine: StartEngine, message: EmailMessage, code: int, reason: str, outcome: str
) -> None:
    run = await start(start_engine, max_message_bytes=1024)
    before = requests("agiletelecom-email", outcome)
    with pytest.raises(aiosmtplib.SMTPResponseException) as refused:
        await send(run, message)
    assert (refused.value.code, refused.value.message) == (code, reason)
    assert requests("agiletelecom-email", outcome) == before + 1
    assert run.engine.log.read() == []


async def test_a_log_that_cannot_write_answers_451_and_the_retry_is_kept(
    start_engine: StartEngine, receiver: Receiver
) -> None:
    allowed = ["SMSin@AgileTelecom.com", "relay@example.com"]  # compared without case
    run = await start_engine(inbound_email={"enabled": True, "port": 0, "allow_senders": allowed}, log_busy_timeout=0.2)
    with write_locked(run.engine.log.path):
        with pytest.raises(aiosmtplib.SMTPResponseException) as later:
            await send(run, agile_email())
    assert (later.value.code, later.value.message) == (
        451,
        "4.3.0 temporarily unable to store the message; try again later",
    )
    assert run.engine.log.read() == []
    await send(run, agile_email())
    await eventually(lambda: len(receiver.at("/inbox")) == 1)


async def test_a_provider_without_email_is_a_configuration_error(start_engine: StartEngine) -> None:
    with pytest.raises(
        ConfigError,
        match=r"inbound_email.provider: 'vonage' delivers no SMS by email \(providers that do: agiletelecom\)",
    ):
        await start(start_engine, provider="vonage")
    with pytest.raises(ConfigError, match="'agiletelecom' is already the name of an HTTP ingress"):
        await start(start_engine, source="agiletelecom")


async def test_smsroute_serve_starts_the_receiver_when_enabled(tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "smsroute.toml"
    config.write_text(f"[inbound_email]\nenabled = true\nport = {port}\n")
    engine = EngineProcess(tmp_path / "data", tmp_path / "engine.stderr", config=config)
    try:
        async with aiohttp.ClientSession() as http:
            await engine.wait_healthy(http)
            _, reply = await aiosmtplib.send(agile_email(), hostname="127.0.0.1", port=port, timeout=30)
            assert reply == "2.0.0 OK: stored"
            async with http.get(engine.url + "/metrics") as response:
                exported = await response.text()
        assert 'smsroute_ingress_events_total{kind="inbound",source="agiletelecom-email"} 1.0' in exported
        assert f'"msg": "inbound email on smtp://127.0.0.1:{port}"' in engine.stderr()
    finally:
        engine.kill()


# --- reading the layout ---------------------------------------------------------------------------

FIELDS = {
    "originator": "+393331234567",
    "destination": "+393201234567",
    "date_time": "21/11/2026 10:00:00",
    "text": "Ciao",
}


@pytest.mark.parametrize(
    "body",
    [
        "From: +393331234567\nTo: +393201234567\nDate/Time: 21/11/2026 10:00:00\nBody: Ciao",
        "Hai ricevuto un SMS.\r\n\r\nFROM: +393331234567\r\nto:+393201234567\r\nDate-Time:\t21/11/2026 10:00:00\r\nBody:\r\nCiao\r\n",
        "| Campo | Valore |\n|---|---|\n| From | +393331234567 |\n| To | +393201234567 |\n"
        "| Date/Time | 21/11/2026 10:00:00 |\n| Body | Ciao |\n",
        "**From:** +393331234567\n**To:** +393201234567\n**Date Time:** 21/11/2026 10:00:00\n**Body:** Ciao\n",
        "> Body: Ciao\n> From: +393331234567\n> To: +393201234567\n> Date/Time: 21/11/2026 10:00:00\n",
    ],
    ids=["plain", "crlf-case-next-line", "table", "bold", "quoted-body-first"],
)
def test_the_agile_layout_is_read_tolerantly(body: str) -> None:
    receiver = agiletelecom.Receiving(
        "agiletelecom-email", agiletelecom.Receiving.config_class(provider="agiletelecom")
    )
    assert receiver.email_fields(mail.parse(agile_email(body).as_bytes())) == FIELDS


def test_quoted_printable_and_latin1_bodies_are_decoded() -> None:
    message = agile_email()
    message.set_content(BODY.replace("Ciao a tutti", "Però è già così"), charset="iso-8859-1", cte="quoted-printable")
    receiver = agiletelecom.Receiving(
        "agiletelecom-email", agiletelecom.Receiving.config_class(provider="agiletelecom")
    )
    assert receiver.email_fields(mail.parse(message.as_bytes()))["text"] == "Però è già così"
