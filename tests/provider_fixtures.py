"""The recorded provider requests of tests/fixtures/providers (format in its README), as tests use
them, and :func:`run_case`: one case over real HTTP against a real ingress, checked against its
expectations (courier's ``RunIncomingTestCases``, for our fixture files)."""

from __future__ import annotations

import base64
import json
import ssl
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import trustme
from aiohttp import web

from ingress_server import StartIngress
from smsroute.models.part import Part
from smsroute.models.report import DeliveryReport
from smsroute.providers import available, normalizers

ROOT = Path(__file__).resolve().parent / "fixtures" / "providers"
CHECKED = {"status", "answer", "reason", "messages", "reports", "subscribe_url"}
"""The ``expect`` keys :func:`run_case` checks; a case with any other fails, rather than pass unchecked."""


@dataclass(frozen=True)
class Fixture:
    path: Path
    provider: str
    kind: str
    settings: dict[str, Any]
    method: str
    url: str
    """The URL as the provider called (and signed) it."""
    target: str
    """Path and query of the request as recorded (``/inbound/plivo?x=1``)."""
    headers: dict[str, str]
    body: bytes
    expect: dict[str, Any]
    now: int | None = None
    """When the request was made (nanoseconds since the epoch), for timestamped signatures: the
    ingress's clock during the case. None: the real clock."""

    @property
    def name(self) -> str:
        return f"{self.provider}/{self.path.stem}"

    @property
    def accepted(self) -> bool:
        return 200 <= self.expect["status"] < 300


def load(path: Path) -> Fixture:
    data = json.loads(path.read_text())
    request = data["request"]
    url = urlsplit(request["url"])
    body = base64.b64decode(request["body_base64"]) if "body_base64" in request else request.get("body", "").encode()
    now = data.get("now")
    return Fixture(
        path=path,
        provider=data["provider"],
        kind=data["kind"],
        settings=data.get("settings", {}),
        method=request["method"],
        url=request["url"],
        target=url.path + (f"?{url.query}" if url.query else ""),
        headers=dict(request.get("headers", {})),
        body=body,
        expect=data["expect"],
        now=None if now is None else int(datetime.fromisoformat(now).timestamp() * 1_000_000) * 1000,
    )


def fixtures(providers: set[str] | None = None) -> list[Fixture]:
    """Every case file (not the SDK vector files), of the given providers only when given."""
    found = [load(path) for path in sorted(ROOT.glob("*/*.json")) if path.name != "sdk_signatures.json"]
    return [fixture for fixture in found if providers is None or fixture.provider in providers]


async def run_case(start_ingress: StartIngress, case: Fixture) -> None:
    """Post the case's request to an ingress of its own, where the provider is mounted under its own
    name with the case's ``settings`` (and the ingress's clock at the case's ``now``), and check what
    the case expects: the status, the exact ``answer`` and the ``reason`` in it; for a refusal, nothing
    logged; for an accepted request, each logged event normalized as the pipeline normalizes it (the
    default settings: no default region) against the case's ``messages`` or ``reports``, in order."""
    unchecked = case.expect.keys() - CHECKED
    assert not unchecked, f"{case.name}: expect keys {sorted(unchecked)} are not checked by run_case: teach it"
    clock = None if case.now is None else lambda: case.now
    async with sns_host(case) as sns:
        ingress = await start_ingress(clock=clock, ingress={case.provider: {**settings(case), **sns.settings}})
        status, answer, _ = await ingress.request(
            case.method, case.target, data=case.body or None, headers=case.headers, skip_auto_headers=("Content-Type",)
        )
    expect = case.expect
    if "subscribe_url" in expect:
        assert sns.confirmed == [expect["subscribe_url"]], f"{case.name}: confirmed {sns.confirmed}"
    assert status == expect["status"], f"{case.name}: answered {status} {answer!r}"
    if "answer" in expect:
        assert answer == expect["answer"], case.name
    if "reason" in expect:
        assert expect["reason"] in answer, f"{case.name}: {expect['reason']!r} is not in the answer {answer!r}"
    events = ingress.events()
    if not case.accepted:
        assert events == [], f"{case.name}: a refused request reached the log"
        return
    normalizer = normalizers()[case.provider]
    if case.kind == "status":
        expected = expect.get("reports", [])
        got: list[dict[str, Any]] = [
            reported(normalizer.report(event, None), wanted) for event, wanted in zip(events, expected, strict=False)
        ]
    else:
        expected = expect.get("messages", [])
        got = [
            canonical(normalizer.normalize(event, None), wanted)
            for event, wanted in zip(events, expected, strict=False)
        ]
    assert len(events) == len(expected), f"{case.name}: {len(events)} events logged, {len(expected)} expected"
    assert got == expected, case.name


