"""Both engines end to end over real HTTP: providers post to the ingress, a real aiohttp receiver
records what the webhook sink delivers. Every test runs against the embedded engine and against the
Kafka engine (ingress and worker processes on a real broker): same inputs, same deliveries."""

from __future__ import annotations

import json

from standardwebhooks import Webhook

from engines import SECRET, Running, StartEngine
from helpers import eventually
from local_server import Receiver
from samples import AGILE, vonage_part
from scraping import moved, scrape


async def test_agile_telecom_message_arrives_as_canonical_json(start_engine: StartEngine, receiver: Receiver) -> None:
    run = await start_engine()
    assert await run.post("/inbound/agiletelecom", data={**AGILE, "text": "Ciao a tutti"}) == 200
    await eventually(lambda: len(receiver.at("/inbox")) == 1)
    message = json.loads(receiver.at("/inbox")[0]["body"])
    assert message["from"] == "+393331234567" and message["to"] == "+393201234567"
    assert message["text"] == "Ciao a tutti"
    assert (message["provider"], message["source"], message["route"]) == ("agiletelecom", "agiletelecom", "inbox")
    assert message["keyword"] == "CIAO" and message["complete"] is True and message["parts"] == 1
    assert message["rules_version"] == run.rules_version
    assert message["received_at"].endswith("Z")


async def test_alias_routes_and_signed_webhook(start_engine: StartEngine, receiver: Receiver) -> None:
    run = await start_engine()
    assert await run.post("/inbound/agiletelecom", data={**AGILE, "text": "arresta per favore"}) == 200
    await eventually(lambda: len(receiver.at("/optout")) == 1)
    request = receiver.at("/optout")[0]
    message = json.loads(request["body"])
    assert (message["route"], message["keyword"]) == ("opt-out", "STOP")
    headers = {k.lower(): v for k, v in request["headers"].items()}
    Webhook(SECRET).verify(request["body"], headers)  # raises when the signature is wrong


async def test_provider_retry_is_delivered_once(start_engine: StartEngine, receiver: Receiver) -> None:
    run = await start_engine()
    before = await scrape(run)
    for _ in range(3):
        assert await run.post("/inbound/agiletelecom", data={**AGILE, "text": "once only"}) == 200
    assert await run.post("/inbound/agiletelecom", data={**AGILE, "text": "another"}) == 200
    await eventually(lambda: len(receiver.at("/inbox")) == 2)
    await moved(  # every event processed: the two retries dropped, each message delivered
        run,
        before,
        ("smsroute_pipeline_events_total", {"provider": "agiletelecom", "outcome": "normalized"}, 2),
        ("smsroute_pipeline_events_total", {"provider": "agiletelecom", "outcome": "duplicate"}, 2),
        ("smsroute_deliveries_total", {"sink": "webhook", "outcome": "delivered"}, 2),
    )
    assert sorted(json.loads(r["body"])["text"] for r in receiver.at("/inbox")) == ["another", "once only"]


async def test_three_parts_in_order_3_1_2_arrive_once_whole(start_engine: StartEngine, receiver: Receiver) -> None:
    run = await start_engine()
    before = await scrape(run)
    texts = {1: "Hello ", 2: "from three ", 3: "parts."}
    for part in (3, 1, 2, 1):  # part 1 twice: a provider retry
        assert await run.post("/inbound/vonage", json=vonage_part(part, texts[part])) == 204
    await eventually(lambda: len(receiver.at("/inbox")) == 1)
    await moved(  # every part processed: the retry dropped, the message stitched and delivered
        run,
        before,
        ("smsroute_pipeline_events_total", {"provider": "vonage", "outcome": "normalized"}, 3),
        ("smsroute_pipeline_events_total", {"provider": "vonage", "outcome": "duplicate"}, 1),
        ("smsroute_parts_stitched_total", {"provider": "vonage"}, 1),
        ("smsroute_deliveries_total", {"sink": "webhook", "outcome": "delivered"}, 1),
    )
    [request] = receiver.at("/inbox")
    message = json.loads(request["body"])
    assert message["text"] == "Hello from three parts."
    assert (message["parts"], message["complete"]) == (3, True)
    assert message["provider_message_ids"] == ["0A000001", "0A000002", "0A000003"]
    assert message["from"] == "+447700900123"


async def test_missing_part_yields_incomplete_message_after_timeout(
    start_engine: StartEngine, receiver: Receiver
) -> None:
    run = await start_engine(stitch_timeout=0.5)
    for part in (1, 3):
        assert await run.post("/inbound/vonage", json=vonage_part(part, f"<{part}>")) == 204
    await eventually(lambda: len(receiver.at("/inbox")) == 1, timeout=10)
    message = json.loads(receiver.at("/inbox")[0]["body"])
    assert (message["text"], message["complete"], message["parts"]) == ("<1><3>", False, 3)
    assert "incomplete" in message["flags"]


async def test_receiver_failing_twice_gets_the_message_once_with_one_webhook_id(
    start_engine: StartEngine, receiver: Receiver
) -> None:
    receiver.fail["/flaky"] = 2
    run = await start_engine()
    assert await run.post("/inbound/agiletelecom", data={**AGILE, "text": "FLAKY network"}) == 200
    await eventually(lambda: len(receiver.at("/flaky")) == 3)
    await eventually(lambda: final(run, "flaky", ["failed", "failed", "delivered"]), interval=0.1)
    requests = receiver.at("/flaky")
    assert len(requests) == 3
    assert len({r["headers"]["webhook-id"] for r in requests}) == 1
    assert await run.attempt_outcomes("flaky") == ["failed", "failed", "delivered"]


async def test_dead_receiver_ends_in_dead_letters_and_replay_delivers(
    start_engine: StartEngine, receiver: Receiver
) -> None:
    receiver.fail["/dead"] = -1
    run = await start_engine()
    assert await run.post("/inbound/agiletelecom", data={**AGILE, "text": "DEAD end"}) == 200
    await eventually(lambda: dead_letters(run, 1), interval=0.1)
    [letter] = await run.dead_letters()
    assert len(receiver.at("/dead")) == 3  # the first try and two retries
    assert letter["stage"] == "deliver" and "503" in letter["reason"]
    receiver.fail["/dead"] = 0
    assert await run.replay() == 1
    await eventually(lambda: len(receiver.at("/dead")) == 4)
    assert await run.dead_letters() == []
    await eventually(lambda: final(run, "dead", ["failed", "failed", "failed", "delivered"]), interval=0.1)
    assert len({r["headers"]["webhook-id"] for r in receiver.at("/dead")}) == 1 and len(receiver.at("/dead")) == 4


async def final(run: Running, route: str, outcomes: list[str]) -> bool:
    """Whether the engine has recorded these attempts of the route's delivery: the last one final."""
    return await run.attempt_outcomes(route) == outcomes


async def dead_letters(run: Running, count: int) -> bool:
    return len(await run.dead_letters()) == count
