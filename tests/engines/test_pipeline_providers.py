"""Every provider end to end through both engines (embedded and Kafka): each seed sample posted to
the real ingress arrives at a real webhook receiver as the canonical JSON; what can never be a
message, or matches no route, becomes a dead letter; the per-stage metrics move."""

from __future__ import annotations

import json
from typing import Any

import pytest

from engines import Running, StartEngine
from helpers import eventually
from local_server import Receiver
from provider_fixtures import ROOT, load
from samples import AGILE, GATEWAY24_INCOMING, GATEWAY24_STATUS, SEEDS, VONAGE
from scraping import moved, scrape
from smsroute.models.raw import RawEvent
from smsroute.providers import available

BINARY = {key: value for key, value in VONAGE.items() if key not in ("text", "keyword")} | {"type": "binary"}
PATHS = {"inbox": "/inbox", "opt-out": "/optout"}


def test_every_http_provider_has_an_end_to_end_case() -> None:
    """A provider added without a sample here (in tests/samples.py's SEEDS) fails: every provider that
    receives over HTTP runs end to end through both engines. Providers without HTTP kinds (an SMPP
    bind, say) are not posted to the ingress, nor are those mounted only when configured (generic, whose
    end-to-end case is in tests/engines/test_generic_end_to_end.py), so they have no case here."""
    http = {
        name for name, provider in available().items() if provider.receiving.kinds and provider.receiving.default_mount
    }
    assert sorted(http - SEEDS.keys()) == [], "providers with no end-to-end case in tests/samples.py SEEDS"
    assert sorted(SEEDS.keys() - http) == [], "end-to-end cases of providers that are not mounted by default"


async def only(receiver: Receiver, path: str) -> dict[str, Any]:
    await eventually(lambda: len(receiver.at(path)) == 1)
    [request] = receiver.at(path)
    return json.loads(request["body"])


@pytest.mark.parametrize("provider", list(SEEDS))
async def test_seed_sample_arrives_as_canonical_json(
    start_engine: StartEngine,
    receiver: Receiver,
    provider: str,
) -> None:
    request, expected = SEEDS[provider]
    run = await start_engine()
    assert await run.post(f"/inbound/{provider}", **request) in (200, 204)
    message = await only(receiver, PATHS[expected["route"]])
    assert {name: message[name] for name in expected} == expected
    assert (message["provider"], message["source"]) == (provider, provider)
    assert (message["parts"], message["complete"], message["encoding"]) == (1, True, "text")
    assert message["received_at"].endswith("Z") and len(message["id"]) == 32
    assert message["rules_version"] == run.rules_version
    assert len(receiver.received) == 1  # one route matched, one delivery


async def test_per_stage_metrics_move(start_engine: StartEngine, receiver: Receiver) -> None:
    run = await start_engine()
    before = await scrape(run)
    for _ in range(2):  # the second is a provider retry
        assert await run.post("/inbound/agiletelecom", data={**AGILE, "text": "metrics please"}) == 200
    await only(receiver, "/inbox")
    await moved(
        run,
        before,
        ("smsroute_pipeline_events_total", {"provider": "agiletelecom", "outcome": "normalized"}, 1),
        ("smsroute_pipeline_events_total", {"provider": "agiletelecom", "outcome": "duplicate"}, 1),
        ("smsroute_messages_routed_total", {"route": "inbox"}, 1),
        ("smsroute_deliveries_total", {"sink": "webhook", "outcome": "delivered"}, 1),
        ("smsroute_end_to_end_seconds_count", {"sink": "webhook"}, 1),
    )


async def test_vonage_binary_in_two_parts_is_stitched_by_its_udh(
    start_engine: StartEngine,
    receiver: Receiver,
) -> None:
    run = await start_engine()
    before = await scrape(run)
    parts = {1: ("0A01", "48656c6c6f2c20"), 2: ("0A02", "776f726c6421")}
    for index in (2, 1):
        message_id, data = parts[index]
        sent = {**BINARY, "messageId": message_id, "data": data, "udh": f"0500030f02{index:02x}"}
        assert await run.post("/inbound/vonage", json=sent) == 204
    message = await only(receiver, "/inbox")
    assert (message["text"], message["encoding"]) == ("48656c6c6f2c20776f726c6421", "binary")
    assert (message["parts"], message["complete"], message["flags"]) == (2, True, [])
    assert message["provider_message_ids"] == ["0A01", "0A02"]
    assert (message["from"], message["to"]) == ("+447700900123", "+447700900000")
    await moved(run, before, ("smsroute_parts_stitched_total", {"provider": "vonage"}, 1))


