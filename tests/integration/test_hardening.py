"""One bad request must never stop the engine: each case found by trying the ingress as an attacker
would, and each refused with a 4xx and a reason, or isolated as a dead letter, never a 5xx or an exit."""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import sqlite3
import time
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from engine_process import EngineProcess
from helpers import eventually
from ingress_server import Ingress, StartIngress
from local_server import serving
from samples import logged, poison_events
from smsroute.config import ConfigError, load_settings
from smsroute.engines.embedded.consumer import LogConsumer, StateBackend
from smsroute.engines.embedded.log import SQLiteLog
from smsroute.engines.embedded.state import State
from smsroute.logs import JSONFormatter
from smsroute.models.part import Part
from smsroute.models.raw import RawEvent
from smsroute.providers import build_receivers, normalizers
from smsroute.providers.agiletelecom import Normalizing as AgileTelecom
from smsroute.providers.base import Receiver
from smsroute.providers.vonage import signature
from smsroute.rules import load_rules
from smsroute.sinks.outbound import provider_settings
from smsroute.streams.pipeline import Pipeline

ROUTES = Path(__file__).resolve().parents[2] / "routing_rules"

AGILE = "/inbound/agiletelecom"
GATEWAY = "/inbound/smsgateway24"
VONAGE = "/inbound/vonage"
JSON = {"Content-Type": "application/json"}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
SAMPLE = {
    "originator": "+393331234567",
    "destination": "+393201234567",
    "date_time": "2026-11-21 10:00:00",
    "text": "Ciao",
}


async def requests_counted(ingress: Ingress, source: str) -> dict[str, float]:
    """``smsroute_ingress_requests_total`` of one source, by outcome."""
    _, text, _ = await ingress.get("/metrics")
    counted: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "smsroute_ingress_requests_total" and sample.labels["source"] == source:
                counted[sample.labels["outcome"]] = sample.value
    return counted


# --- what used to answer 5xx ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body", "reason"),
    [
        (
            GATEWAY,
            b'{"address": "+393331234567", "body": "\\ud800", "sms_id": "p1"}',
            "body holds a lone surrogate (an invalid \\u escape) in body",
        ),
        (
            VONAGE,
            b'{"type": "text", "to": "447700900000", "msisdn": "447700900001", "messageId": "\\udfff", "text": "hi"}',
            "lone surrogate (an invalid \\u escape) in messageId",
        ),
        (
            GATEWAY,
            b'[{"address": "+393331234567", "body": "ok", "sms_id": "1"},'
            b' {"address": "+3933\\ud83d", "body": "x", "sms_id": "2"}]',
            "in [1].address",
        ),
        (GATEWAY, b"[" * 20_000 + b"]" * 20_000, "nested too deeply"),
        (GATEWAY, b'{"address": 1, "body": "x", "sms_id": ' + b"9" * 5000 + b"}", "body is not valid JSON"),
        (GATEWAY, b'{"address": "1", "body": NaN, "sms_id": "1"}', "NaN is not a JSON value"),
        (GATEWAY, b'{"address": "1", "body": "\xff\xfe", "sms_id": "1"}', "body is not valid utf-8"),
    ],
    ids=["surrogate", "surrogate-in-id", "surrogate-in-batch", "deep", "huge-integer", "nan", "invalid-utf8"],
)
async def test_json_the_log_could_not_hold_is_400_with_the_reason(
    ingress: Ingress, path: str, body: bytes, reason: str
) -> None:
    source = path.rpartition("/")[2]
    before = await requests_counted(ingress, source)
    status, text, _ = await ingress.post(path, data=body, headers=JSON)
    assert status == 400 and reason in text
    assert ingress.events() == []
    after = await requests_counted(ingress, source)
    assert after.get("bad_request", 0) - before.get("bad_request", 0) == 1


async def test_form_text_that_does_not_decode_is_400_and_kaleyra_keeps_it_flagged(ingress: Ingress) -> None:
    body = b"originator=%2B393331234567&destination=%2B393201234567&date_time=x&text=%FF%FE"
    status, text, _ = await ingress.post(AGILE, data=body, headers=FORM)
    assert (status, text.strip()) == (400, "form is not valid utf-8: invalid start byte at byte 0")
    # Kaleyra's real traffic carries junk: kept, and the ingress does not refuse it.
    junk = b"device_address=1447%DF7665544&inbound_address=12345&message=caf%E9"
    assert (await ingress.post("/inbound/kaleyra", data=junk, headers=FORM))[0] == 200
    [event] = ingress.events()
    part = normalizers()["kaleyra"].normalize(event, None)
    assert (part.text, part.flags[-1]) == ("caf\ufffd", "undecodable_text")


