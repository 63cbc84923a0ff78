"""The SMPP provider's normalizer, on PDUs built by smpp34's codec (an implementation not ours):
text in every data_coding, the GSM 03.38 national language shift tables, UDH and SAR concatenation,
data_sm, receipts, the dedupe key; and the [smpp.NAME] settings' checks."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
import smpp34
from aiohttp.test_utils import TestClient, TestServer

from smsroute.config import ConfigError, load_settings
from smsroute.ingress.app import create_app
from smsroute.ingress.smpp import event_key
from smsroute.models.part import Concat
from smsroute.models.raw import RawEvent
from smsroute.providers import build_receivers, normalizers, smpp
from smsroute.providers.kit import Unprocessable
from smsroute.providers.smpp import decode_text, receipt_fields
from smsroute.smpp import pdu as P

NORMALIZER = smpp.Normalizing()
INTL = {"source_addr_ton": 1, "source_addr_npi": 1, "dest_addr_ton": 1, "dest_addr_npi": 1}


def deliver_sm(short_message: bytes = b"", *, sequence: int = 1, **fields: object) -> bytes:
    return smpp34.DeliverSm(
        "393331234567", "393201234567", short_message, sequence_number=sequence, **{**INTL, **fields}
    ).encode()  # type: ignore[arg-type]


def event(pdu: bytes, alphabet: str = "gsm") -> RawEvent:
    kind, key = event_key(pdu)
    return RawEvent(
        ingress="operator",
        provider="smpp",
        kind=kind,
        received_at_us=1_790_000_000_000_000,
        remote_addr="127.0.0.1:2775",
        method=P.command_name(P.header(pdu)[1]),
        path="",
        query="",
        content_type="application/vnd.smpp.pdu",
        headers={"smpp-default-alphabet": alphabet},
        body=pdu,
        key=key,
    )


def normalize(pdu: bytes, alphabet: str = "gsm"):
    return NORMALIZER.normalize(RawEvent.decode(event(pdu, alphabet).encode()), "IT")


def test_the_codec_reads_what_smpp34_encodes() -> None:
    pdu = deliver_sm(
        b"hi",
        sequence=77,
        esm_class=0x40,
        data_coding=8,
        protocol_id=0,
        service_type="CMT",
        tlvs=[smpp34.Tlv(0x1403, b"vendor"), smpp34.Tlv(smpp34.TLV_SAR_MSG_REF_NUM, b"\x01\x02")],
    )
    sm = P.parse(pdu)
    assert (sm.command, sm.sequence, sm.service_type, sm.source_addr, sm.destination_addr) == (
        "deliver_sm",
        77,
        "CMT",
        "393331234567",
        "393201234567",
    )
    assert (sm.source_addr_ton, sm.dest_addr_npi, sm.esm_class, sm.data_coding, sm.short_message) == (
        1,
        1,
        0x40,
        8,
        b"hi",
    )
    assert sm.tlvs == {0x1403: b"vendor", P.TLV_SAR_MSG_REF_NUM: b"\x01\x02"}
    assert P.addresses(pdu) == ("393331234567", "393201234567", 0x40)


def test_gsm_default_alphabet_with_its_extension_table() -> None:
    part = normalize(deliver_sm(b"Prezzo: 5\x1be, @casa \x1b<1\x1b>"))
    assert part.text == "Prezzo: 5€, ¡casa [1]"
    assert (part.sender, part.recipient, part.encoding, part.provider) == (
        "+393331234567",
        "+393201234567",
        "text",
        "smpp",
    )
    assert part.source == "operator" and part.concat is None


@pytest.mark.parametrize(
    ("udh", "data", "text"),
    [
        (bytes([6, 0x25, 1, 1, 0x24, 1, 1]), bytes([0x07, 0x04, 0x1B, 0x47]), "ı€Ğ"),  # Turkish locking + single shift
        (bytes([3, 0x25, 1, 1]), bytes([0x07, 0x04]), "ı€"),  # Turkish locking shift only
        (bytes([3, 0x24, 1, 1]), bytes([0x1B, 0x47, 0x1B, 0x53]), "Ğ\u015e"),  # Turkish single shift only
        (bytes([3, 0x24, 1, 2]), b"Buenos d\x1bias", "Buenos días"),  # Spanish single shift
        (bytes([6, 0x25, 1, 3, 0x24, 1, 3]), bytes([0x1B, 0x05, 0x0F]), "êá"),  # Portuguese locking + single shift
    ],
)
def test_gsm_national_language_shift_tables_named_by_the_udh(udh: bytes, data: bytes, text: str) -> None:
    expected = data.decode(f"gsm23.038-{_ie(udh, 0x25)}-{_ie(udh, 0x24)}")
    part = normalize(deliver_sm(udh + data, esm_class=0x40))
    assert part.text == expected == text
    assert part.extra["udh"] == udh.hex()
    assert normalize(deliver_sm(bytes([0x07, 0x04]))).text == "ìè"  # without the UDH: the default alphabet


def _ie(udh: bytes, iei: int) -> int:
    position = 1
    while position < len(udh):
        if udh[position] == iei:
            return udh[position + 2]
        position += 2 + udh[position + 1]
    return 0


def test_latin1_ascii_and_the_smsc_default_alphabet_setting() -> None:
    assert normalize(deliver_sm("Grüße".encode("latin-1"), data_coding=3)).text == "Grüße"
    assert normalize(deliver_sm(b"plain @ascii", data_coding=1)).text == "plain @ascii"
    assert normalize(deliver_sm("Grüße @".encode("latin-1")), alphabet="latin1").text == "Grüße @"
    assert normalize(deliver_sm(b"at @ sign"), alphabet="ascii").text == "at @ sign"
    assert normalize(deliver_sm(b"at \x00 sign")).text == "at @ sign"  # GSM: 0x00 is @


def test_ucs2_with_a_surrogate_pair_and_the_gsm_coding_groups() -> None:
    part = normalize(deliver_sm("Привет 👋".encode("utf-16-be"), data_coding=8))
    assert (part.text, part.encoding) == ("Привет 👋", "unicode")
    assert decode_text(0x18, "ok".encode("utf-16-be")) == ("unicode", "ok")  # general group, class 0, UCS-2
    assert decode_text(0x11, b"ok") == ("text", "ok")  # general group, class 1, GSM 7-bit
    assert decode_text(0xF1, b"ok") == ("text", "ok")  # class group, GSM 7-bit
    assert decode_text(0xF5, b"\x01\x02") == ("binary", "0102")  # class group, 8-bit data
    assert decode_text(0x06, "Да".encode("iso8859_5")) == ("text", "Да")
    with pytest.raises(Unprocessable, match="compressed"):
        decode_text(0x20, b"zz")


def test_binary_is_kept_as_hex() -> None:
    part = normalize(deliver_sm(bytes.fromhex("0b0504158200000003"), data_coding=4))
    assert (part.text, part.encoding) == ("0b0504158200000003", "binary")
    assert normalize(deliver_sm(b"\xca\xfe", data_coding=2)).text == "cafe"
    for data_coding in (0x05, 0x09, 0x0A, 0x0D, 0x0E):  # SMPP codings not decoded: kept whole
        assert decode_text(data_coding, "日本".encode("utf-16-be")) == ("binary", "65e5672c")


def test_udh_8_and_16_bit_references_and_sar_tlvs() -> None:
    part = normalize(deliver_sm(bytes([5, 0, 3, 0xAB, 3, 2]) + b"middle", esm_class=0x40))
    assert (part.concat, part.text) == (Concat("ab", 3, 2), "middle")
    part = normalize(
        deliver_sm(bytes([6, 8, 4, 0x12, 0x34, 2, 1]) + "Ц".encode("utf-16-be"), esm_class=0x43, data_coding=8)
    )
    assert (part.concat, part.text) == (Concat("1234", 2, 1), "Ц")
    sar = [
        smpp34.Tlv(smpp34.TLV_SAR_MSG_REF_NUM, b"\x00\x07"),
        smpp34.Tlv(smpp34.TLV_SAR_TOTAL_SEGMENTS, b"\x02"),
        smpp34.Tlv(smpp34.TLV_SAR_SEGMENT_SEQNUM, b"\x02"),
    ]
    part = normalize(deliver_sm(b"second", tlvs=sar))
    assert (part.concat, part.text) == (Concat("0007", 2, 2), "second")
    with pytest.raises(Unprocessable, match="outside"):
        normalize(deliver_sm(b"x", tlvs=[*sar[:2], smpp34.Tlv(smpp34.TLV_SAR_SEGMENT_SEQNUM, b"\x03")]))


def data_sm(payload: bytes, data_coding: int = 0, esm_class: int = 0) -> bytes:
    """data_sm as SMPP 3.4 section 4.7.1 lays it out (smpp34's Python codec builds none)."""
    body = (
        b"\0"
        + bytes([1, 1])
        + b"393331234567\0"
        + bytes([1, 1])
        + b"393201234567\0"
        + bytes([esm_class, 0, data_coding])
        + struct.pack(">HH", P.TLV_MESSAGE_PAYLOAD, len(payload))
        + payload
    )
    return P.encode(P.DATA_SM, 9, body)


def test_data_sm_and_message_payload() -> None:
    part = normalize(data_sm("Ünïcödé over data_sm".encode("utf-16-be"), data_coding=8))
    assert (part.text, part.sender, part.recipient) == ("Ünïcödé over data_sm", "+393331234567", "+393201234567")
    long_text = b"x" * 600  # past short_message's 254 octets
    assert normalize(deliver_sm(b"", tlvs=[smpp34.Tlv(smpp34.TLV_MESSAGE_PAYLOAD, long_text)])).text == "x" * 600


def test_receipts_become_delivery_reports() -> None:
    text = b"id:0A1B2C sub:001 dlvrd:001 submit date:2611211000 done date:2611211002 stat:UNDELIV err:034 text:Ciao"
    report = NORMALIZER.report(event(deliver_sm(text, esm_class=0x04)), "IT")
    assert (report.provider, report.provider_message_id, report.status, report.code) == (
        "smpp",
        "0A1B2C",
        "failed",
        "UNDELIV",
    )
    assert report.description == "UNDELIV, err 034" and report.recipient == "+393331234567"
    assert report.provider_time is not None and report.provider_time.isoformat() == "2026-11-21T10:02:00+00:00"
    # the TLVs win over the text
    tlvs = [smpp34.Tlv(smpp34.TLV_RECEIPTED_MESSAGE_ID, b"ff01\0"), smpp34.Tlv(smpp34.TLV_MESSAGE_STATE, b"\x02")]
    report = NORMALIZER.report(event(deliver_sm(text, esm_class=0x04, tlvs=tlvs)), "IT")
    assert (report.provider_message_id, report.status, report.code) == ("ff01", "delivered", "DELIVRD")
    assert event(deliver_sm(text, esm_class=0x04, tlvs=tlvs)).key == "smpp:ff01"
    for stat, status in (
        ("ACCEPTD", "pending"),
        ("ENROUTE", "pending"),
        ("EXPIRED", "failed"),
        ("REJECTD", "failed"),
        ("DELETED", "failed"),
        ("UNKNOWN", "unknown"),
        ("WHATEVER", "unknown"),
    ):
        receipt = deliver_sm(f"id:1 stat:{stat}".encode(), esm_class=0x04)
        assert NORMALIZER.report(event(receipt), None).status == status
    with pytest.raises(Unprocessable, match="message id"):
        NORMALIZER.report(event(deliver_sm(b"stat:DELIVRD", esm_class=0x04)), None)
    assert receipt_fields("id:abc Submit date:2611211000 STAT:DELIVRD")["stat"] == "DELIVRD"


def test_a_redelivered_pdu_has_the_same_dedupe_key_and_a_new_message_does_not() -> None:
    first = normalize(deliver_sm(b"YES", sequence=1))
    again = normalize(deliver_sm(b"YES", sequence=912))  # the SMSC's redelivery after a lost resp
    assert first.dedupe_key == again.dedupe_key and first.dedupe_key.startswith("smpp:")
    assert normalize(deliver_sm(b"NO")).dedupe_key != first.dedupe_key
    tp_mr = [smpp34.Tlv(smpp34.TLV_USER_MESSAGE_REFERENCE, b"\x00\x01")]
    assert normalize(deliver_sm(b"YES", tlvs=tp_mr)).dedupe_key != first.dedupe_key  # the phone sent it twice

    def sar(n: int) -> list[smpp34.Tlv]:
        return [
            smpp34.Tlv(smpp34.TLV_SAR_MSG_REF_NUM, b"\x00\x07"),
            smpp34.Tlv(smpp34.TLV_SAR_TOTAL_SEGMENTS, b"\x02"),
            smpp34.Tlv(smpp34.TLV_SAR_SEGMENT_SEQNUM, bytes([n])),
        ]

    assert (
        normalize(deliver_sm(b"same", tlvs=sar(1))).dedupe_key != normalize(deliver_sm(b"same", tlvs=sar(2))).dedupe_key
    )


def test_what_is_not_a_deliver_sm_is_a_dead_letter_with_its_reason() -> None:
    broken = deliver_sm(b"hello")[:-3]
    assert event(broken).key == "smpp:393331234567:393201234567"
    with pytest.raises(Unprocessable, match="not a deliver_sm or data_sm"):
        normalize(broken)
    with pytest.raises(Unprocessable):
        normalize(P.encode(P.ENQUIRE_LINK, 1))
    assert event(b"\0" * 16 + b"junk").key == "smpp:unreadable"
    assert "smpp" in normalizers()  # the processing side knows the provider


def test_the_smpp_provider_is_not_an_http_endpoint() -> None:
    adapters = build_receivers(load_settings())
    assert "smpp" not in adapters
    with pytest.raises(ConfigError, match="configure a bind as \\[smpp.NAME\\]"):
        build_receivers(load_settings(ingress={"sms": {"provider": "smpp"}}))


async def test_http_inbound_smpp_is_404() -> None:
    settings = load_settings()
    app = create_app(settings, build_receivers(settings), event_log=None)  # type: ignore[arg-type]
    async with TestClient(TestServer(app)) as client:
        response = await client.post("/inbound/smpp", data=b"x")
        assert response.status == 404
        assert "no ingress named 'smpp'" in await response.text()


VALID = {"host": "smsc.example.net", "system_id": "acme", "password": "s3cret"}


@pytest.mark.parametrize(
    ("bind", "message"),
    [
        ({**VALID, "pasword": "x"}, "smpp.operator.pasword: Extra inputs are not permitted"),
        ({**VALID, "port": 70000}, "smpp.operator.port: Input should be less than or equal to 65535"),
        ({**VALID, "port": "smpp"}, "smpp.operator.port: Input should be a valid integer"),
        ({**VALID, "password": ""}, "smpp.operator.password: Value error, must not be empty"),
        ({**VALID, "password": "123456789"}, "smpp.operator.password: Value error, SMPP 3.4 passwords are at most 8"),
        ({**VALID, "bind": "transmitter"}, "smpp.operator.bind: Input should be 'receiver' or 'transceiver'"),
        ({**VALID, "system_id": "x" * 16}, "smpp.operator.system_id: String should have at most 15 characters"),
        ({k: v for k, v in VALID.items() if k != "host"}, "smpp.operator.host: Field required"),
        ({**VALID, "reconnect_initial": 10, "reconnect_max": 5}, "reconnect_initial must not exceed reconnect_max"),
    ],
)
def test_bad_bind_settings_are_refused_with_their_name(bind: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as refused:
        load_settings(smpp={"operator": bind})
    assert message in str(refused.value)


def test_bind_settings_from_a_file_and_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "smsroute.toml"
    config.write_text('[smpp.operator]\nhost = "127.0.0.1"\nsystem_id = "acme"\nbind = "transceiver"\n')
    monkeypatch.setenv("SMSROUTE_SMPP__OPERATOR__PASSWORD", "fromenv")
    settings = load_settings(config)
    bind = settings.smpp["operator"]
    assert (bind.host, bind.port, bind.bind, bind.password.get_secret_value()) == (
        "127.0.0.1",
        2775,
        "transceiver",
        "fromenv",
    )
    assert "fromenv" not in repr(settings)
    with pytest.raises(ConfigError, match="the same name for an"):
        load_settings(config, ingress={"operator": {"provider": "vonage"}})


async def test_the_session_answers_data_sm_enquire_link_and_unknown_commands_on_the_wire() -> None:
    """smpp34's server sends no data_sm: a peer on a socket that speaks the bytes of SMPP 3.4 does."""
    import asyncio

    from smsroute.smpp.session import Session

    seen: list[bytes] = []
    answers: asyncio.Queue[bytes] = asyncio.Queue()

    async def peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async def read() -> bytes:
            head = await reader.readexactly(16)
            return head + await reader.readexactly(int.from_bytes(head[:4], "big") - 16)

        bind = await read()
        assert P.header(bind)[1] == P.BIND_RECEIVER and b"acme\0s3cret\0" in bind
        writer.write(P.encode(P.BIND_RECEIVER | P.RESPONSE, P.header(bind)[3], b"smsc\0"))
        writer.write(data_sm("via data_sm".encode("utf-16-be"), data_coding=8))
        writer.write(P.encode(P.ENQUIRE_LINK, 10))
        writer.write(P.encode(0x00000004, 11, b"junk"))  # submit_sm: an ESME receiver never takes one
        for _ in range(3):
            await answers.put(await read())
        writer.write(P.encode(P.UNBIND, 12))
        await answers.put(await read())
        writer.close()

    class Keep:
        async def message(self, command_id: int, data: bytes) -> int:
            seen.append(data)
            return P.ESME_ROK

    server = await asyncio.start_server(peer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    session = Session("127.0.0.1", port, system_id="acme", password="s3cret", handler=Keep())
    await session.bind()
    reason = await asyncio.wait_for(session.serve(), 10)
    server.close()
    got = {P.header(answer)[1]: answer for answer in [answers.get_nowait() for _ in range(4)]}
    assert reason == "unbound by the SMSC"
    assert got[P.DATA_SM | P.RESPONSE] == P.encode(P.DATA_SM | P.RESPONSE, 9, b"\0")
    assert P.header(got[P.ENQUIRE_LINK | P.RESPONSE])[3] == 10
    assert P.header(got[P.GENERIC_NACK])[2:] == (P.ESME_RINVCMDID, 11)
    assert P.header(got[P.UNBIND | P.RESPONSE])[3] == 12
    assert normalize(seen[0]).text == "via data_sm"
