"""Twilio: form POST, X-Twilio-Signature checked when an auth token is set, answered with empty TwiML.
Recorded requests and what they must give, refusals included, are cases in
tests/fixtures/providers/twilio/ (tests/integration/test_provider_cases.py); here, the rest."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from ingress_server import Ingress, StartIngress
from samples import TWILIO as SAMPLE
from smsroute.config import ConfigError, load_settings
from smsroute.providers import build_receivers, normalizers
from smsroute.providers.twilio import signature

AUTH_TOKEN = "0123456789abcdef0123456789abcdef"
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'


def signed(url: str, data: dict[str, str], token: str = AUTH_TOKEN) -> dict[str, str]:
    return {"X-Twilio-Signature": signature(token, url, data.items())}


def test_signature_matches_twilios_published_vector() -> None:
    params = {
        "CallSid": "CA1234567890ABCDE",
        "Caller": "+12349013030",
        "Digits": "1234",
        "From": "+12349013030",
        "To": "+18005551212",
    }
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    assert signature("12345", url, params.items()) == "0/KCTR6DLpKmkAf8muzZqo1nDgQ="


def test_repeated_parameter_signs_its_distinct_values_sorted_like_twilios_validators() -> None:
    digest = hmac.new(b"t", b"https://example.com/smsA1A2Bx", hashlib.sha1).digest()
    params = [("B", "x"), ("A", "2"), ("A", "1"), ("A", "2")]
    assert signature("t", "https://example.com/sms", params) == base64.b64encode(digest).decode()


async def test_sample_is_logged_then_answered_with_empty_twiml(ingress: Ingress) -> None:
    status, body, response = await ingress.post("/inbound/twilio", data=SAMPLE)
    assert (status, body) == (200, EMPTY_TWIML)
    assert response.content_type == "text/xml"
    [event] = ingress.events()
    assert (event.ingress, event.provider, event.kind, event.method) == ("twilio", "twilio", "inbound", "POST")
    assert event.content_type == "application/x-www-form-urlencoded"
    assert {k: v[0] for k, v in parse_qs(event.body.decode()).items()} == SAMPLE
    assert event.key == "twilio:+14155550123:+14155550100"
    assert event.headers == {}


async def test_unicode_body_is_kept_byte_for_byte(ingress: Ingress) -> None:
    data = {**SAMPLE, "Body": "Caffè ☕ – привет 👍"}
    status, body, _ = await ingress.post("/inbound/twilio", data=data)
    assert (status, body) == (200, EMPTY_TWIML)
    [event] = ingress.events()
    assert parse_qs(event.body.decode())["Body"] == ["Caffè ☕ – привет 👍"]


@pytest.fixture
async def secured(start_ingress: StartIngress) -> Ingress:
    return await start_ingress(ingress={"twilio": {"auth_token": AUTH_TOKEN}})


async def test_request_signed_over_the_server_url_is_accepted(secured: Ingress) -> None:
    headers = signed(f"{secured.url}/inbound/twilio", SAMPLE)
    status, body, _ = await secured.post("/inbound/twilio", data=SAMPLE, headers=headers)
    assert (status, body) == (200, EMPTY_TWIML)
    [event] = secured.events()
    assert event.headers == headers


async def test_signature_covers_the_query_string(secured: Ingress) -> None:
    path = "/inbound/twilio?campaign=spring&lang=it"
    status, body, _ = await secured.post(path, data=SAMPLE, headers=signed(secured.url + path, SAMPLE))
    assert (status, body) == (200, EMPTY_TWIML)
    without_query = signed(f"{secured.url}/inbound/twilio", SAMPLE)
    status, body, _ = await secured.post(path, data=SAMPLE, headers=without_query)
    assert (status, body.strip()) == (401, "bad signature")
    assert len(secured.events()) == 1


async def test_unicode_body_signature_is_accepted(secured: Ingress) -> None:
    data = {**SAMPLE, "Body": "Caffè ☕ – привет 👍"}
    headers = signed(f"{secured.url}/inbound/twilio", data)
    status, body, _ = await secured.post("/inbound/twilio", data=data, headers=headers)
    assert (status, body) == (200, EMPTY_TWIML)
    assert len(secured.events()) == 1


async def test_tampered_parameter_is_refused(secured: Ingress) -> None:
    headers = signed(f"{secured.url}/inbound/twilio", SAMPLE)
    status, body, _ = await secured.post("/inbound/twilio", data={**SAMPLE, "Body": "START"}, headers=headers)
    assert status == 401
    assert body.strip() == "bad signature"
    assert secured.events() == []


async def test_wrong_auth_token_is_refused(secured: Ingress) -> None:
    headers = signed(f"{secured.url}/inbound/twilio", SAMPLE, token="another-account-token")
    status, body, _ = await secured.post("/inbound/twilio", data=SAMPLE, headers=headers)
    assert (status, body.strip()) == (401, "bad signature")
    assert secured.events() == []


async def test_junk_bytes_in_signature_header_are_a_mismatch_not_an_error(secured: Ingress) -> None:
    # Raw socket: an HTTP client library will not send bytes that are not UTF-8 in a header.
    body = urlencode(SAMPLE).encode()
    url = urlsplit(secured.url)
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    writer.write(
        b"POST /inbound/twilio HTTP/1.1\r\nHost: %b\r\nConnection: close\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: %d\r\n"
        b"X-Twilio-Signature: \xff\xfe=\r\n\r\n%b" % (url.netloc.encode(), len(body), body)
    )
    response = await reader.read()
    writer.close()
    assert response.startswith(b"HTTP/1.1 401 ")
    assert response.endswith(b"\r\n\r\nbad signature\n")
    assert secured.events() == []


async def test_public_url_is_what_is_signed_behind_a_proxy(start_ingress: StartIngress) -> None:
    public = "https://sms.example.com/hooks/twilio"
    ingress = await start_ingress(ingress={"twilio": {"auth_token": AUTH_TOKEN, "public_url": public}})
    status, body, _ = await ingress.post("/inbound/twilio", data=SAMPLE, headers=signed(public, SAMPLE))
    assert (status, body) == (200, EMPTY_TWIML)
    status, body, _ = await ingress.post("/inbound/twilio?a=1", data=SAMPLE, headers=signed(public + "?a=1", SAMPLE))
    assert (status, body) == (200, EMPTY_TWIML)
    local = signed(f"{ingress.url}/inbound/twilio", SAMPLE)
    status, body, _ = await ingress.post("/inbound/twilio", data=SAMPLE, headers=local)
    assert (status, body.strip()) == (401, "bad signature")
    assert len(ingress.events()) == 2


def test_public_url_with_a_query_is_a_configuration_error() -> None:
    settings = load_settings(ingress={"twilio": {"public_url": "https://sms.example.com/hooks/twilio?x=1"}})
    with pytest.raises(ConfigError, match=r"ingress\.twilio\.public_url: .*no query string"):
        build_receivers(settings)


async def test_mms_media_become_the_messages_media(ingress: Ingress) -> None:
    media = [
        ("https://api.twilio.com/2010-04-01/Accounts/AC001/Messages/MM001/Media/ME001", "image/jpeg"),
        ("https://api.twilio.com/2010-04-01/Accounts/AC001/Messages/MM001/Media/ME002", "video/mp4"),
    ]
    data = (
        SAMPLE
        | {"NumMedia": "2", "Body": "look"}
        | {
            f"Media{kind}{index}": value
            for index, item in enumerate(media)
            for kind, value in zip(("Url", "ContentType"), item, strict=True)
        }
    )
    assert (await ingress.post("/inbound/twilio", data=data))[0] == 200
    [event] = ingress.events()
    part = normalizers()["twilio"].normalize(event, None)
    assert [(item.url, item.content_type) for item in part.media] == media
    assert part.text == "look"


@pytest.mark.parametrize(
    ("signed_url", "public_url"),
    [
        ("https://sms.example.com:443/twilio", "https://sms.example.com/twilio"),
        ("https://sms.example.com/twilio", "https://sms.example.com:443/twilio"),
        ("http://sms.example.com:80/twilio", "http://sms.example.com/twilio"),
    ],
)
async def test_signatures_are_accepted_with_and_without_the_default_port(
    start_ingress: StartIngress, signed_url: str, public_url: str
) -> None:
    """Twilio signs the URL as it was configured; its own validators accept it with or without the port."""
    ingress = await start_ingress(ingress={"twilio": {"auth_token": AUTH_TOKEN, "public_url": public_url}})
    status, _, _ = await ingress.post("/inbound/twilio", data=SAMPLE, headers=signed(signed_url, SAMPLE))
    assert status == 200
    other_port = signed_url.replace(":443", "").replace(":80", "").replace(".com/", ".com:8443/")
    status, _, _ = await ingress.post("/inbound/twilio", data=SAMPLE, headers=signed(other_port, SAMPLE))
    assert status == 401
