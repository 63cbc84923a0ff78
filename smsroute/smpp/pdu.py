"""SMPP 3.4 PDUs: the few an ESME receiver sends, and reading the deliver_sm / data_sm it receives.

A PDU is a 16-byte header (command_length, command_id, command_status, sequence_number, all
32-bit big-endian) and a body of mandatory fields (C-octet strings ending in NUL, 1-byte
integers, one length-prefixed octet string) followed by TLVs (2-byte tag, 2-byte length, value).

Written here rather than taken from a library (see README, "SMPP"): smpp34's Python codec decodes
deliver_sm but not data_sm and builds none of the session PDUs; smpplib's codec needs a client
object to parse and cannot re-encode what it parsed. What is here is checked against PDUs that
smpp34 encodes (tests/test_smpp_normalize.py).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

CONTENT_TYPE = "application/vnd.smpp.pdu"
"""A raw event whose body is a whole PDU as received, SMPP 3.4 wire format."""
ALPHABET_HEADER = "smpp-default-alphabet"
"""The raw event's header saying what data_coding 0 means at the SMSC that sent it."""

HEADER = struct.Struct(">IIII")
MAX_PDU = 70_000
"""Largest PDU accepted: a message_payload TLV may hold up to 64 KiB."""

GENERIC_NACK = 0x80000000
BIND_RECEIVER = 0x00000001
BIND_TRANSMITTER = 0x00000002
BIND_TRANSCEIVER = 0x00000009
DELIVER_SM = 0x00000005
UNBIND = 0x00000006
ENQUIRE_LINK = 0x00000015
DATA_SM = 0x00000103
RESPONSE = 0x80000000

COMMANDS = {
    GENERIC_NACK: "generic_nack",
    BIND_RECEIVER: "bind_receiver",
    BIND_RECEIVER | RESPONSE: "bind_receiver_resp",
    BIND_TRANSMITTER: "bind_transmitter",
    BIND_TRANSMITTER | RESPONSE: "bind_transmitter_resp",
    BIND_TRANSCEIVER: "bind_transceiver",
    BIND_TRANSCEIVER | RESPONSE: "bind_transceiver_resp",
    0x00000004: "submit_sm",
    0x80000004: "submit_sm_resp",
    DELIVER_SM: "deliver_sm",
    DELIVER_SM | RESPONSE: "deliver_sm_resp",
    UNBIND: "unbind",
    UNBIND | RESPONSE: "unbind_resp",
    ENQUIRE_LINK: "enquire_link",
    ENQUIRE_LINK | RESPONSE: "enquire_link_resp",
    0x00000102: "alert_notification",
    DATA_SM: "data_sm",
    DATA_SM | RESPONSE: "data_sm_resp",
    0x0000000B: "outbind",
}

# command_status values an ESME receiver answers or meets (SMPP 3.4, 5.1.3).
ESME_ROK = 0x00000000
ESME_RINVCMDLEN = 0x00000002
ESME_RINVCMDID = 0x00000003
ESME_RSYSERR = 0x00000008
ESME_RBINDFAIL = 0x0000000D
ESME_RINVPASWD = 0x0000000E
ESME_RINVSYSID = 0x0000000F
ESME_RMSGQFUL = 0x00000014
ESME_RTHROTTLED = 0x00000058
ESME_RX_T_APPN = 0x00000064
ESME_RX_P_APPN = 0x00000065

STATUSES = {
    ESME_ROK: "ESME_ROK",
    0x00000001: "ESME_RINVMSGLEN",
    ESME_RINVCMDLEN: "ESME_RINVCMDLEN",
    ESME_RINVCMDID: "ESME_RINVCMDID",
    0x00000004: "ESME_RINVBNDSTS",
    0x00000005: "ESME_RALYBND",
    ESME_RSYSERR: "ESME_RSYSERR",
    ESME_RBINDFAIL: "ESME_RBINDFAIL",
    ESME_RINVPASWD: "ESME_RINVPASWD",
    ESME_RINVSYSID: "ESME_RINVSYSID",
    ESME_RMSGQFUL: "ESME_RMSGQFUL",
    ESME_RTHROTTLED: "ESME_RTHROTTLED",
    ESME_RX_T_APPN: "ESME_RX_T_APPN",
    ESME_RX_P_APPN: "ESME_RX_P_APPN",
}
TEMPORARY = {"ESME_RX_T_APPN": ESME_RX_T_APPN, "ESME_RMSGQFUL": ESME_RMSGQFUL, "ESME_RTHROTTLED": ESME_RTHROTTLED}
"""Answers that make an SMSC deliver the message again later, by name (the ``busy_status`` setting)."""

