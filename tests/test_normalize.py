"""Normalization: the shared helpers (numbers, UDH, text, time), then every provider's raw events,
posted through a real ingress and normalized as the pipeline normalizes what the log holds."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

import pytest

from conftest import Ingress
from smsroute.models.part import Concat, Part
from smsroute.providers import normalizers
from smsroute.providers.kit import Unprocessable, decode_user_data, parse_time, parse_udh, phone
from test_kaleyra import SEED_SAMPLE
from test_pipeline import AGILE
from test_smsgateway24 import INCOMING, INCOMING_CHANNEL, STATUS
from test_twilio import SAMPLE as TWILIO
from test_vonage import SAMPLE as VONAGE

FORM = {"Content-Type": "application/x-www-form-urlencoded"}
NORMALIZERS = normalizers()
TEN_UTC = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)


# --- phone numbers -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("number", "region", "expected"),
    [
        ("+393331234567", None, "+393331234567"),
        ("+39 333 123 4567", "GB", "+393331234567"),  # an explicit + wins over the region
        ("393331234567", "IT", "+393331234567"),  # the + dropped, as providers do
        ("447700900123", "IT", "+447700900123"),  # international without +, not a national IT number
        ("3331234567", "IT", "+393331234567"),  # national, default region
        ("07400123456", "GB", "+447400123456"),
    ],
)
def test_parseable_numbers_become_e164_unflagged(number: str, region: str | None, expected: str) -> None:
    assert phone(number, region, "from") == (expected, ())


@pytest.mark.parametrize(
    ("number", "region"),
    [
        ("1447ß7665544", "US"),  # Kaleyra's own sample: junk kept as given
        ("26161", "US"),  # a short code
        ("4242", "IT"),  # an SMSGateway24 device id
        ("Vonage", None),  # an alphanumeric sender
        ("", "IT"),
        ("07400123456", "IT"),  # national elsewhere: nothing to guess from
    ],
)
def test_unparseable_numbers_are_kept_as_given_and_flagged(number: str, region: str | None) -> None:
    assert phone(number, region, "to") == (number, ("to_not_e164",))


# --- user data headers and payloads -------------------------------------------------------------


@pytest.mark.parametrize(
    ("udh", "concat", "length"),
    [
        ("050003a10201", Concat("a1", 2, 1), 6),  # IEI 00: 8-bit reference
        ("0608041234 0302", Concat("1234", 3, 2), 7),  # IEI 08: 16-bit reference
        ("0b0504 0b8423f0 0003 ff 0303", Concat("ff", 3, 3), 12),  # a port IE before it is skipped
        ("0605040b8423f0", None, 7),  # only other IEs: not concatenated
        ("", None, 0),
    ],
)
def test_udh_concat_references(udh: str, concat: Concat | None, length: int) -> None:
    assert parse_udh(bytes.fromhex(udh.replace(" ", ""))) == (concat, length)


@pytest.mark.parametrize(
    ("udh", "reason"),
    [
        ("050003a102", "user data header declares 5 bytes but has 4"),
        ("0500", "user data header declares 5 bytes but has 1"),
        ("030003a10201", "truncated information element in user data header"),  # IE runs past the header
        ("0600030a020108", "truncated information element in user data header"),  # an IEI with no length
        ("050003a10203", "user data header part 3 of 2 is out of range"),
        ("050003a10200", "user data header part 0 of 2 is out of range"),
        ("06080412340000", "user data header part 0 of 0 is out of range"),
    ],
)
def test_bad_udh_is_unprocessable(udh: str, reason: str) -> None:
    with pytest.raises(Unprocessable) as caught:
        parse_udh(bytes.fromhex(udh))
    assert str(caught.value) == reason


@pytest.mark.parametrize(
    ("data", "encoding", "text"),
    [
        (b"\x00 Roma", "text", "@ Roma"),  # '@' is 0x00 in GSM 03.38
        (b"5\x1b\x65 \x1b\x28x\x1b\x29", "text", "5€ {x}"),  # extension table behind the escape 0x1B
        (b"\x7b\x7e\x5d\x04", "text", "äüÑè"),
        ("Ciao 😀 ß".encode("utf-16-be"), "unicode", "Ciao 😀 ß"),  # a surrogate pair
        (bytes.fromhex("d83dde00"), "unicode", "😀"),
        (b"\x00\x01\xfe\xff", "binary", "0001feff"),
    ],
)
def test_user_data_decoding(data: bytes, encoding: Any, text: str) -> None:
    assert decode_user_data(data, encoding) == text


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-11-21 10:00:00", TEN_UTC),
        (1795255200, TEN_UTC),
        ("1795255200000", TEN_UTC),  # milliseconds
        ("2026-11-21T11:00:00+01:00", TEN_UTC),
        ("2026-11-21T10:00:00", TEN_UTC),  # no zone: UTC
        ("", None),
        (None, None),
        ("yesterday", None),
        ("99999999999999999999", None),  # past year 9999: no time rather than a crashed stream
        (float("nan"), None),
        ("²", None),  # a digit to str.isdigit, not to float
    ],
)
def test_provider_times(value: Any, expected: datetime | None) -> None:
    assert parse_time(value, "%Y-%m-%d %H:%M:%S") == expected


# --- providers: posted through the ingress, normalized from the log ------------------------------


async def normalized(ingress: Ingress, path: str, region: str | None = "IT", **request: Any) -> list[Part]:
    """Post one request and normalize every event it logged, as the pipeline does."""
    method = request.pop("method", "post")
    status, body, _ = await getattr(ingress, method)(path, **request)
    assert status in (200, 204), body
    return [NORMALIZERS[event.provider].normalize(event, region) for event in ingress.events()]


async def unprocessable(ingress: Ingress, path: str, **request: Any) -> str:
    """Post one request the door accepts and return why its event can never be a message."""
    status, body, _ = await ingress.post(path, **request)
    assert status in (200, 204), body
    [event] = ingress.events()
    with pytest.raises(Unprocessable) as caught:
        NORMALIZERS[event.provider].normalize(event, "IT")
    return str(caught.value)


def received(part: Part) -> None:
    """The receive time is the ingress's, as UTC, a moment ago."""
    assert part.received_at.tzinfo == UTC
    assert abs((datetime.now(UTC) - part.received_at).total_seconds()) < 30


