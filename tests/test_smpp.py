"""SMPP end to end against a real SMSC (smpp34's server mode, ``tests/smsc.py``) on 127.0.0.1: the
engine binds, the SMSC delivers MO messages and receipts, and the webhook receiver gets them;
SIGKILL mid-stream loses nothing the SMSC saw acknowledged; a dropped connection is bound again;
a log that cannot be written is answered with a temporary error and redelivered."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import ssl
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import smpp34
import trustme

from engine_process import EngineProcess, free_port
from engines import start_embedded
from smsc import Smsc, deliver
from smsroute.engines.embedded.log import SQLiteLog
from smsroute.ingress.log import LogUnavailable
from smsroute.ingress.smpp import Bind
from smsroute.models.raw import RawEvent
from smsroute.providers import smpp
from smsroute.smpp import pdu as P
from smsroute.smpp.config import SmppConfig
from test_pipeline import Receiver, StartEngine, engine, eventually, receiver, rules_yaml, start_engine  # noqa: F401

SENDER = "393331234567"
SHORT_CODE = "393201234567"
INTL = {"source_addr_ton": 1, "source_addr_npi": 1, "dest_addr_ton": 1, "dest_addr_npi": 1}


def mo(text: bytes, **args: Any) -> dict[str, Any]:
    return deliver(SHORT_CODE, text, source_addr=SENDER, **{**INTL, **args})


def bind_settings(port: int, **more: Any) -> dict[str, Any]:
    # smpp34's server refuses deliver_sm_resp on a receiver bind (see tests/smsc.py): transceiver here.
    return {
        "host": "127.0.0.1",
        "port": port,
        "system_id": "smsroute",
        "password": "secret",
        "bind": "transceiver",
        "reconnect_initial": 0.2,
        "reconnect_max": 1.0,
        **more,
    }


def smpp_overrides(kind: str, port: int, **more: Any) -> dict[str, Any]:
    """The bind ``operator`` as settings overrides: a nested dict in-process, a [smpp.operator] table on Kafka."""
    if kind == "kafka":
        return {"smpp.operator": bind_settings(port, **more)}
    return {"smpp": {"operator": bind_settings(port, **more)}}


@pytest.fixture
async def smsc() -> AsyncIterator[Smsc]:
    async with Smsc(free_port()) as server:
        yield server


def udh8(ref: int, total: int, index: int) -> bytes:
    return bytes([5, 0x00, 3, ref, total, index])


def udh16(ref: int, total: int, index: int) -> bytes:
    return bytes([6, 0x08, 4, ref >> 8, ref & 0xFF, total, index])


def sar(ref: int, total: int, index: int) -> list[smpp34.Tlv]:
    return [
        smpp34.Tlv(smpp34.TLV_SAR_MSG_REF_NUM, ref.to_bytes(2, "big")),
        smpp34.Tlv(smpp34.TLV_SAR_TOTAL_SEGMENTS, bytes([total])),
        smpp34.Tlv(smpp34.TLV_SAR_SEGMENT_SEQNUM, bytes([index])),
    ]


def inbox(receiver: Receiver) -> list[dict[str, Any]]:
    return [json.loads(request["body"]) for request in receiver.at("/inbox")]


async def test_messages_and_receipts_from_a_real_smsc_reach_the_webhook(
    engine: tuple[str, str],
    start_engine: StartEngine,
    receiver: Receiver,
    smsc: Smsc,  # noqa: F811
) -> None:
    run = await start_engine(**smpp_overrides(engine[0], smsc.port))
    await smsc.wait_bound()
    assert smsc.binds == ["smsroute"]
    gsm_parts = [b"Part one of three, ", b"part two of three, ", b"part three."]
    ids = smsc.submit(
        mo(b"Ciao dal SMSC"),  # GSM 03.38, data_coding 0
        mo("Привет, мир ✓".encode("utf-16-be"), data_coding=8),  # UCS-2
        mo(bytes.fromhex("c0ffee00"), data_coding=4),  # binary
        # UDH 8-bit reference, 3 parts in the order 3, 1, 2
        *(mo(udh8(0x42, 3, index) + gsm_parts[index - 1], esm_class=0x40) for index in (3, 1, 2)),
        # UDH 16-bit reference, UCS-2, 2 parts in the order 2, 1
        *(
            mo(udh16(0x1234, 2, index) + text.encode("utf-16-be"), esm_class=0x40, data_coding=8)
            for index, text in ((2, "второй"), (1, "первый "))
        ),
        # SAR TLVs, 2 parts in the order 2, 1
        *(mo(text, tlvs=sar(7, 2, index)) for index, text in ((2, b"SAR second"), (1, b"SAR first, "))),
        # the text in message_payload, short_message empty
        mo(b"", tlvs=[smpp34.Tlv(smpp34.TLV_MESSAGE_PAYLOAD, b"From the payload TLV")]),
        # a delivery receipt: esm_class 0x04, receipted_message_id and the text form
        deliver(
            SHORT_CODE,
            b"id:MSG0001 sub:001 dlvrd:001 submit date:2611211000 done date:2611211001 stat:DELIVRD err:000 text:Hi",
            source_addr=SENDER,
            esm_class=0x04,
            **{k: v for k, v in INTL.items()},
            tlvs=[
                smpp34.Tlv(smpp34.TLV_RECEIPTED_MESSAGE_ID, b"MSG0001\0"),
                smpp34.Tlv(smpp34.TLV_MESSAGE_STATE, b"\x02"),
            ],
        ),
    )
    await smsc.wait_acked(ids)
    await eventually(lambda: len(inbox(receiver)) == 7)
    texts = {message["text"]: message for message in inbox(receiver)}
    assert set(texts) == {
        "Ciao dal SMSC",
        "Привет, мир ✓",
        "c0ffee00",
        "Part one of three, part two of three, part three.",
        "первый второй",
        "SAR first, SAR second",
        "From the payload TLV",
    }
    for message in texts.values():
        assert (message["provider"], message["source"]) == ("smpp", "operator")
        assert (message["from"], message["to"]) == ("+393331234567", "+393201234567")
        assert message["complete"] is True
    assert texts["Привет, мир ✓"]["encoding"] == "unicode" and texts["c0ffee00"]["encoding"] == "binary"
    assert texts["Part one of three, part two of three, part three."]["parts"] == 3
    assert texts["первый второй"]["parts"] == 2 and texts["SAR first, SAR second"]["parts"] == 2
    reports = await _until_reports(run)
    assert [(r.provider, r.provider_message_id, r.status, r.code) for r in reports] == [
        ("smpp", "MSG0001", "delivered", "DELIVRD")
    ]
    assert all(mo.statuses == [0] for mo in smsc.messages.values()), "every PDU answered OK once"


async def _until_reports(run: Any, timeout: float = 30.0) -> list[Any]:
    deadline = time.monotonic() + timeout
    while not (reports := await run.reports()):
        assert time.monotonic() < deadline, "no delivery report"
        await asyncio.sleep(0.1)
    return reports


async def test_a_dropped_connection_is_bound_again_and_nothing_is_lost(
    engine: tuple[str, str],
    start_engine: StartEngine,
    receiver: Receiver,
    smsc: Smsc,  # noqa: F811
) -> None:
    await start_engine(**smpp_overrides(engine[0], smsc.port))
    await smsc.wait_bound()
    first = smsc.submit(*(mo(f"before {n}".encode()) for n in range(20)))
    await smsc.wait_acked(first)
    during = smsc.submit(*(mo(f"during {n}".encode()) for n in range(300)))
    while len(smsc.acked) < 40:
        await asyncio.sleep(0.001)
    await smsc.drop(down_for=0.5)  # the connection is reset mid-stream and the SMSC is away for a while
    await smsc.wait_bound(2)
    await smsc.wait_acked(during)
    await smsc.unbind()  # the SMSC's own unbind: answered, and bound again
    await smsc.wait_bound(3)
    after = smsc.submit(*(mo(f"after {n}".encode()) for n in range(20)))
    await smsc.wait_acked(after)
    expected = sorted(
        [f"before {n}" for n in range(20)] + [f"during {n}" for n in range(300)] + [f"after {n}" for n in range(20)]
    )
    await eventually(lambda: len(inbox(receiver)) >= len(expected))
    await asyncio.sleep(0.5)
    assert sorted(message["text"] for message in inbox(receiver)) == expected, "once each"
    assert any("dropped" in mo.statuses for mo in smsc.messages.values()), "the reset was not mid-stream"


async def test_sigkill_mid_stream_keeps_every_acknowledged_message_and_the_rest_are_redelivered(
    tmp_path: Path,
    smsc: Smsc,
    receiver: Receiver,  # noqa: F811
) -> None:
    routes = tmp_path / "routes"
    routes.mkdir()
    (routes / "rules.yaml").write_text(
        f'routes:\n  - name: inbox\n    actions:\n      - webhook: {{url: "{receiver.url}/inbox"}}\n'
    )
    config = tmp_path / "smsroute.toml"
    settings = bind_settings(smsc.port)
    config.write_text(
        "[smpp.operator]\n" + "".join(f"{key} = {json.dumps(value)}\n" for key, value in settings.items())
    )
    data_dir = tmp_path / "data"
    total = 3000
    texts = [f"mo-{n:05d}" for n in range(total)]
    ids = dict(zip(smsc.submit(*(mo(text.encode()) for text in texts)), texts))
    engine = EngineProcess(data_dir, tmp_path / "engine.stderr", routes, config=config)
    try:
        async with aiohttp.ClientSession() as http:
            await engine.wait_healthy(http)
        async with asyncio.timeout(60):
            while len(smsc.acked) < 800:
                await asyncio.sleep(0.005)
        os.kill(engine.process.pid, signal.SIGKILL)
        assert engine.process.wait(timeout=10) == -signal.SIGKILL
        acked_at_kill = {ids[mo_id] for mo_id in list(smsc.acked)}
        await asyncio.sleep(0.5)  # whatever the SMSC still reads of the dead session
        acked = {ids[mo_id] for mo_id in smsc.acked}
        assert len(acked) < total, "the kill came after the last message: not mid-stream"
        logged = logged_texts(data_dir / "log.db")
        assert acked - logged == set(), f"{len(acked - logged)} acknowledged but not in the log"
        assert acked_at_kill <= acked

        written_unanswered = logged - acked  # durable, but the answer never reached the SMSC: it redelivers them
        engine = EngineProcess(data_dir, tmp_path / "engine2.stderr", routes, config=config)
        async with aiohttp.ClientSession() as http:
            await engine.wait_healthy(http)
        await smsc.wait_acked(ids, timeout=60)
        redelivered = [mo for mo in smsc.messages.values() if mo.attempts > 1]
        assert redelivered, "nothing was in flight at the kill"
        assert all(mo.statuses[-1] == 0 and "dropped" in mo.statuses for mo in redelivered)
        assert set(texts) == logged_texts(data_dir / "log.db"), "every message in the log after the redelivery"
        # each message reaches the webhook once: redeliveries of what was already logged are dropped by dedupe
        print(f"{len(acked)} acknowledged before the kill, {len(written_unanswered)} logged but unanswered")
        await eventually(lambda: len(receiver.at("/inbox")) >= total, timeout=60)
        await asyncio.sleep(1.0)
        delivered = [json.loads(request["body"])["text"] for request in receiver.at("/inbox")]
        assert sorted(delivered) == sorted(texts), (
            f"{len(delivered)} deliveries for {total} messages ({len(written_unanswered)} logged but unanswered at the kill)"
        )
        assert engine.stop() == 0, engine.stderr()
    finally:
        engine.kill()


def logged_texts(path: Path) -> set[str]:
    texts = set()
    for _, _, record in SQLiteLog(path).read(limit=1_000_000):
        event = RawEvent.decode(record)
        assert (event.provider, event.ingress, event.content_type) == ("smpp", "operator", "application/vnd.smpp.pdu")
        assert event.key == f"smpp:{SENDER}:{SHORT_CODE}"
        texts.add(P.parse(event.body).short_message.decode())
    return texts


class FlakyLog:
    """A log that cannot write the first ``failures`` appends, then keeps every record."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.records: list[tuple[str, bytes]] = []

    @property
    def ready(self) -> bool:
        return self.failures <= 0

    async def append(self, records: Any) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise LogUnavailable("disk full")
        self.records += records


