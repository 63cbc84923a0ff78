"""Agile Telecom: form POST, answered with exactly ``+OK`` once the event is in the log."""

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


async def test_missing_fields_are_named_and_nothing_is_logged(ingress: Ingress) -> None:
    status, body, _ = await ingress.post("/inbound/agiletelecom", data={"originator": "+393331234567"})
    assert status == 400
    assert body.strip() == "missing required fields: destination, date_time, text"
    assert ingress.events() == []


async def test_json_body_is_refused_with_415(ingress: Ingress) -> None:
    status, body, _ = await ingress.post("/inbound/agiletelecom", json=SAMPLE)
    assert status == 415
    assert "application/x-www-form-urlencoded" in body
    assert ingress.events() == []


async def test_get_is_not_how_agile_telecom_posts(ingress: Ingress) -> None:
    status, body, response = await ingress.get("/inbound/agiletelecom", params=SAMPLE)
    assert status == 405
    assert response.headers["Allow"] == "POST"
    assert ingress.events() == []
