"""SMS auto-replies end to end over real HTTP: a provider posts to the engine's ingress, a real
webhook receiver, a real SMTP server and a real server playing the outbound provider see what comes
out; delivery reports posted back to the ingress are linked to the reply they report on."""

from __future__ import annotations

import json
from typing import Any

import pytest

from engines import EmbeddedRunning, StartEngine
from fake_providers import FakeGateway24, FakeOpenVoip
from helpers import eventually
from local_server import Receiver
from samples import AGILE
from scraping import moved, scrape
from smtp_server import StartSMTP

pytestmark = pytest.mark.parametrize("engine", ["embedded"], indirect=True)
"""Replies, opt-outs and their guards are the embedded engine's (the tests read its state)."""

ALICE = AGILE["originator"]
REPLY = "Ciao {{ from }}, grazie per {{ keyword }}: ti richiamiamo."
"""The INFO route's reply template (the canonical message's fields)."""


SALES_EMAIL = """
      - email: {to: [sales@example.com], subject: "INFO from {{ from }}", body: "{{ text }}"}"""


def reply_rules(url: str, email: bool = False) -> str:
    """STOP, START, INFO (webhook, optionally an email, and a reply) and a catch-all webhook."""
    return f"""
aliases:
  STOP: [ARRESTA]
routes:
  - name: opt-out
    match: {{keyword: STOP}}
    compliance: stop
    actions:
      - webhook: {{url: "{url}/optout"}}
      - sms_reply: {{text: "Non riceverai altri messaggi. Scrivi START per riattivarli."}}
  - name: opt-in
    match: {{keyword: START}}
    compliance: start
    actions:
      - sms_reply: {{text: "Bentornato."}}
  - name: info
    match: {{keyword: INFO}}
    actions:
      - webhook: {{url: "{url}/info"}}{SALES_EMAIL if email else ""}
      - sms_reply: {{text: "{REPLY}", retry: {{schedule: [0.2, 0.2]}}}}
  - name: inbox
    actions:
      - webhook: {{url: "{url}/inbox"}}
"""


def openvoip_engine(
    start: StartEngine,
    receiver: Receiver,
    fake: FakeOpenVoip,
    smtp: dict[str, Any] | None = None,
    **reply: Any,
) -> Any:
    settings = {"provider": "openvoip", "openvoip": fake.settings(), **reply}
    return start(rules=reply_rules(receiver.url, email=smtp is not None), sms_reply=settings, smtp=smtp)


def replies_sent(fake: FakeOpenVoip) -> list[tuple[str, str]]:
    return [(r["params"]["sms_destination"], r["params"]["sms_text"]) for r in fake.requests]


def sms_reply_states(run: EmbeddedRunning, route: str) -> list[str]:
    rows = run.engine.processing.state.conn.execute(
        "SELECT state FROM deliveries WHERE sink = 'sms_reply' AND route = ? ORDER BY created_at", (route,)
    )
    return [row[0] for row in rows]


async def sms(run: EmbeddedRunning, text: str, sender: str = ALICE) -> None:
    assert await run.post("/inbound/agiletelecom", data={**AGILE, "originator": sender, "text": text}) == 200


