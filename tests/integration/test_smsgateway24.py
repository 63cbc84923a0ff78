"""SMSGateway24: JSON incoming SMS and delivery reports, single or batched, answered 200 ``OK``.
Recorded requests and what they must give, refusals included, are cases in
tests/fixtures/providers/smsgateway24/ (tests/integration/test_provider_cases.py); here, the rest."""

from __future__ import annotations

import json

import pytest

from ingress_server import Ingress
from samples import GATEWAY24_INCOMING as INCOMING
from samples import GATEWAY24_INCOMING_CHANNEL as INCOMING_CHANNEL
from samples import GATEWAY24_STATUS as STATUS


async def test_documented_incoming_sms_is_logged_then_answered_ok(ingress: Ingress) -> None:
    status, body, _ = await ingress.post("/inbound/smsgateway24", json=INCOMING)
    assert (status, body) == (200, "OK")
    [event] = ingress.events()
    assert (event.ingress, event.provider, event.kind, event.method) == (
        "smsgateway24",
        "smsgateway24",
        "inbound",
        "POST",
    )
    assert event.content_type == "application/json"
    assert json.loads(event.body) == INCOMING
    assert event.key == "smsgateway24:393331234567:4242"
    assert (event.batch_index, event.batch_size) == (0, 1)


async def test_newer_shape_with_channel_id_and_string_values_is_accepted(ingress: Ingress) -> None:
    status, body, _ = await ingress.post("/inbound/smsgateway24", json=INCOMING_CHANNEL)
    assert (status, body) == (200, "OK")
    [event] = ingress.events()
    assert event.kind == "inbound"
    assert json.loads(event.body) == INCOMING_CHANNEL
    assert event.key == "smsgateway24:+393331234567:4242"


async def test_without_device_id_the_key_ends_empty(ingress: Ingress) -> None:
    sample = {k: v for k, v in INCOMING.items() if k != "device_id"}
    status, _, _ = await ingress.post("/inbound/smsgateway24", json=sample)
    assert status == 200
    [event] = ingress.events()
    assert event.key == "smsgateway24:393331234567:"


# Every documented status code, and one the document does not know: mapping happens downstream.
@pytest.mark.parametrize("status_id", [1, 2, 3, 5, 6, 7, 8, 9, 10, 11, 12, 100, 101, 4242])
async def test_delivery_status_is_logged_as_a_status_event(ingress: Ingress, status_id: int) -> None:
    report = {**STATUS, "status_id": status_id}
    status, body, _ = await ingress.post("/status/smsgateway24", json=report)
    assert (status, body) == (200, "OK")
    [event] = ingress.events()
    assert (event.ingress, event.provider, event.kind, event.path) == (
        "smsgateway24",
        "smsgateway24",
        "status",
        "/status/smsgateway24",
    )
    assert json.loads(event.body) == report
    assert event.key == "smsgateway24:status:555001"


async def test_a_list_is_a_batch_of_one_event_per_message(ingress: Ingress) -> None:
    batch = [
        {**INCOMING, "sms_id": 1, "address": 393330000001},
        {**INCOMING, "sms_id": 2, "address": 393330000002},
        {**INCOMING_CHANNEL, "sms_id": "3"},
    ]
    status, body, _ = await ingress.post("/inbound/smsgateway24", json=batch)
    assert (status, body) == (200, "OK")
    events = ingress.events()
    assert [json.loads(event.body) for event in events] == batch
    assert [(event.batch_index, event.batch_size) for event in events] == [(0, 3), (1, 3), (2, 3)]
    assert [event.key for event in events] == [
        "smsgateway24:393330000001:4242",
        "smsgateway24:393330000002:4242",
        "smsgateway24:+393331234567:4242",
    ]
    assert {event.content_type for event in events} == {"application/json"}
    assert len({event.event_id for event in events}) == 3


async def test_a_list_of_one_is_logged_as_that_one_object(ingress: Ingress) -> None:
    status, _, _ = await ingress.post("/inbound/smsgateway24", json=[INCOMING])
    assert status == 200
    [event] = ingress.events()
    assert json.loads(event.body) == INCOMING
    assert (event.batch_index, event.batch_size, event.content_type) == (0, 1, "application/json")


async def test_a_batch_of_status_reports(ingress: Ingress) -> None:
    batch = [{**STATUS, "sms_id": n, "status_id": n} for n in (1, 2, 3)]
    status, _, _ = await ingress.post("/status/smsgateway24", json=batch)
    assert status == 200
    events = ingress.events()
    assert [event.kind for event in events] == ["status"] * 3
    assert [event.key for event in events] == [f"smsgateway24:status:{n}" for n in (1, 2, 3)]


async def test_unicode_body_is_kept_byte_for_byte(ingress: Ingress) -> None:
    raw = json.dumps({**INCOMING, "body": "Caffè ☕ – привет 👍"}, ensure_ascii=False).encode()
    status, _, _ = await ingress.post(
        "/inbound/smsgateway24", data=raw, headers={"Content-Type": "application/json; charset=utf-8"}
    )
    assert status == 200
    [event] = ingress.events()
    assert event.body == raw
    assert json.loads(event.body)["body"] == "Caffè ☕ – привет 👍"


async def test_get_is_405(ingress: Ingress) -> None:
    status, _, response = await ingress.get("/inbound/smsgateway24", params={"sms_id": "1"})
    assert status == 405
    assert response.headers["Allow"] == "POST"
    assert ingress.events() == []
