"""The ingress on Kafka against a real broker: what it publishes (keys, partitions, Avro), topics
made at start-up, 503 and readiness when Kafka is away, and nothing acknowledged lost across a
broker restart under concurrent load."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import aiohttp
import pytest
from aiokafka import ConsumerRecord
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.partitioner import DefaultPartitioner
from prometheus_client.parser import text_string_to_metric_families

from engine_process import SmsrouteProcess, form, free_port
from helpers import eventually
from kafka_broker import LocalBroker, partition_count, read_topic
from samples import GATEWAY24_INCOMING as INCOMING
from samples import SEEDS, TWILIO, VONAGE
from smsroute.config import load_settings
from smsroute.engines.kafka.ingress import KafkaIngress
from smsroute.models.raw import RawEvent
from smsroute.providers import build_receivers, normalizers

READY_TIMEOUT = 60.0
"""Seconds for an ingress to connect to a broker that is up (generous: two shared cores)."""
POSTS_PER_PHASE = 150
"""Accepted posts before the broker restart, and again after it."""
PROVIDER_BACKOFF = 0.05
"""Seconds a poster waits after a refusal before its next message, as a provider backs off after a 503."""

KEYS = {
    "agiletelecom": "agiletelecom:+393331234567:+393201234567",
    "kaleyra": "kaleyra:1447ß7665544:26161",
    "vonage": f"vonage:{VONAGE['msisdn']}:{VONAGE['to']}",
    "smsgateway24": f"smsgateway24:{INCOMING['address']}:{INCOMING['device_id']}",
    "twilio": f"twilio:{TWILIO['From']}:{TWILIO['To']}",
    "plivo": "plivo:14155550123:14155550100",
    "telnyx": "telnyx:+18665550001:+18445550001",
    "sinch": "sinch:12015555555:12017777777",
    "infobip": "infobip:385916242493:385921004026",
    "bandwidth": "bandwidth:+15553332222:+15552223333",
    "bird": "bird:+31612345678:614208aa-b153-4d5d-9989-2fddfc0ce4c3",
    "aws": "aws:+14255550182:+12125550101",
}
SENDERS = {
    "agiletelecom": "+393331234567",
    "kaleyra": "1447ß7665544",
    "vonage": "+447700900123",
    "smsgateway24": "+393331234567",
    "twilio": "+14155550123",
    "plivo": "+14155550123",
    "telnyx": "+18665550001",
    "sinch": "+12015555555",
    "infobip": "+385916242493",
    "bandwidth": "+15553332222",
    "bird": "+31612345678",
    "aws": "+14255550182",
}


@dataclass
class KafkaRun:
    """An ingress publishing to ``topic``, and an HTTP client for it."""

    url: str
    http: aiohttp.ClientSession
    bootstrap: str
    topic: str

    async def post(self, path: str, **kwargs: Any) -> tuple[int, str]:
        async with self.http.post(self.url + path, **kwargs) as response:
            return response.status, await response.text()

    async def get(self, path: str) -> tuple[int, str]:
        async with self.http.get(self.url + path) as response:
            return response.status, await response.text()

    async def records(self) -> list[tuple[ConsumerRecord[bytes, bytes], RawEvent]]:
        return [(record, RawEvent.decode(record.value)) for record in await read_topic(self.bootstrap, self.topic)]

    async def wait_ready(self, ready: bool = True, timeout: float = READY_TIMEOUT) -> None:
        expected = 200 if ready else 503
        last: list[tuple[int, str]] = []

        async def answers() -> bool:
            last[:] = [await self.get("/readyz")]
            return last[0][0] == expected

        await eventually(answers, timeout, lambda: f"/readyz still answers {last}", interval=0.05)


StartKafkaIngress = Callable[..., Awaitable[KafkaRun]]


def unique_prefix() -> str:
    """Topics of this test only: the session's broker is shared."""
    return f"test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def start_kafka_ingress(kafka_bootstrap: str, tmp_path: Path) -> AsyncIterator[StartKafkaIngress]:
    """Start an ingress on Kafka (by default the session's broker, own topics, 3 partitions),
    ready unless ``ready=False``; stopped after the test."""
    running: list[tuple[KafkaIngress, KafkaRun]] = []

    async def start(bootstrap: str = kafka_bootstrap, ready: bool = True, **kafka: Any) -> KafkaRun:
        kafka = {"bootstrap_servers": bootstrap, "topic_prefix": unique_prefix(), "partitions": 3, **kafka}
        settings = load_settings(port=0, data_dir=tmp_path / "unused", kafka=kafka)
        assert settings.kafka is not None
        ingress = KafkaIngress(settings, build_receivers(settings), settings.kafka)
        await ingress.start()
        run = KafkaRun(f"http://127.0.0.1:{ingress.port}", aiohttp.ClientSession(), bootstrap, settings.kafka.raw_topic)
        running.append((ingress, run))
        if ready:
            await run.wait_ready()
        return run

    yield start
    for ingress, run in running:
        await run.http.close()
        await ingress.close()


