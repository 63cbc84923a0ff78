"""The declarative provider end to end on both engines: a mapped JSON batch reaches the webhook as
canonical messages, and malformed requests to it get a 4xx, never a 5xx, with nothing logged."""

from __future__ import annotations

import json

from engines import StartEngine
from helpers import eventually
from local_server import Receiver

ACME = {
    "provider": "generic",
    "batch": "messages",
    "fields": {"from": "sender.number", "to": "recipient", "text": "body", "id": "msg_id", "time": "sent"},
    "answer_status": 202,
}
BATCH = {
    "messages": [
        {"msg_id": "acme-1", "sender": {"number": "+447700900123"}, "recipient": "+447700900000", "body": "Hello"},
        {"msg_id": "acme-2", "sender": {"number": "+447700900124"}, "recipient": "+447700900000", "body": "STOP"},
    ]
}


async def test_a_mapped_batch_arrives_as_canonical_messages(start_engine: StartEngine, receiver: Receiver) -> None:
    run = await start_engine(ingress={"acme": ACME})
    junk: list[dict[str, object]] = [
        {"data": b"\xff\xfe", "headers": {"Content-Type": "application/json"}},
        {"data": b"[1, 2]", "headers": {"Content-Type": "application/json"}},
        {"json": {"messages": []}},
        {"json": {"messages": [{"msg_id": "x", "sender": {"number": ["+1"]}, "recipient": "r", "body": "b"}]}},
        {"data": "a=b", "headers": {"Content-Type": "application/x-www-form-urlencoded"}},
        {"json": {"messages": "nope"}},
    ]
    for request in junk:
        assert 400 <= await run.post("/inbound/acme", **request) < 500, request
    assert await run.post("/inbound/acme", json=BATCH) == 202
    await eventually(lambda: len(receiver.received) == 2)
    delivered = {message["text"]: message for message in (json.loads(r["body"]) for r in receiver.received)}
    assert {text: (m["from"], m["to"], m["provider"], m["source"]) for text, m in delivered.items()} == {
        "Hello": ("+447700900123", "+447700900000", "generic", "acme"),
        "STOP": ("+447700900124", "+447700900000", "generic", "acme"),
    }
    assert delivered["STOP"]["route"] == "opt-out" and delivered["Hello"]["provider_message_ids"] == ["acme-1"]