# TLV tags (SMPP 3.4, 5.3.2) the normalizer reads.
TLV_USER_MESSAGE_REFERENCE = 0x0204
TLV_SOURCE_PORT = 0x020A
TLV_DESTINATION_PORT = 0x020B
TLV_SAR_MSG_REF_NUM = 0x020C
TLV_SAR_TOTAL_SEGMENTS = 0x020E
TLV_SAR_SEGMENT_SEQNUM = 0x020F
TLV_PAYLOAD_TYPE = 0x0019
TLV_RECEIPTED_MESSAGE_ID = 0x001E
TLV_MESSAGE_PAYLOAD = 0x0424
TLV_MESSAGE_STATE = 0x0427
TLV_NETWORK_ERROR_CODE = 0x0423

ESM_UDHI = 0x40
ESM_TYPE = 0x3C
"""esm_class bits 2-5, the message type: 0 a normal message; 0x04 an SMSC delivery receipt, 0x08 an
SME delivery acknowledgement, 0x10 an SME manual/user acknowledgement, 0x20 an intermediate
delivery notification: all of them reports."""


class PduError(ValueError):
    """Bytes that are not the PDU they claim to be."""


def command_name(command_id: int) -> str:
    return COMMANDS.get(command_id, f"0x{command_id:08x}")


def status_name(status: int) -> str:
    return STATUSES.get(status, f"0x{status:08x}")


def header(pdu: bytes) -> tuple[int, int, int, int]:
    """(command_length, command_id, command_status, sequence_number)."""
    if len(pdu) < 16:
        raise PduError(f"{len(pdu)} bytes is shorter than a PDU header")
    return HEADER.unpack_from(pdu)


def encode(command_id: int, sequence: int, body: bytes = b"", status: int = ESME_ROK) -> bytes:
    return HEADER.pack(16 + len(body), command_id, status, sequence) + body


def cstring(value: str, limit: int) -> bytes:
    data = value.encode("ascii")
    if len(data) >= limit:
        raise ValueError(f"{value!r} is longer than {limit - 1} characters")
    return data + b"\0"


def bind(
    command_id: int,
    sequence: int,
    *,
    system_id: str,
    password: str,
    system_type: str = "",
    addr_ton: int = 0,
    addr_npi: int = 0,
    address_range: str = "",
) -> bytes:
    body = (
        cstring(system_id, 16)
        + cstring(password, 9)
        + cstring(system_type, 13)
        + bytes((0x34, addr_ton, addr_npi))
        + cstring(address_range, 41)
    )
    return encode(command_id, sequence, body)


def response(command_id: int, sequence: int, status: int = ESME_ROK) -> bytes:
    """The response to a request; deliver_sm_resp and data_sm_resp carry an empty message_id."""
    body = b"\0" if command_id in (DELIVER_SM, DATA_SM) else b""
    return encode(command_id | RESPONSE, sequence, body, status)


