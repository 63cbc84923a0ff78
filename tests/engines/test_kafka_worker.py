"""The Kafka engine's workers against a real broker: several workers share the partitions and
deliver every message once; a worker killed mid-stream loses nothing (the others take its
partitions over, with their state); a broker restart mid-run loses nothing acknowledged; parts
posted to different ingress processes are stitched; rules reload; dead letters are listed and
replayed from the command line."""

from __future__ import annotations

import asyncio
import itertools
import json
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiokafka.partitioner import murmur2

from fake_providers import FakeGateway24, FakeOpenVoip
from helpers import eventually
from kafka_broker import LocalBroker
from kafka_engine import PARTITIONS, KafkaEngine, WorkerProcess
from local_server import Receiver
from samples import AGILE, poison_events, vonage_part
from scraping import Metrics, scrape_url, value
from smsroute.engines.kafka import deadletters
from smsroute.models.attempt import AttemptRecord

REPEATS_BOUND = 250
"""Deliveries a worker's death (or a broker restart) may make twice: those of the batches not yet
written (``batch_interval``, 0.1 s here, of a few hundred messages a second) and the attempts in
flight (``per_destination`` at most)."""
PROVIDER_BACKOFF = 0.05
"""Seconds a poster waits after a refusal before its next message, as a provider backs off."""


def inbox_rules(url: str) -> str:
    return f"""
routes:
  - name: dead
    match: {{keyword: DEAD}}
    actions:
      - webhook: {{url: "{url}/dead", retry: {{schedule: [0.1]}}}}
  - name: parts
    match: {{keyword: PART}}
    actions:
      - webhook: {{url: "{url}/parts"}}
  - name: inbox
    actions:
      - webhook: {{url: "{url}/inbox", retry: {{schedule: [0.2, 0.5, 1, 2]}}}}
"""


@pytest.fixture
async def kafka_engine(kafka_bootstrap: str, tmp_path: Path, receiver: Receiver) -> AsyncIterator[KafkaEngine]:
    routes = tmp_path / "routes"
    routes.mkdir()
    (routes / "rules.yaml").write_text(inbox_rules(receiver.url))
    engine = KafkaEngine(tmp_path / "kafka", kafka_bootstrap, routes)
    try:
        yield engine
    finally:
        engine.stop()


async def post_all(http: aiohttp.ClientSession, urls: list[str], texts: list[str], concurrency: int = 16) -> None:
    """Post Agile Telecom messages, spread over the ingresses, each from its own sender (messages are
    keyed, so partitioned, by sender and recipient); every one must get +OK."""
    queue: asyncio.Queue[tuple[int, str]] = asyncio.Queue()
    for number, text in enumerate(texts):
        queue.put_nowait((number, text))

    async def poster() -> None:
        while not queue.empty():
            number, text = queue.get_nowait()
            form = {**AGILE, "originator": f"+39333{number:07d}", "text": text}
            async with http.post(urls[number % len(urls)] + "/inbound/agiletelecom", data=form) as r:
                assert (r.status, await r.text()) == (200, "+OK")

    await asyncio.gather(*(poster() for _ in range(concurrency)))


def texts_at(receiver: Receiver, path: str) -> Counter[str]:
    return Counter(json.loads(r["body"])["text"] for r in receiver.at(path))


def delivered(metrics: Metrics) -> float:
    """Webhook deliveries a worker made."""
    return value(metrics, "smsroute_deliveries_total", sink="webhook", outcome="delivered")


