"""Signature test vectors from the providers' official SDKs' own test suites (each names its source
in tests/fixtures/providers/<provider>/sdk_signatures.json), checked against our verifiers."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import pytest

from provider_fixtures import ROOT as FIXTURES
from smsroute.providers import aws, bird, plivo, sinch, twilio, vonage


def signed_bodies(provider: str) -> list[Any]:
    """The provider's vectors of signed raw bodies (JSON webhooks)."""
    found = json.loads((FIXTURES / provider / "sdk_signatures.json").read_text())
    return [pytest.param(vector, id=f"{i}-{vector['description'][:60]}") for i, vector in enumerate(found)]


def vectors(provider: str) -> list[Any]:
    """The provider's vectors, less those for JSON bodies (Twilio's bodySHA256): inbound SMS webhooks
    are form posts, and the ingress refuses a JSON body with 415 before any signature is checked."""
    found = json.loads((FIXTURES / provider / "sdk_signatures.json").read_text())
    return [
        pytest.param(vector, id=f"{i}-{vector['description'][:60]}")
        for i, vector in enumerate(found)
        if "body" not in vector
    ]


@pytest.mark.parametrize("vector", vectors("twilio"))
def test_twilio(vector: dict[str, Any]) -> None:
    params = [(name, value) for name, value in vector["params"]]
    given = vector["headers"]["X-Twilio-Signature"]
    assert twilio.valid(vector["secret"], vector["url"], params, given) is vector["valid"], vector["source"]


@pytest.mark.parametrize("vector", vectors("vonage"))
def test_vonage(vector: dict[str, Any]) -> None:
    params = dict(vector["params"])
    expected = vonage.signature(params, vector["secret"], vector["signature_method"])
    assert (expected == str(params["sig"]).lower()) is vector["valid"], vector["source"]


@pytest.mark.parametrize("vector", vectors("plivo"))
def test_plivo(vector: dict[str, Any]) -> None:
    params = [(name, value) for name, value in vector["params"]]
    headers = vector["headers"]
    if vector["scheme"] == "v3":
        nonce = headers["X-Plivo-Signature-V3-Nonce"]
        given = headers["X-Plivo-Signature-V3"]
        valid = plivo.valid_v3(vector["secret"], vector["url"], vector["method"], params, given, nonce)
    else:
        valid = plivo.valid_v2(
            vector["secret"], vector["url"], headers["X-Plivo-Signature-V2"], headers["X-Plivo-Signature-V2-Nonce"]
        )
    assert valid is vector["valid"], vector["source"]


@pytest.mark.parametrize("vector", signed_bodies("sinch"))
def test_sinch(vector: dict[str, Any]) -> None:
    headers = vector["headers"]
    nonce, timestamp = headers["x-sinch-webhook-signature-nonce"], headers["x-sinch-webhook-signature-timestamp"]
    given = headers["x-sinch-webhook-signature"]
    assert sinch.valid(vector["secret"], vector["body"].encode(), nonce, timestamp, given) is vector["valid"]


@pytest.mark.parametrize("vector", signed_bodies("bird"))
def test_bird(vector: dict[str, Any]) -> None:
    body, headers = (
        (vector["body"] or "").encode("latin-1" if vector["scheme"] == "legacy" else "utf-8"),
        vector["headers"],
    )
    if vector["scheme"] == "jwt":
        now = datetime.fromisoformat(vector["timestamp"]).timestamp()
        problem = bird.jwt_problem(vector["secret"], headers["MessageBird-Signature-JWT"], vector["url"], body, now)
        assert (problem is None) is vector["valid"], (vector["source"], problem)
    else:
        params = [(name, value) for name, value in vector["params"]]
        timestamp, given = headers["MessageBird-Request-Timestamp"], headers["MessageBird-Signature"]
        assert bird.valid_hmac(vector["secret"], timestamp, vector["url"], params, body, given) is vector["valid"]


@pytest.mark.parametrize("vector", signed_bodies("aws"))
def test_aws(vector: dict[str, Any]) -> None:
    envelope = json.loads(vector["body"])
    key = aws.public_key(vector["certificate"].encode())
    assert aws.valid(envelope, key) is vector["valid"], vector["source"]