@dataclass
class SnsHost:
    """What a case's stand-in SNS host saw, and the settings that point the ingress at it."""

    settings: dict[str, Any]
    confirmed: list[str]


@asynccontextmanager
async def sns_host(case: Fixture) -> AsyncIterator[SnsHost]:
    """For an AWS case (settings ``test_certificate`` and ``test_certificate_url``): a local HTTPS
    server standing for the certificate URL's SNS host (a trustme certificate for that name, the
    ingress told to connect there with ``resolve`` and to trust the test CA with ``ca_file``),
    serving the certificate and recording subscription confirmations. Other cases: nothing."""
    pem, url = case.settings.get("test_certificate"), case.settings.get("test_certificate_url")
    if pem is None or url is None:
        yield SnsHost({}, [])
        return
    host = urlsplit(url).hostname or ""
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(host).configure_cert(context)
    confirmed: list[str] = []

    async def handle(request: web.Request) -> web.Response:
        if request.path == urlsplit(url).path:
            return web.Response(text=pem)
        confirmed.append(f"https://{host}{request.path_qs}")
        return web.Response(text="<ConfirmSubscriptionResponse/>")

    app = web.Application()
    app.router.add_get("/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    with tempfile.TemporaryDirectory() as folder:
        ca_file = Path(folder) / "ca.pem"
        ca.cert_pem.write_to_path(str(ca_file))
        try:
            await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context).start()
            port = runner.addresses[0][1]
            plain = {name: value for name, value in case.settings.items() if not name.startswith("test_")}
            yield SnsHost({**plain, "resolve": {host: f"127.0.0.1:{port}"}, "ca_file": str(ca_file)}, confirmed)
        finally:
            await runner.cleanup()


def settings(case: Fixture) -> dict[str, Any]:
    """The case's settings; for a provider that signs the URL it calls, with that URL (the case's,
    without its query) as ``public_url``: the ingress under test listens on another."""
    plain = {name: value for name, value in case.settings.items() if not name.startswith("test_")}
    config = available()[case.provider].receiving.config_class
    if "public_url" not in config.model_fields or "public_url" in plain:
        return plain
    return {**plain, "public_url": case.url.partition("?")[0]}


def canonical(part: Part, wanted: dict[str, Any]) -> dict[str, Any]:
    """The fields of ``part`` that ``wanted`` lists, by their names in the fixture format."""
    fields = {
        "from": lambda: part.sender,
        "to": lambda: part.recipient,
        "text": lambda: part.text,
        "provider_message_ids": lambda: [part.provider_message_id] if part.provider_message_id else [],
        # a part's concatenation total; a message the provider joined itself says how many it took
        "parts": lambda: part.concat.total if part.concat else part.extra.get("segments", 1),
        "encoding": lambda: part.encoding,
        "media": lambda: [item.url for item in part.media],
        "keyword": lambda: part.extra.get("keyword"),  # the keyword the provider matched, where it sends one
        "concat": lambda: (
            {"ref": part.concat.ref, "total": part.concat.total, "index": part.concat.index} if part.concat else None
        ),
    }
    unknown = wanted.keys() - fields.keys()
    assert not unknown, f"message fields {sorted(unknown)} are not checked by run_case: teach it"
    return {name: fields[name]() for name in wanted}


def reported(report: DeliveryReport, wanted: dict[str, Any]) -> dict[str, Any]:
    """The fields of ``report`` that ``wanted`` lists."""
    fields = {"provider_message_id", "status", "code", "recipient"}
    unknown = wanted.keys() - fields
    assert not unknown, f"report fields {sorted(unknown)} are not checked by run_case: teach it"
    return {name: getattr(report, name) for name in wanted}