async def test_a_broken_gzip_body_is_400(ingress: Ingress, caplog: pytest.LogCaptureFixture) -> None:
    broken = gzip.compress(urlencode(SAMPLE).encode())[:-12] + b"\x00" * 12  # a bad CRC and length
    status, text, took = await raw_request(
        ingress.url,
        b"POST /inbound/agiletelecom HTTP/1.1\r\nHost: x\r\nContent-Encoding: gzip\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\n",
        broken,
    )
    assert status == 400 and text.startswith("body cannot be read") and took < 5
    good = gzip.compress(urlencode(SAMPLE).encode())
    assert (await ingress.post(AGILE, data=good, headers={**FORM, "Content-Encoding": "gzip"}))[:2] == (200, "+OK")
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]  # a client's error, not the engine's


async def test_a_400_digit_vonage_timestamp_is_401_not_500(start_ingress: StartIngress) -> None:
    ingress = await start_ingress(ingress={"vonage": {"signature_secret": "s3cret"}})
    message: dict[str, Any] = {
        "type": "text",
        "to": "447700900000",
        "msisdn": "447700900001",
        "messageId": "m1",
        "text": "hi",
        "timestamp": int("9" * 400),
    }
    message["sig"] = signature(message, "s3cret", "md5hash")
    status, text, _ = await ingress.post(VONAGE, data=json.dumps(message), headers=JSON)
    assert (status, text.strip()) == (401, "missing or non-numeric signature timestamp")


async def test_a_header_the_log_cannot_store_is_400(start_ingress: StartIngress) -> None:
    ingress = await start_ingress(ingress={"agile": {"provider": "agiletelecom", "trusted_proxies": ["127.0.0.1/32"]}})
    status, text, _ = await raw_request(
        ingress.url,
        b"POST /inbound/agile HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 10.0.0.\xff\r\nConnection: close\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\n",  # closed once answered: the answer is all read
        urlencode(SAMPLE).encode(),
    )
    assert (status, text.strip()) == (400, "X-Forwarded-For holds an address that is not ASCII")
    assert ingress.events() == []


async def test_an_unexpected_error_is_500_counted_and_logged(
    ingress: Ingress, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(self: Receiver, request: object) -> None:
        raise RuntimeError("a bug on an odd request")

    monkeypatch.setattr(Receiver, "authenticate", broken)
    before = await requests_counted(ingress, "agiletelecom")
    status, text, _ = await ingress.post(AGILE, data=SAMPLE)
    assert (status, text.strip()) == (500, "internal error; retry later")
    after = await requests_counted(ingress, "agiletelecom")
    assert after.get("error", 0) - before.get("error", 0) == 1
    [record] = [r for r in caplog.records if getattr(r, "event", "") == "ingress_error"]
    assert record.exc_info is not None and "a bug on an odd request" in str(record.exc_info[1])


# --- slow clients ---------------------------------------------------------------------------------


async def raw_request(
    url: str, head: bytes, body: bytes = b"", length: int | None = None, wait: float = 10.0
) -> tuple[int, str, float]:
    """Send a request as bytes (``head``: the request line and headers; Content-Length is added,
    ``length`` or the body's), then read the answer until the server closes: status, body, and the
    seconds it took (a server that keeps the connection shows as ``wait``)."""
    host, port = url.removeprefix("http://").split(":")
    started = time.monotonic()
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(head + b"Content-Length: %d\r\n\r\n" % (len(body) if length is None else length) + body)
    await writer.drain()
    answer = b""
    try:
        async with asyncio.timeout(wait):
            while chunk := await reader.read(65536):
                answer += chunk
    except TimeoutError:
        pass
    writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), body.decode(), time.monotonic() - started


