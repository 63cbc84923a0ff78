"""Vonage (Nexmo): JSON, form or GET; batched JSON lists; signed messages; answered 204 once logged.
Recorded requests and what they must give, refusals included, are cases in
tests/fixtures/providers/vonage/ (tests/integration/test_provider_cases.py); here, the rest."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from typing import Any
from urllib.parse import parse_qs

import pytest

from ingress_server import Ingress, StartIngress
from samples import VONAGE as SAMPLE
from smsroute.config import ConfigError, load_settings
from smsroute.providers import build_receivers, normalizers
from smsroute.providers.vonage import signature

PATH = "/inbound/vonage"
SECRET = "vonage-sig-secret-4f1c2a"
KEY = "vonage:447700900123:447700900000"


def sign(params: dict[str, str], secret: str = SECRET, method: str = "sha256") -> str:
    """Vonage's signature, written here independently of the adapter."""
    text = "".join(f"&{k}={v.replace('&', '_').replace('=', '_')}" for k, v in sorted(params.items()))
    if method == "md5hash":
        return hashlib.md5((text + secret).encode()).hexdigest()
    return hmac.new(secret.encode(), text.encode(), getattr(hashlib, method)).hexdigest()


def signed(fields: dict[str, str], method: str = "sha256", **changes: Any) -> dict[str, str]:
    """``fields`` with a current timestamp and ``sig``; ``changes`` are applied before signing."""
    params = {**fields, "timestamp": str(int(time.time())), **changes}
    return {**params, "sig": sign(params, method=method)}


async def signing_ingress(start_ingress: StartIngress, method: str = "sha256") -> Ingress:
    return await start_ingress(ingress={"vonage": {"signature_secret": SECRET, "signature_method": method}})


def form_fields(body: bytes | str) -> dict[str, str]:
    text = body.decode() if isinstance(body, bytes) else body
    return {k: v[0] for k, v in parse_qs(text, keep_blank_values=True).items()}


# --- accepted -------------------------------------------------------------------------------------


async def test_sample_as_json_is_logged_then_answered_204(ingress: Ingress) -> None:
    status, body, _ = await ingress.post(PATH, json=SAMPLE)
    assert (status, body) == (204, "")
    [event] = ingress.events()
    assert (event.ingress, event.provider, event.kind, event.method) == ("vonage", "vonage", "inbound", "POST")
    assert event.content_type == "application/json"
    assert json.loads(event.body) == SAMPLE
    assert event.key == KEY
    assert (event.batch_index, event.batch_size) == (0, 1)


async def test_sample_as_form_is_logged_as_received(ingress: Ingress) -> None:
    status, body, _ = await ingress.post(PATH, data=SAMPLE)
    assert (status, body) == (204, "")
    [event] = ingress.events()
    assert event.content_type == "application/x-www-form-urlencoded"
    assert form_fields(event.body) == SAMPLE
    assert event.key == KEY


async def test_sample_as_get_keeps_the_query(ingress: Ingress) -> None:
    status, body, _ = await ingress.get(PATH, params=SAMPLE)
    assert (status, body) == (204, "")
    [event] = ingress.events()
    assert (event.method, event.body, event.content_type) == ("GET", b"", "")
    assert form_fields(event.query) == SAMPLE
    assert event.key == KEY


async def test_unicode_text_is_kept(ingress: Ingress) -> None:
    text = "Grüße aus München – привет 👍"
    status, _, _ = await ingress.post(PATH, data={**SAMPLE, "type": "unicode", "text": text})
    assert status == 204
    [event] = ingress.events()
    assert form_fields(event.body)["text"] == text
    assert form_fields(event.body)["type"] == "unicode"


async def test_binary_keeps_data_and_udh(ingress: Ingress) -> None:
    message = {key: value for key, value in SAMPLE.items() if key not in ("text", "keyword")}
    message |= {"type": "binary", "data": "48616C6C6F", "udh": "050003CC0201"}
    status, _, _ = await ingress.post(PATH, json=message)
    assert status == 204
    [event] = ingress.events()
    assert json.loads(event.body) == message
    assert event.key == KEY


