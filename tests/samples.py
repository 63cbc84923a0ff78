"""Provider samples shared by the tests: what each provider posts (as its documents show it), one
sample per provider with the canonical message it becomes, and events an older version logged that
cannot be processed."""

from __future__ import annotations

import json
import time
from typing import Any

from smsroute.models.raw import RawEvent

AGILE = {"originator": "+393331234567", "destination": "+393201234567", "date_time": "2026-11-21 10:00:00"}
"""An Agile Telecom form without its ``text``."""

# The provider document's sample post, verbatim: note the ß inside the phone number.
KALEYRA = (
    "device_address=1447ß7665544&inbound_address=26161&router=cingular&carrier=cingular&channel=sms"
    "&message_orig=Hello+from+SMPPSim&message=Hello+from+SMPPSim&message_id=148929155953&message_subid=0"
    "&status=Processing&status_code=10&a2w_mo_ref_id=148929155953&country_code=1"
)

# The fields of the seed's "Anatomie einer eingehenden Nachricht", type text.
VONAGE = {
    "type": "text",
    "to": "447700900000",
    "msisdn": "447700900123",
    "messageId": "0A0000001234567B",
    "message-timestamp": "2026-11-21 10:00:00",
    "timestamp": "1795255200",
    "nonce": "aaaaaaaa-bbbb-cccc-dddd-0123456789ab",
    "text": "Hallo, ich hätte gern mehr Informationen",
    "keyword": "HALLO",
}


def vonage_part(part: int, text: str) -> dict[str, Any]:
    """Part ``part`` of a Vonage message in three parts (reference 42)."""
    return {
        "type": "text",
        "to": "447700900000",
        "msisdn": "447700900123",
        "messageId": f"0A00000{part}",
        "message-timestamp": "2026-11-21 10:00:00",
        "text": text,
        "concat": "true",
        "concat-ref": "42",
        "concat-total": "3",
        "concat-part": str(part),
    }


# The SMSGateway24 incoming-SMS webhook as documented: address typed int, a SIM slot number.
GATEWAY24_INCOMING = {
    "address": 393331234567,
    "date": "2026-11-21 10:00:00",
    "date_sent": "2026-11-21 09:59:58",
    "body": "Ciao, vorrei informazioni",
    "internal_id": 1187,
    "sim": 0,
    "sms_id": 987654,
    "device_id": 4242,
    "device_name": "Pixel 6",
}
# The newer shape: channel_id instead of sim, plus type; here every value a string, as phones send.
GATEWAY24_INCOMING_CHANNEL = {
    "address": "+393331234567",
    "date": "2026-11-21 10:00:00",
    "date_sent": "2026-11-21 09:59:58",
    "body": "INFO",
    "internal_id": "1188",
    "channel_id": "1",
    "type": "sms",
    "sms_id": "987655",
    "device_id": "4242",
    "device_name": "Pixel 6",
}
GATEWAY24_STATUS = {
    "sms_id": 555001,
    "status_id": 7,
    "status_message": "SMS delivered",
    "sendto": "+393331234567",
    "senttime": "2026-11-21 10:00:05",
    "sim": 1,
    "device_id": 4242,
}

# What Twilio posts for an inbound SMS to a Messaging Service number (SIDs made up, shapes real).
TWILIO = {
    "ToCountry": "US",
    "ToState": "CA",
    "SmsMessageSid": "SM5f3c2e9a1b7d4c8e9f0a1b2c3d4e5f60",
    "NumMedia": "0",
    "ToCity": "SAN FRANCISCO",
    "FromZip": "94105",
    "SmsSid": "SM5f3c2e9a1b7d4c8e9f0a1b2c3d4e5f60",
    "FromState": "CA",
    "SmsStatus": "received",
    "FromCity": "SAN FRANCISCO",
    "Body": "STOP",
    "FromCountry": "US",
    "To": "+14155550100",
    "MessagingServiceSid": "MG0a1b2c3d4e5f60718293a4b5c6d7e8f9",
    "ToZip": "94105",
    "NumSegments": "1",
    "ReferralNumMedia": "0",
    "MessageSid": "SM5f3c2e9a1b7d4c8e9f0a1b2c3d4e5f60",
    "AccountSid": "AC00112233445566778899aabbccddeeff",
    "From": "+14155550123",
    "ApiVersion": "2010-04-01",
}

