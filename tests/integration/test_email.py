"""The email sink against a real SMTP server (aiosmtpd): what arrives, TLS and login, retries of a
4xx, dead letters of a 5xx, and connections reused across emails."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client import REGISTRY

from engine_process import EngineProcess, form
from engines import EmbeddedRunning, StartEngine
from helpers import eventually
from samples import AGILE
from smsroute.config import SMTPConfig
from smsroute.models.delivery import Delivery
from smsroute.sinks.email import Pool, compose
from smtp_server import FROM, PASSWORD, RULES, USER, Certificates, Mailbox, StartSMTP, smtp_settings


def attempts(run: EmbeddedRunning, route: str) -> list[dict[str, Any]]:
    [(delivery_id,)] = run.engine.processing.state.conn.execute(
        "SELECT id FROM deliveries WHERE route = ?", (route,)
    ).fetchall()
    return run.engine.processing.state.deliveries.attempts(delivery_id)


def state(run: EmbeddedRunning, route: str) -> str:
    """The state of the route's delivery: ``pending`` or ``sending`` until it is final (``delivered``, ``dead``)."""
    [(found,)] = run.engine.processing.state.conn.execute(
        "SELECT state FROM deliveries WHERE route = ?", (route,)
    ).fetchall()
    return found


def counter(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_email_arrives_with_rendered_templates_headers_and_html(
    start_engine: StartEngine, start_smtp: StartSMTP
) -> None:
    mailbox = await start_smtp()
    run = await start_engine(RULES, smtp=smtp_settings(mailbox))
    text = "Info <prezzi> & sconti\nperché 😀"
    assert await run.post("/inbound/agiletelecom", data={**AGILE, "text": text}) == 200
    await eventually(lambda: len(mailbox.received) == 1)
    [got] = mailbox.received
    assert got.mail_from == FROM and got.rcpt_tos == ["sales@example.com", "desk@example.com"]
    email = got.message
    assert (email["From"], email["To"]) == (FROM, "sales@example.com, desk@example.com")
    assert email["Subject"] == "INFO from +393331234567: Info <prezzi> & sconti perché 😀"  # one line
    [(delivery_id, message_id)] = run.engine.processing.state.conn.execute(
        "SELECT id, message_id FROM deliveries"
    ).fetchall()
    assert email["Message-ID"] == f"<{delivery_id}@example.com>"
    assert (email["Auto-Submitted"], email["X-Smsroute-Route"]) == ("auto-generated", "info")
    assert email["X-Smsroute-Message-Id"] == message_id
    plain = email.get_body(preferencelist=("plain",)).get_content().replace("\r\n", "\n")  # CRLF on the wire
    assert plain.startswith("+393331234567 wrote to +393201234567 at 20") and plain.endswith(f":\n{text}\n")
    html = email.get_body(preferencelist=("html",)).get_content().replace("\r\n", "\n")
    assert html.strip() == "<p><b>+393331234567</b>: Info &lt;prezzi&gt; &amp; sconti\nperché 😀</p>"
    # the server has the email once it answered DATA; the engine records the attempt just after
    await eventually(lambda: [a["outcome"] for a in attempts(run, "info")] == ["delivered"])


async def test_a_4xx_is_retried_then_delivered_once(start_engine: StartEngine, start_smtp: StartSMTP) -> None:
    mailbox = await start_smtp()
    mailbox.replies = ["451 4.3.0 queue full, try later"]
    retries = counter("smsroute_deliveries_total", sink="email", outcome="retry")
    by_reason = counter("smsroute_delivery_retries_total", sink="email", reason="smtp_4xx")
    run = await start_engine(RULES, smtp=smtp_settings(mailbox))
    assert await run.post("/inbound/agiletelecom", data={**AGILE, "text": "INFO please"}) == 200
    await eventually(lambda: len(mailbox.received) == 1)
    await eventually(lambda: len(attempts(run, "info")) == 2)
    first, second = attempts(run, "info")
    assert (first["outcome"], first["status"]) == ("failed", 451) and "queue full" in first["error"]
    assert (second["outcome"], second["status"]) == ("delivered", 250)
    assert counter("smsroute_deliveries_total", sink="email", outcome="retry") == retries + 1
    assert counter("smsroute_delivery_retries_total", sink="email", reason="smtp_4xx") == by_reason + 1
    assert state(run, "info") == "delivered"  # final: nothing more will be sent
    assert len(mailbox.received) == 1 and mailbox.data_commands == 2


@pytest.mark.parametrize(
    ("refuse", "replies", "expected"),
    [
        ({"nobody@example.com": "550 5.1.1 no such user"}, [], "nobody@example.com refused: 550 5.1.1 no such user"),
        ({}, ["554 5.6.0 content rejected"], "SMTP 554: 5.6.0 content rejected"),
    ],
    ids=["recipient", "data"],
)
async def test_a_5xx_is_a_dead_letter_at_once(
    start_engine: StartEngine, start_smtp: StartSMTP, refuse: dict[str, str], replies: list[str], expected: str
) -> None:
    mailbox = await start_smtp()
    mailbox.refuse, mailbox.replies = refuse, replies
    dead = counter("smsroute_dead_letters_total", stage="deliver", reason="permanent")
    run = await start_engine(RULES, smtp=smtp_settings(mailbox))
    assert await run.post("/inbound/agiletelecom", data={**AGILE, "text": "REFUSED"}) == 200
    await eventually(lambda: len(run.engine.processing.state.dead_letters.all()) == 1)
    [letter] = run.engine.processing.state.dead_letters.all()
    assert letter["stage"] == "deliver" and expected in letter["reason"]
    assert state(run, "refused") == "dead"  # final at once: no retry is scheduled
    assert len(attempts(run, "refused")) == 1 and mailbox.received == []
    assert counter("smsroute_dead_letters_total", stage="deliver", reason="permanent") == dead + 1


async def test_a_template_failing_on_the_message_is_a_dead_letter_at_once(
    start_engine: StartEngine, start_smtp: StartSMTP
) -> None:
    mailbox = await start_smtp()
    run = await start_engine(RULES, smtp=smtp_settings(mailbox))
    assert await run.post("/inbound/agiletelecom", data={**AGILE, "text": "BROKEN"}) == 200
    await eventually(lambda: len(run.engine.processing.state.dead_letters.all()) == 1)
    [letter] = run.engine.processing.state.dead_letters.all()
    assert letter["reason"] == (
        "cannot compose the email: template failed: UndefinedError: 'dict object' has no attribute 'device'"
    )
    assert len(attempts(run, "broken")) == 1 and mailbox.connections == []


async def test_without_smtp_settings_email_deliveries_are_dead_letters(start_engine: StartEngine) -> None:
    run = await start_engine(RULES)
    assert await run.post("/inbound/agiletelecom", data={**AGILE, "text": "hello"}) == 200
    await eventually(lambda: len(run.engine.processing.state.dead_letters.all()) == 1)
    assert run.engine.processing.state.dead_letters.all()[0]["reason"] == "no email sink is configured"
    assert state(run, "rest") == "dead"  # final at once: no retry is scheduled
    assert len(attempts(run, "rest")) == 1


async def test_smsroute_serve_sends_email_from_its_processing_process(
    tmp_path: Path, start_smtp: StartSMTP, certificates: Certificates
) -> None:
    """The default runtime: settings (the password too) travel to the child process that sends."""
    mailbox = await start_smtp(tls="starttls", auth=True)
    routes = tmp_path / "routes"
    routes.mkdir()
    (routes / "r.yaml").write_text("routes: [{name: all, actions: [{email: {to: [ops@example.com]}}]}]\n")
    config = tmp_path / "smsroute.toml"
    config.write_text(
        f'[smtp]\nhost = "127.0.0.1"\nport = {mailbox.port}\nusername = "{USER}"\npassword = "{PASSWORD}"\n'
        f'from_address = "{FROM}"\nca_file = "{certificates.ca_file}"\n'
    )
    engine = EngineProcess(tmp_path / "data", tmp_path / "engine.stderr", routes=routes, config=config)
    try:
        async with aiohttp.ClientSession() as http:
            await engine.wait_healthy(http)
            async with http.post(engine.url + "/inbound/agiletelecom", data=form("Ciao da serve")) as response:
                assert response.status == 200
            await eventually(lambda: len(mailbox.received) == 1, timeout=30)
    finally:
        engine.kill()
    [got] = mailbox.received
    assert (got.tls, got.login, got.message["Subject"]) == (True, USER, "SMS from +393331234567")
    assert got.message.get_content().strip() == "Ciao da serve"
    assert PASSWORD not in engine.stderr()


# --- the pool, straight against the server -------------------------------------------------------


def delivery(number: int = 1, text: str = "hello") -> Delivery:
    message = {"from": "+393331234567", "to": "+393201234567", "text": text, "route": "r"}
    action = {"to": ["ops@example.com"], "subject": "SMS {{ text }}", "body": "{{ text }}"}
    return Delivery(f"msg_{number:032x}", f"m{number}", "r", "email", action, json.dumps(message), time.time())


async def send(pool: Pool, *deliveries: Delivery) -> list[Any]:
    return list(await asyncio.gather(*(pool.send(compose(d, FROM), ["ops@example.com"]) for d in deliveries)))


@pytest.fixture
async def pools() -> Any:
    opened: list[Pool] = []

    def make(mailbox: Mailbox, **overrides: Any) -> Pool:
        pool = Pool(SMTPConfig.model_validate(smtp_settings(mailbox, **overrides)))
        opened.append(pool)
        return pool

    yield make
    for pool in opened:
        await pool.close()


@pytest.mark.parametrize("tls", ["starttls", "tls"])
async def test_tls_and_login(start_smtp: StartSMTP, pools: Any, certificates: Certificates, tls: str) -> None:
    mailbox = await start_smtp(tls=tls, auth=True)
    pool = pools(mailbox, tls=tls, username=USER, password=PASSWORD, ca_file=certificates.ca_file)
    [attempt] = await send(pool, delivery())
    assert (attempt.outcome, attempt.status) == ("delivered", 250), attempt
    [got] = mailbox.received
    assert (got.tls, got.login, got.message["Subject"]) == (True, USER, "SMS hello")


async def test_a_wrong_password_is_retried_not_final(
    start_smtp: StartSMTP, pools: Any, certificates: Certificates
) -> None:
    mailbox = await start_smtp(tls="starttls", auth=True)
    pool = pools(mailbox, tls="starttls", username=USER, password="wrong", ca_file=certificates.ca_file)
    [attempt] = await send(pool, delivery())
    assert (attempt.outcome, attempt.status, attempt.permanent, attempt.code) == ("failed", 535, False, "smtp_5xx")
    assert PASSWORD not in attempt.error and "wrong" not in attempt.error
    assert mailbox.received == []


async def test_a_server_wanting_a_login_is_retried_not_final(
    start_smtp: StartSMTP, pools: Any, certificates: Certificates
) -> None:
    mailbox = await start_smtp(tls="starttls", auth=True)
    [attempt] = await send(pools(mailbox, tls="starttls", ca_file=certificates.ca_file), delivery())
    assert (attempt.outcome, attempt.status, attempt.permanent) == ("failed", 530, False)


async def test_an_untrusted_certificate_is_refused(start_smtp: StartSMTP, pools: Any) -> None:
    mailbox = await start_smtp(tls="tls")
    [attempt] = await send(pools(mailbox, tls="tls"), delivery())
    assert (attempt.outcome, attempt.permanent, attempt.code) == ("failed", False, "network")
    assert "certificate verify failed" in attempt.error and mailbox.received == []


async def test_one_connection_carries_many_emails(start_smtp: StartSMTP, pools: Any) -> None:
    mailbox = await start_smtp()
    pool = pools(mailbox, pool_size=1)
    for number in range(5):
        [attempt] = await send(pool, delivery(number))
        assert attempt.outcome == "delivered"
    assert len(mailbox.connections) == 1
    assert [got.connection for got in mailbox.received] == [1] * 5


async def test_concurrent_emails_share_at_most_pool_size_connections(start_smtp: StartSMTP, pools: Any) -> None:
    mailbox = await start_smtp()
    pool = pools(mailbox, pool_size=2)
    results = await send(pool, *(delivery(number) for number in range(12)))
    assert [attempt.outcome for attempt in results] == ["delivered"] * 12
    assert len(mailbox.received) == 12 and len(mailbox.connections) <= 2


async def test_a_connection_the_server_dropped_is_replaced(start_smtp: StartSMTP, pools: Any) -> None:
    mailbox = await start_smtp()
    pool = pools(mailbox, pool_size=1)
    await send(pool, delivery(1))
    mailbox.drop_connections()
    [attempt] = await send(pool, delivery(2))
    assert attempt.outcome == "delivered"
    assert [got.connection for got in mailbox.received] == [1, 2]


async def test_some_recipients_refused_is_delivered_with_the_refusals_recorded(
    start_smtp: StartSMTP, pools: Any
) -> None:
    mailbox = await start_smtp()
    mailbox.refuse = {"gone@example.com": "550 5.1.1 no such user"}
    pool = pools(mailbox)
    attempt = await pool.send(compose(delivery(), FROM), ["ops@example.com", "gone@example.com"])
    assert attempt.outcome == "delivered" and attempt.error == "gone@example.com refused: 550 5.1.1 no such user"
    assert mailbox.received[0].rcpt_tos == ["ops@example.com"]


def test_settings_are_checked(tmp_path: Path) -> None:
    base = {"host": "mail.example.com", "from_address": FROM}
    assert SMTPConfig.model_validate(base).server_port == 587
    assert SMTPConfig.model_validate({**base, "tls": "tls"}).server_port == 465
    for bad, reason in [
        ({"username": "u"}, "give both username and password, or neither"),
        ({"username": "u", "password": "p", "tls": "none"}, "the password would cross the network in clear"),
        ({"from_address": "nobody"}, "'nobody' is not an email address"),
        ({"ca_file": str(tmp_path / "missing.pem")}, "Path does not point to a file"),
        ({"tls": "ssl"}, "Input should be 'none', 'starttls' or 'tls'"),
    ]:
        with pytest.raises(ValueError, match=reason):
            SMTPConfig.model_validate({**base, **bad})
