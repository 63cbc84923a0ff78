"""SMPP: mobile-originated messages and delivery receipts an SMSC delivers over an ESME bind.

Nothing comes over HTTP: :mod:`smsroute.ingress.smpp` logs each deliver_sm / data_sm as a raw
event whose body is the whole PDU (SMPP 3.4 wire format, ``application/vnd.smpp.pdu``), and this
adapter reads it back, needing nothing but the event.

Text by data_coding: 0 the SMSC default alphabet (``smpp-default-alphabet`` header: GSM 03.38
unpacked, one septet per byte, by default; Latin-1 or ASCII where the SMSC says so), 1 IA5/ASCII,
3 Latin-1, 6 Cyrillic (ISO 8859-5), 7 Hebrew (ISO 8859-8), 8 UCS-2 (UTF-16 BE), 2 and 4 binary
(hex), the other SMPP codings below 0x10 (JIS, pictograms, music codes, extended kanji, KS C 5601)
kept as hex too (encoding binary: nothing guessed, nothing lost); from 0x10 the GSM 03.38 coding
groups (GSM 7-bit, 8-bit data, UCS-2). GSM 7-bit text uses
the national language locking and single shift tables (3GPP TS 23.038, all 13 languages) that
the user data header names (information elements 0x25 and 0x24).

Concatenation: from the UDH (esm_class UDHI; 8-bit reference IEI 0x00 and 16-bit IEI 0x08), or
from the SAR TLVs (sar_msg_ref_num, sar_total_segments, sar_segment_seqnum); parts go through the
same stitcher as every provider's.

Dedupe: SMPP gives an MO message no id, so the key is a SHA-256 of what identifies it: addresses
with TON/NPI, esm_class, data_coding, the user data bytes (UDH included), the SAR TLVs, the
user_message_reference (the phone's TP-MR, when the SMSC passes it) and ports. An SMSC that
delivers a deliver_sm again because our answer was lost sends the same fields: it is dropped. The
same text sent twice by one phone to one number within ``dedupe_window`` is dropped as well,
unless the SMSC passes the TP-MR, which differs: the price of having no id.

Delivery receipts (esm_class message type 0x04 and the other report types) become delivery reports:
the message id from the receipted_message_id TLV, else the ``id:`` of the receipt text; the state
from the message_state TLV, else ``stat:`` (DELIVRD delivered; ACCEPTD, ENROUTE pending; EXPIRED,
DELETED, UNDELIV, REJECTD failed; UNKNOWN unknown).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

import gsmcodecs  # noqa: F401  (registers the gsm23.038-L-S codecs)

from ..models.message import Encoding
from ..models.part import Concat, Part
from ..models.raw import RawEvent
from ..models.report import DeliveryReport, ReportStatus
from ..smpp import pdu as P
from ..smpp.pdu import ALPHABET_HEADER
from .base import Normalizer, Receiver
from .kit import Unprocessable, parse_udh, sha256_key

STATES: dict[str, ReportStatus] = {
    "DELIVRD": "delivered",
    "ACCEPTD": "pending",
    "ENROUTE": "pending",
    "EXPIRED": "failed",
    "DELETED": "failed",
    "UNDELIV": "failed",
    "REJECTD": "failed",
    "UNKNOWN": "unknown",
}
MESSAGE_STATES = {
    1: "ENROUTE",
    2: "DELIVRD",
    3: "EXPIRED",
    4: "DELETED",
    5: "UNDELIV",
    6: "ACCEPTD",
    7: "UNKNOWN",
    8: "REJECTD",
}
"""The message_state TLV's values, by their receipt-text names."""

_RECEIPT_FIELD = re.compile(r"(id|sub|dlvrd|submit date|done date|stat|err|text):\s*", re.IGNORECASE)


class Receiving(Receiver):
    """No HTTP endpoint: SMPP binds are configured under ``[smpp.NAME]`` (:mod:`smsroute.ingress.smpp`)."""

    provider = "smpp"
    kinds = frozenset()
    methods = frozenset()