def partition_of(key: str, partitions: int) -> int:
    """The partition the Kafka clients' default partitioner (murmur2 of the key) picks."""
    return DefaultPartitioner()(key.encode(), list(range(partitions)), list(range(partitions)))


@pytest.mark.parametrize("provider", list(SEEDS))
async def test_each_provider_sample_is_published_keyed_and_decodable(
    start_kafka_ingress: StartKafkaIngress, provider: str
) -> None:
    run = await start_kafka_ingress(partitions=8)
    request, _ = SEEDS[provider]
    status, _ = await run.post(f"/inbound/{provider}", **request)
    assert status in (200, 204)
    [(record, event)] = await run.records()
    assert record.key == KEYS[provider].encode()
    assert record.partition == partition_of(KEYS[provider], 8)
    assert (event.provider, event.ingress, event.kind, event.key) == (provider, provider, "inbound", KEYS[provider])
    part = normalizers()[provider].normalize(event, "IT")  # what a worker will make of it
    assert part.sender == SENDERS[provider]


async def test_parts_and_retries_of_a_message_share_key_and_partition(start_kafka_ingress: StartKafkaIngress) -> None:
    run = await start_kafka_ingress(partitions=12)
    parts = [
        {
            **VONAGE,
            "messageId": f"0A00000012345{part}",
            "text": f"Teil {part}",
            "concat": "true",
            "concat-ref": "108",
            "concat-total": "3",
            "concat-part": part,
        }
        for part in ("2", "3", "1")
    ]
    for fields in [*parts, parts[0]]:  # the last one: the provider's retry of part 2
        assert (await run.post("/inbound/vonage", data=fields))[0] == 204
    other = {**VONAGE, "msisdn": "447700900456", "messageId": "0A0000009999"}
    assert (await run.post("/inbound/vonage", json=other))[0] == 204
    records = await run.records()
    message = [record for record, event in records if event.key == KEYS["vonage"]]
    assert len(message) == 4
    assert {(record.key, record.partition) for record in message} == {
        (KEYS["vonage"].encode(), partition_of(KEYS["vonage"], 12))
    }
    assert [parse_qs(event.body.decode())["concat-part"][0] for _, event in records if event.key == KEYS["vonage"]] == [
        "2",
        "3",
        "1",
        "2",
    ]  # one partition keeps the arrival order
    assert len({event.event_id for _, event in records}) == 5


async def test_a_batch_request_publishes_one_record_per_message(start_kafka_ingress: StartKafkaIngress) -> None:
    run = await start_kafka_ingress()
    batch = [{**VONAGE, "msisdn": f"44770090012{n}", "messageId": f"0A000000{n}"} for n in range(3)]
    assert (await run.post("/inbound/vonage", json=batch))[0] == 204
    events = sorted((event for _, event in await run.records()), key=lambda event: event.batch_index)
    assert [(event.batch_index, event.batch_size) for event in events] == [(0, 3), (1, 3), (2, 3)]
    assert [json.loads(event.body) for event in events] == batch
    assert [event.key for event in events] == [f"vonage:44770090012{n}:{VONAGE['to']}" for n in range(3)]


async def test_topic_is_created_at_start_up_with_the_configured_partitions(
    start_kafka_ingress: StartKafkaIngress, kafka_bootstrap: str
) -> None:
    run = await start_kafka_ingress(partitions=5)
    assert await partition_count(kafka_bootstrap, run.topic) == 5
    assert run.topic.endswith(".raw.v1")


async def test_an_existing_topic_is_left_as_it_is(
    start_kafka_ingress: StartKafkaIngress, kafka_bootstrap: str, caplog: pytest.LogCaptureFixture
) -> None:
    prefix = unique_prefix()
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(f"{prefix}.raw.v1", 2, 1)])
    finally:
        await admin.close()
    assert await partition_count(kafka_bootstrap, f"{prefix}.raw.v1") == 2
    with caplog.at_level(logging.WARNING, logger="smsroute"):
        run = await start_kafka_ingress(partitions=5, topic_prefix=prefix)
    assert await partition_count(kafka_bootstrap, run.topic) == 2
    assert "topic_partitions_differ" in events_logged(caplog)
    assert (await run.post("/inbound/agiletelecom", data=form("still published")))[0] == 200


def events_logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [getattr(record, "event", "") for record in caplog.records]


async def metric(run: KafkaRun, name: str, **labels: str) -> float:
    _, text = await run.get("/metrics")
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    return 0.0


