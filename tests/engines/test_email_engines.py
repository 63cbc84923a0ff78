"""The email sink on both engines: the embedded dispatcher and the Kafka worker's sink agent send
the same email for the same message (the rest of the email sink is in tests/integration/test_email.py)."""

from __future__ import annotations

from engines import Running, StartEngine
from helpers import eventually
from samples import AGILE
from smtp_server import FROM, RULES, StartSMTP, smtp_settings


async def test_an_email_action_is_sent_once_by_either_engine(start_engine: StartEngine, start_smtp: StartSMTP) -> None:
    mailbox = await start_smtp()
    run = await start_engine(RULES, smtp=smtp_settings(mailbox))
    assert await run.post("/inbound/agiletelecom", data={**AGILE, "text": "INFO orari"}) == 200
    await eventually(lambda: len(mailbox.received) == 1, timeout=60)
    [got] = mailbox.received
    assert got.mail_from == FROM and got.rcpt_tos == ["sales@example.com", "desk@example.com"]
    assert got.message["Subject"] == "INFO from +393331234567: INFO orari"
    assert got.message["X-Smsroute-Route"] == "info"
    await eventually(lambda: delivered(run, "info"), interval=0.1)
    assert await run.attempt_outcomes("info") == ["delivered"]
    assert len(mailbox.received) == 1


async def delivered(run: Running, route: str) -> bool:
    return await run.attempt_outcomes(route) == ["delivered"]