@dataclass(slots=True)
class ShortMessage:
    """The fields of a deliver_sm or data_sm (data_sm has no short_message: its text is message_payload)."""

    command: str
    sequence: int
    service_type: str
    source_addr_ton: int
    source_addr_npi: int
    source_addr: str
    dest_addr_ton: int
    dest_addr_npi: int
    destination_addr: str
    esm_class: int
    protocol_id: int = 0
    priority_flag: int = 0
    registered_delivery: int = 0
    data_coding: int = 0
    short_message: bytes = b""
    tlvs: dict[int, bytes] = field(default_factory=dict)
    """TLVs by tag; a tag given twice keeps its first value."""

    @property
    def is_report(self) -> bool:
        return bool(self.esm_class & ESM_TYPE)

    @property
    def udhi(self) -> bool:
        return bool(self.esm_class & ESM_UDHI)

    @property
    def payload(self) -> bytes:
        """The user data: message_payload when present (it replaces short_message), else short_message."""
        return self.tlvs.get(TLV_MESSAGE_PAYLOAD, self.short_message)

    def tlv_int(self, tag: int) -> int | None:
        value = self.tlvs.get(tag)
        return int.from_bytes(value, "big") if value else None

    def tlv_text(self, tag: int) -> str | None:
        value = self.tlvs.get(tag)
        return None if value is None else value.split(b"\0", 1)[0].decode("latin-1")


class _Reader:
    def __init__(self, data: bytes, position: int) -> None:
        self.data = data
        self.position = position

    def cstring(self, name: str, limit: int) -> str:
        end = self.data.find(b"\0", self.position, self.position + limit)
        if end < 0:
            raise PduError(f"{name} is not a C-octet string of at most {limit} bytes")
        value = self.data[self.position : end].decode("latin-1")
        self.position = end + 1
        return value

    def byte(self, name: str) -> int:
        if self.position >= len(self.data):
            raise PduError(f"PDU ends before {name}")
        self.position += 1
        return self.data[self.position - 1]

    def octets(self, name: str, length: int) -> bytes:
        if self.position + length > len(self.data):
            raise PduError(f"{name} runs past the end of the PDU")
        self.position += length
        return self.data[self.position - length : self.position]


def parse(pdu: bytes) -> ShortMessage:
    """A deliver_sm or data_sm, field by field; :class:`PduError` when it is neither or malformed."""
    length, command_id, _, sequence = header(pdu)
    if length != len(pdu):
        raise PduError(f"command_length {length} but {len(pdu)} bytes")
    if command_id not in (DELIVER_SM, DATA_SM):
        raise PduError(f"{command_name(command_id)} is not a deliver_sm or data_sm")
    read = _Reader(pdu, 16)
    message = ShortMessage(
        command=command_name(command_id),
        sequence=sequence,
        service_type=read.cstring("service_type", 6),
        source_addr_ton=read.byte("source_addr_ton"),
        source_addr_npi=read.byte("source_addr_npi"),
        source_addr=read.cstring("source_addr", 65),  # 21 in the spec for deliver_sm; SMSCs send longer
        dest_addr_ton=read.byte("dest_addr_ton"),
        dest_addr_npi=read.byte("dest_addr_npi"),
        destination_addr=read.cstring("destination_addr", 65),
        esm_class=read.byte("esm_class"),
    )
    if command_id == DELIVER_SM:
        message.protocol_id = read.byte("protocol_id")
        message.priority_flag = read.byte("priority_flag")
        read.cstring("schedule_delivery_time", 17)
        read.cstring("validity_period", 17)
        message.registered_delivery = read.byte("registered_delivery")
        read.byte("replace_if_present_flag")
        message.data_coding = read.byte("data_coding")
        read.byte("sm_default_msg_id")
        message.short_message = read.octets("short_message", read.byte("sm_length"))
    else:
        message.registered_delivery = read.byte("registered_delivery")
        message.data_coding = read.byte("data_coding")
    while read.position < len(pdu):
        tag, size = struct.unpack(">HH", read.octets("TLV header", 4))
        value = read.octets(f"TLV 0x{tag:04x}", size)
        message.tlvs.setdefault(tag, value)
    return message


def addresses(pdu: bytes) -> tuple[str, str, int]:
    """(source_addr, destination_addr, esm_class) of a deliver_sm or data_sm, read without the rest."""
    read = _Reader(pdu, 16)
    read.cstring("service_type", 6)
    read.octets("source_addr_ton/npi", 2)
    source = read.cstring("source_addr", 65)
    read.octets("dest_addr_ton/npi", 2)
    destination = read.cstring("destination_addr", 65)
    return source, destination, read.byte("esm_class")