# What Plivo posts for an inbound SMS (the documented attributes; values made up).
PLIVO = {
    "From": "14155550123",
    "To": "14155550100",
    "Type": "sms",
    "Text": "INFO please",
    "MessageUUID": "2a1d5a8e-1c2b-11ef-9f6e-0242ac110003",
    "Units": "1",
    "TotalRate": "0.00000",
    "TotalAmount": "0.00000",
    "MessageIntent": "",
    "PowerpackUUID": "",
}

# A Telnyx message.received event, shaped as the API reference's example (ids made up).
TELNYX = {
    "data": {
        "record_type": "event",
        "id": "bf6307bd-884d-4c1f-b6ea-c62b8c495d3c",
        "event_type": "message.received",
        "occurred_at": "2026-11-21T10:00:00.000Z",
        "payload": {
            "record_type": "message",
            "direction": "inbound",
            "id": "7ee4241c-f127-47e5-9c34-3aac291f8058",
            "type": "SMS",
            "from": {"phone_number": "+18665550001", "carrier": "T-MOBILE USA, INC.", "line_type": "Wireless"},
            "to": [{"phone_number": "+18445550001", "status": "webhook_delivered"}],
            "text": "Hello, World!",
            "media": [],
            "encoding": "GSM-7",
            "parts": 1,
            "received_at": "2026-11-21T10:00:00.000Z",
        },
    },
    "meta": {"attempt": 1},
}

# A Bandwidth message-received callback: always a JSON array (values from Bandwidth's SDK model test).
BANDWIDTH = [
    {
        "type": "message-received",
        "time": "2026-11-21T10:00:00.000Z",
        "description": "Incoming message received",
        "to": "+15552223333",
        "message": {
            "id": "1661365814859loidf7mcwd4qacn7",
            "owner": "+15552223333",
            "applicationId": "93de2206-9669-4e07-948d-329f4b722ee2",
            "time": "2026-11-21T10:00:00.000Z",
            "segmentCount": 1,
            "direction": "in",
            "to": ["+15552223333"],
            "from": "+15553332222",
            "text": "Hello world",
        },
    }
]
# An Infobip MO_JSON_2 request of one result (the documented fields; values made up).
INFOBIP = {
    "results": [
        {
            "messageId": "817790313235066447",
            "from": "385916242493",
            "to": "385921004026",
            "text": "STOP all messages",
            "cleanText": "all messages",
            "keyword": "STOP",
            "receivedAt": "2026-11-21T10:00:00.000+0000",
            "smsCount": 1,
            "price": {"pricePerMessage": 0, "currency": "EUR"},
        }
    ],
    "messageCount": 1,
    "pendingMessageCount": 0,
}
# A Sinch mo_text callback, as the SDKs' mock server sends it.
SINCH = {
    "id": "01W4FFL35P4NC4K35SMSBATCH8",
    "from": "12015555555",
    "to": "12017777777",
    "body": "Hello John!",
    "type": "mo_text",
    "operator_id": "311071",
    "received_at": "2026-11-21T10:00:00.000Z",
}

# Bird's documented sms.inbound (Channels API), in its documented envelope.
BIRD = {
    "service": "channels",
    "event": "sms.inbound",
    "payload": {
        "id": "96a0b5fa-a986-453d-be5c-3117f989f025",
        "channelId": "614208aa-b153-4d5d-9989-2fddfc0ce4c3",
        "sender": {"contact": {"identifierKey": "phonenumber", "identifierValue": "+31612345678"}},
        "receiver": {"connector": {"id": "86cc4dc0-3dc0-41b7-ac43-8ec829ead56f"}},
        "body": {"type": "text", "text": {"text": "Sample incoming text message"}},
        "parts": [{"platformReference": "e8077d803532c0b5937c639b60216938"}],
        "status": "delivered",
        "direction": "incoming",
        "createdAt": "2026-11-21T10:00:00.000Z",
    },
}