async def test_a_log_that_cannot_write_gets_a_temporary_error_and_the_smsc_redelivers(smsc: Smsc) -> None:
    flaky = FlakyLog(failures=3)
    config = SmppConfig(**bind_settings(smsc.port, throttle=0.2, throttle_max=0.5))
    receiver = Bind("operator", config, flaky, log_timeout=1.0)
    await receiver.start()
    try:
        [mo_id] = smsc.submit(mo(b"durable or nothing"))
        await smsc.wait_acked([mo_id], timeout=30)
    finally:
        await receiver.stop()
    statuses = smsc.messages[mo_id].statuses
    assert statuses == [P.ESME_RX_T_APPN] * 3 + [P.ESME_ROK], statuses
    [(key, record)] = flaky.records
    event = RawEvent.decode(record)
    assert key == event.key == f"smpp:{SENDER}:{SHORT_CODE}"
    part = smpp.Normalizing().normalize(event, None)
    assert (part.sender, part.recipient, part.text, part.source) == (
        "+393331234567",
        "+393201234567",
        "durable or nothing",
        "operator",
    )


async def test_receiver_bind_and_unbind_on_stop(smsc: Smsc) -> None:
    """smpp34 takes a bind_receiver (it cannot take deliver_sm_resp on one: see tests/smsc.py)."""
    receiver = Bind("operator", SmppConfig(**bind_settings(smsc.port, bind="receiver")), FlakyLog(0), 1.0)
    await receiver.start()
    try:
        await smsc.wait_bound()
        await asyncio.wait_for(receiver.bound.wait(), 10)
    finally:
        await receiver.stop()
    async with asyncio.timeout(10):
        while smsc.unbinds < 1:
            await asyncio.sleep(0.05)
    assert not receiver.bound.is_set()