async def test_a_stalled_body_is_408_and_the_connection_closed(start_ingress: StartIngress) -> None:
    ingress = await start_ingress(body_timeout=0.5)
    status, text, took = await raw_request(
        ingress.url,
        b"POST /inbound/agiletelecom HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n",
        b"originator=1",
        length=100,
    )
    assert (status, text.strip()) == (408, "body not received within 0.5 s")
    assert took < 5  # closed at once, not held for the rest of the body
    assert (await requests_counted(ingress, "agiletelecom")).get("timeout", 0) >= 1


# --- repeated form keys --------------------------------------------------------------------------


async def test_a_repeated_field_means_its_first_value_everywhere(ingress: Ingress) -> None:
    body = (
        "originator=%2B393331234567&originator=&destination=%2B393201234567&date_time=2026-11-21+10%3A00%3A00&text=hi"
    )
    assert (await ingress.post(AGILE, data=body, headers=FORM))[:2] == (200, "+OK")
    [event] = ingress.events()
    assert event.key == "agiletelecom:+393331234567:+393201234567"
    part = normalizers()["agiletelecom"].normalize(event, None)
    assert (part.sender, part.recipient) == ("+393331234567", "+393201234567")


# --- secrets -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides",
    [
        {"ingress": {"agiletelecom": {"token": ""}}},
        {"ingress": {"vonage": {"signature_secret": ""}}},
        {"ingress": {"twilio": {"auth_token": ""}}},
        {"smtp": {"host": "smtp.example.com", "from_address": "a@example.com", "username": "u", "password": ""}},
        {"sms_reply": {"provider": "smsgateway24", "smsgateway24": {"token": "", "device_id": "1"}}},
    ],
    ids=["token", "vonage", "twilio", "smtp", "smsgateway24"],
)
def test_an_empty_secret_is_a_configuration_error(overrides: dict[str, Any]) -> None:
    """Checked where the engines check settings at start-up: the ingresses, then the reply provider."""
    with pytest.raises(ConfigError, match="must not be empty: an empty secret would authenticate anyone"):
        settings = load_settings(**overrides)
        build_receivers(settings)
        provider_settings(settings.sms_reply)


def test_a_token_in_a_header_line_is_masked_whatever_quotes_it() -> None:
    formatter = JSONFormatter()
    for text in (
        "Invalid header value char:\n\n  b'X-Smsroute-Token: s3cret-token\\x01'",
        "X-Smsroute-Token: s3cret-token",
        "x-api-key:s3cret-token",
    ):
        line = formatter.format(logging.makeLogRecord({"msg": text, "exc_info": None}))
        assert "s3cret" not in line and "[redacted]" in line


async def test_aiohttp_bad_request_line_never_shows_the_token(tmp_path: Path) -> None:
    engine = EngineProcess(tmp_path / "data", tmp_path / "stderr")
    try:
        async with aiohttp.ClientSession() as http:
            await engine.wait_healthy(http)
        status, _, _ = await raw_request(
            engine.url, b"POST /inbound/agiletelecom HTTP/1.1\r\nHost: x\r\nX-Smsroute-Token: s3cret-token\x01\r\n"
        )
        assert status == 400
        assert engine.stop() == 0
        assert "Invalid header" in engine.stderr() and "s3cret" not in engine.stderr()
    finally:
        engine.kill()


# --- logged events that cannot be processed -------------------------------------------------------