# An SNS Notification carrying AWS End User Messaging's documented two-way SMS (unsigned: no topic_arns).
AWS_SMS = {
    "originationNumber": "+14255550182",
    "destinationNumber": "+12125550101",
    "messageKeyword": "JOIN",
    "messageBody": "JOIN the club",
    "inboundMessageId": "cae173d2-66b9-564c-8309-21f858e9fb84",
    "previousPublishedMessageId": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
}
AWS = {
    "Type": "Notification",
    "MessageId": "165545c9-2a5c-472c-8df2-7ff2be2b3b1b",
    "TopicArn": "arn:aws:sns:us-east-1:123456789012:inbound-sms",
    "Message": json.dumps(AWS_SMS),
    "Timestamp": "2026-11-21T10:00:00.000Z",
    "SignatureVersion": "1",
    "Signature": "",
    "SigningCertURL": "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-0000.pem",
}

SEEDS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "aws": (
        {"data": json.dumps(AWS), "headers": {"Content-Type": "text/plain; charset=UTF-8"}},
        {
            "from": "+14255550182",
            "to": "+12125550101",
            "text": "JOIN the club",
            "keyword": "JOIN",
            "flags": [],
            "provider_message_ids": ["cae173d2-66b9-564c-8309-21f858e9fb84"],
            "provider_time": "2026-11-21T10:00:00.000Z",
            "route": "inbox",
            "extra": {
                "previousPublishedMessageId": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                "keyword": "JOIN",
                "sns_message_id": "165545c9-2a5c-472c-8df2-7ff2be2b3b1b",
            },
        },
    ),
    "bird": (
        {"json": BIRD},
        {
            "from": "+31612345678",
            "to": "614208aa-b153-4d5d-9989-2fddfc0ce4c3",  # no channel_numbers configured: the channel, flagged
            "text": "Sample incoming text message",
            "keyword": "SAMPLE",
            "flags": ["to_not_e164"],
            "provider_message_ids": ["96a0b5fa-a986-453d-be5c-3117f989f025"],
            "provider_time": "2026-11-21T10:00:00.000Z",
            "route": "inbox",
            "extra": {"channelId": "614208aa-b153-4d5d-9989-2fddfc0ce4c3"},
        },
    ),
    "bandwidth": (
        {"json": BANDWIDTH},
        {
            "from": "+15553332222",
            "to": "+15552223333",
            "text": "Hello world",
            "keyword": "HELLO",
            "flags": [],
            "provider_message_ids": ["1661365814859loidf7mcwd4qacn7"],
            "provider_time": "2026-11-21T10:00:00.000Z",
            "route": "inbox",
            "extra": {"applicationId": "93de2206-9669-4e07-948d-329f4b722ee2"},
        },
    ),
    "infobip": (
        {"json": INFOBIP},
        {
            "from": "+385916242493",
            "to": "+385921004026",
            "text": "STOP all messages",
            "keyword": "STOP",
            "flags": [],
            "provider_message_ids": ["817790313235066447"],
            "provider_time": "2026-11-21T10:00:00.000Z",
            "route": "opt-out",
            "extra": {"keyword": "STOP", "cleanText": "all messages"},
        },
    ),
    "sinch": (
        {"json": SINCH},
        {
            "from": "+12015555555",
            "to": "+12017777777",
            "text": "Hello John!",
            "keyword": "HELLO",
            "flags": [],
            "provider_message_ids": ["01W4FFL35P4NC4K35SMSBATCH8"],
            "provider_time": "2026-11-21T10:00:00.000Z",
            "route": "inbox",
            "extra": {"type": "mo_text", "operator_id": "311071"},
        },
    ),
    "telnyx": (
        {"json": TELNYX},
        {
            "from": "+18665550001",
            "to": "+18445550001",
            "text": "Hello, World!",
            "keyword": "HELLO",
            "flags": [],
            "provider_message_ids": ["7ee4241c-f127-47e5-9c34-3aac291f8058"],
            "provider_time": "2026-11-21T10:00:00.000Z",
            "route": "inbox",
            "extra": {"type": "SMS"},
        },
    ),
    "plivo": (
        {"data": PLIVO},
        {
            "from": "+14155550123",
            "to": "+14155550100",
            "text": "INFO please",
            "keyword": "INFO",
            "flags": [],
            "provider_message_ids": [PLIVO["MessageUUID"]],
            "provider_time": None,
            "route": "inbox",
            "extra": {"Type": "sms", "TotalRate": "0.00000", "TotalAmount": "0.00000"},
        },
    ),
    "kaleyra": (
        {"data": KALEYRA.encode(), "headers": {"Content-Type": "application/x-www-form-urlencoded"}},
        {
            "from": "1447ß7665544",
            "to": "26161",
            "text": "Hello from SMPPSim",
            "keyword": "HELLO",
            "flags": ["from_not_e164", "to_not_e164"],
            "provider_message_ids": ["148929155953"],
            "provider_time": None,
            "route": "inbox",
            "extra": {
                "carrier": "cingular",
                "router": "cingular",
                "channel": "sms",
                "country_code": "1",
                "a2w_mo_ref_id": "148929155953",
            },
        },
    ),
    "vonage": (
        {"json": VONAGE},
        {
            "from": "+447700900123",
            "to": "+447700900000",
            "text": VONAGE["text"],
            "keyword": "HALLO",
            "flags": [],
            "provider_message_ids": ["0A0000001234567B"],
            "provider_time": "2026-11-21T10:00:00.000Z",
            "route": "inbox",
            "extra": {},
        },
    ),
    "smsgateway24": (
        {"json": GATEWAY24_INCOMING},
        {
            "from": "+393331234567",
            "to": "4242",
            "text": "Ciao, vorrei informazioni",
            "keyword": "CIAO",
            "flags": ["to_not_e164"],
            "provider_message_ids": ["987654"],
            "provider_time": "2026-11-21T09:59:58.000Z",
            "route": "inbox",
            "extra": {"device_id": 4242, "device_name": "Pixel 6", "sim": 0, "internal_id": 1187},
        },
    ),
    "twilio": (
        {"data": TWILIO},
        {
            "from": "+14155550123",
            "to": "+14155550100",
            "text": "STOP",
            "keyword": "STOP",
            "flags": [],
            "provider_message_ids": [TWILIO["MessageSid"]],
            "provider_time": None,
            "route": "opt-out",
            "extra": {
                "AccountSid": TWILIO["AccountSid"],
                "MessagingServiceSid": TWILIO["MessagingServiceSid"],
                "NumMedia": "0",
                "NumSegments": "1",
                "FromCountry": "US",
                "ToCountry": "US",
            },
        },
    ),
    "agiletelecom": (
        {"data": {**AGILE, "text": "Buongiorno, è aperto?"}},
        {
            "from": "+393331234567",
            "to": "+393201234567",
            "text": "Buongiorno, è aperto?",
            "keyword": "BUONGIORNO",
            "flags": [],
            "provider_message_ids": [],
            "provider_time": "2026-11-21T10:00:00.000Z",
            "route": "inbox",
            "extra": {},
        },
    ),
}
"""Provider -> (one sample request as ``aiohttp`` keyword arguments to ``/inbound/<provider>``, the
canonical message it becomes under the default rules of tests/engines.py): every provider's
end-to-end case on both engines."""