async def test_agile_telecom_with_the_sha256_dedupe_key_of_its_recipe(ingress: Ingress) -> None:
    sent = {**AGILE, "originator": "393331234567", "text": "Caffè a 2€?"}
    [part] = await normalized(ingress, "/inbound/agiletelecom", data=sent)
    recipe = hashlib.sha256(f"{sent['originator']}{sent['destination']}{sent['date_time']}{sent['text']}".encode())
    assert part.dedupe_key == f"agiletelecom:{recipe.hexdigest()}"
    assert (part.provider, part.source, part.sender, part.recipient) == (
        "agiletelecom",
        "agiletelecom",
        "+393331234567",
        "+393201234567",
    )
    assert (part.text, part.encoding, part.flags, part.concat) == ("Caffè a 2€?", "text", (), None)
    assert (part.provider_time, part.provider_message_id) == (TEN_UTC, "")
    received(part)


async def test_agile_telecom_national_numbers_take_the_default_region(ingress: Ingress) -> None:
    sent = {**AGILE, "originator": "3331234567", "destination": "3201234567", "text": "x"}
    [part] = await normalized(ingress, "/inbound/agiletelecom", region="IT", data=sent)
    assert (part.sender, part.recipient, part.flags) == ("+393331234567", "+393201234567", ())


async def test_kaleyra_seed_sample_keeps_the_junk_sender_and_flags_it(ingress: Ingress) -> None:
    [part] = await normalized(ingress, "/inbound/kaleyra", data=SEED_SAMPLE.encode(), headers=FORM)
    assert (part.sender, part.recipient) == ("1447ß7665544", "26161")
    assert part.flags == ("from_not_e164", "to_not_e164")  # the junk, and the short code
    assert (part.text, part.provider_message_id, part.dedupe_key) == (
        "Hello from SMPPSim",
        "148929155953",
        "kaleyra:148929155953",
    )
    assert part.extra == {
        "carrier": "cingular",
        "router": "cingular",
        "channel": "sms",
        "country_code": "1",
        "a2w_mo_ref_id": "148929155953",
    }
    received(part)