async def test_nothing_listening_is_503_and_not_ready(
    start_kafka_ingress: StartKafkaIngress, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="smsroute"):
        run = await start_kafka_ingress(bootstrap=f"127.0.0.1:{free_port()}", ready=False)
        refused = await metric(run, "smsroute_ingress_requests_total", source="agiletelecom", outcome="log_unavailable")
        status, body = await run.post("/inbound/agiletelecom", data=form("nobody home"))
        await eventually(lambda: "kafka_unavailable" in events_logged(caplog), 30, interval=0.05)
    assert (status, body) == (503, "temporarily unable to store the message; retry later\n")
    assert await run.get("/readyz") == (503, "log unavailable\n")
    assert (
        await metric(run, "smsroute_ingress_requests_total", source="agiletelecom", outcome="log_unavailable")
        == refused + 1
    )
    unavailable = [r for r in caplog.records if getattr(r, "event", "") == "kafka_unavailable"]
    assert "KafkaConnectionError" in unavailable[0].error  # type: ignore[attr-defined]


async def test_stopped_broker_is_503_and_not_ready_until_it_is_back(
    start_kafka_ingress: StartKafkaIngress, local_kafka: LocalBroker
) -> None:
    run = await start_kafka_ingress(bootstrap=local_kafka.bootstrap)
    assert (await run.post("/inbound/agiletelecom", data=form("before")))[0] == 200
    await local_kafka.stop_async()
    status, body = await run.post("/inbound/agiletelecom", data=form("while stopped"))
    assert (status, body) == (503, "temporarily unable to store the message; retry later\n")
    assert await run.get("/readyz") == (503, "log unavailable\n")
    await local_kafka.start_async()
    await run.wait_ready()
    assert (await run.post("/inbound/agiletelecom", data=form("after")))[0] == 200
    texts = [parse_qs(event.body.decode())["text"][0] for _, event in await run.records()]
    assert "before" in texts and "after" in texts


@dataclass
class Load:
    """Concurrent posters, each message with its own text (and one of a few senders): the
    answer every text got."""

    run: KafkaRun
    answers: dict[str, int]
    stopping: asyncio.Event

    def accepted(self) -> int:
        return sum(status == 200 for status in self.answers.values())

    def refused(self) -> int:
        return sum(status != 200 for status in self.answers.values())

    async def poster(self, texts: Any) -> None:
        while not self.stopping.is_set():
            text = next(texts)
            fields = {**form(text), "originator": f"+39333123450{len(self.answers) % 7}"}
            self.answers[text] = (await self.run.post("/inbound/agiletelecom", data=fields))[0]
            if self.answers[text] != 200:
                await asyncio.sleep(PROVIDER_BACKOFF)


async def test_broker_restart_under_load_loses_nothing_acknowledged(
    start_kafka_ingress: StartKafkaIngress, local_kafka: LocalBroker
) -> None:
    run = await start_kafka_ingress(bootstrap=local_kafka.bootstrap)
    load = Load(run, {}, asyncio.Event())
    texts = (f"message {n}" for n in itertools.count())
    posters = [asyncio.create_task(load.poster(texts)) for _ in range(8)]
    try:
        await eventually(lambda: load.accepted() >= POSTS_PER_PHASE, 120, interval=0.05)
        await local_kafka.stop_async()
        await eventually(lambda: load.refused() >= 1, 120, interval=0.05)
        await local_kafka.start_async()
        restarted = load.accepted()
        await eventually(lambda: load.accepted() >= restarted + POSTS_PER_PHASE, 180, interval=0.05)
    finally:
        load.stopping.set()
        await asyncio.gather(*posters)
    assert set(load.answers.values()) <= {200, 503}
    events = [event for _, event in await run.records()]
    published = Counter(parse_qs(event.body.decode())["text"][0] for event in events)
    acknowledged = {text for text, status in load.answers.items() if status == 200}
    assert acknowledged <= set(published), f"acknowledged but lost: {sorted(acknowledged - set(published))[:10]}"
    assert published.most_common(1)[0][1] == 1, "a message published twice"
    assert len({event.event_id for event in events}) == len(events)


@pytest.mark.parametrize("command", ["ingress", "serve"])
async def test_the_command_publishes_to_kafka_and_stops_on_sigterm(
    command: str, kafka_bootstrap: str, tmp_path: Path
) -> None:
    prefix = unique_prefix()
    process = SmsrouteProcess(
        [command],
        tmp_path / "stderr",
        env={"SMSROUTE_KAFKA__BOOTSTRAP_SERVERS": kafka_bootstrap, "SMSROUTE_KAFKA__TOPIC_PREFIX": prefix},
    )
    try:
        async with aiohttp.ClientSession() as http:
            await process.wait_healthy(http)
            run = KafkaRun(process.url, http, kafka_bootstrap, f"{prefix}.raw.v1")
            await run.wait_ready()
            assert await run.post("/inbound/agiletelecom", data=form("via the command")) == (200, "+OK")
            assert await metric(run, "smsroute_kafka_records_total", outcome="acknowledged") == 1
            assert await metric(run, "smsroute_kafka_producer_ready") == 1
        assert process.stop() == 0
    finally:
        process.kill()
    [(_, event)] = await run.records()
    assert parse_qs(event.body.decode())["text"] == ["via the command"]
    assert '"event": "kafka_connected"' in process.stderr()
