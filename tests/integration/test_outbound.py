"""The outbound SMS providers against real HTTP servers playing them: every parameter and the
``verify`` hash checked by the server, every answer code handled as the document says."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from fake_providers import (
    GATEWAY24_DEVICE,
    GATEWAY24_TOKEN,
    ID_CALL_GR,
    OPENVOIP_PARAMETERS,
    OPENVOIP_SECRET,
    OPENVOIP_SENDER,
    FakeGateway24,
    FakeOpenVoip,
    openvoip_verify,
)
from smsroute.config import ConfigError, load_settings
from smsroute.sinks.outbound import Reply, available, build_provider, provider_settings
from smsroute.sinks.outbound.openvoip import OpenVoipConfig, verify

TEXT = "Grazie! Ti richiamiamo entro 1 giorno: 50% & più ~ info+"


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def provider(http: aiohttp.ClientSession, name: str, **settings: Any) -> Any:
    config = load_settings(sms_reply={"provider": name, name: settings}).sms_reply
    built = build_provider(config, http)
    assert built is not None
    return built


def test_each_module_is_a_provider() -> None:
    assert set(available()) == {"openvoip", "smsgateway24"}
    assert build_provider(load_settings().sms_reply, None) is None  # type: ignore[arg-type]


async def test_openvoip_request_carries_every_parameter_and_the_verify_hash(
    http: aiohttp.ClientSession,
    openvoip: FakeOpenVoip,
) -> None:
    result = await provider(http, "openvoip", **openvoip.settings()).send(Reply("d1", "+393331234567", TEXT))
    assert (result.status, result.code, result.provider_message_id) == ("sent", "000", None)
    [request] = openvoip.requests
    assert request["names"] == OPENVOIP_PARAMETERS  # the document's order, nothing else
    assert request["params"] == {
        "archivia": "0",
        "verify": openvoip_verify(OPENVOIP_SENDER, TEXT, "+393331234567", OPENVOIP_SECRET, ID_CALL_GR),
        "id_call_gr": ID_CALL_GR,
        "sms_text": TEXT,
        "sms_destination": "+393331234567",
        "sms_sender": OPENVOIP_SENDER,
    }
    # PHP urlencode, exactly once: the + of the number is %2B (not the sample's double-encoded %252B)
    assert "&sms_destination=%2B393331234567&" in request["raw"]
    assert "sms_text=Grazie%21+Ti+richiamiamo+entro+1+giorno%3A+50%25+%26+pi%C3%B9+%7E+info%2B&" in request["raw"]
    assert OPENVOIP_SECRET not in request["raw"]


async def test_openvoip_archive_setting_and_national_spelling_of_the_destination(
    http: aiohttp.ClientSession,
    openvoip: FakeOpenVoip,
) -> None:
    sender = provider(http, "openvoip", **openvoip.settings(archive=True))
    assert (await sender.send(Reply("d1", "+39 333 123 4567", "ok"))).status == "sent"
    params = openvoip.requests[0]["params"]
    assert (params["archivia"], params["sms_destination"]) == ("1", "+393331234567")


@pytest.mark.parametrize(
    ("answer", "status", "code"),
    [
        ("020", "failed", "020"),  # bad destination: final
        ("099", "retry", "099"),  # generic error: try again
        ("042", "retry", "042"),  # a code the document does not list: retried, within the schedule
        ((503, "maintenance"), "retry", "http_503"),
        ((200, "<html>oops</html>"), "retry", "not_json"),
        ((200, '{"esito": "ok"}'), "retry", "bad_answer"),
    ],
)
async def test_openvoip_answers_are_handled_as_documented(
    http: aiohttp.ClientSession,
    openvoip: FakeOpenVoip,
    answer: Any,
    status: str,
    code: str,
) -> None:
    openvoip.answers.append(answer)
    result = await provider(http, "openvoip", **openvoip.settings()).send(Reply("d1", "+393331234567", "hi"))
    assert (result.status, result.code) == (status, code)
    assert len(openvoip.requests) == 1
    if answer == "020":
        assert result.reason == "openvoip 020: Errore nel numero di destinazione (bad destination +393331234567)"


async def test_openvoip_security_error_is_retried_for_fixed_settings_and_the_secret_is_never_sent(
    http: aiohttp.ClientSession,
    openvoip: FakeOpenVoip,
) -> None:
    wrong = provider(http, "openvoip", **openvoip.settings(secret="not-the-secret"))
    result = await wrong.send(Reply("d1", "+393331234567", "hi"))
    assert (result.status, result.code) == ("retry", "-1")
    assert "Security error" in result.reason and "not-the-secret" not in result.reason
    assert "not-the-secret" not in openvoip.requests[0]["raw"]


@pytest.mark.parametrize("destination", ["+447700900123", "+3933", "ACME", "", "+39 06 abc"])
async def test_openvoip_refuses_non_italian_destinations_without_a_request(
    http: aiohttp.ClientSession,
    openvoip: FakeOpenVoip,
    destination: str,
) -> None:
    result = await provider(http, "openvoip", **openvoip.settings()).send(Reply("d1", destination, "hi"))
    assert (result.status, result.code) == ("failed", "not_italian")
    assert openvoip.requests == []


async def test_openvoip_timeout_and_unreachable_server_are_retried(
    http: aiohttp.ClientSession,
    openvoip: FakeOpenVoip,
) -> None:
    openvoip.delay = 1.5  # the server still answers, long after the client gave up
    slow = await provider(http, "openvoip", **openvoip.settings(timeout=0.2)).send(Reply("d1", "+393331234567", "hi"))
    assert (slow.status, slow.code) == ("retry", "timeout")
    dead = provider(http, "openvoip", **openvoip.settings(url="http://127.0.0.1:9/sms_send_soa.php"))
    assert (await dead.send(Reply("d1", "+393331234567", "hi"))).status == "retry"


def test_openvoip_verify_matches_the_documented_recipe() -> None:
    assert verify("mittente", "testodiprova", "+39393123456", "x", "9999") == openvoip_verify(
        "mittente", "testodiprova", "+39393123456", "x", "9999"
    )


async def test_smsgateway24_queues_the_reply_and_returns_its_sms_id(
    http: aiohttp.ClientSession,
    gateway24: FakeGateway24,
) -> None:
    sender = provider(http, "smsgateway24", **gateway24.settings(sim=1))
    result = await sender.send(Reply("d1", "+4915752982212", TEXT))
    assert (result.status, result.provider_message_id) == ("sent", "22074938")
    [request] = gateway24.requests
    assert request["content_type"] == "application/x-www-form-urlencoded"
    assert request["form"] == {
        "token": GATEWAY24_TOKEN,
        "sendto": "+4915752982212",
        "body": TEXT,
        "device_id": GATEWAY24_DEVICE,
        "sim": "1",
    }
    assert request["query"] == ""  # the token never in a URL


async def test_smsgateway24_refusal_is_retried_for_fixed_settings(
    http: aiohttp.ClientSession,
    gateway24: FakeGateway24,
) -> None:
    gateway24.refusals.append("Device not found")
    result = await provider(http, "smsgateway24", **gateway24.settings()).send(Reply("d1", "+4915752982212", "hi"))
    assert (result.status, result.code, result.reason) == (
        "retry",
        "error_1",
        "smsgateway24 refused the SMS: Device not found",
    )
    wrong = provider(http, "smsgateway24", **gateway24.settings(token="wrong"))
    assert (
        await wrong.send(Reply("d2", "+4915752982212", "hi"))
    ).reason == "smsgateway24 refused the SMS: Token incorrect"


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (
            {"provider": "openvoip"},
            "sms_reply: provider is 'openvoip' but its settings [sms_reply.openvoip] are missing",
        ),
        (
            {"openvoip": {"id_call_gr": "9999", "sender": "ACME"}},
            "configuration: sms_reply.openvoip.secret: Field required",
        ),
        (
            {"openvoip": {"id_call_gr": "9999", "sender": "ACME", "secret": "hunter2", "url": "ftp://x/y"}},
            "configuration: sms_reply.openvoip.url: URL scheme should be 'http' or 'https'",
        ),
        (
            {"never_reply_to": ["+39 800", "our office"]},
            "configuration: sms_reply.never_reply_to: Value error, 'our office' is not a phone number or prefix",
        ),
        ({"provider": "twilio"}, "sms_reply.provider: unknown provider 'twilio' (built in: openvoip, smsgateway24)"),
        (
            {"openvoip": {"secret": "hunter2"}, "open_voip": {}},
            "configuration: sms_reply.openvoip.id_call_gr: Field required",
        ),
        ({"open_voip": {}}, "sms_reply.open_voip: no outbound provider 'open_voip' (built in: openvoip, smsgateway24)"),
        ({"rate_limit": 0}, "configuration: sms_reply.rate_limit: Input should be greater than or equal to 1"),
    ],
)
def test_bad_reply_settings_are_refused_at_start_up_by_name(reply: dict[str, Any], expected: str) -> None:
    """As the engines check them at start-up: the settings, then each provider's own table."""
    with pytest.raises(ConfigError) as error:
        provider_settings(load_settings(sms_reply=reply).sms_reply)
    assert str(error.value).startswith(expected)
    assert "hunter2" not in str(error.value)


def test_reply_secret_from_the_environment_joins_the_file_and_stays_hidden(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "smsroute.toml"
    config.write_text(
        '[sms_reply]\nprovider = "openvoip"\n[sms_reply.openvoip]\nid_call_gr = "9999"\nsender = "ACME"\n'
    )
    monkeypatch.setenv("SMSROUTE_SMS_REPLY__OPENVOIP__SECRET", "hunter2")
    settings = provider_settings(load_settings(config).sms_reply)
    assert isinstance(settings, OpenVoipConfig) and settings.secret.get_secret_value() == "hunter2"
    assert "hunter2" not in repr(settings)
