"""Both engines end to end over real HTTP: providers post to the ingress, a real aiohttp receiver
records what the webhook sink delivers. Every test runs against the embedded engine and against the
Kafka engine (ingress and worker processes on a real broker): same inputs, same deliveries."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
from aiohttp import web
from standardwebhooks import Webhook

from engines import ENGINES, Running, start_embedded, start_kafka
from local_server import served

T = TypeVar("T")
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


@dataclass
class Receiver:
    """A webhook receiver: records every request; ``fail[path]`` answers 503 that many times (-1: always)."""

    url: str = ""
    received: list[dict[str, Any]] = field(default_factory=list)
    fail: dict[str, int] = field(default_factory=dict)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.text()
        self.received.append({"path": request.path, "headers": dict(request.headers), "body": body})
        remaining = self.fail.get(request.path, 0)
        if remaining:
            self.fail[request.path] = remaining - 1 if remaining > 0 else -1
            return web.Response(status=503, text="try later")
        return web.Response(status=204)

    def at(self, path: str) -> list[dict[str, Any]]:
        return [r for r in self.received if r["path"] == path]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    app = web.Application()
    app.router.add_post("/{tail:.*}", rec.handle)
    async with served(app) as rec.url:
        yield rec


def rules_yaml(url: str) -> str:
    return f"""
aliases:
  STOP: [ARRESTA]
routes:
  - name: opt-out
    match: {{keyword: STOP}}
    actions:
      - webhook: {{url: "{url}/optout", secret: "{SECRET}", retry: {{schedule: [0.2, 0.2, 0.2]}}}}
  - name: flaky
    match: {{keyword: FLAKY}}
    actions:
      - webhook: {{url: "{url}/flaky", retry: {{schedule: [0.2, 0.2, 0.2]}}}}
  - name: dead
    match: {{keyword: DEAD}}
    actions:
      - webhook: {{url: "{url}/dead", retry: {{schedule: [0.1, 0.1]}}}}
  - name: inbox
    actions:
      - webhook: {{url: "{url}/inbox"}}
"""


StartEngine = Callable[..., Awaitable[Running]]


@pytest.fixture(
    params=[pytest.param(engine, marks=[pytest.mark.kafka] if engine == "kafka" else []) for engine in ENGINES]
)
def engine(request: pytest.FixtureRequest) -> tuple[str, str]:
    """The engine under test, and the session broker's address when it is the Kafka engine."""
    return request.param, request.getfixturevalue("kafka_bootstrap") if request.param == "kafka" else ""


@pytest.fixture
async def start_engine(engine: tuple[str, str], tmp_path: Path, receiver: Receiver) -> AsyncIterator[StartEngine]:
    """Start the engine under test (embedded, or Kafka: ingress and worker processes on the
    session's broker, topics of their own) with ``rules_yaml`` routes to ``receiver``."""
    kind, bootstrap = engine
    running: list[Running] = []

    async def start(rules: str | None = None, **overrides: Any) -> Running:
        """The engine with ``rules`` (default: :func:`rules_yaml` for the receiver) and settings overrides."""
        routes = tmp_path / "routes"
        routes.mkdir(exist_ok=True)
        (routes / "rules.yaml").write_text(rules or rules_yaml(receiver.url))
        if kind == "kafka":
            run: Running = await start_kafka(tmp_path, bootstrap, routes, **overrides)
        else:
            run = await start_embedded(tmp_path, routes, **overrides)
        running.append(run)
        return run

    yield start
    for run in running:
        await run.stop()


async def until(probe: Callable[[], Awaitable[T]], check: Callable[[T], bool], timeout: float = 30.0) -> T:
    """Probe (an async read) until its value passes ``check``; that value."""
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if check(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not reached in time; last: {value!r}")
        await asyncio.sleep(0.1)


async def eventually(check: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


AGILE = {"originator": "+393331234567", "destination": "+393201234567", "date_time": "2026-11-21 10:00:00"}


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
    for _ in range(3):
        assert await run.post("/inbound/agiletelecom", data={**AGILE, "text": "once only"}) == 200
    assert await run.post("/inbound/agiletelecom", data={**AGILE, "text": "another"}) == 200
    await eventually(lambda: len(receiver.at("/inbox")) == 2)
    await asyncio.sleep(0.3)
    assert sorted(json.loads(r["body"])["text"] for r in receiver.at("/inbox")) == ["another", "once only"]


def vonage_part(part: int, text: str) -> dict[str, Any]:
    return {
        "type": "text",
        "to": "447700900000",
        "msisdn": "447700900123",
        "messageId": f"0A00000{part}",
        "message-timestamp": "2026-11-21 10:00:00",
        "text": text,
        "concat": "true",
        "concat-ref": "42",
        "concat-total": "3",
        "concat-part": str(part),
    }


async def test_three_parts_in_order_3_1_2_arrive_once_whole(start_engine: StartEngine, receiver: Receiver) -> None:
    run = await start_engine()
    texts = {1: "Hello ", 2: "from three ", 3: "parts."}
    for part in (3, 1, 2, 1):  # part 1 twice: a provider retry
        assert await run.post("/inbound/vonage", json=vonage_part(part, texts[part])) == 204
    await eventually(lambda: len(receiver.at("/inbox")) == 1)
    await asyncio.sleep(0.3)
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
    await asyncio.sleep(0.5)
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
    [letter] = await until(run.dead_letters, lambda letters: len(letters) == 1)
    assert len(receiver.at("/dead")) == 3  # the first try and two retries
    assert letter["stage"] == "deliver" and "503" in letter["reason"]
    receiver.fail["/dead"] = 0
    assert await run.replay() == 1
    await eventually(lambda: len(receiver.at("/dead")) == 4)
    assert await run.dead_letters() == []
    await asyncio.sleep(0.5)
    assert len({r["headers"]["webhook-id"] for r in receiver.at("/dead")}) == 1 and len(receiver.at("/dead")) == 4