async def test_poison_events_in_the_log_become_dead_letters_and_the_stream_goes_on(tmp_path: Path) -> None:
    received: list[dict[str, Any]] = []

    async def receive(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.Response(status=204)

    async with serving(receive, "/inbox") as url:
        routes = tmp_path / "routes"
        routes.mkdir()
        (routes / "r.yaml").write_text(
            f'routes:\n  - name: inbox\n    actions:\n      - webhook: {{url: "{url}/inbox"}}\n'
        )
        data = tmp_path / "data"
        log = SQLiteLog(data / "log.db")
        log.start()
        good = logged("agiletelecom", urlencode({**SAMPLE, "text": "after"}).encode(), "agiletelecom:good")
        await log.append([(event.key, event.encode()) for event in [*poison_events(), good]])
        log.stop()
        for restart in range(2):  # a restart meets them again in its dead letters, not in a crash
            engine = EngineProcess(data, tmp_path / f"stderr{restart}", routes=routes)
            try:
                async with aiohttp.ClientSession() as http:
                    await engine.wait_healthy(http)
                    assert (
                        await http.post(engine.url + AGILE, data={**SAMPLE, "text": f"live {restart}"})
                    ).status == 200
                    await eventually(
                        lambda: f"live {restart}" in {m["text"] for m in received},  # noqa: B023 (called at once)
                        20,
                        engine.stderr,
                        interval=0.05,
                    )
                assert engine.process.poll() is None, engine.stderr()
                assert engine.stop() == 0
            finally:
                engine.kill()
    assert sorted(m["text"] for m in received) == ["after", "live 0", "live 1"]  # each once
    with sqlite3.connect(data / "state.db") as state:
        letters = state.execute("SELECT stage, reason FROM dead_letters ORDER BY id").fetchall()
    assert [stage for stage, _ in letters] == ["normalize"] * 4
    assert [reason.split(" (")[0] for _, reason in letters] == [
        "unprocessable: body holds a lone surrogate",
        "unprocessable: body holds a lone surrogate",
        "unprocessable: charset 'utf-7' is not accepted",
        "unprocessable: body holds a lone surrogate",
    ]


class Careless(AgileTelecom):
    """A normalizer with a bug: it lets through what nothing downstream can store."""

    def normalize(self, event: RawEvent, region: str | None) -> Part:
        part = super().normalize(event, region)
        if part.text == "bad key":
            return replace(part, dedupe_key="agiletelecom:\ud800")  # the dedupe table cannot hold it
        if part.text == "bad text":
            return replace(part, text="caf\udce9")  # the deliveries table cannot hold it
        return part


async def test_an_event_failing_past_normalization_is_undone_and_dead_lettered(tmp_path: Path) -> None:
    """Each event is a savepoint: the failing one leaves no dedupe key or delivery behind, becomes a
    dead letter with its raw record, and the events around it in the same batch go through."""
    log = SQLiteLog(tmp_path / "log.db")
    log.start()
    state = State(tmp_path / "state.db")
    rules = load_rules(ROUTES)
    backend = StateBackend(state)
    pipeline = Pipeline({"agiletelecom": Careless()}, backend, lambda: rules)
    texts = ["before", "bad key", "bad text", "after"]
    records = [logged("agiletelecom", urlencode({**SAMPLE, "text": text}).encode(), "k").encode() for text in texts]
    await log.append([("k", record) for record in records])
    consumer = LogConsumer(log, state, pipeline, backend, lambda: None)
    stop = asyncio.Event()
    running = asyncio.create_task(consumer.run(stop))
    await eventually(lambda: state.offsets.get() >= len(texts), 10, "the batch was never processed", interval=0.01)
    stop.set()
    await running
    try:
        routed = {json.loads(row[0])["text"] for row in state.conn.execute("SELECT message FROM deliveries")}
        assert routed == {"before", "after"}
        letters = state.dead_letters.all()
        assert [(letter["stage"], letter["payload"]) for letter in letters] == [
            ("process", records[1]),
            ("process", records[2]),
        ]
        assert "UnicodeEncodeError" in letters[0]["reason"] and "surrogates not allowed" in letters[1]["reason"]
        keys = [row[0] for row in state.conn.execute("SELECT key FROM dedupe")]
        assert len(keys) == 2  # "before" and "after": the failing events' keys were undone with them
    finally:
        state.close()
        log.stop()


def test_a_kafka_partition_savepoint_undoes_the_failed_events_writes() -> None:
    """The worker's counterpart of the SQLite savepoint: a failed event leaves its partition's state
    (and the batch record to be written) as they were before it."""
    from smsroute.engines.kafka.partition import PartitionState

    state = PartitionState(0)
    state.dedupe["kept"] = 1.0
    state.dedupe["gone"] = 2.0
    written = dict(state.batch["dedupe"])
    with pytest.raises(RuntimeError), state.undo.savepoint():
        state.dedupe["kept"] = 10.0
        state.dedupe["new"] = 3.0
        del state.dedupe["gone"]
        raise RuntimeError("the event failed")
    assert (state.dedupe.get("kept"), state.dedupe.get("gone"), state.dedupe.get("new")) == (1.0, 2.0, None)
    assert state.batch["dedupe"] == written  # nothing of the failed event to write
    with state.undo.savepoint():
        state.dedupe["new"] = 3.0
    assert state.dedupe.get("new") == 3.0 and state.batch["dedupe"]["new"] == 3.0
