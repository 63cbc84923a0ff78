"""HTTP Basic auth of the providers that log in with it (Bandwidth, Infobip, Sinch): recorded
requests are cases in tests/fixtures/providers/; here, the challenge and the settings."""

from __future__ import annotations

import base64

import pytest

from ingress_server import StartIngress
from samples import BANDWIDTH, INFOBIP, SINCH
from smsroute.config import ConfigError, load_settings
from smsroute.providers import build_receivers

BODIES = {"bandwidth": BANDWIDTH, "infobip": INFOBIP, "sinch": SINCH}


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize("provider", list(BODIES))
def test_a_user_without_a_password_is_a_configuration_error(provider: str) -> None:
    settings = load_settings(ingress={provider: {"username": "u"}})
    with pytest.raises(ConfigError, match=rf"ingress\.{provider}: .*username and password go together"):
        build_receivers(settings)


@pytest.mark.parametrize("provider", list(BODIES))
async def test_a_refusal_carries_a_basic_challenge_and_utf8_credentials_log_in(
    start_ingress: StartIngress, provider: str
) -> None:
    ingress = await start_ingress(ingress={provider: {"username": "ünïcode", "password": "pässwörd"}})
    for header in (None, "Basic !!!", basic("ünïcode", "wrong")):
        headers = {} if header is None else {"Authorization": header}
        status, _, response = await ingress.post(f"/inbound/{provider}", json=BODIES[provider], headers=headers)
        assert status == 401
        assert response.headers["WWW-Authenticate"] == 'Basic realm="smsroute", charset="UTF-8"'
    status, _, _ = await ingress.post(
        f"/inbound/{provider}", json=BODIES[provider], headers={"Authorization": basic("ünïcode", "pässwörd")}
    )
    assert status == 200
    assert len(ingress.events()) == 1


async def test_sinch_with_basic_and_bearer_configured_takes_either(start_ingress: StartIngress) -> None:
    settings = {"username": "u", "password": "p", "bearer_token": "t0ken"}
    ingress = await start_ingress(ingress={"sinch": settings})
    for header, expected in ((basic("u", "p"), 200), ("Bearer t0ken", 200), ("Bearer other", 401), (None, 401)):
        headers = {} if header is None else {"Authorization": header}
        status, _, _ = await ingress.post("/inbound/sinch", json=SINCH, headers=headers)
        assert status == expected, header
