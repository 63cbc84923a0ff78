"""Structured logs: the JSON formatter masks every secret, in fields and in text (that each line
about a message names it, with no secret on a real engine's stderr, is tests/engines/test_engine_logs.py)."""

from __future__ import annotations

import json
import logging
from typing import Any

from smsroute.logs import REDACTED, JSONFormatter

TOKEN = "s3cr3t-query-token"
BASIC = "dXNlcjpodW50ZXIy"
WEBHOOK_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SECRETS = (TOKEN, BASIC, WEBHOOK_SECRET.removeprefix("whsec_"))


def formatted(msg: str, **extra: Any) -> dict[str, Any]:
    record = logging.makeLogRecord(
        {"name": "smsroute.test", "levelno": logging.WARNING, "levelname": "WARNING", "msg": msg, **extra}
    )
    return json.loads(JSONFormatter().format(record))


def test_formatter_masks_secrets_in_fields_and_text() -> None:
    entry = formatted(
        f"POST https://bob:hunter2@crm.example.com/sms?tenant=acme&token={TOKEN} failed; Authorization: Basic {BASIC}",
        event="delivery_failed",
        message_id="3f2a",
        secret=WEBHOOK_SECRET,
        headers={"X-Tenant": "acme", "X-Api-Key": "k-123456"},
        problems=[f"bad key {WEBHOOK_SECRET}"],
    )
    text = json.dumps(entry)
    for secret in (*SECRETS, "hunter2", "k-123456"):
        assert secret not in text
    assert entry["msg"] == (
        f"POST https://{REDACTED}@crm.example.com/sms?tenant=acme&token={REDACTED} failed;"
        f" Authorization: Basic {REDACTED}"
    )
    assert (entry["secret"], entry["headers"], entry["problems"]) == (
        REDACTED,
        {"X-Tenant": "acme", "X-Api-Key": REDACTED},
        [f"bad key whsec_{REDACTED}"],
    )
    assert (entry["event"], entry["message_id"], entry["level"]) == ("delivery_failed", "3f2a", "warning")