async def test_unknown_vonage_type_is_a_dead_letter_at_normalize(
    start_engine: StartEngine,
    receiver: Receiver,
) -> None:
    run = await start_engine()
    before = await scrape(run)
    assert await run.post("/inbound/vonage", json={**VONAGE, "type": "vcard"}) == 204
    assert await run.post("/inbound/vonage", json={**VONAGE, "messageId": "0A0000001234567C"}) == 204
    await only(receiver, "/inbox")  # the stream goes on past it
    await eventually(lambda: dead_letters(run, 1), interval=0.1)
    [letter] = await run.dead_letters()
    assert (letter["stage"], letter["reason"]) == ("normalize", "unprocessable: unknown vonage message type 'vcard'")
    assert letter["delivery_id"] is None
    assert json.loads(RawEvent.decode(letter["payload"]).body)["type"] == "vcard"
    await moved(
        run,
        before,
        ("smsroute_dead_letters_total", {"stage": "normalize", "reason": "unprocessable"}, 1),
        ("smsroute_pipeline_events_total", {"provider": "vonage", "outcome": "dead_letter"}, 1),
        ("smsroute_pipeline_events_total", {"provider": "vonage", "outcome": "normalized"}, 1),
    )


NO_CATCH_ALL = """
routes:
  - name: info
    match: {{keyword: INFO}}
    actions:
      - webhook: {{url: "{url}/info"}}
"""


async def test_message_no_route_matches_is_a_dead_letter_at_route(
    start_engine: StartEngine,
    receiver: Receiver,
) -> None:
    run = await start_engine(rules=NO_CATCH_ALL.format(url=receiver.url))
    before = await scrape(run)
    assert await run.post("/inbound/agiletelecom", data={**AGILE, "text": "nobody listens"}) == 200
    assert await run.post("/inbound/agiletelecom", data={**AGILE, "text": "info orari"}) == 200
    routed = await only(receiver, "/info")
    assert (routed["route"], routed["keyword"]) == ("info", "INFO")
    await eventually(lambda: dead_letters(run, 1), interval=0.1)
    [letter] = await run.dead_letters()
    assert (letter["stage"], letter["reason"]) == ("route", "unrouted: no route matched")
    unrouted = json.loads(letter["payload"])
    assert (unrouted["text"], unrouted["from"], unrouted["route"]) == ("nobody listens", "+393331234567", "")
    assert unrouted["rules_version"] == run.rules_version
    await moved(
        run,
        before,
        ("smsroute_dead_letters_total", {"stage": "route", "reason": "unrouted"}, 1),
        ("smsroute_messages_unrouted_total", {}, 1),
        ("smsroute_messages_routed_total", {"route": "info"}, 1),
    )
    assert len(receiver.received) == 1


async def test_smsgateway24_status_is_stored_as_a_report_not_delivered(
    start_engine: StartEngine,
    receiver: Receiver,
) -> None:
    run = await start_engine()
    before = await scrape(run)
    assert await run.post("/status/smsgateway24", json=GATEWAY24_STATUS) == 200
    await moved(
        run,
        before,
        ("smsroute_pipeline_events_total", {"provider": "smsgateway24", "outcome": "report"}, 1),
        ("smsroute_delivery_reports_total", {"provider": "smsgateway24", "status": "delivered", "linked": "false"}, 1),
    )
    await eventually(lambda: reports(run, 1), interval=0.1)
    [report] = await run.reports()
    assert (report.provider_message_id, report.code, report.status) == ("555001", "7", "delivered")
    assert (await run.dead_letters(), receiver.received) == ([], [])


async def test_aws_sms_event_is_stored_as_a_report_not_delivered(
    start_engine: StartEngine,
    receiver: Receiver,
) -> None:
    """An End User Messaging SMS event from an SNS event destination (the ingress mounted with no
    topic_arns, so nothing is verified: the recorded signed case checks the signature)."""
    case = load(ROOT / "aws" / "status_blocked.json")
    run = await start_engine()
    before = await scrape(run)
    assert await run.post("/status/aws", data=case.body, headers=case.headers) == 200
    await moved(
        run,
        before,
        ("smsroute_pipeline_events_total", {"provider": "aws", "outcome": "report"}, 1),
        ("smsroute_delivery_reports_total", {"provider": "aws", "status": "failed", "linked": "false"}, 1),
    )
    await eventually(lambda: reports(run, 1), interval=0.1)
    [report] = await run.reports()
    assert (report.provider_message_id, report.code, report.status) == (
        case.expect["reports"][0]["provider_message_id"],
        "TEXT_BLOCKED",
        "failed",
    )
    assert (await run.dead_letters(), receiver.received) == ([], [])


async def test_absurd_provider_time_is_delivered_without_one(
    start_engine: StartEngine,
    receiver: Receiver,
) -> None:
    run = await start_engine()
    assert await run.post("/inbound/smsgateway24", json={**GATEWAY24_INCOMING, "date_sent": 10**20}) == 200
    message = await only(receiver, "/inbox")
    assert (message["text"], message["provider_time"]) == (GATEWAY24_INCOMING["body"], None)


async def dead_letters(run: Running, count: int) -> bool:
    return len(await run.dead_letters()) == count


async def reports(run: Running, count: int) -> bool:
    return len(await run.reports()) == count
