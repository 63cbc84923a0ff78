"""The Kafka engine's records survive the trip through their Avro encoding."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from importlib import resources

import fastavro
import pytest

from smsroute.models.attempt import AttemptRecord
from smsroute.models.avro import DecodeError, codec
from smsroute.models.dead_letter import DeadLetter, DeadLetterRecord
from smsroute.models.delivery import Delivery, body_of
from smsroute.models.message import InboundMessage, Media, decode_message, encode_message
from smsroute.models.report import DeliveryReport

MESSAGE = InboundMessage(
    id="0123456789abcdef0123456789abcdef",
    provider="smsgateway24",
    source="sms-it",
    sender="+393331234567",
    recipient="4242",
    text="Ciao è già",
    received_at=datetime(2026, 11, 21, 10, 0, 0, 123000, UTC),
    keyword="CIAO",
    provider_message_ids=("987654",),
    flags=("to_not_e164",),
    media=(Media("https://media.example.com/1.jpg", "image/jpeg"),),
    extra={"device_id": 4242, "device_name": "Pixel 6", "parts_received": [1, 3], "sim": None},
).routed("inbox", "v1abc")
DELIVERY = Delivery.of(
    MESSAGE,
    "inbox",
    0,
    "webhook",
    {
        "url": "https://crm.example.com:8443/sms",
        "secret": "whsec_x",
        "headers": {"X-Tenant": "acme"},
        "timeout": 5.0,
        "retry": {"delays": [1.0, 2.5]},
    },
    body_of(MESSAGE.to_json()),
)


def test_message_json_comes_back_identical_in_the_same_order() -> None:
    original = MESSAGE.to_json()
    decoded = decode_message(encode_message(original))
    assert decoded == original and list(decoded) == list(original)


def test_a_message_written_with_revision_1_reads_with_no_media() -> None:
    """Revision 2 added ``media``: a record from a worker still on revision 1 reads with none."""
    v1 = fastavro.parse_schema(json.loads(resources.files("smsroute.schemas").joinpath("message.v1.avsc").read_text()))
    out = io.BytesIO()
    out.write(b"\x01")
    original = MESSAGE.to_json()
    fastavro.schemaless_writer(out, v1, {**original, "extra": json.dumps(original["extra"])})
    decoded = decode_message(out.getvalue())
    assert decoded["media"] == [] and {**decoded, "media": original["media"]} == original


def test_delivery_round_trips() -> None:
    data = DELIVERY.encode()
    assert data[0] == codec("delivery").version  # the schema revision byte
    decoded = Delivery.decode(data)
    assert decoded == DELIVERY
    assert decoded.body == DELIVERY.body  # what the receiver gets and the signature covers
    assert decoded.destination == "https://crm.example.com:8443"


def test_attempt_and_dead_letter_round_trip() -> None:
    attempt = AttemptRecord(
        DELIVERY.id,
        MESSAGE.id,
        "inbox",
        "webhook",
        0,
        2,
        1.5e9,
        "failed",
        503,
        "HTTP 503: later",
        0.25,
        "retry",
        1.5e9 + 10,
    )
    assert AttemptRecord.decode(attempt.encode()) == attempt
    letter = DeadLetterRecord.of(
        DeadLetter("deliver", "HTTP 503", DELIVERY.body.encode(), DELIVERY.id), f"{DELIVERY.id}:0", 1.5e9
    )
    letter = DeadLetterRecord(
        **{**{name: getattr(letter, name) for name in letter.__slots__}, "attempts": (attempt.encode(),)}
    )
    decoded = DeadLetterRecord.decode(letter.encode())
    assert decoded == letter
    assert AttemptRecord.decode(decoded.attempts[0]) == attempt


def test_a_damaged_record_is_refused_not_misread() -> None:
    data = DELIVERY.encode()
    with pytest.raises(DecodeError):
        Delivery.decode(data[:-3])
    with pytest.raises(DecodeError):
        Delivery.decode(b"\x09" + data[1:])


def test_a_delivery_written_with_revision_1_reads_with_the_current_revision() -> None:
    """Revision 2 added ``round``: a record from a worker still on revision 1 reads as round 0."""
    assert codec("delivery").version >= 2
    v1 = fastavro.parse_schema(json.loads(resources.files("smsroute.schemas").joinpath("delivery.v1.avsc").read_text()))
    out = io.BytesIO()
    out.write(b"\x01")
    fastavro.schemaless_writer(
        out,
        v1,
        {
            "id": DELIVERY.id,
            "message_id": DELIVERY.message_id,
            "route": "inbox",
            "sink": "webhook",
            "destination": DELIVERY.destination,
            "action": json.dumps(DELIVERY.action),
            "message": encode_message(DELIVERY.message),
            "received_at": DELIVERY.received_at,
        },
    )
    decoded = Delivery.decode(out.getvalue())
    assert decoded == DELIVERY and decoded.round == 0
    replayed = Delivery.decode(
        (DELIVERY.__class__(**{**{name: getattr(DELIVERY, name) for name in DELIVERY.__slots__}, "round": 2})).encode()
    )
    assert replayed.round == 2


def test_delivery_report_round_trips_with_its_times() -> None:
    report = DeliveryReport(
        "smsgateway24",
        "555001",
        "delivered",
        "7",
        "Delivered",
        "+393331234567",
        datetime(2026, 11, 21, 10, 0, 1, 250000, UTC),
        datetime(2026, 11, 21, 10, 0, 0, tzinfo=UTC),
    )
    data = report.encode()
    assert data[0] == codec("delivery_report").version
    assert DeliveryReport.decode(data) == report
    no_time = DeliveryReport("smsgateway24", "555002", "unknown", "99", "?", "", report.received_at)
    assert DeliveryReport.decode(no_time.encode()) == no_time