async def test_two_workers_share_the_partitions_and_deliver_every_message_once(
    kafka_engine: KafkaEngine,
    receiver: Receiver,
) -> None:
    ingress = kafka_engine.start_ingress()
    workers = [kafka_engine.start_worker(), kafka_engine.start_worker()]
    texts = [f"shared {n}" for n in range(400)]
    async with aiohttp.ClientSession() as http:
        await kafka_engine.wait_ready(http)
        assert all([await worker.ready(http) for worker in workers])  # both serve partitions
        await post_all(http, [ingress.url], texts)
        await eventually(lambda: len(texts_at(receiver, "/inbox")) == len(texts), timeout=60)
        scraped: list[Metrics] = []

        def lag_topics() -> set[str]:
            return {dict(labels)["topic"] for m in scraped for (name, labels) in m if name == "smsroute_consumer_lag"}

        async def all_recorded() -> bool:  # every delivery recorded, and the lag gauges (every 2 s) exported
            scraped[:] = [await scrape_url(http, worker.metrics_url) for worker in workers]
            return sum(delivered(m) for m in scraped) >= len(texts) and bool(lag_topics())

        await eventually(all_recorded, 30, interval=0.1)
        assert texts_at(receiver, "/inbox") == Counter(texts)  # each once
        normalized = [
            value(m, "smsroute_pipeline_events_total", provider="agiletelecom", outcome="normalized") for m in scraped
        ]
        assert sum(normalized) == len(texts) and all(normalized), normalized  # both processed raw events
        # Deliveries go out from the raw partitions' state: one receiver is served by both workers.
        assert all(delivered(m) for m in scraped), [delivered(m) for m in scraped]
        assert lag_topics() == {kafka_engine.settings.kafka.raw_topic}  # type: ignore[union-attr]
    assert set((await attempts_by_delivery(kafka_engine)).values()) == {1}  # each attempted once


async def attempts_by_delivery(engine: KafkaEngine) -> Counter[str]:
    """Attempts recorded per delivery id."""
    return Counter(AttemptRecord.decode(r.value).delivery_id for r in await engine.records("attempts"))


async def test_sigkill_of_a_worker_mid_stream_loses_nothing(
    kafka_engine: KafkaEngine,
    receiver: Receiver,
) -> None:
    """The worker that owns the partitions being delivered is killed mid-stream: every message is
    delivered, repeats carry the same webhook-id and are bounded; the state of the dead worker's
    partitions follows them (provider retries of messages it took are dropped by the survivor,
    messages whose first parts it took are completed by the survivor)."""
    ingress = kafka_engine.start_ingress()
    victim, survivor = kafka_engine.start_worker(), kafka_engine.start_worker()
    first = [f"before {n}" for n in range(600)]
    second = [f"after {n}" for n in range(600)]
    async with aiohttp.ClientSession() as http:
        await kafka_engine.wait_ready(http)
        await post_parts(http, ingress.url, 1, 40)  # the first parts of 40 messages, each its own sender
        posting = asyncio.create_task(post_all(http, [ingress.url], first))
        await eventually(lambda: len(receiver.at("/inbox")) >= 150, timeout=60)
        victim.kill()  # SIGKILL: its open batches, attempts in flight, state in memory, all gone
        await posting
        await post_all(http, [ingress.url], second)
        await eventually(lambda: survivor_serves_all(http, survivor), timeout=60)
        await post_all(http, [ingress.url], first[:100])  # providers retry messages taken before the kill
        await post_parts(http, ingress.url, 2, 40)  # the last parts of the 40 messages
        try:
            await eventually(lambda: set(texts_at(receiver, "/inbox")) >= set(first + second), timeout=120)
            await eventually(lambda: len(texts_at(receiver, "/parts")) == 40, timeout=60)
        except AssertionError:
            missing = set(first + second) - set(texts_at(receiver, "/inbox"))
            raise AssertionError(
                f"{len(missing)} never delivered, e.g. {sorted(missing)[:5]}, {len(texts_at(receiver, '/parts'))} of 40"
                f" stitched ({kafka_engine.prefix} {kafka_engine.bootstrap}):\n{survivor.stderr()[-4000:]}"
            ) from None
        metrics = await scrape_url(http, survivor.metrics_url)
    duplicates = value(metrics, "smsroute_pipeline_events_total", provider="agiletelecom", outcome="duplicate")
    assert duplicates >= 100  # the retries met the dedupe keys the dead worker wrote
    assert set(texts_at(receiver, "/parts")) == {f"part one {n} part two {n}" for n in range(40)}
    by_text: dict[str, set[str]] = {}
    for request in receiver.at("/inbox"):
        by_text.setdefault(json.loads(request["body"])["text"], set()).add(request["headers"]["webhook-id"])
    assert all(len(ids) == 1 for ids in by_text.values())  # a repeat (an attempt in flight) has the same webhook-id
    repeats = len(receiver.at("/inbox")) - len(by_text)
    assert repeats <= REPEATS_BOUND, repeats


