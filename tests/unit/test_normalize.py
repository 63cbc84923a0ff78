"""Normalization's shared helpers: numbers, UDH, user data and provider times (every provider's raw
events, posted through a real ingress and normalized from its log, are
tests/integration/test_normalize_providers.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from smsroute.models.part import Concat
from smsroute.providers.kit import Unprocessable, decode_user_data, parse_time, parse_udh, phone

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