class Normalizing(Normalizer):
    provider = "smpp"

    def normalize(self, event: RawEvent, region: str | None) -> Part:
        if event.kind != "inbound":
            return super().normalize(event, region)
        sm = _parse(event)
        data = sm.payload
        concat, udh_length, locking, single = None, 0, 0, 0
        if sm.udhi:
            concat, udh_length = parse_udh(data)
            locking, single = _language_tables(data[:udh_length])
        ref, total, index = (
            sm.tlv_int(tag) for tag in (P.TLV_SAR_MSG_REF_NUM, P.TLV_SAR_TOTAL_SEGMENTS, P.TLV_SAR_SEGMENT_SEQNUM)
        )
        if concat is None and ref is not None and total and index:
            if not 1 <= index <= total:
                raise Unprocessable(f"sar_segment_seqnum {index} is outside 1..{total}")
            concat = Concat(ref=f"{ref:04x}", total=total, index=index)
        encoding, text = decode_text(
            sm.data_coding, data[udh_length:], event.headers.get(ALPHABET_HEADER, "gsm"), locking, single
        )
        extra: dict[str, object] = {"data_coding": sm.data_coding, "esm_class": sm.esm_class}
        if udh_length:
            extra["udh"] = data[:udh_length].hex()
        return self.part(
            event,
            region,
            sender=_number(sm.source_addr, sm.source_addr_ton),
            recipient=_number(sm.destination_addr, sm.dest_addr_ton),
            text=text,
            encoding=encoding,
            dedupe_key=f"smpp:{dedupe_key(sm)}",
            concat=concat,
            extra=extra,
        )

    def report(self, event: RawEvent, region: str | None) -> DeliveryReport:
        if event.kind != "status":
            return super().report(event, region)
        sm = _parse(event)
        fields = receipt_fields(sm.payload.decode("latin-1"))
        message_id = receipt_id(sm, fields)
        if not message_id:
            raise Unprocessable("delivery receipt without a message id (no receipted_message_id, no id: in the text)")
        state = MESSAGE_STATES.get(sm.tlv_int(P.TLV_MESSAGE_STATE) or 0) or fields.get("stat", "").upper()
        error = fields.get("err", "")
        return DeliveryReport(
            provider=self.provider,
            provider_message_id=message_id,
            status=STATES.get(state, "unknown"),
            code=state or "none",
            description=f"{state or 'no state'}" + (f", err {error}" if error else ""),
            recipient=_number(sm.source_addr, sm.source_addr_ton),  # a receipt comes from the handset it reports on
            received_at=datetime.fromtimestamp(event.received_at_us / 1_000_000, UTC),
            provider_time=_receipt_time(fields.get("done date")),
        )


def _parse(event: RawEvent) -> P.ShortMessage:
    try:
        return P.parse(event.body)
    except P.PduError as exc:
        raise Unprocessable(f"not a deliver_sm or data_sm: {exc}") from None


def _number(address: str, ton: int) -> str:
    """International numbers (TON 1) often come without their +."""
    return "+" + address if ton == 1 and address.isdigit() else address


def dedupe_key(sm: P.ShortMessage) -> str:
    return sha256_key(
        *(
            f"{value}\x1f"
            for value in (
                sm.source_addr_ton,
                sm.source_addr_npi,
                sm.source_addr,
                sm.dest_addr_ton,
                sm.dest_addr_npi,
                sm.destination_addr,
                sm.esm_class,
                sm.data_coding,
                sm.payload.hex(),
                *(
                    sm.tlvs.get(tag, b"").hex()
                    for tag in (
                        P.TLV_SAR_MSG_REF_NUM,
                        P.TLV_SAR_TOTAL_SEGMENTS,
                        P.TLV_SAR_SEGMENT_SEQNUM,
                        P.TLV_USER_MESSAGE_REFERENCE,
                        P.TLV_SOURCE_PORT,
                        P.TLV_DESTINATION_PORT,
                    )
                ),
            )
        )
    )