async def survivor_serves_all(http: aiohttp.ClientSession, survivor: WorkerProcess) -> bool:
    return await survivor.ready(http) == PARTITIONS


async def post_parts(http: aiohttp.ClientSession, url: str, part: int, count: int) -> None:
    """Part ``part`` of ``count`` two-part Vonage messages (routed to /parts by their PARTS keyword)."""
    for n in range(count):
        text = f"part one {n} " if part == 1 else f"part two {n}"
        form = {
            **vonage_part(part, text),
            "msisdn": f"4477009{n:05d}",
            "messageId": f"0B{n:05d}{part}",
            "concat-ref": str(n % 256),
            "concat-total": "2",
        }
        async with http.post(url + "/inbound/vonage", json=form) as response:
            assert response.status == 204


async def test_parts_posted_to_two_ingress_processes_are_stitched(
    kafka_engine: KafkaEngine,
    receiver: Receiver,
) -> None:
    ingresses = [kafka_engine.start_ingress(), kafka_engine.start_ingress()]
    worker = kafka_engine.start_worker()
    texts = {1: "Parts ", 2: "through two ", 3: "doors."}
    async with aiohttp.ClientSession() as http:
        await kafka_engine.wait_ready(http)
        for part, ingress in ((3, ingresses[0]), (1, ingresses[1]), (2, ingresses[0]), (1, ingresses[0])):
            async with http.post(ingress.url + "/inbound/vonage", json=vonage_part(part, texts[part])) as response:
                assert response.status == 204
        await eventually(lambda: len(receiver.at("/inbox")) == 1, timeout=60)

        async def all_processed() -> bool:  # the retry of part 1 dropped, the message delivered
            metrics = await scrape_url(http, worker.metrics_url)
            return (
                value(metrics, "smsroute_pipeline_events_total", provider="vonage", outcome="duplicate") == 1
                and delivered(metrics) == 1
            )

        await eventually(all_processed, 30, interval=0.1)
    [request] = receiver.at("/inbox")
    message = json.loads(request["body"])
    assert (message["text"], message["parts"], message["complete"]) == ("Parts through two doors.", 3, True)


async def test_rules_reload_in_a_running_worker(
    kafka_engine: KafkaEngine,
    receiver: Receiver,
) -> None:
    ingress = kafka_engine.start_ingress()
    kafka_engine.start_worker()
    async with aiohttp.ClientSession() as http:
        await kafka_engine.wait_ready(http)
        rules = Path(kafka_engine.settings.routes) / "rules.yaml"
        rules.write_text(
            inbox_rules(receiver.url)
            .replace("keyword: DEAD", "keyword: [DEAD, NEW]")
            .replace("name: dead", "name: fresh")
            .replace("/dead", "/fresh")
        )
        attempts = itertools.count()

        async def reloaded() -> bool:  # a NEW message goes to /fresh once the worker has reloaded
            if receiver.at("/fresh"):
                return True
            data = {**AGILE, "text": f"NEW {next(attempts)}"}
            async with http.post(ingress.url + "/inbound/agiletelecom", data=data) as r:
                assert r.status == 200
            return False

        await eventually(reloaded, 30, "the worker never routed to the reloaded rules", interval=0.3)
        assert json.loads(receiver.at("/fresh")[0]["body"])["route"] == "fresh"