FORM = "application/x-www-form-urlencoded"


def logged(provider: str, body: bytes, key: str, content_type: str = FORM, received: int | None = None) -> RawEvent:
    """A POST to ``/inbound/<provider>`` as the ingress logs it, received now (µs) unless ``received``."""
    at = int(time.time() * 1e6) if received is None else received
    return RawEvent(
        provider, provider, "inbound", at, "127.0.0.1", "POST", f"/inbound/{provider}", "", content_type, {}, body, key
    )


def poison_events() -> list[RawEvent]:
    """Events an older version logged: each used to stop the processing process at every start."""

    def event(provider: str, content_type: str, body: bytes) -> RawEvent:
        return logged(provider, body, f"{provider}:poison", content_type)

    return [
        event("smsgateway24", "application/json", b'{"address": "+393331234567", "body": "\\ud800", "sms_id": "p1"}'),
        event(
            "vonage",
            "application/json",
            b'{"type": "text", "to": "447700900000", "msisdn": "447700900001", "messageId": "\\udfff", "text": "hi"}',
        ),
        event(
            "kaleyra",
            "application/x-www-form-urlencoded; charset=utf-7",
            b"device_address=%2B393331234567&inbound_address=12345&message=%2B2AA-",
        ),
        event("smsgateway24", "application/json", b'{"address": "+393331234567", "body": "\\udbff", "sms_id": 7}'),
    ]
