"""``smsroute providers list`` and ``providers verify``: the conformance kit's commands.

``verify`` runs one recorded request (the fixture format of tests/fixtures/providers/README.md)
through the real ingress, in this process: the app on a 127.0.0.1 port over a throwaway log, its
clock at the fixture's ``now``, the provider mounted under its own name with the fixture's
settings. It shows the answer and the canonical messages (or delivery reports) the logged events
become, or the refusal; with an ``expect.status`` in the fixture, the exit status says whether the
answer matched it (0) or not (1).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web
from yarl import URL

from ..config import load_settings
from ..engines.embedded.log import SQLiteLog
from ..ingress.app import create_app
from ..models.raw import RawEvent
from ..providers import available, aws, build_receivers, normalizers
from ..providers.kit import Unprocessable


def add(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    providers = commands.add_parser("providers", help="the provider types, and a recorded request run through one")
    group = providers.add_subparsers(dest="providers_command", required=True)
    listing = group.add_parser("list", help="every provider type: its paths, methods, authentication and answer")
    listing.add_argument("--json", action="store_true", help="print the list as JSON")
    listing.set_defaults(run=_list)
    verify = group.add_parser(
        "verify",
        help="run a recorded request through a provider's receiver and normalizer",
        description="Run a recorded request (tests/fixtures/providers format) through the real ingress in "
        "this process and show the canonical messages or the refusal. Exit status: 0 when the answer is the "
        "fixture's expect.status (or, without one, a 2xx), 1 otherwise.",
    )
    verify.add_argument("name", help="provider type, e.g. plivo")
    verify.add_argument("--fixture", type=Path, required=True, help="the recorded request (JSON)")
    verify.set_defaults(run=_verify)


def describe() -> list[dict[str, Any]]:
    """What ``providers list`` shows, one entry per provider type received over HTTP."""
    found = []
    for name, provider in available().items():
        receiving = provider.receiving
        if not receiving.kinds:
            continue
        found.append(
            {
                "type": name,
                "paths": [
                    f"/{kind}/{name if receiving.default_mount else 'NAME'}"
                    for kind in ("inbound", "status")
                    if kind in receiving.kinds
                ],
                "methods": sorted(receiving.methods),
                "auth": receiving.auth_scheme,
                "answer": receiving.answer_summary,
            }
        )
    return found


def _list(args: argparse.Namespace) -> int:
    entries = describe()
    if args.json:
        print(json.dumps(entries, indent=2))
        return 0
    for entry in entries:
        print(f"{entry['type']}: {' '.join(entry['paths'])} ({', '.join(entry['methods'])})")
        print(f"    auth:   {entry['auth']}")
        print(f"    answer: {entry['answer']}")
    return 0


def _verify(args: argparse.Namespace) -> int:
    if args.name not in available():
        print(f"smsroute: unknown provider {args.name!r} (built-in: {', '.join(available())})")
        return 2
    fixture = json.loads(args.fixture.read_text())
    result = asyncio.run(run_fixture(args.name, fixture))
    print(json.dumps(result, indent=2, ensure_ascii=False, default=str))
    wanted = fixture.get("expect", {}).get("status")
    status = result["status"]
    return 0 if (status == wanted if wanted is not None else 200 <= status < 300) else 1


async def run_fixture(name: str, fixture: dict[str, Any]) -> dict[str, Any]:
    """The answer to the fixture's request and what its logged events normalize to."""
    request = fixture["request"]
    url = urlsplit(request["url"])
    kind = fixture.get("kind", "inbound")
    target = f"/{kind}/{name}" + (f"?{url.query}" if url.query else "")
    body = base64.b64decode(request["body_base64"]) if "body_base64" in request else request.get("body", "").encode()
    now = fixture.get("now")
    clock = time.time_ns if now is None else (lambda: int(datetime.fromisoformat(now).timestamp() * 1e9))
    with tempfile.TemporaryDirectory(prefix="smsroute-verify-") as folder:
        settings = load_settings(data_dir=Path(folder), ingress={name: _settings(name, fixture, url.geturl())})
        event_log = SQLiteLog(settings.data_dir / "log.db", busy_timeout=settings.log_busy_timeout)
        event_log.start()
        runner = web.AppRunner(create_app(settings, build_receivers(settings), event_log, clock=clock))
        try:
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", 0).start()
            base = f"http://127.0.0.1:{runner.addresses[0][1]}"
            async with (
                aiohttp.ClientSession() as http,
                http.request(
                    request["method"],
                    URL(base + target, encoded=True),
                    data=body or None,
                    headers=request.get("headers", {}),
                    skip_auto_headers=("Content-Type",),
                ) as response,
            ):
                status, answer = response.status, await response.text()
            events = [RawEvent.decode(record) for _, _, record in event_log.read(limit=10_000)]
        finally:
            await runner.cleanup()
            event_log.stop()
    return {"status": status, "answer": answer, **_canonical(name, events)}


def _settings(name: str, fixture: dict[str, Any], url: str) -> dict[str, Any]:
    """The fixture's settings for the ingress: the URL it was called at as ``public_url`` (for the
    providers that sign it); an AWS test certificate put in the certificate cache, as if fetched."""
    given = dict(fixture.get("settings", {}))
    pem, cert_url = given.pop("test_certificate", None), given.pop("test_certificate_url", None)
    if pem is not None and cert_url is not None:
        aws.CERTIFICATES.put(cert_url, aws.public_key(pem.encode()))
    if "public_url" in available()[name].receiving.config_class.model_fields and "public_url" not in given:
        given["public_url"] = url.partition("?")[0]
    return given


def _canonical(name: str, events: list[RawEvent]) -> dict[str, Any]:
    normalizer = normalizers()[name]
    shown: dict[str, list[Any]] = {"messages": [], "reports": [], "dead_letters": []}
    for event in events:
        try:
            if event.kind == "status":
                report = normalizer.report(event, None)
                shown["reports"].append({slot: getattr(report, slot) for slot in report.__slots__})
            else:
                shown["messages"].append(normalizer.normalize(event, None).to_json())
        except Unprocessable as exc:
            shown["dead_letters"].append(str(exc))
    return {key: value for key, value in shown.items() if value}