async def test_dead_letters_are_listed_and_replayed_from_the_command_line(
    kafka_engine: KafkaEngine,
    receiver: Receiver,
) -> None:
    receiver.fail["/dead"] = -1
    ingress = kafka_engine.start_ingress()
    kafka_engine.start_worker()
    config = str(kafka_engine.config)
    async with aiohttp.ClientSession() as http:
        await kafka_engine.wait_ready(http)
        async with http.post(ingress.url + "/inbound/agiletelecom", data={**AGILE, "text": "DEAD again"}) as r:
            assert r.status == 200
        await eventually(lambda: len(receiver.at("/dead")) == 2, timeout=60)
        letters: list[dict[str, Any]] = []

        def listed() -> bool:
            letters[:] = json.loads(cli("dead-letters", "list", "--kafka", "--config", config, "--json"))
            return bool(letters)

        await eventually(listed, 120, "no dead letter listed", interval=0.2)
        [letter] = letters
        assert (letter["stage"], letter["reason"]) == ("deliver", "HTTP 503: try later")
        assert [a["outcome"] for a in letter["attempts"]] == ["failed", "failed"]
        receiver.fail["/dead"] = 0
        assert cli("dead-letters", "replay", "--kafka", "--config", config).startswith("1 delivery sent again")
        await eventually(lambda: len(receiver.at("/dead")) == 3, timeout=60)
        assert json.loads(cli("dead-letters", "list", "--kafka", "--config", config, "--json")) == []
        assert "(replayed)" in cli("dead-letters", "list", "--kafka", "--config", config, "--all")
        assert cli("dead-letters", "replay", "--kafka", "--config", config).startswith("0 deliveries")
    assert len({r["headers"]["webhook-id"] for r in receiver.at("/dead")}) == 1