async def test_unknown_type_is_kept_for_the_processors(ingress: Ingress) -> None:
    status, _, _ = await ingress.post(PATH, json={**SAMPLE, "type": "vcard"})
    assert status == 204
    [event] = ingress.events()
    assert json.loads(event.body)["type"] == "vcard"


async def test_concatenated_parts_share_one_key(ingress: Ingress) -> None:
    for part in ("2", "3", "1"):
        fields = {
            **SAMPLE,
            "messageId": f"0A00000012345{part}",
            "text": f"Teil {part}",
            "concat": "true",
            "concat-ref": "108",
            "concat-total": "3",
            "concat-part": part,
        }
        assert (await ingress.post(PATH, data=fields))[0] == 204
    events = ingress.events()
    assert [form_fields(event.body)["concat-part"] for event in events] == ["2", "3", "1"]
    assert {event.key for event in events} == {KEY}


async def test_concat_as_json_boolean_and_numbers(ingress: Ingress) -> None:
    fields = {**SAMPLE, "concat": True, "concat-ref": 108, "concat-total": 2, "concat-part": 1}
    assert (await ingress.post(PATH, json=fields))[0] == 204
    [event] = ingress.events()
    assert json.loads(event.body) == fields


async def test_batched_json_list_gives_one_event_per_message(ingress: Ingress) -> None:
    second = {**SAMPLE, "msisdn": "447700900456", "messageId": "0A0000001234567C", "text": "Zweite"}
    status, body, _ = await ingress.post(PATH, json=[SAMPLE, second])
    assert (status, body) == (204, "")
    events = ingress.events()
    assert [json.loads(event.body) for event in events] == [SAMPLE, second]
    assert [(event.batch_index, event.batch_size) for event in events] == [(0, 2), (1, 2)]
    assert [event.key for event in events] == [KEY, "vonage:447700900456:447700900000"]
    assert {event.content_type for event in events} == {"application/json"}


# --- refused --------------------------------------------------------------------------------------


async def test_other_methods_get_405(ingress: Ingress) -> None:
    async with ingress.http.put(ingress.url + PATH, json=SAMPLE) as response:
        assert response.status == 405
        assert response.headers["Allow"] == "GET, POST"
    assert ingress.events() == []


# --- signatures -----------------------------------------------------------------------------------


def test_signature_matches_the_vonage_sdk_vector() -> None:
    params = {"a": "1", "b": "2", "timestamp": "1461605396"}
    assert signature(params, "secret", "md5hash") == "6af838ef94998832dbfc29020b564830"
    assert signature({**params, "sig": "ignored"}, "secret", "md5hash") == "6af838ef94998832dbfc29020b564830"


def test_signature_turns_ampersand_and_equals_into_underscore() -> None:
    assert signature({"text": "a&b=c"}, SECRET, "sha1") == signature({"text": "a_b_c"}, SECRET, "sha1")
    assert signature({"text": "a&b=c"}, SECRET, "sha1") == sign({"text": "a&b=c"}, method="sha1")


@pytest.mark.parametrize("method", ["md5hash", "md5", "sha1", "sha256", "sha512"])
async def test_signed_json_is_accepted_with_each_method(start_ingress: StartIngress, method: str) -> None:
    ingress = await signing_ingress(start_ingress, method)
    message = signed(SAMPLE, method)
    status, body, _ = await ingress.post(PATH, json=message)
    assert (status, body) == (204, "")
    [event] = ingress.events()
    assert json.loads(event.body) == message


@pytest.mark.parametrize("method", ["md5hash", "sha512"])
async def test_signature_of_another_method_is_refused(start_ingress: StartIngress, method: str) -> None:
    ingress = await signing_ingress(start_ingress, "sha256")
    status, body, _ = await ingress.post(PATH, json=signed(SAMPLE, method))
    assert (status, body.strip()) == (401, "bad signature")
    assert ingress.events() == []