@pytest.mark.parametrize(
    ("country_code", "sender", "flags"),
    [
        ("44", "+447400123456", ()),  # the sender's country, not the default region IT
        ("", "07400123456", ("from_not_e164",)),  # IT: not a number there
        ("999", "07400123456", ("from_not_e164",)),  # an unknown code falls back to IT
    ],
)
async def test_kaleyra_country_code_picks_the_region(
    ingress: Ingress, country_code: str, sender: str, flags: tuple[str, ...]
) -> None:
    sent = {"device_address": "07400123456", "inbound_address": "26161", "message": "hi", "country_code": country_code}
    [part] = await normalized(ingress, "/inbound/kaleyra", region="IT", data=sent)
    assert (part.sender, part.flags) == (sender, (*flags, "to_not_e164"))


async def test_kaleyra_unknown_country_code_still_reads_national_numbers_of_the_default_region(
    ingress: Ingress,
) -> None:
    sent = {"device_address": "3331234567", "inbound_address": "26161", "message": "hi", "country_code": "999"}
    [part] = await normalized(ingress, "/inbound/kaleyra", region="IT", data=sent)
    assert part.sender == "+393331234567"


async def test_kaleyra_prefers_the_original_text_and_hashes_when_there_is_no_id(ingress: Ingress) -> None:
    sent = {"device_address": "14155550123", "inbound_address": "26161", "message": "hi", "message_orig": "Hi!!"}
    [part] = await normalized(ingress, "/inbound/kaleyra", data=sent)
    recipe = hashlib.sha256(b"1415555012326161Hi!!").hexdigest()
    assert (part.text, part.provider_message_id, part.dedupe_key) == ("Hi!!", "", f"kaleyra:{recipe}")


@pytest.mark.parametrize("how", [{"json": VONAGE}, {"data": VONAGE}, {"method": "get", "params": VONAGE}])
async def test_vonage_text_in_every_shape_it_is_sent(ingress: Ingress, how: dict[str, Any]) -> None:
    [part] = await normalized(ingress, "/inbound/vonage", **how)
    assert (part.sender, part.recipient, part.flags) == ("+447700900123", "+447700900000", ())
    assert (part.text, part.encoding, part.concat) == (VONAGE["text"], "text", None)
    assert (part.provider_message_id, part.dedupe_key) == ("0A0000001234567B", "vonage:0A0000001234567B")
    assert part.provider_time == TEN_UTC
    received(part)


async def test_vonage_unicode(ingress: Ingress) -> None:
    sent = {**VONAGE, "type": "unicode", "text": "Привет 😀"}
    [part] = await normalized(ingress, "/inbound/vonage", json=sent)
    assert (part.text, part.encoding) == ("Привет 😀", "unicode")


@pytest.mark.parametrize(
    ("udh", "concat"), [("050003a10201", Concat("a1", 2, 1)), ("060804beef0201", Concat("beef", 2, 1))]
)
async def test_vonage_binary_takes_its_concatenation_from_the_udh(ingress: Ingress, udh: str, concat: Concat) -> None:
    sent = {key: value for key, value in VONAGE.items() if key not in ("text", "keyword")}
    [part] = await normalized(ingress, "/inbound/vonage", json={**sent, "type": "binary", "data": "00ff10", "udh": udh})
    assert (part.text, part.encoding, part.concat) == ("00ff10", "binary", concat)
    assert part.extra == {"udh": udh}


@pytest.mark.parametrize(
    "concat",
    [
        {"concat": "true", "concat-ref": "108", "concat-total": "2", "concat-part": "2"},
        {"concat": True, "concat-ref": 108, "concat-total": 2, "concat-part": 2},  # typed JSON values
    ],
)
async def test_vonage_concat_fields(ingress: Ingress, concat: dict[str, Any]) -> None:
    [part] = await normalized(ingress, "/inbound/vonage", json={**VONAGE, **concat})
    assert part.concat == Concat("108", 2, 2)


async def test_vonage_batch_is_one_part_per_message(ingress: Ingress) -> None:
    second = {**VONAGE, "msisdn": "447700900456", "messageId": "0A0000001234567C", "text": "Zweite"}
    parts = await normalized(ingress, "/inbound/vonage", json=[VONAGE, second])
    assert [(p.sender, p.text, p.dedupe_key) for p in parts] == [
        ("+447700900123", VONAGE["text"], "vonage:0A0000001234567B"),
        ("+447700900456", "Zweite", "vonage:0A0000001234567C"),
    ]