def cli(*args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "smsroute", *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


async def test_broker_restart_during_a_run_loses_nothing_acknowledged(
    local_kafka: LocalBroker,
    tmp_path: Path,
    receiver: Receiver,
) -> None:
    """Providers keep posting while the broker stops and comes back: the ingress answers 503
    meanwhile, and every message it acknowledged is delivered, each decided once."""
    routes = tmp_path / "routes"
    routes.mkdir()
    (routes / "rules.yaml").write_text(inbox_rules(receiver.url))
    engine = KafkaEngine(tmp_path / "kafka", local_kafka.bootstrap, routes)
    answers: dict[str, int] = {}
    stopping = asyncio.Event()

    async def poster(first: int, http: aiohttp.ClientSession) -> None:
        for number in itertools.count(first, 8):
            if stopping.is_set():
                return
            text = f"restart {number}"
            try:
                async with http.post(
                    ingress.url + "/inbound/agiletelecom",
                    data={**AGILE, "originator": f"+39333{number:07d}", "text": text},
                ) as response:
                    await response.read()
                    answers[text] = response.status
            except aiohttp.ClientError:
                answers[text] = 0
            if answers[text] != 200:
                await asyncio.sleep(PROVIDER_BACKOFF)

    def accepted() -> int:
        return sum(status == 200 for status in answers.values())

    try:
        ingress = engine.start_ingress()
        engine.start_worker()
        async with aiohttp.ClientSession() as http:
            await engine.wait_ready(http)
            posters = [asyncio.create_task(poster(first, http)) for first in range(8)]
            try:
                await eventually(lambda: accepted() >= 200, timeout=120)
                await local_kafka.stop_async()
                await eventually(lambda: any(status != 200 for status in answers.values()), timeout=120)
                await local_kafka.start_async()
                restarted = accepted()
                await eventually(lambda: accepted() >= restarted + 200, timeout=180)
            finally:
                stopping.set()
                await asyncio.gather(*posters)
            acknowledged = {text for text, status in answers.items() if status == 200}
            try:
                await eventually(lambda: acknowledged <= set(texts_at(receiver, "/inbox")), timeout=180)
            except AssertionError:
                missing = acknowledged - set(texts_at(receiver, "/inbox"))
                raise AssertionError(
                    f"{len(missing)} acknowledged, never delivered, e.g. {sorted(missing)[:5]}:\n"
                    f"{engine.workers[0].stderr()[-4000:]}"
                ) from None
        assert set(answers.values()) <= {200, 503, 0}
        by_text: dict[str, set[str]] = {}
        for request in receiver.at("/inbox"):
            by_text.setdefault(json.loads(request["body"])["text"], set()).add(request["headers"]["webhook-id"])
        assert all(len(ids) == 1 for ids in by_text.values())  # a repeat has the same webhook-id
        assert len(receiver.at("/inbox")) - len(by_text) <= REPEATS_BOUND
    finally:
        engine.stop()


async def test_poison_records_on_the_raw_topic_are_dead_letters_and_the_worker_goes_on(
    kafka_engine: KafkaEngine,
    receiver: Receiver,
) -> None:
    """Records an older ingress published, each of which stopped the embedded engine: the worker
    dead-letters them with the reason and delivers what follows."""
    from aiokafka import AIOKafkaProducer

    kafka_engine.start_ingress()
    worker = kafka_engine.start_worker()
    kafka = kafka_engine.settings.kafka
    assert kafka is not None
    async with aiohttp.ClientSession() as http:
        await kafka_engine.wait_ready(http)
        producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap_servers, acks="all", enable_idempotence=True)
        await producer.start()
        try:
            for event in [*poison_events(), *poison_events()]:  # the second copies meet the first's state
                await producer.send_and_wait(kafka.raw_topic, event.encode(), key=event.key.encode())
            await producer.send_and_wait(kafka.raw_topic, b"\x09not avro at all", key=b"junk")
        finally:
            await producer.stop()
        await post_all(http, [kafka_engine.ingresses[0].url], ["after the poison"])
        await eventually(lambda: texts_at(receiver, "/inbox") == Counter(["after the poison"]), timeout=60)
        assert worker.process.poll() is None
        letters = [letter for letter in await deadletters.latest(kafka_engine.settings)]
    reasons = sorted(letter.reason.split(" (")[0] for letter in letters)
    assert all(letter.stage == "normalize" for letter in letters)
    assert reasons == sorted(
        [
            "unprocessable: body holds a lone surrogate",
            "unprocessable: body holds a lone surrogate",
            "unprocessable: charset 'utf-7' is not accepted",
            "unprocessable: body holds a lone surrogate",
        ]
        * 2
        + ["undecodable: raw_event: unknown schema revision byte b'\\t'"]
    )


