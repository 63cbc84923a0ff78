"""The email sink on both engines: the embedded dispatcher and the Kafka worker's sink agent send
the same email for the same message (the rest of the email sink is in ``test_email``)."""

from __future__ import annotations

from smtp_server import StartSMTP, certificates, start_smtp  # noqa: F401
from test_email import FROM, RULES, smtp_settings
from test_pipeline import AGILE, StartEngine, engine, eventually, receiver, start_engine, until  # noqa: F401


async def test_an_email_action_is_sent_once_by_either_engine(
    start_engine: StartEngine,
    start_smtp: StartSMTP,  # noqa: F811
) -> None:
    mailbox = await start_smtp()
    run = await start_engine(RULES, smtp=smtp_settings(mailbox))
    assert await run.post("/inbound/agiletelecom", data={**AGILE, "text": "INFO orari"}) == 200
    await eventually(lambda: len(mailbox.received) == 1, timeout=60)
    [got] = mailbox.received
    assert got.mail_from == FROM and got.rcpt_tos == ["sales@example.com", "desk@example.com"]
    assert got.message["Subject"] == "INFO from +393331234567: INFO orari"
    assert got.message["X-Smsroute-Route"] == "info"
    assert await until(lambda: run.attempt_outcomes("info"), lambda outcomes: outcomes == ["delivered"]) == [
        "delivered"
    ]
    assert len(mailbox.received) == 1