async def test_info_gets_a_webhook_an_email_and_a_reply_stop_silences_the_reply_start_brings_it_back(
    start_engine: StartEngine,
    receiver: Receiver,
    openvoip: FakeOpenVoip,
    start_smtp: StartSMTP,
) -> None:
    mailbox = await start_smtp()
    smtp = {"host": "127.0.0.1", "port": mailbox.port, "tls": "none", "from_address": "smsroute@example.com"}
    run = await openvoip_engine(start_engine, receiver, openvoip, smtp=smtp, rate_limit=10)
    before = await scrape(run)
    await sms(run, "INFO prezzi")
    await eventually(
        lambda: len(receiver.at("/info")) == 1 and len(openvoip.requests) == 1 and len(mailbox.received) == 1
    )
    assert json.loads(receiver.at("/info")[0]["body"])["text"] == "INFO prezzi"
    email = mailbox.received[0]
    assert (email.rcpt_tos, email.message["Subject"]) == (["sales@example.com"], f"INFO from {ALICE}")
    assert replies_sent(openvoip) == [(ALICE, f"Ciao {ALICE}, grazie per INFO: ti richiamiamo.")]
    await eventually(lambda: sms_reply_states(run, "info") == ["delivered"])

    await sms(run, "Arresta per favore")  # STOP in Italian: the confirmation still goes
    await eventually(lambda: len(openvoip.requests) == 2)
    assert replies_sent(openvoip)[1] == (ALICE, "Non riceverai altri messaggi. Scrivi START per riattivarli.")
    await sms(run, "INFO orari")
    await eventually(lambda: len(receiver.at("/info")) == 2 and len(mailbox.received) == 2)  # so does the email
    await eventually(lambda: sms_reply_states(run, "info") == ["delivered", "suppressed"])
    assert len(openvoip.requests) == 2
    assert run.engine.processing.state.dead_letters.all() == []

    await sms(run, "start")
    await eventually(lambda: len(openvoip.requests) == 3)  # the welcome back, before the next INFO's reply
    await sms(run, "INFO sconti")
    await eventually(lambda: sms_reply_states(run, "info") == ["delivered", "suppressed", "delivered"])
    assert [text for _, text in replies_sent(openvoip)][2:] == [
        "Bentornato.",
        f"Ciao {ALICE}, grazie per INFO: ti richiamiamo.",
    ]
    await moved(
        run,
        before,
        ("smsroute_sms_replies_total", {"provider": "openvoip", "outcome": "sent"}, 4),
        ("smsroute_sms_replies_total", {"provider": "openvoip", "outcome": "suppressed"}, 1),
        ("smsroute_sms_replies_suppressed_total", {"reason": "opted_out"}, 1),
        ("smsroute_opt_outs_total", {"change": "stop"}, 1),
        ("smsroute_opt_outs_total", {"change": "start"}, 1),
        ("smsroute_deliveries_total", {"sink": "sms_reply", "outcome": "suppressed"}, 1),
    )


async def test_rate_limit_suppresses_the_reply_not_the_webhook(
    start_engine: StartEngine,
    receiver: Receiver,
    openvoip: FakeOpenVoip,
) -> None:
    run = await openvoip_engine(start_engine, receiver, openvoip, rate_limit=1)
    await sms(run, "INFO uno")
    await eventually(lambda: sms_reply_states(run, "info") == ["delivered"])
    await sms(run, "INFO due")
    await eventually(lambda: sms_reply_states(run, "info") == ["delivered", "suppressed"])
    await eventually(lambda: len(receiver.at("/info")) == 2)  # the webhook goes on its own
    assert len(openvoip.requests) == 1
    [(error,)] = run.engine.processing.state.conn.execute(
        "SELECT error FROM attempts WHERE outcome = 'suppressed'"
    ).fetchall()
    assert error.startswith(f"rate_limited: 1 replies to {ALICE}")


async def test_bad_destination_is_dead_lettered_at_once_and_generic_errors_are_retried(
    start_engine: StartEngine,
    receiver: Receiver,
    openvoip: FakeOpenVoip,
) -> None:
    run = await openvoip_engine(start_engine, receiver, openvoip)
    openvoip.answers += ["020"]
    await sms(run, "INFO uno")
    await eventually(lambda: len(run.engine.processing.state.dead_letters.all()) == 1)
    [letter] = run.engine.processing.state.dead_letters.all()
    assert (letter["stage"], letter["reason"]) == (
        "deliver",
        f"openvoip 020: Errore nel numero di destinazione (bad destination {ALICE})",
    )
    assert len(openvoip.requests) == 1  # permanent: no retry despite the route's schedule

    openvoip.answers += ["099", "099"]
    await sms(run, "INFO due", sender="+393337654321")
    await eventually(lambda: sms_reply_states(run, "info") == ["dead", "delivered"])
    assert len(openvoip.requests) == 4
    [(delivery_id,)] = run.engine.processing.state.conn.execute(
        "SELECT id FROM deliveries WHERE state = 'delivered' AND sink = 'sms_reply'"
    ).fetchall()
    assert [a["outcome"] for a in run.engine.processing.state.deliveries.attempts(delivery_id)] == [
        "failed",
        "failed",
        "delivered",
    ]


