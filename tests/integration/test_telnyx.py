"""Telnyx: JSON events, Ed25519 signatures over ``timestamp|body``. Recorded requests and what they
must give are cases in tests/fixtures/providers/telnyx/; here, what a case cannot say."""

from __future__ import annotations

import base64
import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from ingress_server import StartIngress
from samples import TELNYX
from smsroute.config import ConfigError, load_settings
from smsroute.providers import build_receivers

NOW = 1_795_255_205


def keys() -> tuple[Ed25519PrivateKey, str]:
    private = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
    public = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return private, base64.b64encode(public).decode()


@pytest.mark.parametrize(
    ("key", "reason"),
    [("not base64!", "not base64"), (base64.b64encode(b"short").decode(), "32 bytes, this one 5")],
)
def test_a_public_key_that_is_not_one_is_a_configuration_error(key: str, reason: str) -> None:
    settings = load_settings(ingress={"telnyx": {"public_key": key}})
    with pytest.raises(ConfigError, match=rf"ingress\.telnyx\.public_key: .*{reason}"):
        build_receivers(settings)


async def test_a_delivery_update_posted_to_inbound_is_refused_naming_the_right_endpoint(
    start_ingress: StartIngress,
) -> None:
    private, public = keys()
    ingress = await start_ingress(clock=lambda: NOW * 10**9, ingress={"telnyx": {"public_key": public}})
    event = {**TELNYX, "data": {**TELNYX["data"], "event_type": "message.finalized"}}
    body = json.dumps(event).encode()
    headers = {
        "Content-Type": "application/json",
        "telnyx-timestamp": str(NOW),
        "telnyx-signature-ed25519": base64.b64encode(private.sign(f"{NOW}|".encode() + body)).decode(),
    }
    status, answer, _ = await ingress.post("/inbound/telnyx", data=body, headers=headers)
    assert (status, answer) == (
        400,
        "data.event_type 'message.finalized' is not received on /inbound: "
        "message.finalized events go to /status/telnyx\n",
    )
    assert ingress.events() == []
    status, _, _ = await ingress.post("/status/telnyx", data=body, headers=headers)
    assert status == 200
    [logged] = ingress.events()
    assert (logged.kind, logged.body) == ("status", body)
    assert logged.key == "telnyx:status:7ee4241c-f127-47e5-9c34-3aac291f8058"