async def test_workers_joining_and_leaving_mid_stream_on_rocksdb_lose_nothing(
    kafka_bootstrap: str,
    tmp_path: Path,
    receiver: Receiver,
) -> None:
    """A second worker joins while messages flow, then the first leaves (SIGTERM), on RocksDB
    tables: partitions and their state move both ways, both workers deliver, nothing is lost,
    repeats carry the same webhook-id and are bounded."""
    routes = tmp_path / "routes"
    routes.mkdir()
    (routes / "rules.yaml").write_text(inbox_rules(receiver.url))
    engine = KafkaEngine(tmp_path / "kafka", kafka_bootstrap, routes, worker={"store": "rocksdb"})
    texts = [f"moving {n}" for n in range(900)]
    try:
        ingress, first = engine.start_ingress(), engine.start_worker()
        async with aiohttp.ClientSession() as http:
            await engine.wait_ready(http)
            posting = asyncio.create_task(post_all(http, [ingress.url], texts[:300], concurrency=4))
            await eventually(lambda: len(receiver.at("/inbox")) >= 100, timeout=60)
            second = engine.start_worker()  # joins mid-stream: takes partitions from the first
            await eventually(lambda: second.ready(http), timeout=60, interval=0.1)
            await posting
            await post_all(http, [ingress.url], texts[300:600], concurrency=4)  # both serve partitions now
            await eventually(lambda: len(texts_at(receiver, "/inbox")) >= 600, timeout=120)
            both = [delivered(await scrape_url(http, worker.metrics_url)) for worker in (first, second)]
            posting = asyncio.create_task(post_all(http, [ingress.url], texts[600:], concurrency=4))
            await eventually(lambda: len(texts_at(receiver, "/inbox")) >= 650, timeout=60)
            await asyncio.to_thread(first.stop, 30)  # leaves mid-stream: its partitions go back to the second
            await posting
            await post_all(http, [ingress.url], texts[:100])  # provider retries, now all on the second
            await eventually(
                lambda: set(texts_at(receiver, "/inbox")) == set(texts),
                120,
                lambda: (
                    f"missing {sorted(set(texts) - set(texts_at(receiver, '/inbox')), key=lambda t: int(t.split()[1]))}"
                    f" ({engine.prefix} {engine.bootstrap}):\n{second.stderr()[-6000:]}"
                ),
            )

            async def second_took_the_retries() -> bool:
                metrics = await scrape_url(http, second.metrics_url)
                return (
                    value(metrics, "smsroute_pipeline_events_total", provider="agiletelecom", outcome="duplicate")
                    >= 100
                )

            await eventually(
                second_took_the_retries,
                60,
                lambda: f"retries not all dropped:\n{second.stderr()[-3000:]}",
                interval=0.2,
            )
        assert all(both), both  # both delivered while both served partitions
        by_text: dict[str, set[str]] = {}
        for request in receiver.at("/inbox"):
            by_text.setdefault(json.loads(request["body"])["text"], set()).add(request["headers"]["webhook-id"])
        assert all(len(ids) == 1 for ids in by_text.values())
        assert len(receiver.at("/inbox")) - len(by_text) <= REPEATS_BOUND
    finally:
        engine.stop()


async def test_sms_replies_on_the_kafka_engine_honour_opt_outs_and_are_sent_once(
    kafka_bootstrap: str,
    tmp_path: Path,
    receiver: Receiver,
    openvoip: FakeOpenVoip,
) -> None:
    """The reply guards read the conversation's partition: a STOP's confirmation goes, the next
    INFO's reply is suppressed, START brings replies back; a provider retry is no second reply.
    On RocksDB tables."""
    routes = tmp_path / "routes"
    routes.mkdir()
    (routes / "rules.yaml").write_text(REPLY_RULES.format(url=receiver.url))
    engine = KafkaEngine(
        tmp_path / "kafka",
        kafka_bootstrap,
        routes,
        worker={"store": "rocksdb"},  # the production table store, once
        sms_reply={"provider": "openvoip", "rate_limit": 10},
        **{"sms_reply.openvoip": openvoip.settings()},
    )
    try:
        ingress, worker = engine.start_ingress(), engine.start_worker()
        async with aiohttp.ClientSession() as http:
            await engine.wait_ready(http)

            async def sms(text: str) -> None:
                async with http.post(ingress.url + "/inbound/agiletelecom", data={**AGILE, "text": text}) as r:
                    assert r.status == 200

            await sms("INFO prices")
            await eventually(lambda: len(openvoip.requests) == 1, timeout=30)
            await sms("INFO prices")  # the provider's retry: dropped, no second reply
            await sms("STOP")
            await eventually(lambda: len(openvoip.requests) == 2, timeout=30)
            await sms("INFO hours")

            async def suppressed() -> bool:  # before START, which would let the reply through
                metrics = await scrape_url(http, worker.metrics_url)
                return value(metrics, "smsroute_sms_replies_suppressed_total", reason="opted_out") == 1

            await eventually(suppressed, 30, interval=0.1)
            await sms("START")
            await eventually(lambda: len(openvoip.requests) == 3, timeout=30)
            await sms("INFO discounts")
            await eventually(lambda: len(openvoip.requests) == 4, timeout=30)
            metrics = await scrape_url(http, worker.metrics_url)
        texts = [request["params"]["sms_text"] for request in openvoip.requests]
        assert texts == ["Thanks INFO", "Bye.", "Welcome back.", "Thanks INFO"]
        assert value(metrics, "smsroute_sms_replies_suppressed_total", reason="opted_out") == 1
        assert value(metrics, "smsroute_sms_replies_total", provider="openvoip", outcome="sent") == 4
        assert value(metrics, "smsroute_pipeline_events_total", provider="agiletelecom", outcome="duplicate") == 1
    finally:
        engine.stop()


