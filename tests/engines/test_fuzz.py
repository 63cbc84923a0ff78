"""The ingress fuzzed, with a seeded generator, bounded in count and time: malformed bodies, wrong
content types and charsets, invalid UTF-8, lone surrogates, deep JSON, huge fields and integers,
repeated keys, broken compression, odd methods and paths, sent to every endpoint of every provider
of the recorded fixtures, interleaved with valid messages, while poison events are written straight
into the log. The engine runs as its own process: no answer may be a 5xx, the engine must stay up,
every valid message must reach the webhook, every answer must be counted, and everything in the log
must have been processed."""

from __future__ import annotations

import asyncio
import gzip
import json
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import aiohttp
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families
from yarl import URL

from engine_process import EngineProcess
from helpers import eventually
from local_server import serving
from provider_fixtures import Fixture, fixtures
from samples import poison_events
from smsroute.engines.embedded.log import SQLiteLog
from smsroute.providers import available

SEED = 20261204
REQUESTS = 6000
TIME_BUDGET = 120.0
"""Seconds the requests may take; the run stops sending when they are up (and says so)."""
CONCURRENCY = 16
POISON_ROUNDS = 4
METHODS = ("PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "GET", "POST")
CHARSETS = ("utf-7", "idna", "undefined", "bogus", "latin-1", "utf-16", "base64", "", "utf-8", "cp1252")
CONTENT_TYPES = (
    "application/json",
    "application/x-www-form-urlencoded",
    "text/plain",
    "multipart/form-data",
    "application/octet-stream",
    "",
    "application/vnd.api+json",
)


@dataclass(frozen=True)
class Request:
    method: str
    target: str
    headers: dict[str, str]
    body: bytes
    marker: str | None = None
    """The text a valid message carries, unique to it: the receiver must get it."""


def mutable(fixture: Fixture) -> bool:
    """A single-message inbound fixture the ingress accepts, whose text (not empty: it carries the
    marker) and ids can be made unique."""
    messages = fixture.expect.get("messages", [])
    return (
        fixture.accepted
        and fixture.kind == "inbound"
        and len(messages) == 1
        and messages[0]["parts"] == 1
        and messages[0]["text"] != ""
    )


def unique(fixture: Fixture, number: int) -> Request:
    """The fixture as a message of its own: its text replaced by a marker, its ids made unique, so
    that neither dedupe nor the receiver confuses it with another."""
    expected = fixture.expect["messages"][0]
    marker = f"fuzz {number}"
    ids = set(expected["provider_message_ids"])

    def swap(value: Any) -> Any:
        if value == expected["text"]:
            return marker
        if isinstance(value, str) and value in ids:
            return f"{value}-{number}"
        if isinstance(value, int) and not isinstance(value, bool) and str(value) in ids:
            return value * 100_000 + number
        if isinstance(value, str) and value.startswith("{"):  # a JSON document in a string (SNS's Message)
            try:
                inner = json.loads(value)
            except ValueError:
                return value
            return json.dumps(swap(inner)) if isinstance(inner, dict) else value
        if isinstance(value, dict):
            return {key: swap(item) for key, item in value.items()}
        if isinstance(value, list):
            return [swap(item) for item in value]
        return value

    target, body = fixture.target, fixture.body
    if fixture.method == "GET":
        path, _, query = target.partition("?")
        target = f"{path}?{urlencode([(name, swap(value)) for name, value in parse_qsl(query)])}"
    elif "json" in fixture.headers.get("Content-Type", "") or fixture.body.lstrip()[:1] in (
        b"{",
        b"[",
    ):  # SNS: text/plain
        body = json.dumps(swap(json.loads(body)), ensure_ascii=False).encode()
    else:
        body = urlencode([(name, swap(value)) for name, value in parse_qsl(body.decode())]).encode()
    return Request(fixture.method, target, dict(fixture.headers), body, marker)


def _content_type(request: Request, value: str) -> Request:
    headers = {name: v for name, v in request.headers.items() if name.lower() != "content-type"}
    return replace(request, headers=headers | ({"Content-Type": value} if value else {}))


def _json_with(value: bytes) -> Callable[[Request, random.Random], Request]:
    def mutate(request: Request, rng: random.Random) -> Request:
        return replace(_content_type(request, "application/json"), body=b'{"text": %s, "to": "1", "from": "2"}' % value)

    return mutate


def _insert(body: bytes, junk: bytes, rng: random.Random) -> bytes:
    at = rng.randrange(len(body) + 1)
    return body[:at] + junk + body[at:]


MUTATIONS: dict[str, Callable[[Request, random.Random], Request]] = {
    "truncated": lambda r, rng: replace(r, body=r.body[: rng.randrange(len(r.body) + 1)]),
    "random bytes": lambda r, rng: replace(r, body=rng.randbytes(rng.randrange(512))),
    "invalid utf-8": lambda r, rng: replace(r, body=_insert(r.body, b"\xff\xc3(", rng)),
    "percent junk": lambda r, rng: replace(r, body=r.body + b"&x=%ff%fe%zz&%C0%80=1"),
    "deep json": lambda r, rng: replace(_content_type(r, "application/json"), body=b"[" * 5000 + b"]" * 5000),
    "deep object": lambda r, rng: replace(
        _content_type(r, "application/json"), body=b'{"a":' * 3000 + b"1" + b"}" * 3000
    ),
    "huge field": lambda r, rng: replace(r, body=r.body + b"&big=" + b"x" * rng.choice((1000, 60_000, 70_000))),
    "repeated keys": lambda r, rng: replace(
        r, body=b"&".join([r.body, *(p.split(b"=")[0] + b"=junk" for p in r.body.split(b"&"))])
    ),
    "content type": lambda r, rng: _content_type(r, rng.choice(CONTENT_TYPES)),
    "charset": lambda r, rng: _content_type(
        r, (r.headers.get("Content-Type") or "text/plain") + "; charset=" + rng.choice(CHARSETS)
    ),
    "gzip": lambda r, rng: replace(r, headers=r.headers | {"Content-Encoding": "gzip"}, body=gzip.compress(r.body)),
    "broken gzip": lambda r, rng: replace(
        r, headers=r.headers | {"Content-Encoding": "gzip"}, body=gzip.compress(r.body)[:-6] + b"\0" * 6
    ),
    "deflate junk": lambda r, rng: replace(
        r, headers=r.headers | {"Content-Encoding": "deflate"}, body=rng.randbytes(64)
    ),
    "surrogate": _json_with(b'"\\ud83d"'),
    "surrogate key": lambda r, rng: replace(_content_type(r, "application/json"), body=b'{"\\udfff": 1, "to": "1"}'),
    "nan": _json_with(b"NaN"),
    "infinity": _json_with(b"-Infinity"),
    "huge integer": _json_with(b"9" * 5000),
    "400 digits": _json_with(b"1" * 400),
    "json shapes": lambda r, rng: replace(
        _content_type(r, "application/json"),
        body=rng.choice(
            (
                b'"a string"',
                b"42",
                b"null",
                b"[]",
                b"[1, 2]",
                b'[{"a": 1}, 3]',
                b'{"to": {"a": [1]}, "text": ["x"]}',
                b"{}",
            )
        ),
    ),
    "empty": lambda r, rng: replace(r, body=b""),
    "method": lambda r, rng: replace(r, method=rng.choice(METHODS)),
    "unknown source": lambda r, rng: replace(
        r,
        target=rng.choice(("/inbound/", "/status/"))
        + rng.choice(("nope", "%ff%fe", "a%2Fb", "x" * 300, "..%2F..", "%00", "%C3%BCn%C3%AF", "")),
    ),
    "wrong kind": lambda r, rng: replace(r, target=r.target.replace("/inbound/", "/status/", 1)),
    "signature junk": lambda r, rng: replace(
        r,
        headers=r.headers
        | {"X-Twilio-Signature": "é" * 3, "X-Forwarded-For": "junk, 10.0.0.1", "X-Smsroute-Token": ""},
    ),
    "query junk": lambda r, rng: replace(r, target=r.target.partition("?")[0] + "?token=%ff%fe&msisdn=%zz&&=&x"),
}


def plan(rng: random.Random, templates: list[Fixture], valid: list[Fixture]) -> list[Request]:
    """REQUESTS requests: about a third valid, unique messages; the rest a mutation of a fixture."""
    requests = []
    for number in range(REQUESTS):
        if rng.random() < 0.3:
            requests.append(unique(rng.choice(valid), number))
            continue
        fixture = rng.choice(templates)
        base = Request(fixture.method, fixture.target, dict(fixture.headers), fixture.body)
        name = rng.choice(sorted(MUTATIONS))
        requests.append(replace(MUTATIONS[name](base, rng), marker=None))
    return requests


@dataclass
class Receiver:
    texts: Counter[str]

    async def handle(self, request: web.Request) -> web.Response:
        self.texts[(await request.json())["text"]] += 1
        return web.Response(status=204)


async def send(http: aiohttp.ClientSession, base: str, request: Request) -> int:
    url = URL(base + request.target, encoded=True)
    async with http.request(
        request.method,
        url,
        data=request.body or None,
        headers=request.headers,
        skip_auto_headers=("Content-Type",),
        allow_redirects=False,
    ) as response:
        await response.read()
        return response.status


def scraped(text: str, name: str) -> float:
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    )