async def test_tls_bind_verifies_the_smsc_certificate(tmp_path: Path) -> None:
    """TLS from the first byte: the relay in front of smpp34 terminates TLS with a trustme certificate."""
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    async with Smsc(free_port(), tls=server_context) as tls_smsc:
        flaky = FlakyLog(0)
        config = SmppConfig(**bind_settings(tls_smsc.port, tls=True, ca_file=str(ca_file)))
        receiver = Bind("operator", config, flaky, 1.0)
        await receiver.start()
        try:
            [mo_id] = tls_smsc.submit(mo(b"over TLS"))
            await tls_smsc.wait_acked([mo_id])
        finally:
            await receiver.stop()
        assert len(flaky.records) == 1
        # an ESME that does not trust the certificate never binds
        untrusted = Bind("operator", SmppConfig(**bind_settings(tls_smsc.port, tls=True)), FlakyLog(0), 1.0)
        await untrusted.start()
        await asyncio.sleep(1.0)
        await untrusted.stop()
        assert tls_smsc.binds == ["smsroute"]


async def test_a_redelivery_of_a_logged_message_reaches_the_webhook_once(
    tmp_path: Path,
    receiver: Receiver,
    smsc: Smsc,  # noqa: F811
) -> None:
    """The SMSC delivers again what it saw no OK for, though it may be in the log already (an
    answer lost to a crash or a cut): here the first write succeeds and its answer is lost."""
    routes = tmp_path / "routes"
    routes.mkdir()
    (routes / "rules.yaml").write_text(rules_yaml(receiver.url))
    run = await start_embedded(tmp_path, routes, **smpp_overrides("embedded", smsc.port, throttle=0.1))
    try:
        await _answer_lost_once(run, receiver, smsc)
    finally:
        await run.stop()


async def _answer_lost_once(run: Any, receiver: Receiver, smsc: Smsc) -> None:  # noqa: F811
    bind = run.engine.smpp.binds[0]
    real = bind.event_log
    lost = {"left": 1}

    class AnswerLost:
        ready = True

        async def append(self, records: Any) -> None:
            await real.append(records)
            if lost["left"]:
                lost["left"] -= 1
                raise LogUnavailable("written, but the answer is lost")

    bind.event_log = AnswerLost()
    await smsc.wait_bound()
    [mo_id] = smsc.submit(mo(b"only once please"))
    await smsc.wait_acked([mo_id])
    assert smsc.messages[mo_id].statuses == [P.ESME_RX_T_APPN, P.ESME_ROK]
    assert len([r for _, _, r in real.read(limit=100)]) == 2, "the message is in the log twice"
    await eventually(lambda: len(inbox(receiver)) == 1)
    await asyncio.sleep(1.0)
    assert [message["text"] for message in inbox(receiver)] == ["only once please"]
