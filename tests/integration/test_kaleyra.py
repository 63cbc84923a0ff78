"""Kaleyra (mGage): form POST logged byte-for-byte, junk and all, answered ``OK``; IP allow-list.
Recorded requests and what they must give, refusals included, are cases in
tests/fixtures/providers/kaleyra/ (tests/integration/test_provider_cases.py); here, the rest."""

from __future__ import annotations

from urllib.parse import parse_qs

import pytest

from ingress_server import Ingress, StartIngress
from samples import KALEYRA

FORM = {"Content-Type": "application/x-www-form-urlencoded"}
KALEYRA_NETWORK = "208.71.240.0/21"

ALL_FIELDS = {
    "device_address": "14477665544",
    "inbound_address": "26161",
    "router": "cingular",
    "carrier": "cingular",
    "channel": "mms",
    "message": "Photo attached",
    "message_orig": "Photo attached!!",
    "message_id": "148929155953",
    "message_subid": "0",
    "status": "",
    "status_code": "",
    "a2w_mo_ref_id": "148929155953",
    "country_code": "1",
    "attachment": "ATT-99812",
    "mmsID": "MMS-148929155954",
}


def fields(body: bytes) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(body.decode(), keep_blank_values=True).items()}


async def test_seed_sample_is_logged_as_given_and_answered_ok(ingress: Ingress) -> None:
    sent = KALEYRA.encode()
    status, body, response = await ingress.post("/inbound/kaleyra", data=sent, headers=FORM)
    assert (status, body) == (200, "OK")
    [event] = ingress.events()
    assert (event.ingress, event.provider, event.kind, event.method) == ("kaleyra", "kaleyra", "inbound", "POST")
    assert event.content_type == "application/x-www-form-urlencoded"
    assert event.body == sent
    assert event.key == "kaleyra:1447ß7665544:26161"
    assert event.remote_addr == "127.0.0.1"


@pytest.mark.parametrize(
    ("device_address", "key_part"),
    [
        (b"1447%C3%9F7665544", "1447ß7665544"),  # percent-encoded UTF-8
        (b"1447\xdf7665544", "1447\ufffd7665544"),  # a bare Latin-1 byte: not UTF-8 at all
    ],
)
async def test_junk_in_the_sender_is_kept_not_refused(ingress: Ingress, device_address: bytes, key_part: str) -> None:
    sent = b"device_address=" + device_address + b"&inbound_address=26161&message=Hi"
    status, body, _ = await ingress.post("/inbound/kaleyra", data=sent, headers=FORM)
    assert (status, body) == (200, "OK")
    [event] = ingress.events()
    assert event.body == sent
    assert event.key == f"kaleyra:{key_part}:26161"


async def test_all_fifteen_fields_round_trip(ingress: Ingress) -> None:
    status, body, _ = await ingress.post("/inbound/kaleyra", data=ALL_FIELDS)
    assert (status, body) == (200, "OK")
    [event] = ingress.events()
    assert fields(event.body) == ALL_FIELDS
    assert len(fields(event.body)) == 15


@pytest.mark.parametrize("content", ["message", "message_orig", "attachment", "mmsID"])
async def test_any_one_content_field_is_enough(ingress: Ingress, content: str) -> None:
    data = {"device_address": "14477665544", "inbound_address": "26161", content: ALL_FIELDS[content]}
    status, body, _ = await ingress.post("/inbound/kaleyra", data=data)
    assert (status, body) == (200, "OK")
    assert len(ingress.events()) == 1


async def test_kaleyra_address_forwarded_by_trusted_proxy_is_allowed(start_ingress: StartIngress) -> None:
    ingress = await start_ingress(
        ingress={"kaleyra": {"allow_ips": [KALEYRA_NETWORK], "trusted_proxies": ["127.0.0.1/32"]}}
    )
    headers = {"X-Forwarded-For": "208.71.241.7"}
    status, body, _ = await ingress.post("/inbound/kaleyra", data=ALL_FIELDS, headers=headers)
    assert (status, body) == (200, "OK")
    [event] = ingress.events()
    assert event.remote_addr == "208.71.241.7"


async def test_forwarded_for_from_untrusted_peer_is_ignored(start_ingress: StartIngress) -> None:
    ingress = await start_ingress(ingress={"kaleyra": {"allow_ips": ["127.0.0.0/8", KALEYRA_NETWORK]}})
    headers = {"X-Forwarded-For": "208.71.241.7"}
    status, body, _ = await ingress.post("/inbound/kaleyra", data=ALL_FIELDS, headers=headers)
    assert (status, body) == (200, "OK")
    [event] = ingress.events()
    assert event.remote_addr == "127.0.0.1"


async def test_multi_hop_forwarded_for_resolves_to_nearest_untrusted_hop(start_ingress: StartIngress) -> None:
    ingress = await start_ingress(
        ingress={"kaleyra": {"allow_ips": [KALEYRA_NETWORK], "trusted_proxies": ["127.0.0.1/32"]}}
    )
    headers = {"X-Forwarded-For": "208.71.241.7, 127.0.0.1"}
    status, body, _ = await ingress.post("/inbound/kaleyra", data=ALL_FIELDS, headers=headers)
    assert (status, body) == (200, "OK")
    [event] = ingress.events()
    assert event.remote_addr == "208.71.241.7"
