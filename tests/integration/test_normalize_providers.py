"""Every provider's raw events, posted through a real ingress and normalized as the pipeline
normalizes what the log holds (the shared helpers are tests/unit/test_normalize.py)."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

import pytest

from ingress_server import Ingress
from samples import AGILE, KALEYRA, TWILIO, VONAGE
from samples import GATEWAY24_INCOMING as INCOMING
from samples import GATEWAY24_INCOMING_CHANNEL as INCOMING_CHANNEL
from samples import GATEWAY24_STATUS as STATUS
from smsroute.models.part import Concat, Part
from smsroute.providers import normalizers
from smsroute.providers.kit import Unprocessable

FORM = {"Content-Type": "application/x-www-form-urlencoded"}
NORMALIZERS = normalizers()
TEN_UTC = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)


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
    [part] = await normalized(ingress, "/inbound/kaleyra", data=KALEYRA.encode(), headers=FORM)
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
