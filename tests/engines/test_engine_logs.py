"""Structured logs of a real engine: every line about a message names it, and no secret reaches
stderr, even when a receiver echoes its URL and credentials back into an error the engine logs."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from engine_process import EngineProcess, form
from helpers import eventually
from local_server import serving
from samples import VONAGE
from smsroute.logs import REDACTED

TOKEN = "s3cr3t-query-token"
BASIC = "dXNlcjpodW50ZXIy"
WEBHOOK_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SECRETS = (TOKEN, BASIC, WEBHOOK_SECRET.removeprefix("whsec_"))


@pytest.fixture
async def echoing_receiver() -> AsyncIterator[str]:
    """A receiver that fails every request with an error page quoting the URL and credentials."""

    async def fail(request: web.Request) -> web.Response:
        return web.Response(status=500, text=f"cannot handle {request.url} ({request.headers.get('Authorization')})")

    async with serving(fail) as url:
        yield url


def rules_yaml(url: str) -> str:
    return f"""
routes:
  - name: crm
    match: {{keyword: [CRM, PARTS]}}
    actions:
      - webhook:
          url: "{url}/sms?token={TOKEN}"
          secret: "{WEBHOOK_SECRET}"
          headers: {{Authorization: "Basic {BASIC}"}}
          retry: {{schedule: [0.1, 0.1]}}
"""


def lines(engine: EngineProcess) -> list[dict[str, Any]]:
    return [json.loads(line) for line in engine.stderr().splitlines() if line.startswith("{")]


async def test_message_lines_carry_the_message_id_and_no_secret(tmp_path: Path, echoing_receiver: str) -> None:
    routes = tmp_path / "routes"
    routes.mkdir()
    (routes / "rules.yaml").write_text(rules_yaml(echoing_receiver))
    engine = EngineProcess(tmp_path / "data", tmp_path / "engine.log", routes, env={"SMSROUTE_STITCH_TIMEOUT": "1"})
    lonely = {
        **VONAGE,
        "messageId": "C1",
        "text": "PARTS one ",
        "concat": "true",
        "concat-ref": "9",
        "concat-total": "2",
        "concat-part": "1",
    }
    wanted = {"delivery_failed", "dead_letter", "stitch_timeout"}
    try:
        async with aiohttp.ClientSession() as http:
            await engine.wait_healthy(http)
            for path, body in (
                ("/inbound/agiletelecom", {"data": form("CRM hello")}),
                ("/inbound/agiletelecom", {"data": form("NOBODY hello")}),
                ("/inbound/vonage", {"json": lonely}),
            ):
                async with http.post(engine.url + path, **body) as response:
                    assert response.status in (200, 204)
            # both messages exhaust their retries: two warnings from the sink
            await eventually(
                lambda: (
                    wanted <= {line.get("event") for line in lines(engine)}
                    and sum(line.get("outcome") == "dead_letter" for line in lines(engine)) == 2
                ),
                30,
                engine.stderr,
                interval=0.1,
            )
    finally:
        engine.kill()

    about_messages = [line for line in lines(engine) if line.get("event") in wanted]
    assert about_messages
    for line in about_messages:
        if line["event"] == "dead_letter" and line["stage"] == "normalize":
            continue  # a raw event that never became a message has no message id
        assert isinstance(line.get("message_id"), str) and len(line["message_id"]) == 32, line
    failed = [line for line in about_messages if line["event"] == "delivery_failed"]
    assert all(line["delivery_id"].startswith("msg_") for line in failed)
    assert any("cannot handle" in line["msg"] and f"token={REDACTED}" in line["msg"] for line in failed)
    for secret in SECRETS:
        assert secret not in engine.stderr()