async def test_fuzzing_the_ingress_finds_no_5xx_no_exit_and_loses_no_valid_message(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    # every HTTP provider the engine mounts by default (generic needs a mapping: its junk is in test_generic_end_to_end.py)
    providers = {
        name for name, provider in available().items() if provider.receiving.kinds and provider.receiving.default_mount
    }
    templates = [fixture for fixture in fixtures(providers) if not fixture.settings]
    valid = [fixture for fixture in templates if mutable(fixture)]
    assert {fixture.provider for fixture in valid} == providers, "every HTTP provider needs a valid fixture"
    requests = plan(rng, templates, valid)
    receiver = Receiver(Counter())
    async with serving(receiver.handle, "/inbox") as url:
        routes = tmp_path / "routes"
        routes.mkdir()
        (routes / "r.yaml").write_text(
            f'routes:\n  - name: inbox\n    actions:\n      - webhook: {{url: "{url}/inbox"}}\n'
        )
        engine = EngineProcess(tmp_path / "data", tmp_path / "stderr", routes=routes)
        try:
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=CONCURRENCY)) as http:
                await engine.wait_healthy(http)
                statuses, poisoned, sent = await _run(http, engine.url, requests, tmp_path / "data" / "log.db")
                markers = {request.marker for request in requests[:sent] if request.marker is not None}
                await eventually(
                    lambda: markers <= set(receiver.texts),
                    60,
                    lambda: f"undelivered: {sorted(markers - set(receiver.texts))[:5]}",
                    interval=0.1,
                )
                metrics = ""

                async def processed() -> bool:  # every logged event: the accepted ones and the poison
                    nonlocal metrics
                    async with http.get(engine.url + "/metrics") as response:
                        metrics = await response.text()
                    logged = scraped(metrics, "smsroute_ingress_events_total") + poisoned
                    return scraped(metrics, "smsroute_pipeline_events_total") == logged

                await eventually(processed, 30, "the log was not all processed", interval=0.1)
            assert engine.process.poll() is None, engine.stderr()[-3000:]
            assert engine.stop() == 0
        finally:
            engine.kill()
    print(
        f"\nfuzz: {sent} requests ({len(markers)} valid messages), answers {dict(sorted(statuses.items()))},"
        f" {poisoned} poison events written to the log"
    )
    assert not [status for status in statuses if status >= 500], statuses
    assert sent >= REQUESTS // 2, f"only {sent} requests within {TIME_BUDGET:g} s"
    assert scraped(metrics, "smsroute_ingress_requests_total") == sent  # every answer counted
    assert all(receiver.texts[marker] == 1 for marker in markers)  # and each valid message delivered once


async def _run(
    http: aiohttp.ClientSession, base: str, requests: list[Request], log_path: Path
) -> tuple[Counter[int], int, int]:
    """Send the requests, CONCURRENCY at a time, writing poison events straight into the log now and
    then; the answers' statuses, the poison events written, the requests sent."""
    statuses: Counter[int] = Counter()
    queue = list(reversed(requests))
    deadline = time.monotonic() + TIME_BUDGET
    poison_at = {len(requests) * (n + 1) // (POISON_ROUNDS + 1) for n in range(POISON_ROUNDS)}
    poison = SQLiteLog(log_path)
    poison.start()
    poisoned = sent = 0

    async def worker() -> None:
        nonlocal poisoned, sent
        while queue and time.monotonic() < deadline:
            request = queue.pop()
            sent += 1
            if sent in poison_at:
                events = poison_events()
                await poison.append([(event.key, event.encode()) for event in events])
                poisoned += len(events)
            try:
                statuses[await send(http, base, request)] += 1
            except aiohttp.ServerDisconnectedError:
                statuses[0] += 1  # the server closed without an answer: counted, and failing the test below

    try:
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    finally:
        poison.stop()
    return statuses, poisoned, sent