def partition_of(key: str) -> int:
    """The raw partition the ingress's producer picks for a record key (Kafka's default partitioner)."""
    return (murmur2(key.encode()) & 0x7FFFFFFF) % PARTITIONS


def shared_reads(worker: WorkerProcess, kind: str) -> list[dict[str, Any]]:
    """The shared table's records this worker has read from the changelog (its ``shared_read`` log)."""
    lines = (json.loads(line) for line in worker.stderr().splitlines() if '"shared_read"' in line)
    return [line for line in lines if line.get("kind") == kind]


REPLY_RULES = """
routes:
  - name: opt-out
    match: {{keyword: STOP}}
    compliance: stop
    actions:
      - sms_reply: {{text: "Bye."}}
  - name: opt-in
    match: {{keyword: START}}
    compliance: start
    actions:
      - sms_reply: {{text: "Welcome back."}}
  - name: info
    match: {{keyword: INFO}}
    actions:
      - webhook: {{url: "{url}/info"}}
      - sms_reply: {{text: "Thanks {{{{ keyword }}}}"}}
"""


async def two_workers_ready(engine: KafkaEngine, http: aiohttp.ClientSession) -> tuple[Any, list[WorkerProcess]]:
    ingress, workers = engine.start_ingress(), [engine.start_worker(), engine.start_worker()]
    await engine.wait_ready(http)
    return ingress, workers


async def test_an_opt_out_holds_for_the_number_in_every_conversation_and_on_every_worker(
    kafka_bootstrap: str,
    tmp_path: Path,
    receiver: Receiver,
    openvoip: FakeOpenVoip,
) -> None:
    """A STOP sent to one short code (one raw partition) silences the number's replies in another
    conversation (another partition, perhaps on the other worker), once every worker has read the
    opt-out from the shared table's changelog; a START through that other conversation lifts it."""
    routes = tmp_path / "routes"
    routes.mkdir()
    (routes / "rules.yaml").write_text(REPLY_RULES.format(url=receiver.url))
    first, other = AGILE["destination"], "+393201234570"
    key = f"agiletelecom:{AGILE['originator']}:{{}}"
    assert partition_of(key.format(first)) != partition_of(key.format(other))
    engine = KafkaEngine(
        tmp_path / "kafka",
        kafka_bootstrap,
        routes,
        sms_reply={"provider": "openvoip", "rate_limit": 10},
        **{"sms_reply.openvoip": openvoip.settings()},
    )
    try:
        async with aiohttp.ClientSession() as http:
            ingress, workers = await two_workers_ready(engine, http)

            async def sms(text: str, destination: str) -> None:
                form = {**AGILE, "destination": destination, "text": text}
                async with http.post(ingress.url + "/inbound/agiletelecom", data=form) as r:
                    assert r.status == 200

            async def on_every_worker(stopped: bool) -> bool:  # a START's entry has no message id
                reads = [shared_reads(worker, "opt_out") for worker in workers]
                return all(any((read["id"] is not None) == stopped for read in found) for found in reads)

            async def suppressed() -> float:
                found = [await scrape_url(http, worker.metrics_url) for worker in workers]
                return sum(value(m, "smsroute_sms_replies_suppressed_total", reason="opted_out") for m in found)

            async def one_suppressed() -> bool:
                return await suppressed() == 1

            await sms("STOP", first)
            await eventually(lambda: len(openvoip.requests) == 1, timeout=30)
            await eventually(lambda: on_every_worker(True), 30, interval=0.1)
            await sms("INFO hours", other)
            await eventually(lambda: len(receiver.at("/info")) == 1, timeout=30)
            await eventually(one_suppressed, 30, interval=0.1)
            await sms("START", other)
            await eventually(lambda: len(openvoip.requests) == 2, timeout=30)
            await eventually(lambda: on_every_worker(False), 30, interval=0.1)
            await sms("INFO prices", first)
            await eventually(lambda: len(openvoip.requests) == 3, timeout=30)
            assert await suppressed() == 1
        texts = [request["params"]["sms_text"] for request in openvoip.requests]
        assert texts == ["Bye.", "Welcome back.", "Thanks INFO"]
    finally:
        engine.stop()