def decode_text(
    data_coding: int, data: bytes, default_alphabet: str = "gsm", locking: int = 0, single: int = 0
) -> tuple[Encoding, str]:
    """(encoding, text) of user data (its UDH already taken off) by SMPP 3.4 / GSM 03.38 data_coding."""

    def gsm() -> tuple[Encoding, str]:
        return "text", _gsm7(data, locking, single)

    if data_coding == 0x00:
        if default_alphabet == "latin1":
            return "text", data.decode("latin-1")
        if default_alphabet == "ascii":
            return "text", data.decode("ascii", errors="replace")
        return gsm()
    if data_coding == 0x01:
        return "text", data.decode("ascii", errors="replace")
    if data_coding == 0x03:
        return "text", data.decode("latin-1")
    if data_coding == 0x06:
        return "text", data.decode("iso8859_5", errors="replace")
    if data_coding == 0x07:
        return "text", data.decode("iso8859_8", errors="replace")
    if data_coding == 0x08:
        return "unicode", data.decode("utf-16-be", errors="replace")
    if data_coding < 0x10:  # 2, 4: octets; 5, 9, 0x0A-0x0E: JIS, pictograms, music codes, kanji, KS C 5601
        return "binary", data.hex()
    group = data_coding >> 4
    if group <= 0x7:  # general data coding (bit 6: marked for automatic deletion)
        if data_coding & 0x20:
            raise Unprocessable(f"data_coding 0x{data_coding:02x}: compressed text is not supported")
        alphabet = (data_coding >> 2) & 0x03
        if alphabet == 1:
            return "binary", data.hex()
        if alphabet == 2:
            return "unicode", data.decode("utf-16-be", errors="replace")
        return gsm()
    if group in (0xC, 0xD):  # message waiting indication, GSM 7-bit
        return gsm()
    if group == 0xE:  # message waiting indication, UCS-2
        return "unicode", data.decode("utf-16-be", errors="replace")
    if group == 0xF:  # data coding / message class: bit 2 says 8-bit data
        return ("binary", data.hex()) if data_coding & 0x04 else gsm()
    raise Unprocessable(f"data_coding 0x{data_coding:02x} is reserved or not supported")


def _gsm7(data: bytes, locking: int, single: int) -> str:
    return data.decode(f"gsm23.038-{locking}-{single}", errors="replace")


def _language_tables(udh: bytes) -> tuple[int, int]:
    """(locking shift, single shift) national language ids named by the UDH (IEI 0x25, 0x24); 0 is the default."""
    locking = single = 0
    position = 1
    while position + 2 <= len(udh):
        iei, size = udh[position], udh[position + 1]
        value = udh[position + 2 : position + 2 + size]
        if iei == 0x24 and size == 1:
            single = value[0]
        elif iei == 0x25 and size == 1:
            locking = value[0]
        position += 2 + size
    return (locking if 0 <= locking <= 13 else 0), (single if 0 <= single <= 13 else 0)


def receipt_fields(text: str) -> dict[str, str]:
    """The ``name:value`` fields of a receipt text (``id:... sub:... stat:DELIVRD err:000 text:...``), names lowercase."""
    fields: dict[str, str] = {}
    matches = list(_RECEIPT_FIELD.finditer(text))
    for match, following in zip(matches, [*matches[1:], None], strict=True):
        end = following.start() if following is not None else len(text)
        fields.setdefault(match.group(1).lower(), text[match.end() : end].strip())
    return fields


def receipt_id(sm: P.ShortMessage, fields: dict[str, str] | None = None) -> str:
    """The id of the message a receipt reports on: the receipted_message_id TLV, else the text's ``id:``."""
    tlv = sm.tlv_text(P.TLV_RECEIPTED_MESSAGE_ID)
    if tlv:
        return tlv
    if fields is None:
        fields = receipt_fields(sm.payload.decode("latin-1"))
    return fields.get("id", "")


def _receipt_time(value: str | None) -> datetime | None:
    """``done date`` as YYMMDDhhmm (SMPP 3.4, Appendix B), or with seconds."""
    text = (value or "").strip()
    fmt = {10: "%y%m%d%H%M", 12: "%y%m%d%H%M%S"}.get(len(text))
    if fmt is None or not text.isdigit():
        return None
    try:
        return datetime.strptime(text, fmt).replace(tzinfo=UTC)
    except ValueError:
        return None