BINARY = {key: value for key, value in VONAGE.items() if key not in ("text", "keyword")} | {"type": "binary"}


@pytest.mark.parametrize(
    ("sent", "reason"),
    [
        ({**VONAGE, "type": "vcard"}, "unknown vonage message type 'vcard'"),
        ({**BINARY, "data": "zz"}, "data is not hexadecimal: 'zz'"),
        ({**BINARY, "data": "00", "udh": "05000"}, "udh is not hexadecimal: '05000'"),
        ({**BINARY, "data": "00", "udh": "050003a102"}, "user data header declares 5 bytes but has 4"),
        (
            {**VONAGE, "concat": "true", "concat-ref": "1", "concat-total": "2", "concat-part": "3"},
            "concat-part 3 is outside 1..2",
        ),
        (
            {**VONAGE, "concat": "true", "concat-ref": "1", "concat-total": "two", "concat-part": "1"},
            "bad concatenation fields: invalid literal for int() with base 10: 'two'",
        ),
    ],
)
async def test_vonage_events_that_can_never_be_messages(ingress: Ingress, sent: dict[str, Any], reason: str) -> None:
    assert await unprocessable(ingress, "/inbound/vonage", json=sent) == reason


async def test_smsgateway24_documented_shape(ingress: Ingress) -> None:
    [part] = await normalized(ingress, "/inbound/smsgateway24", json=INCOMING)
    assert (part.sender, part.recipient) == ("+393331234567", "4242")
    assert part.flags == ("to_not_e164",)  # the phone posts no number of its own
    assert (part.text, part.provider_message_id, part.dedupe_key) == (
        "Ciao, vorrei informazioni",
        "987654",
        "smsgateway24:4242:987654",
    )
    assert part.provider_time == datetime(2026, 11, 21, 9, 59, 58, tzinfo=UTC)
    assert part.extra == {"device_id": 4242, "device_name": "Pixel 6", "sim": 0, "internal_id": 1187}
    received(part)


async def test_smsgateway24_newer_shape(ingress: Ingress) -> None:
    [part] = await normalized(ingress, "/inbound/smsgateway24", json=INCOMING_CHANNEL)
    assert (part.sender, part.recipient, part.text) == ("+393331234567", "4242", "INFO")
    assert part.dedupe_key == "smsgateway24:4242:987655"
    assert part.extra == {
        "device_id": "4242",
        "device_name": "Pixel 6",
        "channel_id": "1",
        "type": "sms",
        "internal_id": "1188",
    }


async def test_smsgateway24_int_and_string_ids_give_one_dedupe_key(ingress: Ingress) -> None:
    parts = await normalized(
        ingress, "/inbound/smsgateway24", json=[INCOMING, {**INCOMING, "sms_id": "987654", "device_id": "4242"}]
    )
    assert parts[0].dedupe_key == parts[1].dedupe_key


async def test_smsgateway24_absurd_date_gives_no_provider_time(ingress: Ingress) -> None:
    [part] = await normalized(ingress, "/inbound/smsgateway24", json={**INCOMING, "date_sent": 10**20, "date": None})
    assert part.provider_time is None


async def test_smsgateway24_status_events_are_not_normalized(ingress: Ingress) -> None:
    reason = await unprocessable(ingress, "/status/smsgateway24", json=STATUS)
    assert reason == "smsgateway24 events of kind status are not processed"


async def test_twilio(ingress: Ingress) -> None:
    [part] = await normalized(ingress, "/inbound/twilio", data=TWILIO)
    assert (part.sender, part.recipient, part.flags) == ("+14155550123", "+14155550100", ())
    assert (part.text, part.encoding) == ("STOP", "text")
    assert (part.provider_message_id, part.dedupe_key) == (TWILIO["MessageSid"], f"twilio:{TWILIO['MessageSid']}")
    assert part.extra == {
        "AccountSid": TWILIO["AccountSid"],
        "MessagingServiceSid": TWILIO["MessagingServiceSid"],
        "NumMedia": "0",
        "NumSegments": "1",
        "FromCountry": "US",
        "ToCountry": "US",
    }
    received(part)