async def test_delivery_reports_are_linked_to_the_reply_they_report_on_across_workers(
    kafka_bootstrap: str,
    tmp_path: Path,
    receiver: Receiver,
    gateway24: FakeGateway24,
) -> None:
    """A report arrives on the partition of the provider's id, not the conversation's: it finds our
    reply in the shared table, is counted linked, its final status becomes the reply's, once (the
    provider's repeat of a report counts once)."""
    routes = tmp_path / "routes"
    routes.mkdir()
    (routes / "rules.yaml").write_text(REPLY_RULES.format(url=receiver.url))
    engine = KafkaEngine(
        tmp_path / "kafka",
        kafka_bootstrap,
        routes,
        sms_reply={"provider": "smsgateway24"},
        **{"sms_reply.smsgateway24": gateway24.settings()},
    )
    try:
        async with aiohttp.ClientSession() as http:
            ingress, workers = await two_workers_ready(engine, http)
            async with http.post(ingress.url + "/inbound/agiletelecom", data={**AGILE, "text": "INFO"}) as r:
                assert r.status == 200
            await eventually(lambda: len(gateway24.requests) == 1, timeout=30)

            async def link_everywhere() -> bool:
                return all(shared_reads(worker, "reply") for worker in workers)

            await eventually(link_everywhere, 30, interval=0.1)
            for status_id in (6, 7, 7):  # sent by the phone, delivered, and the provider's repeat
                report = {
                    "sms_id": 22074938,
                    "status_id": status_id,
                    "status_message": "",
                    "sendto": AGILE["originator"],
                    "senttime": "2026-11-21 10:00:05",
                    "sim": 0,
                    "device_id": 4242,
                }
                async with http.post(ingress.url + "/status/smsgateway24", json=report) as r:
                    assert r.status == 200

            async def counted() -> Counter[tuple[str, str]]:
                found: Counter[tuple[str, str]] = Counter()
                for worker in workers:
                    metrics = await scrape_url(http, worker.metrics_url)
                    for status in ("sent", "delivered"):
                        for linked in ("true", "false"):
                            labels = {"provider": "smsgateway24", "status": status, "linked": linked}
                            found[status, linked] += value(metrics, "smsroute_delivery_reports_total", **labels)
                    for outcome in ("sent", "delivered"):
                        found["reply", outcome] += value(
                            metrics, "smsroute_sms_replies_total", provider="smsgateway24", outcome=outcome
                        )
                return found

            await eventually(lambda: records_are(engine, 3), 30, interval=0.2)  # all three processed
            found = await counted()
        assert found["sent", "true"] == 1 and found["delivered", "true"] == 1
        assert found["sent", "false"] == 0 and found["delivered", "false"] == 0
        assert (found["reply", "sent"], found["reply", "delivered"]) == (1, 1)
    finally:
        engine.stop()


async def records_are(engine: KafkaEngine, count: int) -> bool:
    return len(await engine.records("delivery_reports")) == count