async def test_a_reply_from_abroad_is_a_dead_letter_without_a_request(
    start_engine: StartEngine,
    receiver: Receiver,
    openvoip: FakeOpenVoip,
) -> None:
    run = await openvoip_engine(start_engine, receiver, openvoip)
    await sms(run, "INFO please", sender="+447700900123")
    await eventually(lambda: len(run.engine.processing.state.dead_letters.all()) == 1)
    assert "openvoip sends only to Italian numbers (+39)" in run.engine.processing.state.dead_letters.all()[0]["reason"]
    await eventually(lambda: len(receiver.at("/info")) == 1)
    assert openvoip.requests == []


async def test_delivery_reports_are_linked_to_the_reply_they_report_on(
    start_engine: StartEngine,
    receiver: Receiver,
    gateway24: FakeGateway24,
) -> None:
    settings = {"provider": "smsgateway24", "smsgateway24": gateway24.settings()}
    run = await start_engine(rules=reply_rules(receiver.url), sms_reply=settings)
    before = await scrape(run)
    await sms(run, "INFO prezzi")
    await eventually(lambda: [r["status"] for r in run.engine.processing.state.replies.all()] == ["sent"])
    [request] = gateway24.requests
    assert (request["form"]["sendto"], request["form"]["body"]) == (
        ALICE,
        f"Ciao {ALICE}, grazie per INFO: ti richiamiamo.",
    )
    [reply] = run.engine.processing.state.replies.all()
    assert (reply["provider"], reply["provider_message_id"]) == ("smsgateway24", "22074938")

    for status_id in (6, 7):  # sent by the phone, then delivered
        report = {
            "sms_id": 22074938,
            "status_id": status_id,
            "status_message": "",
            "sendto": ALICE,
            "senttime": "2026-11-21 10:00:05",
            "sim": 0,
            "device_id": 4242,
        }
        assert await run.post("/status/smsgateway24", json=report) == 200
    await eventually(lambda: [r["status"] for r in run.engine.processing.state.replies.all()] == ["delivered"])
    reports = run.engine.processing.state.reports.all(reply["delivery_id"])
    assert [(r["code"], r["status"]) for r in reports] == [("6", "sent"), ("7", "delivered")]
    await moved(
        run,
        before,
        ("smsroute_sms_replies_total", {"provider": "smsgateway24", "outcome": "sent"}, 1),
        ("smsroute_sms_replies_total", {"provider": "smsgateway24", "outcome": "delivered"}, 1),
        ("smsroute_delivery_reports_total", {"provider": "smsgateway24", "status": "sent", "linked": "true"}, 1),
        ("smsroute_delivery_reports_total", {"provider": "smsgateway24", "status": "delivered", "linked": "true"}, 1),
    )


async def test_without_a_provider_replies_are_dead_letters_saying_so(
    start_engine: StartEngine,
    receiver: Receiver,
) -> None:
    run = await start_engine(rules=reply_rules(receiver.url))
    await sms(run, "INFO prezzi")
    await eventually(lambda: len(run.engine.processing.state.dead_letters.all()) == 1)
    assert run.engine.processing.state.dead_letters.all()[0]["reason"] == "no sms_reply sink is configured"
    await eventually(lambda: len(receiver.at("/info")) == 1)


async def test_refused_credentials_are_retried_then_dead_lettered_and_the_secret_is_never_logged(
    start_engine: StartEngine,
    receiver: Receiver,
    openvoip: FakeOpenVoip,
    caplog: Any,
    tmp_path: Any,
) -> None:
    caplog.set_level("DEBUG")
    wrong = "wr0ng-Secret-value"
    settings = {"provider": "openvoip", "openvoip": openvoip.settings(secret=wrong)}
    run = await start_engine(rules=reply_rules(receiver.url), sms_reply=settings)
    await sms(run, "INFO prezzi")
    await eventually(lambda: len(run.engine.processing.state.dead_letters.all()) == 1)
    assert len(openvoip.requests) == 3  # the first try and the route's two retries
    [letter] = run.engine.processing.state.dead_letters.all()
    assert letter["reason"] == "openvoip -1: Security error (check sms_reply.openvoip id_call_gr and secret)"
    assert wrong not in caplog.text and wrong not in "".join(r["raw"] for r in openvoip.requests)
    assert all(wrong.encode() not in path.read_bytes() for path in (tmp_path / "data").iterdir())
