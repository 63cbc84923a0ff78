"""Agile Telecom: form POST, answered with exactly ``+OK`` once the event is in the log. Recorded
requests and what they must give, refusals included, are cases in tests/fixtures/providers/agiletelecom/
(tests/integration/test_provider_cases.py); here, the rest."""

from __future__ import annotations

from urllib.parse import parse_qs

from ingress_server import Ingress

SAMPLE = {
    "originator": "+393331234567",
    "destination": "+393201234567",
    "date_time": "2026-11-21 10:00:00",
    "text": "Ciao, vorrei informazioni",
}


async def test_sample_is_logged_then_answered_plus_ok(ingress: Ingress) -> None:
    status, body, response = await ingress.post("/inbound/agiletelecom", data=SAMPLE)
    assert (status, body) == (200, "+OK")
    [event] = ingress.events()
    assert (event.ingress, event.provider, event.kind, event.method) == (
        "agiletelecom",
        "agiletelecom",
        "inbound",
        "POST",
    )
    assert event.content_type == "application/x-www-form-urlencoded"
    assert {k: v[0] for k, v in parse_qs(event.body.decode()).items()} == SAMPLE
    assert event.key == "agiletelecom:+393331234567:+393201234567"
    assert event.remote_addr == "127.0.0.1"


async def test_unicode_text_is_kept_byte_for_byte(ingress: Ingress) -> None:
    data = {**SAMPLE, "text": "Caffè ☕ – привет 👍"}
    status, body, _ = await ingress.post("/inbound/agiletelecom", data=data)
    assert (status, body) == (200, "+OK")
    [event] = ingress.events()
    assert parse_qs(event.body.decode())["text"] == ["Caffè ☕ – привет 👍"]


async def test_get_is_not_how_agile_telecom_posts(ingress: Ingress) -> None:
    status, body, response = await ingress.get("/inbound/agiletelecom", params=SAMPLE)
    assert status == 405
    assert response.headers["Allow"] == "POST"
    assert ingress.events() == []