async def test_signed_form_get_and_uppercase_sig_are_accepted(start_ingress: StartIngress) -> None:
    ingress = await signing_ingress(start_ingress)
    text = {**SAMPLE, "text": "Preis=5€ & mehr"}
    assert (await ingress.post(PATH, data=signed(text)))[0] == 204
    assert (await ingress.get(PATH, params=signed(SAMPLE)))[0] == 204
    upper = signed(SAMPLE)
    assert (await ingress.post(PATH, json={**upper, "sig": upper["sig"].upper()}))[0] == 204
    assert len(ingress.events()) == 3


async def test_json_values_that_are_not_strings_are_signed_as_json_text(start_ingress: StartIngress) -> None:
    ingress = await signing_ingress(start_ingress)
    as_text = signed(SAMPLE, concat="true", **{"concat-ref": "108", "concat-total": "2", "concat-part": "1"})
    typed = {**as_text, "concat": True, "concat-ref": 108, "concat-total": 2, "concat-part": 1}
    assert (await ingress.post(PATH, json=typed))[0] == 204
    assert (await ingress.post(PATH, json={**typed, "concat-part": 2}))[0] == 401


async def test_each_message_of_a_signed_batch_is_checked(start_ingress: StartIngress) -> None:
    ingress = await signing_ingress(start_ingress)
    good = signed(SAMPLE)
    status, body, _ = await ingress.post(PATH, json=[good, {**good, "text": "Geändert"}])
    assert (status, body.strip()) == (401, "bad signature")
    assert ingress.events() == []
    assert (await ingress.post(PATH, json=[good, signed(SAMPLE, text="Zweite")]))[0] == 204
    assert [event.batch_size for event in ingress.events()] == [2, 2]


def _without(fields: dict[str, str], name: str) -> dict[str, str]:
    return {key: value for key, value in fields.items() if key != name}


def _resigned(secret: str = SECRET, **changes: str) -> dict[str, str]:
    """SAMPLE (whose timestamp is fixed) with ``changes``, signed as given."""
    params = {**SAMPLE, **changes}
    return {**params, "sig": sign(params, secret)}


async def test_the_secret_is_never_in_an_answer_or_a_log(
    start_ingress: StartIngress, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    ingress = await signing_ingress(start_ingress)
    requests = [
        {"json": signed(SAMPLE)},
        {"json": {**signed(SAMPLE), "text": "geändert"}},
        {"json": _without(signed(SAMPLE), "sig")},
        {"json": _resigned(timestamp="1")},
        {"json": {}},
        {"data": b"{", "headers": {"Content-Type": "application/json"}},
    ]
    answers = [await ingress.post(PATH, **kwargs) for kwargs in requests]
    assert [status for status, _, _ in answers] == [204, 401, 401, 401, 401, 400]
    for _, body, response in answers:
        assert SECRET not in body
        assert SECRET not in str(response.headers)
    assert caplog.records, "refusals are logged"
    assert all(SECRET not in repr(record.__dict__) for record in caplog.records)
    assert all(SECRET.encode() not in event.body for event in ingress.events())


def test_signature_settings_are_validated() -> None:
    for options, problem in [
        ({"signature_max_age": 0}, "ingress.vonage.signature_max_age"),
        ({"signature_method": "sha3"}, "ingress.vonage.signature_method"),
    ]:
        with pytest.raises(ConfigError, match=problem):
            build_receivers(load_settings(ingress={"vonage": {"signature_secret": SECRET, **options}}))
    [adapter] = build_receivers(load_settings(ingress={"vonage": {"signature_secret": SECRET}})).values()
    assert adapter.signed
    assert SECRET not in repr(adapter.config)
    assert not build_receivers(load_settings(ingress={"vonage": {}}))["vonage"].signed


async def test_a_message_without_message_timestamp_is_a_message(ingress: Ingress) -> None:
    """message-timestamp only feeds provider_time: the Vonage SDKs' own samples go without it."""
    sample = {name: value for name, value in SAMPLE.items() if name != "message-timestamp"}
    assert (await ingress.post(PATH, json=sample))[0] == 204
    [event] = ingress.events()
    part = normalizers()["vonage"].normalize(event, None)
    assert (part.provider_time, part.text) == (None, SAMPLE["text"])
